"""Dice candidate generation: every pair of CLKs at or above a similarity threshold.

Two implementations live here on purpose: ``candidates_reference`` is the
readable definition (one pair at a time, straight from the formula) and
``candidate_pairs`` is the fast path the engine uses. Tests check they agree.

Dice(a, b) = 2 |a AND b| / (|a| + |b|); two empty CLKs score 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .clks import popcounts

__all__ = ["CandidatePairs", "candidate_pairs", "candidates_reference", "dice"]


@dataclass(frozen=True)
class CandidatePairs:
    """Parallel arrays: ``left[i]`` and ``right[i]`` score ``score[i]``.

    Indices are row numbers into the two matrices that were compared.
    """

    left: np.ndarray
    right: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return int(self.left.shape[0])

    @classmethod
    def empty(cls) -> "CandidatePairs":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))

    @classmethod
    def concat(cls, parts: list["CandidatePairs"]) -> "CandidatePairs":
        """Join several results (e.g. one per tile) into one."""
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.left for p in parts]).astype(np.int64, copy=False),
            np.concatenate([p.right for p in parts]).astype(np.int64, copy=False),
            np.concatenate([p.score for p in parts]).astype(np.float64, copy=False),
        )

    def sorted(self) -> "CandidatePairs":
        """Ordered by (left, right): a canonical order for comparing results."""
        order = np.lexsort((self.right, self.left))
        return CandidatePairs(self.left[order], self.right[order], self.score[order])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two packed CLKs (1-D ``uint64`` arrays)."""
    a_bits = int(np.bitwise_count(a).sum())
    b_bits = int(np.bitwise_count(b).sum())
    if a_bits + b_bits == 0:
        return 0.0
    return 2.0 * int(np.bitwise_count(a & b).sum()) / (a_bits + b_bits)


def candidates_reference(
    left: np.ndarray, right: np.ndarray, threshold: float, *, same: bool = False
) -> CandidatePairs:
    """Readable reference: compare every pair with ``dice``.

    With ``same=True`` the two matrices are one batch compared with itself and
    only pairs ``i < j`` are reported.
    """
    lefts, rights, scores = [], [], []
    for i in range(left.shape[0]):
        for j in range(i + 1 if same else 0, right.shape[0]):
            score = dice(left[i], right[j])
            if score >= threshold:
                lefts.append(i)
                rights.append(j)
                scores.append(score)
    return CandidatePairs(
        np.asarray(lefts, np.int64), np.asarray(rights, np.int64), np.asarray(scores, np.float64)
    )


def candidate_pairs(
    left: np.ndarray,
    right: np.ndarray,
    threshold: float,
    *,
    same: bool = False,
    tile_rows: int = 512,
) -> CandidatePairs:
    """All pairs with Dice >= ``threshold`` (vectorised, tiled so memory stays bounded)."""
    return CandidatePairs.concat(
        list(iter_candidate_tiles(left, right, threshold, same=same, tile_rows=tile_rows))
    )


def iter_candidate_tiles(
    left: np.ndarray,
    right: np.ndarray,
    threshold: float,
    *,
    same: bool = False,
    tile_rows: int = 512,
) -> Iterator[CandidatePairs]:
    """Yield the candidate pairs one tile of left rows at a time."""
    if left.shape[0] == 0 or right.shape[0] == 0:
        return
    left_counts = popcounts(left)
    right_counts = popcounts(right)
    right_order = np.argsort(right_counts, kind="stable")
    sorted_counts = right_counts[right_order]
    sorted_right = right[right_order]
    for start in range(0, left.shape[0], tile_rows):
        stop = min(start + tile_rows, left.shape[0])
        tile = _tile_candidates(
            left[start:stop], left_counts[start:stop], sorted_right, sorted_counts, threshold
        )
        rows, cols, scores = tile
        rows = rows + start
        cols = right_order[cols]
        if same:
            keep = rows < cols
            rows, cols, scores = rows[keep], cols[keep], scores[keep]
        if rows.size:
            yield CandidatePairs(rows.astype(np.int64), cols.astype(np.int64), scores)


def _tile_candidates(tile, tile_counts, sorted_right, sorted_counts, threshold):
    """Score one tile against the right rows whose popcount can still reach the threshold.

    Dice(a, b) <= 2 min(|a|,|b|) / (|a|+|b|), so only right rows with popcount in
    [t/(2-t) |a|, (2-t)/t |a|] can qualify.
    """
    if threshold > 1e-6:
        low = np.floor(float(tile_counts.min()) * threshold / (2 - threshold))
        high = np.ceil(float(tile_counts.max()) * (2 - threshold) / threshold)
        first = int(np.searchsorted(sorted_counts, low, side="left"))
        last = int(np.searchsorted(sorted_counts, high, side="right"))
    else:
        first, last = 0, sorted_counts.shape[0]
    rows_out, cols_out, scores_out = [], [], []
    block = 2048
    for col_start in range(first, last, block):
        col_stop = min(col_start + block, last)
        right_block = sorted_right[col_start:col_stop]
        common = np.bitwise_count(tile[:, None, :] & right_block[None, :, :]).sum(
            axis=2, dtype=np.int64
        )
        total = tile_counts[:, None] + sorted_counts[None, col_start:col_stop]
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(total > 0, 2.0 * common / np.maximum(total, 1), 0.0)
        rows, cols = np.nonzero(score >= threshold)
        rows_out.append(rows)
        cols_out.append(cols + col_start)
        scores_out.append(score[rows, cols])
    if not rows_out:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float64)
    return np.concatenate(rows_out), np.concatenate(cols_out), np.concatenate(scores_out)
