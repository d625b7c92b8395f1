"""Field-wise scoring on shares as one run (design C, docs/quality.md): what both servers do.

Why one generator: the service runs it between the two servers as it runs
``banded_run.run_party``, and the bench and the tests run the very same composition in one
process (``run_locally``), so what is measured is what is served. In order, each step opening
sums only, except the last, which opens each pair's link bit and a linked pair's levels:

1. **training** on the cross-agency sample (``field_train_party``): the record-level
   histogram, the level cells of the merged bands, the first model from them
   (``model_from_counts``), and on the same shared bits the refinement step's sums over that
   model's links (``refined_model``);
2. **each agency's own u** (``field_totals_party`` on a sample of its own pairs,
   ``within_model``): for the links inside that agency;
3. **links** (``fieldwise_links_party``): every pair of every block decided on shares by the
   refined rule (cross-agency) or the agency's own rule (within one agency).

Both servers derive the models from the same opened values, so they apply the same rules.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidRequestError
from ..matching.fellegi_sunter import FellegiSunterModel
from ..matching.field_aggregates import (AggregateModel, model_from_counts, refined_model,
                                         within_model)
from .banded_run import sample_rows
from .bands import BandThresholds
from .field_dealer import FieldMaterial
from .field_train import (MIN_CELL_PAIRS, FieldCounts, SamplePair, field_totals_party,
                          field_train_party)
from .fieldwise import FieldLinks, LaterMaterial, field_weights, fieldwise_links_party

__all__ = ["OWN_SAMPLE_INDEX", "FieldRunResult", "FieldRunShares", "LinkShares",
           "field_run_party", "own_sample", "probability_cut"]

#: Where the public draws of the agencies' own samples start (``sample_rows``'s pair index),
#: apart from the agency pairs' 0, 1, ...
OWN_SAMPLE_INDEX = 1_000


def own_sample(rows: int, seed: int, index: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The public sample of agency ``index``'s own pairs: (drawn rows, the other rows), each
    drawn row against every other row (no record against itself); ``None`` when the draw takes
    every row (an agency of ``MIN_SAMPLE_ROWS`` or fewer: its pairs keep the cross rule)."""
    drawn = sample_rows(rows, seed, OWN_SAMPLE_INDEX + index)
    rest = np.setdiff1d(np.arange(rows), drawn)
    return None if rest.size == 0 else (drawn, rest)


@dataclass(frozen=True)
class LinkShares:
    """One server's shares of the pairs whose links are decided on shares: left rows x right
    rows of an agency pair, or (``agency`` set) one agency's records against themselves, of
    which the pairs left < right are kept; the scan material of ``fieldwise.links_plan``."""

    left: np.ndarray
    right: np.ndarray
    material: FieldMaterial
    later: LaterMaterial
    agency: str | None = None


@dataclass(frozen=True)
class FieldRunShares:
    """Everything one server brings to a field-wise run (both servers the same, in order).

    ``samples``: the cross-agency samples (``SamplePair``, e.g. ``sample_rows`` of each agency
    pair); ``own``: per agency, a sample of its own pairs (``own_sample``); ``links``: the
    blocks whose pairs are decided; ``fields``: the layout's field names; ``cross_pairs``: how
    many cross-agency pairs there are in all (the model's prior); ``max_matches``: the
    histogram fit's bound (``banded_run.MATCHES_PER_SAMPLED_RECORD`` x sampled rows);
    ``cutoff``: link pairs whose match probability reaches it (set by the coordinator), or
    ``None``: the refined model's cut with the best expected F1 (``auto``).
    """

    samples: Sequence[SamplePair]
    own: Mapping[str, SamplePair]
    links: Sequence[LinkShares]
    fields: tuple[str, ...]
    cross_pairs: int
    max_matches: float | None = None
    cutoff: float | None = None


@dataclass(frozen=True)
class FieldRunResult:
    """What a field-wise run opened and decided.

    ``links[i]`` are the links of ``FieldRunShares.links[i]`` (rows into its left and right,
    their levels) and ``probabilities[i]`` their match probabilities under the rule that
    linked them; ``own[agency]`` that agency's model (agencies without one use ``refined``);
    ``cut_bits`` the cut every rule used (on the sum of field weights, prior left out);
    ``cross_pairs`` as ``FieldRunShares``.
    """

    counts: FieldCounts
    first: AggregateModel
    refined: AggregateModel
    own: dict[str, FellegiSunterModel]
    links: list[FieldLinks]
    probabilities: list[np.ndarray]
    cut_bits: float
    cross_pairs: int

    def model_for(self, agency: str | None) -> FellegiSunterModel:
        """The model of a block's pairs: the agency's own, else the refined cross model."""
        return _model_for(self.own, self.refined, agency)


def _model_for(own: Mapping[str, FellegiSunterModel], refined: AggregateModel,
               agency: str | None) -> FellegiSunterModel:
    return own.get(agency, refined.model) if agency else refined.model


def field_run_party(party: int, shares: FieldRunShares, bands: BandThresholds,
                    min_pairs: int = MIN_CELL_PAIRS,
                    on_progress: Callable[[str, int, int], None] | None = None
                    ) -> Generator[np.ndarray, np.ndarray, FieldRunResult]:
    """One server's side of a whole field-wise run (see the module docstring);
    ``on_progress(stage, done, total)`` as a run reports it.

    Raises:
        InvalidRequestError: shares or material that do not fit, or a sample whose histogram
            gives no model (too few pairs, or no matches apart from the non-matches).
    """
    if not shares.links:
        raise InvalidRequestError("a field-wise run needs pairs to decide")
    report = on_progress or (lambda stage, done, total: None)
    first: dict[str, AggregateModel] = {}

    def rule(counts: FieldCounts):
        band_pairs, band_levels = counts.band_level_counts()
        fitted = model_from_counts(shares.fields, counts.edges, counts.at_least, counts.kept,
                                   band_pairs, band_levels, all_pairs=shares.cross_pairs,
                                   max_matches=shares.max_matches)
        first["fitted"] = fitted
        return field_weights(fitted.model.weights, fitted.cut_bits)

    report("training on shares (sums over a sample)", 0, 1)
    counts = yield from field_train_party(party, shares.samples, bands, min_pairs, rule)
    report("training on shares (sums over a sample)", 1, 1)
    _, band_levels = counts.band_level_counts()
    refined = refined_model(first["fitted"], counts.linked.pairs, counts.linked.level_counts(),
                            band_levels.sum(axis=0), counts.pairs, all_pairs=shares.cross_pairs)
    own = {}
    for agency, sample in shares.own.items():
        totals = yield from field_totals_party(party, [sample], bands)
        own[agency] = within_model(refined, totals.level_counts())
    cut = refined.cut_bits if shares.cutoff is None else probability_cut(refined.model,
                                                                         shares.cutoff)
    rules = {None: field_weights(refined.model.weights, cut)}
    rules.update({agency: field_weights(model.weights, cut) for agency, model in own.items()})
    links, probabilities = [], []
    for index, block in enumerate(shares.links):
        report("deciding links on shares", index, len(shares.links))
        found = yield from fieldwise_links_party(
            party, block.left, block.right, rules.get(block.agency, rules[None]),
            block.material, block.later)
        if block.agency is not None:
            keep = found.left < found.right
            found = FieldLinks(found.left[keep], found.right[keep], found.levels[keep])
        links.append(found)
        probabilities.append(_model_for(own, refined, block.agency)
                             .match_probability(found.levels))
    report("deciding links on shares", len(shares.links), len(shares.links))
    return FieldRunResult(counts, first["fitted"], refined, own, links, probabilities, cut,
                          shares.cross_pairs)


def probability_cut(model: FellegiSunterModel, probability: float) -> float:
    """The cut on the sum of field weights (prior left out) at which a pair's match
    probability reaches ``probability``.

    Raises:
        InvalidRequestError: not strictly between 0 and 1.
    """
    if not 0.0 < probability < 1.0:
        raise InvalidRequestError("a field-wise threshold is a match probability between 0 "
                                  f"and 1 (exclusive), not {probability}")
    return float(np.log2(probability / (1.0 - probability)) - model.prior_weight())
