"""A second training step for field-wise scoring on shares: m and u from the model's own links.

Why: design C's first model comes from one M-step with record-level band responsibilities
(``field_aggregates``), which blurs m where a field's agreement is common among non-matches
(a date of birth's segment is similar for most pairs). Classification EM's next step needs
only sums: on the training's sample, still held as shared bits by ``field_train_party``
after its counts are opened, each pair's link bit under the first model is decided on shares
and stays shared; it is ANDed with each field's presence and level bits, and only the sums
over the sample are opened (how many sampled pairs link, and per field and level how many of
those): ``(1 + K) x F + 1`` values over the sample's links, and no pair's bit.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from ..errors import InvalidRequestError
from .fieldwise import (FIELD_THRESHOLDS, FieldWeights, LaterMaterial, _and_bits,
                        _to_additive, rule_margin)
from .protocol import _non_negative

__all__ = ["linked_sums"]


def linked_sums(party: int, counted: np.ndarray, later: LaterMaterial, weights: FieldWeights
                ) -> Generator[np.ndarray, np.ndarray, np.ndarray]:
    """For one sample's XOR-shared ``counted`` bits ((1 + K) x F x pairs: presence, then
    presence AND level bit), this server's additive shares of the number of pairs
    ``weights`` links and of each bit summed over those pairs (1 + (1 + K) x F values).

    Raises:
        InvalidRequestError: a weight table that does not fit the fields.
    """
    k, fields, count = counted.shape[0] - 1, counted.shape[1], counted.shape[2]
    if k != len(FIELD_THRESHOLDS) or weights.table.shape != (fields, k + 1):
        raise InvalidRequestError(f"weight table {weights.table.shape} does not fit "
                                  f"{fields} fields")
    cells = counted.size
    triples = later.bits(-(-cells // 64), 2 * cells + count)
    added = yield from _to_additive(party, counted, triples, 0)
    margin = rule_margin(party, weights, added[0], added[1:])
    link = (yield from _non_negative(party, margin[None], later.comparisons(count, 1, 32)))[0]
    anded = yield from _and_bits(party, np.broadcast_to(link, counted.shape).copy(), counted,
                                 triples, 0)
    anded_add = yield from _to_additive(party, anded, triples, cells)
    link_add = yield from _to_additive(party, link, triples, 2 * cells)
    return np.concatenate([link_add.sum(dtype=np.uint32, keepdims=True),
                           anded_add.sum(axis=-1, dtype=np.uint32).ravel()])
