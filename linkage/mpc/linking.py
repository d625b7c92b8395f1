"""From the hit pairs of a two-server run to groups and a run summary, as a normal run has.

The servers learn which compared pairs (cross-agency, and within agencies not declared
deduplicated) reach the threshold and, for those pairs only,
their Dice band (``linkage.mpc.banded_run``), never a score. So each hit pair is given its
band's lower edge as its score: the greedy grouping (``decide``) then merges the stronger
band first, and the 1-to-1 rule of a deduplicated agency keeps a record's hit in the higher
band. Hits in one band still tie, and merge in (left, right) order. Where ``auto`` fitted a
score model to the opened sample histogram, a group's confidence is the model's share of
matches in its weakest link's band (``band_match_shares``); otherwise it is that band's lower
edge, as an unmodelled normal run's is its weakest Dice score. Groups, keys, confidences and
the summary have the shape the reports read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from linkage.errors import InvalidRequestError
from linkage.matching.candidates import CandidatePairs
from linkage.matching.engine import decide
from linkage.matching.threshold import ThresholdChoice, band_match_shares
from linkage.matching.review import needs_review
from linkage.matching.run import (
    RunOutcome,
    RunRecords,
    RunReviews,
    RunSettings,
    _named_groups,
    _summary,
)
from linkage.matching.run_summary import EntityTypeSummary

__all__ = ["group_field_links", "group_hits"]


def group_hits(agency: np.ndarray, record_ids: Sequence[str], left: np.ndarray,
               right: np.ndarray, settings: RunSettings, group_key_secret: bytes,
               deduplicated: frozenset[int] = frozenset(), *, edges: np.ndarray | None = None,
               band: np.ndarray | None = None, choice: ThresholdChoice | None = None,
               histogram: tuple[np.ndarray, np.ndarray] | None = None) -> RunOutcome:
    """Group the records of a two-server run from its hit pairs.

    Args:
        agency: each record's agency id, by position.
        record_ids: each record's id, by position.
        left, right: positions of the hit pairs (Dice >= the threshold).
        settings: the run's settings.
        group_key_secret: the key of the groups' keyed hashes.
        deduplicated: agencies with at most one record per group.
        edges, band: the hit edges and each hit's band index in them (``edges[band]`` is
            its score); without them every hit scores the threshold.
        choice: how the threshold was chosen; with ``auto`` its model (if any) gives the
            confidences. ``None``: set by the coordinator.
        histogram: ``auto``: the opened sample histogram (edges, counts) for the summary.
    Returns:
        The outcome (no CLK matrix exists: ``records.clks`` is zero bits wide).
    Raises:
        InvalidRequestError: neither a numeric threshold nor a choice, or bands that do not
            fit the hits.
    """
    threshold = choice.threshold if choice is not None else settings.requested
    if threshold is None:
        raise InvalidRequestError("A two-server run's threshold is numeric or chosen by "
                                  "'auto' on the opened histogram; neither was given.")
    count = len(record_ids)
    agency = np.asarray(agency, np.int64)
    records = RunRecords(agency, list(record_ids), np.full(count, "person", dtype=object),
                         np.ones(count, bool), {"person": np.zeros((count, 0), np.uint64)})
    if edges is None or band is None:
        edges, band = np.array([threshold], np.float64), np.zeros(len(left), np.int64)
    edges, band = np.asarray(edges, np.float64), np.asarray(band, np.int64)
    if band.shape != (len(left),) or (band.size and (band.min() < 0
                                                       or band.max() >= edges.size)):
        raise InvalidRequestError("Each hit pair needs one band index into the edges.")
    pairs = CandidatePairs(np.asarray(left, np.int64), np.asarray(right, np.int64),
                           edges[band])
    one_per_group = {int(a): 1 for a in deduplicated}
    result = decide(pairs, threshold, agency, threshold=threshold,
                    max_per_owner=one_per_group or None, fit_model=False)
    model = choice.model if choice is not None else None
    if model is not None:
        shares = band_match_shares(model, edges)
        weakest = np.searchsorted(edges, result.grouping.weakest_score + 1e-12, "right") - 1
        result = replace(result, choice=choice,
                         confidence=shares[np.clip(weakest, 0, edges.size - 1)])
    elif choice is not None:
        result = replace(result, choice=choice)
    flags = needs_review(result.confidence, modelled=model is not None, threshold=threshold)
    groups = _named_groups(result, records, np.arange(count), "person", flags, group_key_secret)
    if choice is None:
        reason = (f"two-server mode: Dice >= {threshold:g} decided on shares (set by the "
                  "coordinator); each hit's Dice band is its score")
    else:
        reason = f"two-server mode, on shares: {choice.reason}"
    types = {"person": EntityTypeSummary(
        records=count, threshold=threshold, threshold_reason=reason,
        groups=result.grouping.group_count, reviews_used_accepted=0, reviews_used_rejected=0,
        modelled=model is not None, groups_to_review=int(flags.sum()))}
    summary = _summary(records, settings, RunReviews(), threshold, {"person": result}, types,
                       groups, 0, frozenset(int(a) for a in deduplicated), {"person": None}, {})
    hit_counts = np.bincount(band, minlength=edges.size)
    bins = [(float(edges[k]), float(edges[k + 1]) if k + 1 < edges.size else 1.0,
             int(hit_counts[k])) for k in range(edges.size) if edges[k] >= threshold]
    changes = {"threshold_reason": reason, "histogram": tuple(bins),
               "blocking": "person: every pair, on shares",
               "quality_curve": ()}
    if model is not None and histogram is not None:
        changes["quality_curve"] = _banded_curve(model, *histogram)
    summary = summary.replace(**changes)
    return RunOutcome(threshold, pairs, groups, {"person": result}, summary)


def _banded_curve(model, edges: np.ndarray, counts: np.ndarray) -> tuple:
    """(edge, expected precision, expected recall) of linking at each histogram edge."""
    expected = np.asarray(counts, np.float64) * band_match_shares(model, edges)
    true_positive = np.cumsum(expected[::-1])[::-1]
    linked = np.cumsum(np.asarray(counts, np.float64)[::-1])[::-1]
    total = max(float(expected.sum()), 1e-12)
    return tuple((round(float(e), 4), float(tp / n) if n else 1.0, float(tp / total))
                 for e, tp, n in zip(edges, true_positive, linked))


def group_field_links(agency: np.ndarray, record_ids: Sequence[str], left: np.ndarray,
                      right: np.ndarray, levels: np.ndarray, weights: np.ndarray,
                      probability: np.ndarray, model, settings: RunSettings,
                      group_key_secret: bytes, deduplicated: frozenset[int] = frozenset(), *,
                      cutoff: float, reason: str, expected: tuple[float, float],
                      curve: Sequence[tuple[float, float, float]] = ()) -> RunOutcome:
    """Group the records of a field-wise two-server run from its links.

    The servers learn each pair's link bit and, for a link only, its fields' levels
    (``linkage.mpc.field_run``), so every link has its match probability and a waterfall
    (field, level, weight: no value, no id), as a single server's field-wise run has. The
    records are grouped greedily on the probabilities (1-to-1 inside a deduplicated agency).

    Args:
        agency, record_ids: each record's agency id and record id, by position.
        left, right: positions of the linked pairs; ``levels`` their fields' levels (-1
            missing); ``weights`` each field's weight in bits under the rule that linked the
            pair (0 where missing); ``probability`` its match probability.
        model: the cross-agency model (its prior is every rule's).
        cutoff: the probability the rules link at; ``expected``: the model's expected
            (precision, recall) there; ``curve``: (cut-off, precision, recall) points.
    """
    from linkage.analysis.explain import group_waterfalls
    from linkage.matching.engine import LinkageResult
    from linkage.matching.fellegi_sunter import FieldwiseScores
    from linkage.matching.grouping import greedy_groups

    count = len(record_ids)
    agency = np.asarray(agency, np.int64)
    records = RunRecords(agency, list(record_ids), np.full(count, "person", dtype=object),
                         np.ones(count, bool), {"person": np.zeros((count, 0), np.uint64)})
    probability = np.asarray(probability, np.float64)
    pairs = CandidatePairs(np.asarray(left, np.int64), np.asarray(right, np.int64), probability)
    one_per_group = {int(a): 1 for a in deduplicated}
    grouping = greedy_groups(pairs, count, agency, max_per_owner=one_per_group or None)
    levels = np.asarray(levels, np.int64).reshape(len(pairs), -1)
    weights = np.asarray(weights, np.float64).reshape(levels.shape)
    unknown = np.full(levels.shape, np.nan)
    scores = FieldwiseScores(tuple(model.fields), unknown, levels,
                             np.zeros(len(pairs), bool), unknown, weights,
                             model.prior_weight() + weights.sum(axis=1), probability, model)
    waterfalls = group_waterfalls(scores, grouping.labels, pairs.left, pairs.right,
                                  np.ones(len(pairs), bool))
    choice = ThresholdChoice(float(cutoff), reason, None, *expected)
    result = LinkageResult(choice, float(cutoff), pairs, probability, grouping,
                           grouping.weakest_score.copy())
    flags = needs_review(result.confidence, modelled=True, threshold=float(cutoff))
    groups = _named_groups(result, records, np.arange(count), "person", flags,
                           group_key_secret, waterfalls)
    types = {"person": EntityTypeSummary(
        records=count, threshold=float(cutoff), threshold_reason=reason,
        groups=grouping.group_count, reviews_used_accepted=0, reviews_used_rejected=0,
        modelled=True, groups_to_review=int(flags.sum()))}
    summary = _summary(records, settings, RunReviews(), float(cutoff), {"person": result},
                       types, groups, 0, frozenset(int(a) for a in deduplicated),
                       {"person": None}, {"person": list(curve)})
    summary = summary.replace(blocking="person: every pair, field-wise on shares",
                              histogram=(), quality_curve=())
    return RunOutcome(float(cutoff), pairs, groups, {"person": result}, summary)
