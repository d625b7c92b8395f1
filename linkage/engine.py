"""One linkage run as a pure function: CLKs and owners in, groups and confidences out.

The server and the offline ``linkage match`` both call ``link_records`` so
they find the same groups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .candidates import CandidatePairs, iter_candidate_tiles
from .grouping import Grouping, greedy_groups
from .threshold import SCORE_FLOOR, ThresholdChoice, choose_threshold

__all__ = ["LinkageResult", "ProgressCallback", "link_records"]

ProgressCallback = Callable[[str, int, int], None]
_TILE_ROWS = 256


@dataclass(frozen=True)
class LinkageResult:
    """Everything a run produces.

    ``pairs`` holds the candidate pairs at or above the threshold (global record
    indices); ``floor_scores`` every candidate score at or above the scoring
    floor (for the histogram and the score model); ``confidence[g]`` is group
    g's match probability.
    """

    choice: ThresholdChoice
    pairs: CandidatePairs
    floor_scores: np.ndarray
    grouping: Grouping
    confidence: np.ndarray


def link_records(
    clks: np.ndarray,
    owners: np.ndarray,
    *,
    threshold: float | None = None,
    max_per_owner: int | None = None,
    cross_owner_only: bool = False,
    on_progress: ProgressCallback | None = None,
) -> LinkageResult:
    """Compare all records pairwise, choose the threshold and group the matches.

    Args:
        clks: packed CLK matrix of every record (all agencies stacked).
        owners: owner (agency/file) index of each row of ``clks``.
        threshold: a Dice threshold, or ``None`` for auto.
        max_per_owner: passed to ``greedy_groups`` (1 = 1-to-1 linkage).
        cross_owner_only: ignore pairs of records with the same owner.
        on_progress: called as ``(stage, done, total)``.
    """
    report = on_progress or (lambda stage, done, total: None)
    floor = SCORE_FLOOR if threshold is None else min(SCORE_FLOOR, threshold)
    record_count = clks.shape[0]
    parts = []
    done = 0
    report("comparing", 0, record_count)
    for tile in iter_candidate_tiles(clks, clks, floor, same=True, tile_rows=_TILE_ROWS):
        if cross_owner_only:
            keep = owners[tile.left] != owners[tile.right]
            tile = CandidatePairs(tile.left[keep], tile.right[keep], tile.score[keep])
        parts.append(tile)
        done = int(tile.left.max()) + 1 if len(tile) else done
        report("comparing", done, record_count)
    report("comparing", record_count, record_count)
    floor_pairs = CandidatePairs.concat(parts)
    choice = choose_threshold(floor_pairs.score, threshold)
    keep = floor_pairs.score >= choice.threshold
    pairs = CandidatePairs(floor_pairs.left[keep], floor_pairs.right[keep], floor_pairs.score[keep])
    report("grouping", 0, len(pairs))
    grouping = greedy_groups(pairs, record_count, owners, max_per_owner=max_per_owner)
    report("grouping", len(pairs), len(pairs))
    if choice.model is not None:
        confidence = choice.model.match_probability(grouping.weakest_score)
    else:
        confidence = grouping.weakest_score.copy()
    return LinkageResult(choice, pairs, floor_pairs.score, grouping, confidence)
