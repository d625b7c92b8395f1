"""Training data for field-wise scoring on shares, opened as aggregate counts only.

Why: a Fellegi-Sunter model trained on the levels of opened pairs (design A/B in
docs/quality.md) leaks the pairs it opens; this opens sums over the service's public sample
(``banded_run.sample_rows``: a share of each agency pair's left rows x all its right rows)
and nothing per pair. One generator per server over every agency pair (``field_train_party``):

1. **Per sampled pair, on shares** (as ``fieldwise``): per field common bits (one Beaver
   product per segment), the record-level band bits ``[Dice >= t_j]`` on their sum, each
   field's presence (both segments non-empty) and its four level bits ANDed with presence.
2. **Histogram:** the band bits become additive shares (daBits); each server sums its
   shares over the sampled pairs of *all* agency pairs, and only the sum per edge is opened.
3. **Merging (public rule on the histogram):** edges are kept from the top down only where
   the band they start holds at least ``min_pairs`` sampled pairs; a sparse top band is
   merged into the one below (``merged_edges``). So every opened cell below is a sum over at
   least ``min_pairs`` pairs.
4. **Cells:** per kept edge ``j``, field ``f`` and ``k`` (present, Dice >= 0.95 .. 0.5) the
   AND of ``[Dice >= t_j]`` with the field bit, daBit-converted and summed over all agency
   pairs; plus the same sums without the band (all sampled pairs). Only those sums open.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..errors import InvalidRequestError
from .bands import BandThresholds
from .field_dealer import FieldMaterial
from .field_refine import linked_sums
from .fieldwise import (FIELD_THRESHOLDS, FieldWeights, LaterMaterial, _and_bits, _pair_levels,
                        _to_additive, level_plane_bits, open_operands, per_pair)
from .protocol import _check_shares, _non_negative, rational_threshold

__all__ = ["FieldCounts", "FieldTotals", "SamplePair", "field_totals_party",
           "field_train_party", "level_counts", "merged_edges"]

#: The fewest sampled pairs an opened band may sum.
MIN_CELL_PAIRS = 10


@dataclass(frozen=True)
class SamplePair:
    """One agency pair's sample as one server holds it: shares of the sampled left rows and
    of all right rows, the scan material for that plan, and the later-phase dealer."""

    left: np.ndarray
    right: np.ndarray
    material: FieldMaterial
    later: LaterMaterial


@dataclass(frozen=True)
class FieldCounts:
    """What the training run opens (sums over every agency pair's sampled pairs).

    ``at_least[j]``: pairs with record Dice >= ``edges[j]``; ``kept``: indices of the edges
    the cells are cut at; ``cells[j, c, f]``: pairs with Dice >= ``edges[kept[j]]`` and field
    f present (``c`` 0) or present at Dice >= ``FIELD_THRESHOLDS[c - 1]``; ``totals[c, f]``
    the same over all sampled pairs (``pairs``); ``linked``: the refinement step's sums (how
    many sampled pairs the rule links, and these totals over them), when the run was given a
    rule to refine.
    """

    edges: np.ndarray
    pairs: int
    at_least: np.ndarray
    kept: np.ndarray
    cells: np.ndarray
    totals: np.ndarray
    linked: FieldTotals | None = None

    def band_level_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Per merged band (below the lowest kept edge first): its pair count, and its
        fields x levels counts (levels 0 best .. 4; missing left out)."""
        cumulative = np.concatenate([self.totals[None], self.cells])  # (1 + J) x 5 x F
        bands = cumulative - np.concatenate([cumulative[1:], np.zeros_like(cumulative[:1])])
        pair_cum = np.concatenate([[self.pairs], self.at_least[self.kept]])
        pairs = pair_cum - np.append(pair_cum[1:], 0)
        return pairs, level_counts(bands)


@dataclass(frozen=True)
class FieldTotals:
    """``totals[c, f]`` as ``FieldCounts.totals``, over ``pairs`` sampled pairs: what a
    totals-only run opens, or the refinement step over the pairs its rule links."""

    pairs: int
    totals: np.ndarray

    def level_counts(self) -> np.ndarray:
        """Fields x levels (0 best .. 4; missing left out)."""
        return level_counts(self.totals[None])[0]


def level_counts(cumulative: np.ndarray) -> np.ndarray:
    """B x F x levels from B x (present, >= each FIELD_THRESHOLDS) x F counts."""
    present, at_least = cumulative[:, 0], cumulative[:, 1:]  # B x F, B x K x F
    levels = np.empty((cumulative.shape[0], cumulative.shape[2], at_least.shape[1] + 1),
                      np.int64)
    levels[:, :, 0] = at_least[:, 0]
    levels[:, :, 1:-1] = np.transpose(at_least[:, 1:] - at_least[:, :-1], (0, 2, 1))
    levels[:, :, -1] = present - at_least[:, -1]
    return levels


def sample_fields(pairs: Sequence[SamplePair], run: str) -> int:
    """The number of fields every sample of a run has.

    Raises:
        InvalidRequestError: no samples, or samples with different fields.
    """
    if not pairs:
        raise InvalidRequestError(f"{run} needs at least one sample")
    fields = len(pairs[0].material.columns)
    if any(len(pair.material.columns) != fields for pair in pairs):
        raise InvalidRequestError(f"every sample of {run} must have the same fields")
    return fields


def merged_edges(at_least: np.ndarray, min_pairs: int = MIN_CELL_PAIRS) -> np.ndarray:
    """Indices of the edges kept, from the top down: each starts a band of >= ``min_pairs``.

    A band below ``min_pairs`` is merged into the band below it (its edge dropped); an edge
    whose whole upper tail has fewer pairs than that is dropped too.
    """
    kept, above = [], 0
    for j in range(len(at_least) - 1, -1, -1):
        if int(at_least[j]) - above >= min_pairs:
            kept.append(j)
            above = int(at_least[j])
    return np.array(sorted(kept), np.int64)


@dataclass
class _PairBits:
    """One agency pair's XOR-shared bits between the two openings (this server's shares)."""

    band: np.ndarray     # J x P
    counted: np.ndarray  # (1 + K) x F x P: presence, then presence AND level bit


def _scan(party: int, pair: SamplePair, bands: BandThresholds
          ) -> Generator[np.ndarray, np.ndarray, tuple[_PairBits, np.ndarray]]:
    """Step 1 for one agency pair, and this server's additive shares of its band sums."""
    material, later = pair.material, pair.later
    plan, columns = material.plan, material.columns
    if party != material.party:
        raise InvalidRequestError(f"party {party} was given server {material.party}'s material")
    _check_shares("left", pair.left, plan.left_rows, plan.clk_bits)
    _check_shares("right", pair.right, plan.right_rows, plan.clk_bits)
    left, right = pair.left, pair.right
    fields, k = len(columns), len(FIELD_THRESHOLDS)
    widest = max(stop - start for start, stop in columns)
    level_thresholds = [rational_threshold(t, widest) for t in FIELD_THRESHOLDS]
    plane_bits = level_plane_bits(widest)
    operands = yield from open_operands(party, left, right, material)
    pop_left, pop_right = operands.pop_left, operands.pop_right
    commons = [operands.common(material.block(index), lo, hi)
               .reshape(fields + len(material.crossed), -1)
               for index, (lo, hi) in enumerate(plan.blocks())]
    common = np.concatenate(commons, axis=1)                            # (F + X) x P
    pops = per_pair(pop_left, pop_right)
    pairs = common.shape[1]
    # Record-level band bits on the sums over the fields (not the crossed products).
    twice_q = np.array([2 * t.denominator for t in bands.thresholds], np.uint32)[:, None]
    p = np.array([t.numerator for t in bands.thresholds], np.uint32)[:, None]
    values = twice_q * common[:fields].sum(axis=0, dtype=np.uint32)[None] \
        - p * (pops[0] + pops[1]).sum(axis=0, dtype=np.uint32)[None]
    band = yield from _non_negative(party, values, later.comparisons(pairs, len(bands), 32))
    # Presence per record, then per pair; level bits per pair and field.
    present_left, present_right = yield from operands.presence(later)
    masked_words = -(-k * fields * pairs // 64)
    present, bits, triples, first = yield from _pair_levels(
        party, common, *pops, *per_pair(present_left, present_right), material.crossed,
        later, level_thresholds, plane_bits, masked_words, band.size)
    masked = yield from _and_bits(party, bits, np.broadcast_to(present[None], bits.shape).copy(),
                                  triples, first)
    band_add = yield from _to_additive(party, band, triples, 0)
    counted = np.concatenate([present[None], masked])
    return _PairBits(band, counted), band_add.sum(axis=1, dtype=np.uint32)


def _cells(party: int, bits: _PairBits, kept: np.ndarray, later: LaterMaterial
           ) -> Generator[np.ndarray, np.ndarray, np.ndarray]:
    """Step 4 for one agency pair: this server's additive shares of its cells and totals."""
    band = bits.band[kept]                                              # J x P
    counted = bits.counted                                              # C x F x P
    shape = (band.shape[0], *counted.shape)
    anded_count = int(np.prod(shape))
    triples = later.bits(-(-anded_count // 64), anded_count + counted.size)
    anded = yield from _and_bits(
        party, np.broadcast_to(band[:, None, None, :], shape).copy(),
        np.broadcast_to(counted[None], shape).copy(), triples, 0)
    anded_add = yield from _to_additive(party, anded, triples, 0)
    totals_add = yield from _to_additive(party, counted, triples, anded_count)
    return np.concatenate([totals_add.sum(axis=-1, dtype=np.uint32)[None],
                           anded_add.sum(axis=-1, dtype=np.uint32)])


def field_train_party(party: int, pairs: Sequence[SamplePair], bands: BandThresholds,
                      min_pairs: int = MIN_CELL_PAIRS,
                      refine: Callable[[FieldCounts], FieldWeights] | None = None
                      ) -> Generator[np.ndarray, np.ndarray, FieldCounts]:
    """One server's side of the training run over every agency pair's sample.

    ``pairs``: each agency pair's sampled left rows and all right rows (shares, material
    for that plan, and its own later-phase dealer); ``bands``: the record-level histogram's
    edges (e.g. ``banded_run.SERVICE_EDGES``). Both servers pass the same in the same order.
    ``refine``: the public rule both servers derive from the opened counts (the first
    model's weights and cut); with it the run goes on, on the same shared bits, to the
    refinement step's sums (``field_refine``), returned as ``FieldCounts.linked``.

    Raises:
        InvalidRequestError: no pairs, or shares/material that do not fit.
    """
    fields = sample_fields(pairs, "the training run")
    held, band_sums, total = [], np.zeros(len(bands), np.uint32), 0
    for pair in pairs:
        bits, sums = yield from _scan(party, pair, bands)
        held.append(bits)
        band_sums += sums
        total += bits.band.shape[1]
    at_least = (band_sums + (yield band_sums)).astype(np.int64)
    kept = merged_edges(at_least, min_pairs)
    cell_sums = np.zeros((1 + kept.size, 1 + len(FIELD_THRESHOLDS), fields), np.uint32)
    for pair, bits in zip(pairs, held):
        cell_sums += yield from _cells(party, bits, kept, pair.later)
    opened = (cell_sums + (yield cell_sums)).astype(np.int64)
    counts = FieldCounts(bands.edges, total, at_least, kept, opened[1:], opened[0])
    if refine is None:
        return counts
    weights = refine(counts)
    sums = np.zeros(1 + (1 + len(FIELD_THRESHOLDS)) * fields, np.uint32)
    for pair, bits in zip(pairs, held):
        sums += yield from linked_sums(party, bits.counted, pair.later, weights)
    linked = (sums + (yield sums)).astype(np.int64)
    return replace(counts, linked=FieldTotals(int(linked[0]), linked[1:].reshape(
        1 + len(FIELD_THRESHOLDS), fields)))


def field_totals_party(party: int, pairs: Sequence[SamplePair], bands: BandThresholds
                       ) -> Generator[np.ndarray, np.ndarray, FieldTotals]:
    """One server's side of a run that opens only each field's level sums over the samples.

    Why: an agency's own pairs train its u (``field_aggregates.within_model``), which needs
    no record-level band, so neither the histogram nor any band's cells are opened: only
    ``(1 + K) x F`` sums over all of ``pairs``' sampled pairs. (``bands`` is what the scan's
    material was dealt for; its bits stay shared.)

    Raises:
        InvalidRequestError: no pairs, or shares/material that do not fit.
    """
    fields = sample_fields(pairs, "the totals run")
    sums, total = np.zeros((1 + len(FIELD_THRESHOLDS), fields), np.uint32), 0
    for pair in pairs:
        bits, _ = yield from _scan(party, pair, bands)
        counted = bits.counted
        added = yield from _to_additive(party, counted, pair.later.bits(0, counted.size), 0)
        sums += added.sum(axis=-1, dtype=np.uint32)
        total += counted.shape[-1]
    opened = (sums + (yield sums)).astype(np.int64)
    return FieldTotals(total, opened)
