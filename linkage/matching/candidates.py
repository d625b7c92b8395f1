"""Dice candidate generation: every pair of CLKs at or above a similarity threshold.

``candidates_reference`` is the readable definition (one pair at a time,
straight from the formula); the fast path is the native kernel
(``linkage.matching.kernel``), tested against it.

Dice(a, b) = 2 |a AND b| / (|a| + |b|); two empty CLKs score 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CandidatePairs", "candidates_reference", "dice"]


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
