"""Additive secret sharing in the ring Z_{2^32} (numpy ``uint32`` arithmetic wraps there).

A 0/1 CLK bit ``x`` becomes ``x0 = u`` and ``x1 = x - u`` for a uniform ``u``: each share
alone is a uniform 32-bit number whatever ``x`` is, and ``x0 + x1 = x`` mod 2^32. Sums and
products with public integers are local; the product of two shared values needs a Beaver
triple (``linkage.mpc.protocol``).
"""

from __future__ import annotations

import numpy as np

from ..errors import ClkError
from .prg import new_seed, random_words

__all__ = ["RING_BITS", "RightOperand", "matmul_mod", "reconstruct", "split_clks", "unpack_bits"]

RING_BITS = 32
_LIMB = 16
# Every partial sum of a float64 limb product must stay an exact integer (< 2^53).
_MAX_INNER = 1 << (53 - 2 * _LIMB - 1)


def unpack_bits(clks: np.ndarray, clk_bits: int) -> np.ndarray:
    """Packed CLKs (records x uint64 words, little-endian bit order) as a 0/1 ``uint32`` matrix.

    Raises:
        ClkError: not a 2-D ``uint64`` matrix of ``clk_bits`` bits, or a CLK with no bit set
            (it encodes nothing, and Dice of two empty CLKs is 0 where the shared comparison
            would say 1).
    """
    if not isinstance(clks, np.ndarray) or clks.ndim != 2 or clks.dtype != np.uint64:
        raise ClkError("CLKs to share must be a 2-D uint64 matrix (records x 64-bit words)")
    if clks.shape[1] * 64 != clk_bits:
        raise ClkError(f"CLKs have {clks.shape[1] * 64} bits; the schema says {clk_bits}")
    empty = np.flatnonzero(np.bitwise_count(clks).sum(axis=1) == 0)
    if empty.size:
        raise ClkError(f"{empty.size} CLK(s) have no bit set (first: row {int(empty[0])}); "
                       "an empty CLK encodes nothing: leave the record out")
    bits = np.unpackbits(clks.astype("<u8").view(np.uint8), axis=1, bitorder="little")
    return bits.astype(np.uint32)


def split_clks(clks: np.ndarray, clk_bits: int, seed: bytes | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """The agency-side splitter: one share of every CLK bit for each server.

    Args:
        clks: packed CLKs (records x uint64 words).
        clk_bits: the schema's CLK length.
        seed: the PRG seed of the masks; a fresh one from the OS when ``None``
            (pass one only to make a test repeatable).
    Returns:
        ``(share0, share1)``, each ``records x clk_bits`` ``uint32``; each alone is uniform.
    Raises:
        ClkError: see ``unpack_bits``.
    """
    bits = unpack_bits(clks, clk_bits)
    mask = random_words(seed or new_seed(), "clk shares", bits.shape, np.uint32)
    return mask, bits - mask


def reconstruct(share0: np.ndarray, share1: np.ndarray) -> np.ndarray:
    """``share0 + share1`` mod 2^32 (for tests and the dealer, never on a server)."""
    return share0 + share1


class RightOperand:
    """The right factor of ``matmul_mod``, split into float64 limbs once for many left blocks."""

    def __init__(self, right: np.ndarray):
        if right.dtype != np.uint32 or right.ndim != 2:
            raise ValueError("matmul_mod takes 2-D uint32 matrices")
        if right.shape[1] > _MAX_INNER:
            raise ValueError(f"inner dimension {right.shape[1]} > {_MAX_INNER}: float64 sums "
                             "would not be exact")
        self.shape = right.shape
        low = (right & 0xFFFF).astype(np.float64)
        self._low = low
        self._cross = np.hstack([low, (right >> 16).astype(np.float64)])

    def times(self, left: np.ndarray) -> np.ndarray:
        """``left @ right.T`` mod 2^32 (see ``matmul_mod``)."""
        if left.dtype != np.uint32 or left.ndim != 2 or left.shape[1] != self.shape[1]:
            raise ValueError(f"left {left.shape} {left.dtype} does not fit right {self.shape}")
        l_lo = (left & 0xFFFF).astype(np.float64)
        low = (l_lo @ self._low.T).astype(np.uint64)
        cross = (np.hstack([(left >> 16).astype(np.float64), l_lo]) @ self._cross.T
                 ).astype(np.uint64)
        return (low + (cross << np.uint64(_LIMB))).astype(np.uint32)  # < 2^61: no overflow


def matmul_mod(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left @ right.T`` mod 2^32 of two ``uint32`` matrices, exact, through float64 BLAS.

    Each operand is split into 16-bit limbs; ``lo·lo + 2^16 (hi·lo + lo·hi)`` is the
    product mod 2^32 (the ``hi·hi`` term is a multiple of 2^32). Every float64 partial sum
    stays below 2^53, so the result is exact. ``RightOperand`` keeps the right factor's
    limbs when many left blocks meet one right matrix.

    Raises:
        ValueError: the inner dimension is too long for exact float64 sums, or the shapes
            do not fit.
    """
    if left.dtype != np.uint32 or right.dtype != np.uint32:
        raise ValueError("matmul_mod takes uint32 matrices")
    if left.ndim != 2 or right.ndim != 2 or left.shape[1] != right.shape[1]:
        raise ValueError(f"shapes {left.shape} and {right.shape} do not fit left @ right.T")
    return RightOperand(right).times(left)
