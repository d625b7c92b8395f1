"""One linkage run as a pure function: CLKs and owners in, groups and confidences out.

The server and the offline ``linkage match`` both call ``link_records`` so
they find the same groups.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from .blocking import LshPlan, lsh_candidates, plan_lsh
from .candidates import CandidatePairs
from .clks import popcounts
from .grouping import Grouping, greedy_groups
from .kernel import iter_dice_tiles
from .threshold import (
    REVIEW_PROBABILITIES,
    SCORE_FLOOR,
    ThresholdChoice,
    choose_threshold,
    one_to_one_scores,
)

__all__ = [
    "LinkageResult",
    "ProgressCallback",
    "choose_floor",
    "compare_new_records",
    "plan_blocking",
    "decide",
    "link_records",
    "needs_review",
]

ProgressCallback = Callable[[str, int, int], None]
_TILE_ROWS = 2048
_SAMPLE_PAIRS = 200_000
_PAIRS_PER_RECORD = 20
_MIN_PAIR_BUDGET = 50_000
_HIGHEST_FLOOR = 0.7
LSH_MIN_COMPARISONS = 2e11


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


def plan_blocking(clks: np.ndarray, is_new: np.ndarray, threshold: float,
                  mode: str = "auto") -> LshPlan | None:
    """The LSH plan to compare new records with, or ``None`` for exhaustive comparison.

    ``mode`` is "exhaustive", "lsh" (block whenever a plan is possible) or
    "auto" (block only when exhaustive comparison would take more than about
    ``LSH_MIN_COMPARISONS`` comparisons).
    """
    if mode == "exhaustive" or clks.shape[0] == 0:
        return None
    new = int(is_new.sum())
    comparisons = new * (clks.shape[0] - new) + new * (new - 1) / 2
    if mode == "auto" and comparisons < LSH_MIN_COMPARISONS:
        return None
    counts = popcounts(clks)
    return plan_lsh(clks.shape[1] * 64, 2 * float(np.quantile(counts, 0.99)), threshold,
                    records=max(new, 1))


def compare_new_records(
    clks: np.ndarray,
    is_new: np.ndarray,
    floor: float,
    *,
    plan: LshPlan | None = None,
    on_progress: ProgressCallback | None = None,
) -> CandidatePairs:
    """Pairs at or above ``floor`` that involve at least one new record.

    New records are compared with every old record and with each other; pairs of
    two old records are not recomputed. Indices are rows of ``clks``; each pair
    is reported once with ``left < right``. With an LSH ``plan`` only pairs that
    share a bucket are scored (a subset of the exhaustive result).
    """
    report = on_progress or (lambda stage, done, total: None)
    new_rows = np.flatnonzero(is_new)
    old_rows = np.flatnonzero(~is_new)
    new_clks = clks[new_rows]
    comparisons = [(new_clks, new_clks, new_rows, True)]
    if old_rows.size:
        comparisons.insert(0, (new_clks, clks[old_rows], old_rows, False))
    total = int(new_rows.size) * len(comparisons)
    parts = []
    done = 0
    report("comparing", 0, total)
    for left, right, right_rows, same in comparisons:
        if plan is not None:
            tile = lsh_candidates(left, right, floor, plan, same=same)
            first, second = new_rows[tile.left], right_rows[tile.right]
            parts.append(CandidatePairs(np.minimum(first, second), np.maximum(first, second),
                                        tile.score))
            done = min(done + int(new_rows.size), total)
            report("comparing", done, total)
            continue
        for tile in iter_dice_tiles(left, right, floor, same=same, tile_rows=_TILE_ROWS):
            first, second = new_rows[tile.left], right_rows[tile.right]
            parts.append(CandidatePairs(np.minimum(first, second), np.maximum(first, second),
                                        tile.score))
            done = min(done + _TILE_ROWS, total)
            report("comparing", done, total)
    report("comparing", total, total)
    return CandidatePairs.concat(parts)


def decide(
    floor_pairs: CandidatePairs,
    floor: float,
    owners: np.ndarray,
    *,
    threshold: float | None = None,
    max_per_owner: int | Mapping[int, int] | None = None,
    cross_owner_only: bool = False,
    known_matches: np.ndarray | None = None,
    known_non_matches: np.ndarray | None = None,
    on_progress: ProgressCallback | None = None,
) -> LinkageResult:
    """Choose the threshold from the pairs above the floor and group the records.

    Args:
        floor_pairs: every candidate pair at or above ``floor`` (indices into ``owners``).
        floor: the lowest score collected.
        owners: owner (agency/file) index of each record.
        threshold: a Dice threshold, or ``None`` for auto.
        max_per_owner: passed to ``greedy_groups`` (1 = 1-to-1 linkage; a mapping limits
            only the owners named, e.g. those whose files are deduplicated).
        cross_owner_only: ignore pairs of records with the same owner.
        known_matches, known_non_matches: scores of pairs people reviewed as matches /
            non-matches; the score model learns from them.
    """
    report = on_progress or (lambda stage, done, total: None)
    if cross_owner_only:
        keep = owners[floor_pairs.left] != owners[floor_pairs.right]
        floor_pairs = CandidatePairs(floor_pairs.left[keep], floor_pairs.right[keep],
                                     floor_pairs.score[keep])
    report("choosing threshold", 0, 1)
    labelled = {}
    if known_matches is not None and len(known_matches):
        labelled["known_matches"] = np.asarray(known_matches, np.float64)
    if known_non_matches is not None and len(known_non_matches):
        labelled["known_non_matches"] = np.asarray(known_non_matches, np.float64)
    solver = (one_to_one_scores(floor_pairs, owners) if _one_to_one(max_per_owner, owners)
              else None)
    choice = choose_threshold(floor_pairs.score, threshold, floor, **labelled, solver=solver)
    keep = floor_pairs.score >= choice.threshold
    pairs = CandidatePairs(floor_pairs.left[keep], floor_pairs.right[keep], floor_pairs.score[keep])
    report("grouping", 0, len(pairs))
    grouping = greedy_groups(pairs, owners.shape[0], owners, max_per_owner=max_per_owner)
    report("grouping", len(pairs), len(pairs))
    if choice.model is not None:
        confidence = choice.model.match_probability(grouping.weakest_score)
    else:
        confidence = grouping.weakest_score.copy()
    return LinkageResult(choice, floor, pairs, floor_pairs.score, grouping, confidence)


def _one_to_one(max_per_owner, owners: np.ndarray) -> bool:
    """Every owner may place at most one record in a group (1-to-1 linkage)."""
    if isinstance(max_per_owner, Mapping):
        present = np.unique(owners).tolist()
        return bool(present) and all(max_per_owner.get(owner) == 1 for owner in present)
    return max_per_owner == 1


def needs_review(confidence: np.ndarray, modelled: bool,
                 band: tuple[float, float] = REVIEW_PROBABILITIES) -> np.ndarray:
    """Which groups' confidences fall in the review ``band``: the model is not sure either
    way, so a person's decision is worth most there. None without a score model
    (``modelled`` false), whose confidences are raw scores."""
    confidence = np.asarray(confidence, np.float64)
    if not modelled:
        return np.zeros(confidence.shape, bool)
    return (confidence >= band[0]) & (confidence < band[1])


def link_records(
    clks: np.ndarray,
    owners: np.ndarray,
    *,
    threshold: float | None = None,
    max_per_owner: int | Mapping[int, int] | None = None,
    cross_owner_only: bool = False,
    on_progress: ProgressCallback | None = None,
) -> LinkageResult:
    """Compare all records pairwise, choose the threshold and group the matches.

    ``clks`` stacks every record's CLK (all agencies); the other arguments are
    those of ``decide``.
    """
    floor = choose_floor(clks)
    if threshold is not None:
        floor = min(floor, threshold)
    everything = np.ones(clks.shape[0], dtype=bool)
    floor_pairs = compare_new_records(clks, everything, floor, on_progress=on_progress)
    return decide(floor_pairs, floor, owners, threshold=threshold, max_per_owner=max_per_owner,
                  cross_owner_only=cross_owner_only, on_progress=on_progress)
