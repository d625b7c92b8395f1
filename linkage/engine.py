"""One linkage run as a pure function: CLKs and owners in, groups and confidences out.

The server and the offline ``linkage match`` both call ``link_records`` so
they find the same groups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .candidates import CandidatePairs
from .clks import popcounts
from .grouping import Grouping, greedy_groups
from .kernel import iter_dice_tiles
from .threshold import SCORE_FLOOR, ThresholdChoice, choose_threshold

__all__ = ["LinkageResult", "ProgressCallback", "choose_floor", "link_records"]

ProgressCallback = Callable[[str, int, int], None]
_TILE_ROWS = 2048
_SAMPLE_PAIRS = 200_000
_PAIRS_PER_RECORD = 20
_MIN_PAIR_BUDGET = 50_000
_HIGHEST_FLOOR = 0.7


@dataclass(frozen=True)
class LinkageResult:
    """Everything a run produces.

    ``pairs`` holds the candidate pairs at or above the threshold (global record
    indices); ``floor_scores`` every candidate score at or above ``floor`` (for
    the histogram and the score model); ``confidence[g]`` is group g's match
    probability.
    """

    choice: ThresholdChoice
    floor: float
    pairs: CandidatePairs
    floor_scores: np.ndarray
    grouping: Grouping
    confidence: np.ndarray


def choose_floor(clks: np.ndarray, *, seed: int = 0) -> float:
    """The lowest score worth collecting for the score model.

    Scores of random pairs (nearly all non-matches) show where the bulk of the
    non-matches lies; the floor is set so that about ``_PAIRS_PER_RECORD`` pairs
    per record are expected above it, keeping memory bounded while leaving the
    upper tail of the non-matches visible to the model.
    """
    count = clks.shape[0]
    total_pairs = count * (count - 1) / 2
    budget = max(_MIN_PAIR_BUDGET, _PAIRS_PER_RECORD * count)
    if total_pairs <= budget:
        return SCORE_FLOOR
    rng = np.random.default_rng(seed)
    first = rng.integers(0, count, _SAMPLE_PAIRS)
    second = rng.integers(0, count, _SAMPLE_PAIRS)
    distinct = first != second
    first, second = first[distinct], second[distinct]
    counts = popcounts(clks)
    common = np.bitwise_count(clks[first] & clks[second]).sum(axis=1, dtype=np.int64)
    totals = counts[first] + counts[second]
    scores = np.where(totals > 0, 2.0 * common / np.maximum(totals, 1), 0.0)
    floor = float(np.quantile(scores, 1.0 - budget / total_pairs))
    return float(np.clip(np.floor(floor * 100) / 100, SCORE_FLOOR, _HIGHEST_FLOOR))


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
    floor = choose_floor(clks)
    if threshold is not None:
        floor = min(floor, threshold)
    record_count = clks.shape[0]
    parts = []
    done = 0
    report("comparing", 0, record_count)
    for tile in iter_dice_tiles(clks, clks, floor, same=True, tile_rows=_TILE_ROWS):
        done += 1
        if cross_owner_only:
            keep = owners[tile.left] != owners[tile.right]
            tile = CandidatePairs(tile.left[keep], tile.right[keep], tile.score[keep])
        parts.append(tile)
        report("comparing", min(done * _TILE_ROWS, record_count), record_count)
    report("comparing", record_count, record_count)
    floor_pairs = CandidatePairs.concat(parts)
    report("choosing threshold", 0, 1)
    choice = choose_threshold(floor_pairs.score, threshold, floor)
    keep = floor_pairs.score >= choice.threshold
    pairs = CandidatePairs(floor_pairs.left[keep], floor_pairs.right[keep], floor_pairs.score[keep])
    report("grouping", 0, len(pairs))
    grouping = greedy_groups(pairs, record_count, owners, max_per_owner=max_per_owner)
    report("grouping", len(pairs), len(pairs))
    if choice.model is not None:
        confidence = choice.model.match_probability(grouping.weakest_score)
    else:
        confidence = grouping.weakest_score.copy()
    return LinkageResult(choice, floor, pairs, floor_pairs.score, grouping, confidence)
