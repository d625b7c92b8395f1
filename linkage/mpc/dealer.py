"""The offline phase: the correlated randomness the two servers consume, from a dealer.

The dealer is a third party trusted not to collude with either server (in a deployment:
an agency's machine, or a party run by the project's coordinator; an OT- or HE-based
offline phase between the two servers could replace it). It never sees a CLK or a share:
everything it makes is random and independent of the data, so it can run before the data
exist. Per block of candidate pairs it makes

* a **matrix Beaver triple** ``A`` (left records x bits), ``B`` (right records x bits),
  ``C = A B^T``, additively shared, for the common-bit counts;
* a **masked-comparison mask** ``r``: additive shares of a uniform 32-bit ``r`` and XOR
  shares of its bits, for revealing only the sign of a shared value;
* **AND triples** ``(a, b, a & b)``, XOR-shared, packed in ``uint64`` words, one per
  round of the comparison circuit.

Server 0's part is entirely a PRG seed. Server 1's random parts come from its own seed; only
the corrections that make the randomness correlated (``C1``, server 1's bit shares of ``r``,
and its shares of every ``a & b``) are sent, 48 bytes per pair.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidRequestError
from .prg import new_seed, random_words
from .ring import RightOperand

__all__ = ["AND_ROUNDS", "BlockMaterial", "Correction", "Dealer", "PartyMaterial", "Plan"]

AND_ROUNDS = 5  # log2(32): the comparison circuit's depth
_PAIRS_PER_BLOCK = 1 << 18


@dataclass(frozen=True)
class Plan:
    """The shape of one linkage on shares: left x right records of ``clk_bits``, in blocks.

    Both servers and the dealer must hold the same plan; blocks are ranges of left rows,
    each against every right row, so a block's material is ``rows x right_rows``.
    """

    left_rows: int
    right_rows: int
    clk_bits: int
    block_rows: int = 0

    def __post_init__(self):
        for name in ("left_rows", "right_rows", "clk_bits"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InvalidRequestError(f"plan: {name} must be a positive integer")
        if self.block_rows == 0:
            object.__setattr__(self, "block_rows",
                               max(1, min(self.left_rows, _PAIRS_PER_BLOCK // self.right_rows)))
        if self.block_rows < 1:
            raise InvalidRequestError("plan: block_rows must be positive")

    def blocks(self) -> list[tuple[int, int]]:
        """``(first, stop)`` left-row ranges, in the order the protocol runs them."""
        return [(lo, min(lo + self.block_rows, self.left_rows))
                for lo in range(0, self.left_rows, self.block_rows)]

    @property
    def pairs(self) -> int:
        return self.left_rows * self.right_rows


@dataclass(frozen=True)
class Correction:
    """What the dealer sends server 1 for one block (everything else is seeded)."""

    product: np.ndarray     # rows x right, uint32: server 1's share of A[rows] B^T
    mask_bits: np.ndarray   # rows x right, uint32: server 1's XOR share of r's bits
    and_product: np.ndarray  # AND_ROUNDS x rows x right, uint64: server 1's share of a & b

    @property
    def nbytes(self) -> int:
        return self.product.nbytes + self.mask_bits.nbytes + self.and_product.nbytes


@dataclass(frozen=True)
class BlockMaterial:
    """One server's correlated randomness for one block."""

    product: np.ndarray     # share of C = A[rows] B^T (additive)
    mask: np.ndarray        # additive share of r
    mask_bits: np.ndarray   # XOR share of r's bits
    and_a: np.ndarray       # AND_ROUNDS x rows x right, XOR shares
    and_b: np.ndarray
    and_product: np.ndarray


def _masks(seed: bytes, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    return (random_words(seed, "beaver A", (plan.left_rows, plan.clk_bits), np.uint32),
            random_words(seed, "beaver B", (plan.right_rows, plan.clk_bits), np.uint32))


def _seeded(seed: bytes, plan: Plan, block: int, rows: int, *, full: bool) -> dict:
    """A block's seeded arrays; ``full`` (server 0) also draws what server 1 gets corrected."""
    shape = (rows, plan.right_rows)
    rounds = (AND_ROUNDS, *shape)
    out = {"mask": random_words(seed, f"r {block}", shape, np.uint32),
           "and_a": random_words(seed, f"and a {block}", rounds, np.uint64),
           "and_b": random_words(seed, f"and b {block}", rounds, np.uint64)}
    if full:
        out["product"] = random_words(seed, f"C {block}", shape, np.uint32)
        out["mask_bits"] = random_words(seed, f"r bits {block}", shape, np.uint32)
        out["and_product"] = random_words(seed, f"and c {block}", rounds, np.uint64)
    return out


class Dealer:
    """Makes both servers' material for one plan; server 1's corrections block by block."""

    def __init__(self, plan: Plan, seeds: tuple[bytes, bytes] | None = None):
        self.plan = plan
        self.seeds = seeds or (new_seed(), new_seed())
        a0, b0 = _masks(self.seeds[0], plan)
        a1, b1 = _masks(self.seeds[1], plan)
        self._a, self._b = a0 + a1, RightOperand(b0 + b1)

    def corrections(self) -> Iterator[Correction]:
        """Server 1's corrections, one per block in ``plan.blocks()`` order."""
        for index, (lo, hi) in enumerate(self.plan.blocks()):
            first = _seeded(self.seeds[0], self.plan, index, hi - lo, full=True)
            second = _seeded(self.seeds[1], self.plan, index, hi - lo, full=False)
            mask = first["mask"] + second["mask"]
            anded = (first["and_a"] ^ second["and_a"]) & (first["and_b"] ^ second["and_b"])
            yield Correction(self._b.times(self._a[lo:hi]) - first["product"],
                             mask ^ first["mask_bits"], anded ^ first["and_product"])


class PartyMaterial:
    """One server's view of the dealer's material: its seed, and for server 1 the corrections.

    ``corrections`` must yield in block order (the protocol asks for blocks in order).
    """

    def __init__(self, party: int, plan: Plan, seed: bytes,
                 corrections: Iterator[Correction] | None = None):
        if party not in (0, 1):
            raise InvalidRequestError(f"party must be 0 or 1, not {party!r}")
        if (party == 1) != (corrections is not None):
            raise InvalidRequestError("server 1, and only server 1, needs the dealer's "
                                      "corrections")
        self.party, self.plan, self._seed = party, plan, seed
        self._corrections = corrections
        self._next_block = 0

    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """This server's shares of the Beaver masks ``A`` and ``B``."""
        return _masks(self._seed, self.plan)

    def block(self, index: int) -> BlockMaterial:
        """The material of block ``index`` (blocks are consumed once, in order)."""
        if index != self._next_block:
            raise InvalidRequestError(f"block {index} asked for, block {self._next_block} due: "
                                      "dealer material is used once, in order")
        self._next_block += 1
        lo, hi = self.plan.blocks()[index]
        seeded = _seeded(self._seed, self.plan, index, hi - lo, full=self.party == 0)
        if self.party == 1:
            correction = next(self._corrections)
            expected = (hi - lo, self.plan.right_rows)
            if correction.product.shape != expected:
                raise InvalidRequestError(f"dealer correction for block {index} has shape "
                                          f"{correction.product.shape}, expected {expected}")
            seeded.update(product=correction.product, mask_bits=correction.mask_bits,
                          and_product=correction.and_product)
        return BlockMaterial(**seeded)
