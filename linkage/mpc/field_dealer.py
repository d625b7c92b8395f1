"""The dealer's material for field-wise levels on shares (``linkage.mpc.fieldwise``).

Same trust model as ``dealer``: data-independent; server 0's part is a seed, server 1 gets
its seed plus corrections. Two phases:

* **the scan** (every cross pair, ``FieldDealer``): per block one Beaver product per field
  segment (``C_f = A_f B_f^T``: the per-field common bits; their sum is the record-level
  product, so the scan costs one record-level product), one per ``crossed`` pair of fields
  (``A_g B_f^T``: given against family name, for swapped names) and the record-level
  comparison's mask and AND triples, as ``dealer`` makes them. Corrections: ``4 (F + X) +
  44`` bytes per pair for ``X`` crossed products.
* **after the candidate graph is open** (``BitDealer``, and ``band_dealer.HitDealer`` for the
  comparisons), made for counts only: the dealer learns how many candidates there are,
  never which. ``BitDealer`` makes XOR AND triples (64 bits a word) and daBits (a uniform
  bit as XOR and as additive shares, as ``band_dealer``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidRequestError
from .dealer import AND_ROUNDS, BlockMaterial, Plan, _masks
from .prg import new_seed, random_words
from .ring import RightOperand

__all__ = ["BitCorrection", "BitDealer", "BitMaterial", "FieldCorrection", "FieldDealer",
           "FieldMaterial", "bit_material", "product_columns"]


def _check_columns(plan: Plan, columns: tuple[tuple[int, int], ...],
                   crossed: tuple[tuple[int, int], ...] = ()) -> None:
    if not columns or any(not 0 <= lo < hi <= plan.clk_bits for lo, hi in columns):
        raise InvalidRequestError("field columns must be non-empty (start, stop) bit ranges "
                                  f"inside the plan's {plan.clk_bits} bits")
    for pair in crossed:
        if len(pair) != 2 or not all(isinstance(i, int) and 0 <= i < len(columns)
                                     for i in pair) or pair[0] == pair[1]:
            raise InvalidRequestError(f"crossed fields {pair!r}: two different field indices")
        widths = {columns[i][1] - columns[i][0] for i in pair}
        if len(widths) != 1:
            raise InvalidRequestError(f"crossed fields {pair!r} must have segments of one "
                                      "width")


def product_columns(columns: tuple[tuple[int, int], ...],
                    crossed: tuple[tuple[int, int], ...] = ()
                    ) -> tuple[tuple[tuple[int, int], tuple[int, int]], ...]:
    """(left bits, right bits) of every Beaver product of a block: each field against
    itself, then each ``crossed`` (left field, right field)."""
    return tuple((c, c) for c in columns) + tuple((columns[l], columns[r]) for l, r in crossed)


@dataclass(frozen=True)
class FieldCorrection:
    """Server 1's corrections for one scan block."""

    product: np.ndarray      # (F + X) x rows x right, uint32: its share of each product
    mask_bits: np.ndarray    # rows x right, uint32
    and_product: np.ndarray  # AND_ROUNDS x rows x right, uint64

    @property
    def nbytes(self) -> int:
        return self.product.nbytes + self.mask_bits.nbytes + self.and_product.nbytes


def _scan_seeded(seed: bytes, plan: Plan, fields: int, block: int, rows: int, *,
                 full: bool) -> dict:
    shape = (rows, plan.right_rows)
    rounds = (AND_ROUNDS, *shape)
    out = {"mask": random_words(seed, f"field r {block}", shape, np.uint32),
           "and_a": random_words(seed, f"field and a {block}", rounds, np.uint64),
           "and_b": random_words(seed, f"field and b {block}", rounds, np.uint64)}
    if full:
        out["product"] = random_words(seed, f"field C {block}", (fields, *shape), np.uint32)
        out["mask_bits"] = random_words(seed, f"field r bits {block}", shape, np.uint32)
        out["and_product"] = random_words(seed, f"field and c {block}", rounds, np.uint64)
    return out


class FieldDealer:
    """Both servers' scan material for one plan and the fields' bit ranges (``columns``)."""

    def __init__(self, plan: Plan, columns: tuple[tuple[int, int], ...],
                 seeds: tuple[bytes, bytes] | None = None,
                 crossed: tuple[tuple[int, int], ...] = ()):
        _check_columns(plan, columns, crossed)
        self.plan, self.columns, self.crossed = plan, tuple(columns), tuple(crossed)
        self.seeds = seeds or (new_seed(), new_seed())
        a0, b0 = _masks(self.seeds[0], plan)
        a1, b1 = _masks(self.seeds[1], plan)
        self._a, b = a0 + a1, b0 + b1
        self._products = [(left, RightOperand(np.ascontiguousarray(b[:, lo:hi])))
                          for left, (lo, hi) in product_columns(self.columns, self.crossed)]

    def corrections(self) -> Iterator[FieldCorrection]:
        """Server 1's corrections, one per block in ``plan.blocks()`` order."""
        products = len(self._products)
        for index, (lo, hi) in enumerate(self.plan.blocks()):
            first = _scan_seeded(self.seeds[0], self.plan, products, index, hi - lo, full=True)
            second = _scan_seeded(self.seeds[1], self.plan, products, index, hi - lo,
                                  full=False)
            product = np.stack([right.times(np.ascontiguousarray(self._a[lo:hi, start:stop]))
                                for (start, stop), right in self._products])
            mask = first["mask"] + second["mask"]
            anded = (first["and_a"] ^ second["and_a"]) & (first["and_b"] ^ second["and_b"])
            yield FieldCorrection(product - first["product"], mask ^ first["mask_bits"],
                                  anded ^ first["and_product"])


class FieldMaterial:
    """One server's view of a ``FieldDealer``'s material (blocks used once, in order)."""

    def __init__(self, party: int, plan: Plan, columns: tuple[tuple[int, int], ...],
                 seed: bytes, corrections: Iterator[FieldCorrection] | None = None,
                 crossed: tuple[tuple[int, int], ...] = ()):
        if party not in (0, 1):
            raise InvalidRequestError(f"party must be 0 or 1, not {party!r}")
        if (party == 1) != (corrections is not None):
            raise InvalidRequestError("server 1, and only server 1, needs the dealer's "
                                      "corrections")
        _check_columns(plan, columns, crossed)
        self.party, self.plan, self.columns = party, plan, tuple(columns)
        self.crossed = tuple(crossed)
        self._seed, self._corrections = seed, corrections
        self._next_block = 0
        self._masks_taken = False

    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """This server's shares of the Beaver masks (once: a second run would reuse them)."""
        if self._masks_taken:
            raise InvalidRequestError("field material already used by a run: dealer material "
                                      "is used once")
        self._masks_taken = True
        return _masks(self._seed, self.plan)

    def block(self, index: int) -> BlockMaterial:
        """Block ``index``'s material; ``product`` is (F + crossed) x rows x right."""
        if index != self._next_block:
            raise InvalidRequestError(f"block {index} asked for, block {self._next_block} due: "
                                      "dealer material is used once, in order")
        self._next_block += 1
        lo, hi = self.plan.blocks()[index]
        products = len(self.columns) + len(self.crossed)
        seeded = _scan_seeded(self._seed, self.plan, products, index, hi - lo,
                              full=self.party == 0)
        if self.party == 1:
            correction = next(self._corrections)
            expected = (products, hi - lo, self.plan.right_rows)
            if correction.product.shape != expected:
                raise InvalidRequestError(f"dealer correction for block {index} has shape "
                                          f"{correction.product.shape}, expected {expected}")
            seeded.update(product=correction.product, mask_bits=correction.mask_bits,
                          and_product=correction.and_product)
        return BlockMaterial(**seeded)


@dataclass(frozen=True)
class BitCorrection:
    """Server 1's share of every AND triple's product and its additive share of every daBit."""

    and_product: np.ndarray  # words, uint64
    dabit: np.ndarray        # dabits, uint32

    @property
    def nbytes(self) -> int:
        return self.and_product.nbytes + self.dabit.nbytes


@dataclass(frozen=True)
class BitMaterial:
    """One server's AND triples (XOR shares, ``words`` uint64) and daBits."""

    and_a: np.ndarray
    and_b: np.ndarray
    and_product: np.ndarray
    dabit_bits: np.ndarray  # uint8 0/1: XOR share of d
    dabit: np.ndarray       # uint32: additive share of d


def _bit_seeded(seed: bytes, words: int, dabits: int, *, full: bool) -> dict:
    out = {"and_a": random_words(seed, "bits and a", (words,), np.uint64),
           "and_b": random_words(seed, "bits and b", (words,), np.uint64),
           "dabit_bits": random_words(seed, "bits d bits", (dabits,), np.uint8) & 1}
    if full:
        out["and_product"] = random_words(seed, "bits and c", (words,), np.uint64)
        out["dabit"] = random_words(seed, "bits d", (dabits,), np.uint32)
    return out


class BitDealer:
    """``words`` AND triples and ``dabits`` daBits, made once their numbers are known."""

    def __init__(self, words: int, dabits: int, seeds: tuple[bytes, bytes] | None = None):
        if not isinstance(words, int) or not isinstance(dabits, int) or words < 0 \
                or dabits < 0:
            raise InvalidRequestError("bit dealer: words and dabits must be integers >= 0")
        self.words, self.dabits = words, dabits
        self.seeds = seeds or (new_seed(), new_seed())

    def correction(self) -> BitCorrection:
        """Server 1's correction (one message)."""
        first = _bit_seeded(self.seeds[0], self.words, self.dabits, full=True)
        second = _bit_seeded(self.seeds[1], self.words, self.dabits, full=False)
        anded = (first["and_a"] ^ second["and_a"]) & (first["and_b"] ^ second["and_b"])
        dabit = (first["dabit_bits"] ^ second["dabit_bits"]).astype(np.uint32)
        return BitCorrection(anded ^ first["and_product"], dabit - first["dabit"])


def bit_material(party: int, words: int, dabits: int, seed: bytes,
                 correction: BitCorrection | None = None) -> BitMaterial:
    """One server's ``BitMaterial``.

    Raises:
        InvalidRequestError: a correction for server 0, none for server 1, or of the wrong
            shape.
    """
    if (party == 1) != (correction is not None):
        raise InvalidRequestError("server 1, and only server 1, needs the dealer's corrections")
    seeded = _bit_seeded(seed, words, dabits, full=party == 0)
    if party == 1:
        if correction.and_product.shape != (words,) or correction.dabit.shape != (dabits,):
            raise InvalidRequestError("bit correction does not fit the counts asked for")
        seeded.update(and_product=correction.and_product, dabit=correction.dabit)
    return BitMaterial(**seeded)
