"""Secure comparison on bit planes: the field-wise run's comparisons in a few bytes each.

Why: the field-wise links compare 33 small values per pair (``fieldwise.level_plane_bits``:
below 2^15 in magnitude) and the training about 14 per sampled pair, and
``protocol._non_negative`` spends a 32-bit word and 5 AND rounds of two 64-bit words on each
(84 bytes a comparison each way). Here, for a ring of b = 16 or 32 bits:

* the value is reduced mod 2^b (shares mod 2^32 reduce locally) and ``c = z + r`` opened:
  b / 8 bytes;
* bit j of every comparison of a call sits in **plane j** (64 comparisons to a ``uint64``
  word), so the circuit's gates work on 64 comparisons at once;
* ``[r' > c']`` over the b - 1 low positions (one padding position on top) is a **binary
  tree**: each round combines pairs (high, low) as ``greater = g_hi ^ (e_hi & g_lo)``,
  ``equal = e_hi & e_lo``. The two ANDs share ``e_hi``, so one triple ``(a, b1, b2, a & b1,
  a & b2)`` serves both, and a combine opens 3 bits: b - 1 combines, 45 bits a comparison
  mod 2^16 and 93 mod 2^32, against 5 rounds x 32 positions x 4 bits in the word layout;
* ``msb(z) = msb(c) xor msb(r) xor [r' > c']``, as in ``protocol``.

The dealer's part per comparison: ``r`` (seeded), r's b bits and the 2 (b - 1) AND products
(46 or 94 bits of corrections to server 1, against 44 bytes in the word layout).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidRequestError
from .prg import random_words

__all__ = ["PLANE_RINGS", "PlaneCorrection", "PlaneMaterial", "check_plane_bits",
           "plane_correction", "plane_correction_bytes", "plane_material", "plane_non_negative",
           "plane_words", "to_planes"]

#: The rings comparisons on planes run in (bits).
PLANE_RINGS = (16, 32)
_WORD = {16: np.uint16, 32: np.uint32}
_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


def check_plane_bits(bits: int) -> None:
    """Raises InvalidRequestError unless ``bits`` is one of ``PLANE_RINGS``."""
    if bits not in PLANE_RINGS:
        raise InvalidRequestError(f"comparisons on planes run mod 2^16 or 2^32, not "
                                  f"2^{bits!r}")


def _rounds(bits: int) -> list[tuple[int, int]]:
    """(combines, first triple) per round of the tree over ``bits`` positions."""
    out, first, combines = [], 0, bits // 2
    while combines:
        out.append((combines, first))
        first, combines = first + combines, combines // 2
    return out


def plane_words(count: int) -> int:
    """Words of one plane for ``count`` comparisons (64 a word)."""
    return -(-count // 64)


def plane_correction_bytes(count: int, bits: int) -> int:
    """Server 1's corrections for ``count`` comparisons mod 2^``bits``: r's bit planes and
    the AND products, whole 64-bit words per plane."""
    return 8 * plane_words(count) * (bits + 2 * (bits - 1))


def to_planes(values: np.ndarray) -> np.ndarray:
    """``uint16`` or ``uint32`` values (any shape, read in C order) as b x ``plane_words``
    ``uint64`` planes (b the values' bits): bit j of value m is bit m % 64 of word m // 64 of
    plane j; padding is 0.

    One byte column and one bit at a time (shift, mask, pack): 5 times as fast as unpacking
    every bit and transposing the bit matrix (measured on 524,288 values).
    """
    flat = np.ascontiguousarray(values).ravel()
    size = flat.dtype.itemsize
    words = plane_words(flat.size)
    padded = np.zeros(64 * words, f"<u{size}")
    padded[:flat.size] = flat
    columns = padded.view(np.uint8).reshape(-1, size)  # little-endian: low byte first
    out = np.empty((8 * size, 8 * words), np.uint8)
    scratch = np.empty(64 * words, np.uint8)
    for byte in range(size):
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
    """One server's material for comparisons mod 2^b of values of ``shape`` (b = 16 or 32,
    the mask's bits)."""

    mask: np.ndarray         # shape, uint16 or uint32: additive share of r
    mask_planes: np.ndarray  # b x W, uint64: XOR share of r's bits, plane j = bit j
    and_a: np.ndarray        # (b - 1) x W, uint64: XOR shares, one row per combine
    and_b: np.ndarray        # 2 x (b - 1) x W
    and_product: np.ndarray  # 2 x (b - 1) x W: share of a & b[i]


@dataclass(frozen=True)
class PlaneCorrection:
    """Server 1's corrections: its XOR shares of r's bit planes and of the AND products."""

    mask_planes: np.ndarray  # b x W, uint64
    and_product: np.ndarray  # 2 x (b - 1) x W, uint64

    @property
    def nbytes(self) -> int:
        return self.mask_planes.nbytes + self.and_product.nbytes


def _seeded(seed: bytes, shape: tuple[int, ...], bits: int, *, full: bool) -> dict:
    check_plane_bits(bits)
    words, name = plane_words(int(np.prod(shape, dtype=np.int64))), f"plane{bits}"
    out = {"mask": random_words(seed, f"{name} r", shape, _WORD[bits]),
           "and_a": random_words(seed, f"{name} and a", (bits - 1, words), np.uint64),
           "and_b": random_words(seed, f"{name} and b", (2, bits - 1, words), np.uint64)}
    if full:
        out["mask_planes"] = random_words(seed, f"{name} r bits", (bits, words), np.uint64)
        out["and_product"] = random_words(seed, f"{name} and c", (2, bits - 1, words),
                                          np.uint64)
    return out


def plane_correction(seeds: tuple[bytes, bytes], shape: tuple[int, ...], bits: int
                     ) -> PlaneCorrection:
    """The dealer: server 1's corrections for comparisons mod 2^``bits`` of values of
    ``shape``."""
    first = _seeded(seeds[0], shape, bits, full=True)
    second = _seeded(seeds[1], shape, bits, full=False)
    planes = to_planes(first["mask"] + second["mask"])
    a = first["and_a"] ^ second["and_a"]
    anded = a[None] & (first["and_b"] ^ second["and_b"])
    return PlaneCorrection(planes ^ first["mask_planes"], anded ^ first["and_product"])


def plane_material(party: int, seed: bytes, shape: tuple[int, ...], bits: int,
                   correction: PlaneCorrection | None = None) -> PlaneMaterial:
    """One server's ``PlaneMaterial`` (server 1's with its correction).

    Raises:
        InvalidRequestError: a correction for server 0, none for server 1, or one of
            another size.
    """
    if (party == 1) != (correction is not None):
        raise InvalidRequestError("server 1, and only server 1, needs the dealer's corrections")
    seeded = _seeded(seed, shape, bits, full=party == 0)
    if party == 1:
        words = seeded["and_a"].shape[1]
        if correction.mask_planes.shape != (bits, words) \
                or correction.and_product.shape != (2, bits - 1, words) \
                or correction.mask_planes.dtype != np.uint64 \
                or correction.and_product.dtype != np.uint64:
            raise InvalidRequestError(
                f"plane correction has shapes {correction.mask_planes.shape} and "
                f"{correction.and_product.shape}, expected {(bits, words)} and "
                f"{(2, bits - 1, words)} (comparisons mod 2^{bits} of {shape})")
        seeded.update(mask_planes=correction.mask_planes, and_product=correction.and_product)
    return PlaneMaterial(**seeded)


def plane_non_negative(party: int, value: np.ndarray, material: PlaneMaterial
                       ) -> Generator[np.ndarray, np.ndarray, np.ndarray]:
    """XOR shares (``uint8`` 0/1, ``value``'s shape) of ``[value >= 0]`` for shared values
    with ``|value| < 2^(b-1)``, b the material's ring (additive shares mod 2^32 or 2^b);
    1 + log2(b) messages."""
    if value.shape != material.mask.shape:
        raise InvalidRequestError(f"comparison material for {material.mask.shape} values, "
                                  f"asked for {value.shape}")
    bits = 8 * material.mask.dtype.itemsize
    mine = value.astype(material.mask.dtype) + material.mask
    opened = to_planes(mine + (yield mine))                 # c = z + r, public, b x W
    r = material.mask_planes
    low = bits - 1
    greater = np.empty_like(r)
    equal = np.empty_like(r)
    greater[:low] = r[:low] & ~opened[:low]
    equal[:low] = r[:low] ^ ~opened[:low] if party == 0 else r[:low]
    greater[low] = 0                                        # padding: equal, never greater
    equal[low] = _ONES if party == 0 else 0
    for combines, first in _rounds(bits):
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
