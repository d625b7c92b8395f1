"""From the hit pairs of a two-server run to groups and a run summary, as a normal run has.

The servers learn only which cross-agency pairs reach the threshold, never a score, so every
hit pair is given the threshold itself as its score: the one thing known about it is that its
Dice is at least that. Grouping is the run's own (``decide`` with the numeric threshold and no
score model), so groups, keys, confidences and the summary have the shape the reports read.
Because all scores tie, the greedy grouping merges in (left, right) order where a normal run
merges strongest first; groups can differ from a normal run's only where complete linkage or
a deduplicated agency makes that order matter (docs/privacy.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from linkage.errors import InvalidRequestError
from linkage.matching.candidates import CandidatePairs
from linkage.matching.engine import decide
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

__all__ = ["group_hits"]


def group_hits(agency: np.ndarray, record_ids: Sequence[str], left: np.ndarray,
               right: np.ndarray, settings: RunSettings, group_key_secret: bytes,
               deduplicated: frozenset[int] = frozenset()) -> RunOutcome:
    """Group the records of a two-server run from its hit pairs.

    Args:
        agency: each record's agency id, by position.
        record_ids: each record's id, by position.
        left, right: positions of the hit pairs (Dice >= the threshold).
        settings: the run's settings; the threshold must be numeric.
        group_key_secret: the key of the groups' keyed hashes.
        deduplicated: agencies with at most one record per group.
    Returns:
        The outcome (no CLK matrix exists: ``records.clks`` is zero bits wide).
    Raises:
        InvalidRequestError: an ``auto`` threshold (two-server mode has no scores to choose
            from).
    """
    threshold = settings.requested
    if threshold is None:
        raise InvalidRequestError("Two-server mode needs a numeric threshold: the servers see "
                                  "no score to choose one from.")
    count = len(record_ids)
    agency = np.asarray(agency, np.int64)
    records = RunRecords(agency, list(record_ids), np.full(count, "person", dtype=object),
                         np.ones(count, bool), {"person": np.zeros((count, 0), np.uint64)})
    pairs = CandidatePairs(np.asarray(left, np.int64), np.asarray(right, np.int64),
                           np.full(len(left), threshold, np.float64))
    one_per_group = {int(a): 1 for a in deduplicated}
    result = decide(pairs, threshold, agency, threshold=threshold,
                    max_per_owner=one_per_group or None, fit_model=False)
    flags = needs_review(result.confidence, modelled=False, threshold=threshold)
    groups = _named_groups(result, records, np.arange(count), "person", flags, group_key_secret)
    reason = (f"two-server mode: Dice >= {threshold:g} decided on shares (set by the "
              "coordinator); no scores exist")
    types = {"person": EntityTypeSummary(
        records=count, threshold=threshold, threshold_reason=reason,
        groups=result.grouping.group_count, reviews_used_accepted=0, reviews_used_rejected=0,
        modelled=False, groups_to_review=int(flags.sum()))}
    summary = _summary(records, settings, RunReviews(), threshold, {"person": result}, types,
                       groups, 0, frozenset(int(a) for a in deduplicated), {"person": None}, {})
    summary = summary.replace(threshold_reason=reason,
                              blocking="person: every cross-agency pair, on shares")
    return RunOutcome(threshold, pairs, groups, {"person": result}, summary)
