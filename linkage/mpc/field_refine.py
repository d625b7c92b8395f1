"""A second training step for field-wise scoring on shares: m and u from the model's own links.

Why: design C's first model comes from one M-step with record-level band responsibilities
(``field_aggregates``), which blurs m where a field's agreement is common among non-matches
(a date of birth's segment is similar for most pairs). Classification EM's next step needs
only sums: on the same public sample as ``field_train``, each pair's link bit under the
first model is decided on shares and stays shared; it is ANDed with each field's presence
and level bits, and only the sums over the sample are opened (how many sampled pairs link,
and per field and level how many of those): ``(1 + K) x F + 1`` values over the sample's
links, and no pair's bit.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidRequestError
from .bands import BandThresholds
from .field_train import SamplePair, _level_counts, _scan, sample_fields
from .fieldwise import FIELD_THRESHOLDS, FieldWeights, _and_bits, _to_additive
from .protocol import _non_negative

__all__ = ["LinkedTotals", "field_refine_party"]


@dataclass(frozen=True)
class LinkedTotals:
    """What the step opens: how many sampled pairs the rule links, and ``totals[c, f]`` as
    ``FieldCounts.totals`` over those linked pairs only."""

    linked: int
    totals: np.ndarray

    def level_counts(self) -> np.ndarray:
        """Fields x levels over the linked sampled pairs (missing left out)."""
        return _level_counts(self.totals[None])[0]


def field_refine_party(party: int, pairs: Sequence[SamplePair], weights: FieldWeights,
                       bands: BandThresholds) -> Generator[np.ndarray, np.ndarray, LinkedTotals]:
    """One server's side: the sums of ``weights``' link bit and of its AND with every field's
    presence and level bits, over every sample of ``pairs`` (as ``field_train_party`` gets
    them: both servers the same samples in the same order).

    Raises:
        InvalidRequestError: no samples, or a weight table that does not fit the fields.
    """
    fields, k = sample_fields(pairs, "the refinement step"), len(FIELD_THRESHOLDS)
    if weights.table.shape != (fields, k + 1):
        raise InvalidRequestError(f"weight table {weights.table.shape} does not fit "
                                  f"{fields} fields")
    table = weights.table.astype(np.int64)
    base = table[:, k].astype(np.uint32)                               # W[f, 4]
    steps = (table[:, :k] - table[:, 1:]).T.astype(np.uint32)          # K x F
    cut = np.uint32(weights.cut & 0xFFFFFFFF)
    sums = np.zeros(1 + (1 + k) * fields, np.uint32)                   # linked, then cells
    for pair in pairs:
        bits, _ = yield from _scan(party, pair, bands)
        counted = bits.counted                                         # (1 + K) x F x P
        count = counted.shape[-1]
        cells = counted.size
        triples = pair.later.bits(-(-cells // 64), 2 * cells + count)
        added = yield from _to_additive(party, counted, triples, 0)
        weight = (base[:, None] * added[0]).sum(axis=0, dtype=np.uint32) \
            + (steps[:, :, None] * added[1:]).sum(axis=(0, 1), dtype=np.uint32)
        if party == 0:
            weight = weight - cut
        link = (yield from _non_negative(party, weight[None],
                                         pair.later.comparisons(count, 1)))[0]
        anded = yield from _and_bits(party, np.broadcast_to(link, counted.shape).copy(),
                                     counted, triples, 0)
        anded_add = yield from _to_additive(party, anded, triples, cells)
        link_add = yield from _to_additive(party, link, triples, 2 * cells)
        sums[:1] += link_add.sum(dtype=np.uint32, keepdims=True)
        sums[1:] += anded_add.sum(axis=-1, dtype=np.uint32).ravel()
    opened = (sums + (yield sums)).astype(np.int64)
    return LinkedTotals(int(opened[0]), opened[1:].reshape(1 + k, fields))
