"""Pairwise linkage quality against a known truth (synthetic or labelled data).

A predicted pair is two records placed in one group; a true pair is two
records of one entity. Quality is reported overall and split into
cross-agency and within-agency pairs.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from itertools import combinations

__all__ = ["PairQuality", "group_pairs", "pairwise_quality"]

RecordKey = tuple[str, str]  # (agency, record id)


@dataclass(frozen=True)
class PairQuality:
    """Counts and the derived precision / recall / F1."""

    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        actual = self.true_positives + self.false_negatives
        return self.true_positives / actual if actual else 1.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def group_pairs(labels: Mapping[RecordKey, Hashable]) -> set[frozenset[RecordKey]]:
    """All pairs of records that share a label."""
    members: dict[Hashable, list[RecordKey]] = {}
    for record, label in labels.items():
        members.setdefault(label, []).append(record)
    return {frozenset(pair) for group in members.values() for pair in combinations(group, 2)}


def pairwise_quality(predicted: Mapping[RecordKey, Hashable],
                     truth: Mapping[RecordKey, Hashable]) -> dict[str, PairQuality]:
    """Quality of predicted groups against true entities: keys 'all', 'cross', 'within'."""
    predicted_pairs = group_pairs(predicted)
    true_pairs = group_pairs(truth)
    result = {}
    for name, keep in (("all", lambda p: True),
                       ("cross", lambda p: len({a for a, _ in p}) == 2),
                       ("within", lambda p: len({a for a, _ in p}) == 1)):
        found = {p for p in predicted_pairs if keep(p)}
        actual = {p for p in true_pairs if keep(p)}
        result[name] = PairQuality(len(found & actual), len(found - actual), len(actual - found))
    return result
