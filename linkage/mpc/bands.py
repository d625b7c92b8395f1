"""K thresholds on shares: an opened histogram of Dice bands, and a band for linked pairs only.

For thresholds ``t_1 < ... < t_K`` each server computes, per pair, its share of
``|A n B|`` once (as ``protocol``) and K comparison values ``z_k = 2 q_k c - p_k s``; the
masked comparison runs on all K at once (stacked arrays, the same 7 rounds), giving XOR
shares of ``b_k = [Dice >= t_k]``. Nothing per pair is opened there. Then:

1. **Histogram** (opened): each ``b_k`` becomes an additive share with a daBit ``d``
   (XOR and additive shares of one uniform bit): ``e = b xor d`` is opened (uniform, since
   ``d`` is), and ``b = e + (1 - 2e) d`` is linear in the additive shares of ``d``. Each
   server sums its shares over all pairs and only the K sums are opened: the number of pairs
   at or above each threshold, hence the count per band, and nothing about any one pair.
2. **The linking threshold** is chosen from the histogram by a public rule both servers
   run (``choose``, e.g. the ``auto`` score model): an index ``L``.
3. **Hits**: ``b_L`` is opened for every pair (the hit graph, as ``protocol``).
4. **Bands of hits only**: ``b_k`` for ``k > L`` is opened for the hit pairs alone, so a
   linked pair's band (``t_band <= Dice < t_band+1``) is known and non-linked pairs
   reveal nothing beyond the count in step 1.

The decisions are the kernel's float tests (each ``t_k`` a ``RationalThreshold``).

K comparisons per pair cost about K times one (the comparison, not the product, dominates),
so there is a cheaper design with the same outputs on less: ``bands_party`` with
``choose=None`` on a public random sample of left records opens only the sample's histogram,
the threshold is chosen from it, and ``hits_party`` makes one comparison per pair at that
threshold, opens the hit graph, and compares only the hits' kept shares with the thresholds
above (material made once their number is known): about ``1 + sample x K`` comparisons per
pair instead of K. ``sampled_auto_party`` is that design as one generator per server.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidRequestError
from .band_dealer import BandMaterial
from .dealer import BlockMaterial, PartyMaterial
from .protocol import RationalThreshold, _check_shares, _non_negative, rational_threshold
from .ring import RightOperand

__all__ = ["BandHits", "BandThresholds", "band_thresholds", "bands_party", "hits_party",
           "sampled_auto_party"]

BandProtocol = Generator[np.ndarray, np.ndarray, "BandHits"]


@dataclass(frozen=True)
class BandThresholds:
    """Strictly increasing thresholds, each decided exactly as the kernel's float test."""

    thresholds: tuple[RationalThreshold, ...]

    @property
    def edges(self) -> np.ndarray:
        """The thresholds as floats (the lower edge of each band)."""
        return np.array([t.threshold for t in self.thresholds], np.float64)

    def __len__(self) -> int:
        return len(self.thresholds)


def band_thresholds(thresholds: Sequence[float], clk_bits: int) -> BandThresholds:
    """Check and convert band edges (see ``rational_threshold`` for each).

    Raises:
        InvalidRequestError: fewer than one or more than 64 thresholds, not strictly
            increasing, or one that ``rational_threshold`` refuses.
    """
    values = list(thresholds)
    if not 1 <= len(values) <= 64:
        raise InvalidRequestError(f"bands need 1 to 64 thresholds, not {len(values)}")
    rationals = tuple(rational_threshold(value, clk_bits) for value in values)
    if any(b.threshold <= a.threshold for a, b in zip(rationals, rationals[1:])):
        raise InvalidRequestError(f"band thresholds must be strictly increasing: {values}")
    return BandThresholds(rationals)


@dataclass(frozen=True)
class BandHits:
    """The opened results of one band run.

    ``at_least[k]``: pairs with Dice >= ``edges[k]`` (the histogram, cumulative);
    ``link``: the index of the linking threshold chosen; ``left``/``right``: the pairs at or
    above it (left row, then right row); ``band``: each hit's band index (>= ``link``).
    """

    edges: np.ndarray
    pairs: int
    at_least: np.ndarray
    link: int
    left: np.ndarray
    right: np.ndarray
    band: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        """Pairs per band: ``[edges[k], edges[k+1])``, the last band up to 1 inclusive."""
        return self.at_least - np.append(self.at_least[1:], 0)

    @property
    def score(self) -> np.ndarray:
        """Each hit's band's lower edge: a coarse score (for ordering, 1-to-1, confidence)."""
        return self.edges[self.band]

    def __len__(self) -> int:
        return int(self.left.shape[0])


def bands_party(party: int, left: np.ndarray, right: np.ndarray, bands: BandThresholds,
                material: BandMaterial, choose: Callable[[np.ndarray], int] | None
                ) -> BandProtocol:
    """One server's side of the band protocol (see the module docstring), as a generator.

    Args:
        party: 0 or 1, matching ``material``.
        left, right: this server's shares of the CLK bits (``uint32``, records x bits).
        bands: from ``band_thresholds`` (both servers the same).
        material: this server's ``BandMaterial`` for the plan and ``len(bands)``.
        choose: the public rule from the opened cumulative counts (``at_least``) to the index
            of the linking threshold; both servers must use the same. ``None``: the
            histogram only (``link`` -1, no hits), e.g. on a sample of the pairs.
    Returns (as the generator's value):
        ``BandHits``.
    Raises:
        InvalidRequestError: shares, material or thresholds do not fit, or ``choose``
            returns no valid index.
    """
    plan = material.plan
    k = len(bands)
    if party != material.party:
        raise InvalidRequestError(f"party {party} was given server {material.party}'s material")
    if material.thresholds != k:
        raise InvalidRequestError(f"material is for {material.thresholds} thresholds, the "
                                  f"bands have {k}")
    if plan.pairs >= 1 << 32:
        raise InvalidRequestError("more than 2^32 pairs in one plan: split it")
    _check_shares("left", left, plan.left_rows, plan.clk_bits)
    _check_shares("right", right, plan.right_rows, plan.clk_bits)
    beaver = yield from _open_masked(party, left, right, material.masks())
    twice_q = np.array([2 * t.denominator for t in bands.thresholds], np.uint32)[:, None, None]
    p = np.array([t.numerator for t in bands.thresholds], np.uint32)[:, None, None]
    sums = np.zeros(k, np.uint32)
    bit_shares = []  # per block: K x pairs uint8, kept for steps 3 and 4
    for index, (lo, hi) in enumerate(plan.blocks()):
        block = material.block(index)
        common = block.comparison.product + beaver.common(lo, hi)
        value = twice_q * common[None] - p * beaver.popcounts(lo, hi)[None]
        at_least = yield from _non_negative(party, value, block.comparison)
        mine_e = np.packbits(at_least ^ block.dabit_bits, axis=None)
        e = np.unpackbits(mine_e ^ (yield mine_e), count=at_least.size).reshape(at_least.shape)
        e = e.astype(np.uint32)
        arithmetic = (np.uint32(1) - np.uint32(2) * e) * block.dabit
        if party == 0:
            arithmetic = arithmetic + e
        sums += arithmetic.reshape(k, -1).sum(axis=1, dtype=np.uint32)
        bit_shares.append(at_least.reshape(k, -1))
    at_least_counts = (sums + (yield sums)).astype(np.int64)
    if choose is None:
        empty = np.zeros(0, np.int64)
        return BandHits(bands.edges, plan.pairs, at_least_counts, -1, empty, empty, empty)
    link = choose(at_least_counts.copy())
    if not isinstance(link, (int, np.integer)) or not 0 <= int(link) < k:
        raise InvalidRequestError(f"the threshold rule chose {link!r}, not an index below {k}")
    link = int(link)
    shares = np.concatenate(bit_shares, axis=1)  # K x all pairs, in (left, right) order
    mine_hits = np.packbits(shares[link])
    hits = np.flatnonzero(np.unpackbits(mine_hits ^ (yield mine_hits), count=plan.pairs))
    above = shares[link + 1:, hits]
    mine_above = np.packbits(above, axis=None)
    opened_above = np.unpackbits(mine_above ^ (yield mine_above), count=above.size)
    band = link + opened_above.reshape(above.shape).sum(axis=0, dtype=np.int64)
    return BandHits(bands.edges, plan.pairs, at_least_counts, link,
                    (hits // plan.right_rows).astype(np.int64),
                    (hits % plan.right_rows).astype(np.int64), band.astype(np.int64))


@dataclass
class _Beaver:
    """A server's opened Beaver differences, ready for each block's product."""

    party: int
    right_term: RightOperand
    open_left: np.ndarray
    mask_left: np.ndarray
    pop_left: np.ndarray
    pop_right: np.ndarray

    def common(self, lo: int, hi: int) -> np.ndarray:
        """This server's share of ``<x, y>`` for left rows lo:hi, minus the triple's C."""
        return self.right_term.times(np.hstack([self.open_left[lo:hi], self.mask_left[lo:hi]]))

    def popcounts(self, lo: int, hi: int) -> np.ndarray:
        """Shares of ``|x| + |y|`` for left rows lo:hi against every right row."""
        return self.pop_left[lo:hi, None] + self.pop_right[None, :]


def _open_masked(party: int, left: np.ndarray, right: np.ndarray, masks
                 ) -> Generator[np.ndarray, np.ndarray, _Beaver]:
    """Open ``E = X - A`` and ``F = Y - B`` (uniform) once for every record."""
    mask_left, mask_right = masks
    mine = np.concatenate([(left - mask_left).ravel(), (right - mask_right).ravel()])
    opened = mine + (yield mine)
    open_left = opened[:left.size].reshape(left.shape)
    open_right = opened[left.size:].reshape(right.shape)
    right_term = RightOperand(np.hstack([mask_right + open_right if party == 0 else mask_right,
                                         open_right]))
    return _Beaver(party, right_term, open_left, mask_left, left.sum(axis=1, dtype=np.uint32),
                   right.sum(axis=1, dtype=np.uint32))


def hits_party(party: int, left: np.ndarray, right: np.ndarray, bands: BandThresholds,
               link: int, material: PartyMaterial,
               hit_material: Callable[[int], BlockMaterial]) -> BandProtocol:
    """The hit graph at ``bands[link]`` for all pairs, then the band of the hits alone.

    The cheap half of the sampled design: one comparison per pair (``material`` is the
    single-threshold ``Dealer``'s, exactly as ``protocol.threshold_party``), the hit bits
    opened; then each server keeps its shares of ``<x, y>`` and ``|x| + |y|`` for the hits
    only and compares those with the thresholds above the link, on material made for that
    many hits (``hit_material(count)``, e.g. from a ``HitDealer``), and only those bits are
    opened. ``at_least`` holds the exact counts from the link up (all pairs at or above it
    are hits) and -1 below.

    Raises:
        InvalidRequestError: as ``bands_party``; a link that is no index of ``bands``.
    """
    plan = material.plan
    k = len(bands)
    if party != material.party:
        raise InvalidRequestError(f"party {party} was given server {material.party}'s material")
    if not isinstance(link, (int, np.integer)) or not 0 <= int(link) < k:
        raise InvalidRequestError(f"link {link!r} is not an index below {k}")
    link = int(link)
    _check_shares("left", left, plan.left_rows, plan.clk_bits)
    _check_shares("right", right, plan.right_rows, plan.clk_bits)
    beaver = yield from _open_masked(party, left, right, material.masks())
    chosen = bands.thresholds[link]
    twice_q, p = np.uint32(2 * chosen.denominator), np.uint32(chosen.numerator)
    lefts, rights, commons, sums = [], [], [], []
    for index, (lo, hi) in enumerate(plan.blocks()):
        block = material.block(index)
        common = block.product + beaver.common(lo, hi)
        popcounts = beaver.popcounts(lo, hi)
        at_least = yield from _non_negative(party, twice_q * common - p * popcounts, block)
        mine = np.packbits(at_least, axis=None)
        hits = np.unpackbits(mine ^ (yield mine), count=at_least.size).reshape(at_least.shape)
        rows, cols = np.nonzero(hits)
        lefts.append(rows + lo)
        rights.append(cols)
        commons.append(common[rows, cols])
        sums.append(popcounts[rows, cols])
    hit_left = np.concatenate(lefts).astype(np.int64)
    hit_right = np.concatenate(rights).astype(np.int64)
    count, higher = hit_left.size, k - link - 1
    band = np.full(count, link, np.int64)
    if count and higher:
        block = hit_material(count)
        if block.mask.shape != (higher, count):
            raise InvalidRequestError(f"hit material has shape {block.mask.shape}, expected "
                                      f"{(higher, count)}")
        upper = bands.thresholds[link + 1:]
        twice_qs = np.array([2 * t.denominator for t in upper], np.uint32)[:, None]
        ps = np.array([t.numerator for t in upper], np.uint32)[:, None]
        common, popcounts = np.concatenate(commons), np.concatenate(sums)
        bits = yield from _non_negative(party, twice_qs * common[None] - ps * popcounts[None],
                                        block)
        mine = np.packbits(bits, axis=None)
        opened = np.unpackbits(mine ^ (yield mine), count=bits.size).reshape(bits.shape)
        band += opened.sum(axis=0, dtype=np.int64)
    at_least = np.full(k, -1, np.int64)
    at_least[link:] = [(band >= j).sum() for j in range(link, k)]
    return BandHits(bands.edges, plan.pairs, at_least, link, hit_left, hit_right, band)


def sampled_auto_party(party: int, left: np.ndarray, right: np.ndarray, bands: BandThresholds,
                       sample_rows: np.ndarray, sample_material: BandMaterial,
                       material: PartyMaterial, choose: Callable[[np.ndarray], int],
                       hit_material: Callable[[int, int], BlockMaterial]
                       ) -> Generator[np.ndarray, np.ndarray, tuple[np.ndarray, BandHits]]:
    """The sampled design end to end, as one generator per server.

    ``bands_party`` on the left rows ``sample_rows`` (public, data-independent; its plan's
    left rows are that many) opens the sample's histogram, ``choose`` (public) maps it to
    the link index, and ``hits_party`` links every pair there and opens the hits' bands.
    ``hit_material(count, thresholds)`` gives this server's material for the hits.

    Returns (as the generator's value):
        ``(sample_at_least, hits)``.
    Raises:
        InvalidRequestError: as ``bands_party`` and ``hits_party``; sample rows that are not
            distinct, sorted left rows.
    """
    sample_rows = np.asarray(sample_rows)
    if sample_rows.ndim != 1 or sample_rows.dtype.kind not in "iu" or not sample_rows.size \
            or (np.diff(sample_rows) <= 0).any() or sample_rows[0] < 0 \
            or sample_rows[-1] >= left.shape[0]:
        raise InvalidRequestError("sample rows must be distinct left rows in increasing order")
    histogram = yield from bands_party(party, left[sample_rows], right, bands, sample_material,
                                       None)
    link = choose(histogram.at_least.copy())
    hits = yield from hits_party(party, left, right, bands, link, material,
                                 lambda count: hit_material(count, len(bands) - link - 1))
    return histogram.at_least, hits
