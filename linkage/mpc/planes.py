"""Secure comparison mod 2^16 on bit planes: the field levels' comparisons in a few bytes each.

Why: the field-wise links compare 33 small values per pair (``fieldwise.level_ring_bits``:
below 2^15 in magnitude), and ``protocol._non_negative`` spends a 32-bit word and 5 AND
rounds of two 64-bit words on each (84 bytes a comparison each way). Here:

* the value is reduced mod 2^16 (shares mod 2^32 reduce locally) and ``c = z + r`` opened:
  2 bytes;
* bit j of every comparison of a call sits in **plane j** (64 comparisons to a ``uint64``
  word), so the circuit's gates work on 64 comparisons at once;
* ``[r' > c']`` over the 15 low positions (one padding position on top) is a **binary
  tree**: each round combines pairs (high, low) as ``greater = g_hi ^ (e_hi & g_lo)``,
  ``equal = e_hi & e_lo``. The two ANDs share ``e_hi``, so one triple ``(a, b1, b2, a & b1,
  a & b2)`` serves both, and a combine opens 3 bits: 15 combines, 45 bits a comparison,
  against 4 rounds x 16 positions x 4 bits in the word layout;
* ``msb(z) = msb(c) xor msb(r) xor [r' > c']``, as in ``protocol``.

The dealer's part per comparison: ``r`` (2 B, seeded), r's 16 bits and the 30 AND products
(46 bits of corrections to server 1, against 18 B in the word layout mod 2^16).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidRequestError
from .prg import random_words

__all__ = ["PLANE_BITS", "PlaneCorrection", "PlaneMaterial", "plane_correction",
           "plane_material", "plane_non_negative", "plane_words", "to_planes"]

PLANE_BITS = 16
_COMBINES = (8, 4, 2, 1)       # per round: pairs of positions combined
_FIRST = (0, 8, 12, 14)        # each round's first triple
_TRIPLES = sum(_COMBINES)      # 15
_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


def plane_words(count: int) -> int:
    """Words of one plane for ``count`` comparisons (64 a word)."""
    return -(-count // 64)


def to_planes(values: np.ndarray) -> np.ndarray:
    """``uint16`` values (any shape, read in C order) as 16 x ``plane_words`` ``uint64``
    planes: bit j of value m is bit m % 64 of word m // 64 of plane j; padding is 0.

    One byte column and one bit at a time (shift, mask, pack): 5 times as fast as unpacking
    every bit and transposing the bit matrix (measured on 524,288 values).
    """
    flat = np.ascontiguousarray(values, dtype=np.uint16).ravel()
    words = plane_words(flat.size)
    padded = np.zeros(64 * words, "<u2")
    padded[:flat.size] = flat
    columns = padded.view(np.uint8).reshape(-1, 2)  # little-endian: low byte, then high
    out = np.empty((PLANE_BITS, 8 * words), np.uint8)
    scratch = np.empty(64 * words, np.uint8)
    for byte in range(2):
        column = np.ascontiguousarray(columns[:, byte])
        for bit in range(8):
            np.right_shift(column, bit, out=scratch)
            np.bitwise_and(scratch, 1, out=scratch)
            out[8 * byte + bit] = np.packbits(scratch, bitorder="little")
    return out.view("<u8").astype(np.uint64)


def _unplane(plane: np.ndarray, count: int) -> np.ndarray:
    return np.unpackbits(plane.astype("<u8").view(np.uint8), count=count,
                         bitorder="little").astype(np.uint8)


@dataclass(frozen=True)
class PlaneMaterial:
    """One server's material for comparisons mod 2^16 of values of ``shape``."""

    mask: np.ndarray         # shape, uint16: additive share of r
    mask_planes: np.ndarray  # 16 x W, uint64: XOR share of r's bits, plane j = bit j
    and_a: np.ndarray        # 15 x W, uint64: XOR shares, one row per combine
    and_b: np.ndarray        # 2 x 15 x W
    and_product: np.ndarray  # 2 x 15 x W: share of a & b[i]


@dataclass(frozen=True)
class PlaneCorrection:
    """Server 1's corrections: its XOR shares of r's bit planes and of the AND products."""

    mask_planes: np.ndarray  # 16 x W, uint64
    and_product: np.ndarray  # 2 x 15 x W, uint64

    @property
    def nbytes(self) -> int:
        return self.mask_planes.nbytes + self.and_product.nbytes


def _seeded(seed: bytes, shape: tuple[int, ...], *, full: bool) -> dict:
    words = plane_words(int(np.prod(shape, dtype=np.int64)))
    out = {"mask": random_words(seed, "plane r", shape, np.uint16),
           "and_a": random_words(seed, "plane and a", (_TRIPLES, words), np.uint64),
           "and_b": random_words(seed, "plane and b", (2, _TRIPLES, words), np.uint64)}
    if full:
        out["mask_planes"] = random_words(seed, "plane r bits", (PLANE_BITS, words), np.uint64)
        out["and_product"] = random_words(seed, "plane and c", (2, _TRIPLES, words), np.uint64)
    return out


def plane_correction(seeds: tuple[bytes, bytes], shape: tuple[int, ...]) -> PlaneCorrection:
    """The dealer: server 1's corrections for comparisons of values of ``shape``."""
    first, second = _seeded(seeds[0], shape, full=True), _seeded(seeds[1], shape, full=False)
    planes = to_planes(first["mask"] + second["mask"])
    a = first["and_a"] ^ second["and_a"]
    anded = a[None] & (first["and_b"] ^ second["and_b"])
    return PlaneCorrection(planes ^ first["mask_planes"], anded ^ first["and_product"])


def plane_material(party: int, seed: bytes, shape: tuple[int, ...],
                   correction: PlaneCorrection | None = None) -> PlaneMaterial:
    """One server's ``PlaneMaterial`` (server 1's with its correction).

    Raises:
        InvalidRequestError: a correction for server 0, none for server 1, or one of
            another size.
    """
    if (party == 1) != (correction is not None):
        raise InvalidRequestError("server 1, and only server 1, needs the dealer's corrections")
    seeded = _seeded(seed, shape, full=party == 0)
    if party == 1:
        words = seeded["and_a"].shape[1]
        if correction.mask_planes.shape != (PLANE_BITS, words) \
                or correction.and_product.shape != (2, _TRIPLES, words) \
                or correction.mask_planes.dtype != np.uint64 \
                or correction.and_product.dtype != np.uint64:
            raise InvalidRequestError(
                f"plane correction has shapes {correction.mask_planes.shape} and "
                f"{correction.and_product.shape}, expected {(PLANE_BITS, words)} and "
                f"{(2, _TRIPLES, words)} (comparisons mod 2^16 of {shape})")
        seeded.update(mask_planes=correction.mask_planes, and_product=correction.and_product)
    return PlaneMaterial(**seeded)


def plane_non_negative(party: int, value: np.ndarray, material: PlaneMaterial
                       ) -> Generator[np.ndarray, np.ndarray, np.ndarray]:
    """XOR shares (``uint8`` 0/1, ``value``'s shape) of ``[value >= 0]`` for shared values
    with ``|value| < 2^15`` (additive shares mod 2^32 or 2^16); 5 messages."""
    if value.shape != material.mask.shape:
        raise InvalidRequestError(f"comparison material for {material.mask.shape} values, "
                                  f"asked for {value.shape}")
    mine = value.astype(np.uint16) + material.mask
    opened = to_planes(mine + (yield mine))                 # c = z + r, public, 16 x W
    r = material.mask_planes
    low = PLANE_BITS - 1
    greater = np.empty_like(r)
    equal = np.empty_like(r)
    greater[:low] = r[:low] & ~opened[:low]
    equal[:low] = r[:low] ^ ~opened[:low] if party == 0 else r[:low]
    greater[low] = 0                                        # padding: equal, never greater
    equal[low] = _ONES if party == 0 else 0
    for combines, first in zip(_COMBINES, _FIRST):
        rows = slice(first, first + combines)
        a, b, c = material.and_a[rows], material.and_b[:, rows], material.and_product[:, rows]
        high_equal = equal[1::2]
        mine = np.concatenate([high_equal ^ a, greater[0::2] ^ b[0], equal[0::2] ^ b[1]])
        shown = mine ^ (yield mine)
        d, e = shown[:combines], shown[combines:].reshape(2, combines, -1)
        anded = c ^ (d[None] & b) ^ (e & a[None])
        if party == 0:
            anded = anded ^ (d[None] & e)
        greater = greater[1::2] ^ anded[0]
        equal = anded[1]
    sign = r[low] ^ greater[0]
    if party == 0:
        sign = sign ^ opened[low] ^ _ONES                  # msb(c); then NOT: z >= 0
    return _unplane(sign, value.size).reshape(value.shape)
