"""The dealer's material for K comparisons per pair: bands of Dice instead of one bit.

Same trust model as ``dealer``: data-independent, server 0's part is a seed, server 1 gets
its seed plus corrections. Per block and per threshold it makes one comparison mask ``r``
and ``AND_ROUNDS`` AND triples (as ``dealer``), plus one **daBit**: a uniform bit ``d``
held both as XOR shares (both seeded) and as additive shares mod 2^32 (server 1's is the
correction), which turns an XOR-shared comparison bit into an additive share without
opening it (``bands``). One matrix Beaver triple per block serves all K comparisons.

Corrections to server 1 per pair: 4 B (its share of ``A B^T``) + K x 48 B (4 mask bits,
40 AND products, 4 daBit).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidRequestError
from .dealer import AND_ROUNDS, BlockMaterial, Plan, _masks
from .planes import (PlaneCorrection, PlaneMaterial, check_plane_bits, plane_correction,
                     plane_material)
from .prg import new_seed, random_words
from .ring import RightOperand

__all__ = ["BandBlock", "BandCorrection", "BandDealer", "BandMaterial", "HitCorrection",
           "HitDealer", "band_plan", "hit_material"]

_WORDS_PER_BLOCK = 1 << 18  # pairs x thresholds per block: bounds the material in memory


def band_plan(left_rows: int, right_rows: int, clk_bits: int, thresholds: int) -> Plan:
    """A plan whose blocks hold about 2^18 pair-comparisons across ``thresholds`` thresholds."""
    if not isinstance(thresholds, int) or thresholds < 1:
        raise InvalidRequestError("band plan: thresholds must be a positive integer")
    rows = max(1, min(left_rows, _WORDS_PER_BLOCK // (thresholds * max(1, right_rows))))
    return Plan(left_rows, right_rows, clk_bits, block_rows=rows)


@dataclass(frozen=True)
class BandCorrection:
    """What the dealer sends server 1 for one block of K comparisons."""

    product: np.ndarray      # rows x right, uint32
    mask_bits: np.ndarray    # K x rows x right, uint32
    and_product: np.ndarray  # AND_ROUNDS x K x rows x right, uint64
    dabit: np.ndarray        # K x rows x right, uint32: server 1's additive share of d

    @property
    def nbytes(self) -> int:
        return sum(part.nbytes for part in (self.product, self.mask_bits, self.and_product,
                                            self.dabit))


@dataclass(frozen=True)
class BandBlock:
    """One server's material for one block: the comparisons' (stacked over K) and the daBits."""

    comparison: BlockMaterial  # product rows x right; the rest K x rows x right (x rounds)
    dabit_bits: np.ndarray     # K x rows x right, uint8: XOR share of d
    dabit: np.ndarray          # K x rows x right, uint32: additive share of d


def _seeded(seed: bytes, plan: Plan, k: int, block: int, rows: int, *, full: bool) -> dict:
    shape = (k, rows, plan.right_rows)
    rounds = (AND_ROUNDS, *shape)
    out = {"mask": random_words(seed, f"band r {block}", shape, np.uint32),
           "and_a": random_words(seed, f"band and a {block}", rounds, np.uint64),
           "and_b": random_words(seed, f"band and b {block}", rounds, np.uint64),
           "dabit_bits": random_words(seed, f"band d bits {block}", shape, np.uint8) & 1}
    if full:
        out["product"] = random_words(seed, f"band C {block}", shape[1:], np.uint32)
        out["mask_bits"] = random_words(seed, f"band r bits {block}", shape, np.uint32)
        out["and_product"] = random_words(seed, f"band and c {block}", rounds, np.uint64)
        out["dabit"] = random_words(seed, f"band d {block}", shape, np.uint32)
    return out


class BandDealer:
    """Both servers' material for ``thresholds`` comparisons per pair of one plan."""

    def __init__(self, plan: Plan, thresholds: int, seeds: tuple[bytes, bytes] | None = None):
        if not isinstance(thresholds, int) or thresholds < 1:
            raise InvalidRequestError("band dealer: thresholds must be a positive integer")
        self.plan, self.thresholds = plan, thresholds
        self.seeds = seeds or (new_seed(), new_seed())
        a0, b0 = _masks(self.seeds[0], plan)
        a1, b1 = _masks(self.seeds[1], plan)
        self._a, self._b = a0 + a1, RightOperand(b0 + b1)

    def corrections(self) -> Iterator[BandCorrection]:
        """Server 1's corrections, one per block in ``plan.blocks()`` order."""
        for index, (lo, hi) in enumerate(self.plan.blocks()):
            first = _seeded(self.seeds[0], self.plan, self.thresholds, index, hi - lo, full=True)
            second = _seeded(self.seeds[1], self.plan, self.thresholds, index, hi - lo,
                             full=False)
            mask = first["mask"] + second["mask"]
            anded = (first["and_a"] ^ second["and_a"]) & (first["and_b"] ^ second["and_b"])
            dabit = (first["dabit_bits"] ^ second["dabit_bits"]).astype(np.uint32)
            yield BandCorrection(self._b.times(self._a[lo:hi]) - first["product"],
                                 mask ^ first["mask_bits"], anded ^ first["and_product"],
                                 dabit - first["dabit"])


class BandMaterial:
    """One server's view of a ``BandDealer``'s material (blocks used once, in order)."""

    def __init__(self, party: int, plan: Plan, thresholds: int, seed: bytes,
                 corrections: Iterator[BandCorrection] | None = None):
        if party not in (0, 1):
            raise InvalidRequestError(f"party must be 0 or 1, not {party!r}")
        if (party == 1) != (corrections is not None):
            raise InvalidRequestError("server 1, and only server 1, needs the dealer's "
                                      "corrections")
        self.party, self.plan, self.thresholds = party, plan, thresholds
        self._seed, self._corrections = seed, corrections
        self._next_block = 0
        self._masks_taken = False

    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """This server's shares of the Beaver masks (once: a second run would reuse them)."""
        if self._masks_taken:
            raise InvalidRequestError("band material already used by a run: dealer material "
                                      "is used once")
        self._masks_taken = True
        return _masks(self._seed, self.plan)

    def block(self, index: int) -> BandBlock:
        """The material of block ``index``."""
        if index != self._next_block:
            raise InvalidRequestError(f"block {index} asked for, block {self._next_block} due: "
                                      "dealer material is used once, in order")
        self._next_block += 1
        lo, hi = self.plan.blocks()[index]
        seeded = _seeded(self._seed, self.plan, self.thresholds, index, hi - lo,
                         full=self.party == 0)
        if self.party == 1:
            correction = next(self._corrections)
            expected = (self.thresholds, hi - lo, self.plan.right_rows)
            if correction.mask_bits.shape != expected or correction.dabit.shape != expected:
                raise InvalidRequestError(f"dealer correction for block {index} has shape "
                                          f"{correction.mask_bits.shape}, expected {expected}")
            seeded.update(product=correction.product, mask_bits=correction.mask_bits,
                          and_product=correction.and_product, dabit=correction.dabit)
        dabit_bits, dabit = seeded.pop("dabit_bits"), seeded.pop("dabit")
        return BandBlock(BlockMaterial(**seeded), dabit_bits, dabit)


@dataclass(frozen=True)
class HitCorrection:
    """Server 1's corrections for comparisons on ``count`` hit pairs at K thresholds."""

    mask_bits: np.ndarray    # K x count, uint32
    and_product: np.ndarray  # AND_ROUNDS x K x count, uint64

    @property
    def nbytes(self) -> int:
        return self.mask_bits.nbytes + self.and_product.nbytes


def _hit_seeded(seed: bytes, count: int, thresholds: int, *, full: bool) -> dict:
    shape = (thresholds, count)
    rounds = (AND_ROUNDS, *shape)
    out = {"mask": random_words(seed, "hit r", shape, np.uint32),
           "and_a": random_words(seed, "hit and a", rounds, np.uint64),
           "and_b": random_words(seed, "hit and b", rounds, np.uint64)}
    if full:
        out["mask_bits"] = random_words(seed, "hit r bits", shape, np.uint32)
        out["and_product"] = random_words(seed, "hit and c", rounds, np.uint64)
    return out


class HitDealer:
    """Comparison material for the hit pairs alone, made once their number is known.

    After the hit graph at the linking threshold is open, both servers know how many hits
    there are (nothing more than the graph); the dealer then makes K comparisons for each,
    with fresh seeds, so only hits pay for their bands. ``plane_bits`` 0: the word layout
    mod 2^32 (``protocol``); 16 or 32: on bit planes mod 2^16 or 2^32 (``planes``).
    """

    def __init__(self, count: int, thresholds: int, seeds: tuple[bytes, bytes] | None = None,
                 plane_bits: int = 0):
        if not isinstance(count, int) or count < 0 or not isinstance(thresholds, int) \
                or thresholds < 0:
            raise InvalidRequestError("hit dealer: count and thresholds must be integers >= 0")
        if plane_bits:
            check_plane_bits(plane_bits)
        self.count, self.thresholds, self.plane_bits = count, thresholds, plane_bits
        self.seeds = seeds or (new_seed(), new_seed())

    def correction(self) -> HitCorrection | PlaneCorrection:
        """Server 1's correction (one message)."""
        if self.plane_bits:
            return plane_correction(self.seeds, (self.thresholds, self.count), self.plane_bits)
        first = _hit_seeded(self.seeds[0], self.count, self.thresholds, full=True)
        second = _hit_seeded(self.seeds[1], self.count, self.thresholds, full=False)
        anded = (first["and_a"] ^ second["and_a"]) & (first["and_b"] ^ second["and_b"])
        return HitCorrection((first["mask"] + second["mask"]) ^ first["mask_bits"],
                             anded ^ first["and_product"])


def hit_material(party: int, count: int, thresholds: int, seed: bytes,
                 correction: HitCorrection | PlaneCorrection | None = None,
                 plane_bits: int = 0) -> BlockMaterial | PlaneMaterial:
    """One server's comparison material for ``count`` hits x ``thresholds`` (no product),
    in the layout of ``plane_bits`` (see ``HitDealer``).

    Raises:
        InvalidRequestError: a correction for server 0, none for server 1, or of the wrong
            shape or layout.
    """
    if (party == 1) != (correction is not None):
        raise InvalidRequestError("server 1, and only server 1, needs the dealer's corrections")
    if plane_bits:
        check_plane_bits(plane_bits)
        if party == 1 and not isinstance(correction, PlaneCorrection):
            raise InvalidRequestError("hit correction is in the word layout, not on bit "
                                      "planes")
        return plane_material(party, seed, (thresholds, count), plane_bits, correction)
    if party == 1 and not isinstance(correction, HitCorrection):
        raise InvalidRequestError("hit correction is on bit planes, not in the word layout")
    seeded = _hit_seeded(seed, count, thresholds, full=party == 0)
    if party == 1:
        if correction.mask_bits.shape != (thresholds, count):
            raise InvalidRequestError(f"hit correction has shape {correction.mask_bits.shape}, "
                                      f"expected {(thresholds, count)}")
        seeded.update(mask_bits=correction.mask_bits, and_product=correction.and_product)
    return BlockMaterial(product=np.zeros(0, np.uint32), **seeded)
