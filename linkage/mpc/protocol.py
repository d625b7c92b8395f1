"""Two servers decide "Dice >= t" for every cross pair on shares, and learn only that bit.

Each server runs the same generator (``threshold_party``) with its own shares and dealer
material. The generator *yields* every message it sends and is *sent* the other server's
message in return, so the protocol is pure (arrays in, arrays out) and the transport, a
socket or an in-process loop (``run_locally``), lives at the edge. Per server and block:

1. **Common bits** ``<x, y>`` with the matrix Beaver triple: ``E = X - A`` and
   ``F = Y - B`` are opened once per record (uniform: they reveal nothing), and each server
   computes its share ``C_s + E (B_s + [s=0] F)^T + A_s F^T`` locally.
2. **The comparison value** ``z = 2q <x, y> - p (|x| + |y|)``, linear in the shares: Dice
   ``>= p/q`` exactly when ``z >= 0``; ``|z| < 2^31``, so ``z >= 0`` is the top bit of
   ``z`` mod 2^32 being 0.
3. **Masked comparison**: ``c = z + r`` is opened (uniform). With ``c'``, ``r'`` the low 31
   bits, ``msb(z) = msb(c) xor msb(r) xor [r' > c']``, and ``[r' > c']`` compares a public
   number with XOR-shared bits: a prefix (Kogge-Stone) circuit of 5 rounds over ``(greater,
   equal)`` pairs, bit-sliced (one ``uint32`` word per pair holds all 31 positions, and the
   round's two ANDs share one ``uint64`` AND triple).
4. **Only the bit is opened**: each server sends its XOR share of ``[z >= 0]``.

Nothing else is ever opened, so the servers learn the above-threshold bit of each cross pair
and nothing about its Dice, the popcounts, or any pair inside one agency's file.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import InvalidRequestError
from .dealer import AND_ROUNDS, BlockMaterial, PartyMaterial
from .planes import PlaneMaterial, plane_non_negative
from .ring import RightOperand

__all__ = ["HitPairs", "RationalThreshold", "rational_threshold", "run_locally",
           "threshold_party"]

Protocol = Generator[np.ndarray, np.ndarray, "HitPairs"]
_LOW31 = np.uint32(0x7FFFFFFF)
_TOP = np.uint32(0x80000000)
_LOW32 = np.uint64(0xFFFFFFFF)
_U32 = np.uint64(32)


@dataclass(frozen=True)
class HitPairs:
    """Cross pairs at or above the threshold: ``left[i]`` with ``right[i]``; no scores exist."""

    left: np.ndarray
    right: np.ndarray

    def __len__(self) -> int:
        return int(self.left.shape[0])


@dataclass(frozen=True)
class RationalThreshold:
    """Dice >= ``numerator / denominator``, which decides exactly as the float ``threshold``."""

    threshold: float
    numerator: int
    denominator: int


def rational_threshold(threshold: float, clk_bits: int, *, max_denominator: int = 10_000
                       ) -> RationalThreshold:
    """The fraction p/q whose integer test ``2 q c >= p (|a|+|b|)`` equals the kernel's float test.

    The plaintext kernel accepts a pair when ``2.0 * c / (|a|+|b|) >= threshold`` in float64;
    this finds the p/q that gives the same decision for every popcount sum up to
    ``2 * clk_bits`` (checked, not assumed), so linked pairs equal the kernel's.

    Raises:
        InvalidRequestError: the threshold is not in (0, 1], or no fraction with a denominator
            up to ``max_denominator`` decides like it (use at most 4 decimals).
    """
    if not isinstance(threshold, (int, float)) or math.isnan(threshold) \
            or not 0.0 < threshold <= 1.0:
        raise InvalidRequestError(f"threshold must be a number in (0, 1], not {threshold!r}")
    fraction = Fraction(threshold).limit_denominator(max_denominator)
    p, q = fraction.numerator, fraction.denominator
    sums = np.arange(1, 2 * clk_bits + 1, dtype=np.int64)
    need = -((-p * sums) // (2 * q))  # least c with 2qc >= p s
    passes = 2.0 * need / sums >= threshold
    below = (need == 0) | ~(2.0 * (need - 1) / sums >= threshold)
    if not (passes.all() and below.all()):
        raise InvalidRequestError(f"threshold {threshold!r} has no exact fraction with a "
                                  f"denominator up to {max_denominator}: use at most 4 decimals")
    if 2 * q * clk_bits >= 1 << 31 or 2 * p * clk_bits >= 1 << 31:
        raise InvalidRequestError("threshold denominator too large for 32-bit shares")
    return RationalThreshold(float(threshold), p, q)


def _check_shares(name: str, share: np.ndarray, rows: int, bits: int) -> None:
    if not isinstance(share, np.ndarray) or share.dtype != np.uint32 \
            or share.shape != (rows, bits):
        got = (getattr(share, "dtype", type(share).__name__), getattr(share, "shape", None))
        raise InvalidRequestError(f"{name} shares must be uint32 of shape {(rows, bits)} as the "
                                  f"plan says, got {got[0]} {got[1]}")


def threshold_party(party: int, left: np.ndarray, right: np.ndarray,
                    threshold: RationalThreshold, material: PartyMaterial) -> Protocol:
    """One server's side of the protocol, as a generator (see the module docstring).

    Args:
        party: 0 or 1, matching ``material``.
        left, right: this server's shares of the two agencies' CLK bits (``uint32``,
            records x ``clk_bits``), e.g. from ``split_clks``.
        threshold: from ``rational_threshold`` (both servers must use the same).
        material: this server's dealer material for the plan.
    Returns (as the generator's value):
        ``HitPairs``, ordered by left row then right row.
    Raises:
        InvalidRequestError: shares do not fit the plan, or the party does not match.
    """
    plan = material.plan
    if party != material.party:
        raise InvalidRequestError(f"party {party} was given server {material.party}'s material")
    _check_shares("left", left, plan.left_rows, plan.clk_bits)
    _check_shares("right", right, plan.right_rows, plan.clk_bits)
    mask_left, mask_right = material.masks()
    mine = np.concatenate([(left - mask_left).ravel(), (right - mask_right).ravel()])
    opened = mine + (yield mine)
    open_left = opened[:left.size].reshape(left.shape)
    open_right = opened[left.size:].reshape(right.shape)
    # One product per block: [E | A_s] [B_s + [s=0] F | F]^T = E (B_s + [s=0] F)^T + A_s F^T.
    right_term = RightOperand(np.hstack([mask_right + open_right if party == 0 else mask_right,
                                         open_right]))
    pop_left = left.sum(axis=1, dtype=np.uint32)
    pop_right = right.sum(axis=1, dtype=np.uint32)
    twice_q, p = np.uint32(2 * threshold.denominator), np.uint32(threshold.numerator)
    lefts, rights = [], []
    for index, (lo, hi) in enumerate(plan.blocks()):
        block = material.block(index)
        common = block.product + right_term.times(np.hstack([open_left[lo:hi],
                                                             mask_left[lo:hi]]))
        value = twice_q * common - p * (pop_left[lo:hi, None] + pop_right[None, :])
        at_least = yield from _non_negative(party, value, block)
        mine_bits = np.packbits(at_least, axis=None)
        hits = np.unpackbits(mine_bits ^ (yield mine_bits), count=at_least.size)
        rows, cols = np.nonzero(hits.reshape(at_least.shape))
        lefts.append(rows + lo)
        rights.append(cols)
    return HitPairs(np.concatenate(lefts).astype(np.int64), np.concatenate(rights).astype(np.int64))


def _non_negative(party: int, value: np.ndarray, block: BlockMaterial
                  ) -> Generator[np.ndarray, np.ndarray, np.ndarray]:
    """XOR share (``uint8`` 0/1) of ``[value >= 0]`` for a shared ``|value| < 2^31``; with
    ``planes.PlaneMaterial``, on bit planes (mod 2^32, or mod 2^16 for ``|value| < 2^15``)."""
    if isinstance(block, PlaneMaterial):
        return (yield from plane_non_negative(party, value, block))
    mine = value + block.mask
    masked = mine + (yield mine)  # c = z + r, uniform
    greater = block.mask_bits & ~masked & _LOW31
    equal = (block.mask_bits ^ ~masked) & _LOW31 if party == 0 else block.mask_bits & _LOW31
    if party == 0:
        equal = equal | _TOP  # the padding position 31: "equal", never "greater"
    for round_, shift in enumerate(1 << k for k in range(AND_ROUNDS)):
        higher_greater = greater >> np.uint32(shift)
        higher_equal = equal >> np.uint32(shift)
        if party == 0:  # positions above the top are padding: equal
            higher_equal = higher_equal | np.uint32(((1 << shift) - 1) << (32 - shift))
        wide_equal = higher_equal.astype(np.uint64)
        both = yield from _and(party, wide_equal | (wide_equal << _U32),
                               greater.astype(np.uint64) | (equal.astype(np.uint64) << _U32),
                               block, round_)
        greater = higher_greater ^ (both & _LOW32).astype(np.uint32)
        equal = (both >> _U32).astype(np.uint32)
    top = (block.mask_bits >> np.uint32(31)) ^ (greater & np.uint32(1))
    if party == 0:
        top = top ^ (masked >> np.uint32(31)) ^ np.uint32(1)  # msb(c); then NOT: z >= 0
    return top.astype(np.uint8)


def _and(party: int, x: np.ndarray, y: np.ndarray, block: BlockMaterial, round_: int
         ) -> Generator[np.ndarray, np.ndarray, np.ndarray]:
    """XOR shares of ``x & y`` (bitwise, ``uint64``) with one AND triple per word."""
    a, b, c = block.and_a[round_], block.and_b[round_], block.and_product[round_]
    mine = np.stack([x ^ a, y ^ b])
    opened = mine ^ (yield mine)
    d, e = opened[0], opened[1]
    out = c ^ (d & b) ^ (e & a)
    return out ^ (d & e) if party == 0 else out


def run_locally(first: Protocol, second: Protocol) -> tuple[HitPairs, HitPairs, int]:
    """Run both servers' generators in one process, handing each the other's messages.

    Returns both results and the bytes server 0 sent (equal to what server 1 sent). For
    tests and benchmarks; the real transport is ``bench.attacks.two_server``.

    Raises:
        RuntimeError: the two sides disagree on the number of messages.
    """
    sent = 0
    message0, message1 = next(first), next(second)
    while True:
        sent += message0.nbytes
        done = []
        for generator, incoming in ((first, message1), (second, message0)):
            try:
                done.append((False, generator.send(incoming)))
            except StopIteration as stop:
                done.append((True, stop.value))
        if done[0][0] != done[1][0]:
            raise RuntimeError("the two servers' protocols ended at different rounds")
        if done[0][0]:
            return done[0][1], done[1][1], sent
        message0, message1 = done[0][1], done[1][1]
