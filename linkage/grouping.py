"""Multi-party grouping: records of several agencies that refer to one entity.

Greedy, highest score first, like anonlink's solver, but a merge must be
supported by *every* pair across the two groups (complete linkage): A~B and
B~C do not pull A and C together unless A~C as well. Records of the same
agency may share a group (within-agency duplicates) unless ``max_per_owner``
forbids it (1-to-1 linkage between deduplicated files).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .candidates import CandidatePairs

__all__ = ["Grouping", "greedy_groups"]


@dataclass(frozen=True)
class Grouping:
    """``labels[r]`` is record r's group (0..groups-1) or -1 when it matched nothing.

    ``weakest_score[g]`` is the lowest pair score inside group g: the link a
    sceptic would question first, and what confidence is derived from.
    """

    labels: np.ndarray
    weakest_score: np.ndarray

    @property
    def group_count(self) -> int:
        return int(self.weakest_score.shape[0])

    def members(self) -> list[np.ndarray]:
        """Record indices of each group, in label order."""
        order = np.argsort(self.labels, kind="stable")
        sorted_labels = self.labels[order]
        start = int(np.searchsorted(sorted_labels, 0))
        boundaries = np.searchsorted(sorted_labels[start:], np.arange(self.group_count + 1))
        return [order[start + boundaries[g]: start + boundaries[g + 1]]
                for g in range(self.group_count)]


def greedy_groups(
    pairs: CandidatePairs,
    record_count: int,
    owners: np.ndarray,
    *,
    max_per_owner: int | None = None,
) -> Grouping:
    """Group records from candidate pairs (indices into 0..record_count-1).

    Args:
        pairs: candidate pairs at or above the threshold, any order, each pair once.
        record_count: total number of records.
        owners: owner (agency or file) index of every record.
        max_per_owner: at most this many records of one owner per group
            (``1`` gives 1-to-1 linkage); ``None`` allows duplicates.

    Returns:
        The grouping; singletons are labelled -1.
    """
    order = np.lexsort((pairs.right, pairs.left, -pairs.score))
    lefts = pairs.left[order].tolist()
    rights = pairs.right[order].tolist()
    scores = pairs.score[order].tolist()
    pair_score = {(min(a, b), max(a, b)): s for a, b, s in zip(lefts, rights, scores)}
    group_of: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    weakest: dict[int, float] = {}
    owner_list = owners.tolist()
    next_group = 0
    for a, b, score in zip(lefts, rights, scores):
        group_a, group_b = group_of.get(a), group_of.get(b)
        if group_a is not None and group_a == group_b:
            continue
        side_a = members[group_a] if group_a is not None else [a]
        side_b = members[group_b] if group_b is not None else [b]
        if max_per_owner is not None and not _owners_fit(side_a, side_b, owner_list, max_per_owner):
            continue
        cross = [pair_score.get((min(x, y), max(x, y))) for x in side_a for y in side_b]
        if any(s is None for s in cross):
            continue
        low = min(min(cross), weakest.get(group_a, 1.0), weakest.get(group_b, 1.0))
        if group_a is None and group_b is None:
            target = next_group
            next_group += 1
            members[target] = [a, b]
        else:
            if group_a is None or (group_b is not None and len(side_b) > len(side_a)):
                target, joining = group_b, side_a
                dropped = group_a
            else:
                target, joining = group_a, side_b
                dropped = group_b
            members[target].extend(joining)
            if dropped is not None:
                del members[dropped]
                weakest.pop(dropped, None)
        for record in members[target]:
            group_of[record] = target
        weakest[target] = low
    labels = np.full(record_count, -1, dtype=np.int64)
    weakest_score = np.zeros(len(members), dtype=np.float64)
    for new_label, old in enumerate(sorted(members, key=lambda g: min(members[g]))):
        labels[members[old]] = new_label
        weakest_score[new_label] = weakest[old]
    return Grouping(labels, weakest_score)


def _owners_fit(side_a: list[int], side_b: list[int], owners: list[int], limit: int) -> bool:
    counts: dict[int, int] = {}
    for record in side_a + side_b:
        owner = owners[record]
        counts[owner] = counts.get(owner, 0) + 1
        if counts[owner] > limit:
            return False
    return True
