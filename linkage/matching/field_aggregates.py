"""A field-wise Fellegi-Sunter model from aggregate counts only (two-server "design C").

Why: on shares the servers may open sums over the public sample but no pair's levels
(docs/privacy.md). The record-level banded score model (``threshold``, as ``auto`` fits it
to the sample's histogram) gives each Dice band's match probability ``p_b``; one M-step with
those as every pair's responsibility turns the per-band level counts into m and u:

    m[f, l] = sum_b p_b n[b, f, l] / sum_b p_b n[b, f, present]
    u[f, l] = sum_b (1 - p_b) n[b, f, l] / sum_b (1 - p_b) n[b, f, present]

(smoothed as ``fellegi_sunter``'s EM). Missing fields carry no weight; the cut is
``model_cut``'s best expected F1. ``refined_model`` then takes one classification-EM step on
sums over that model's links in the sample (``mpc.field_refine``), and ``within_model`` gives
each agency's own pairs their u (``mpc.field_train.field_totals_party``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidRequestError
from .fellegi_sunter import FellegiSunterModel, model_cut
from .threshold import banded_fit, band_match_shares

__all__ = ["AggregateModel", "band_probabilities", "m_step", "model_from_counts",
           "refined_model", "within_model"]

_SMOOTHING = 1.0  # pseudo-count over a field's levels, as fellegi_sunter's


def band_probabilities(edges: np.ndarray, counts: np.ndarray, max_matches: float | None
                       ) -> np.ndarray:
    """P(match | record Dice band) per band of the histogram, as ``auto`` fits it.

    Bands below the fit's start get 0 (they are not modelled: the non-match tail).
    Raises:
        InvalidRequestError: the histogram does not separate into matches and non-matches.
    """
    edges = np.asarray(edges, np.float64)
    counts = np.asarray(counts)
    model, start = banded_fit(edges, counts, max_matches)
    if model is None:
        raise InvalidRequestError("the sample's histogram gives no score model: field-wise "
                                  "training on aggregates needs one")
    out = np.zeros(edges.size)
    out[start:] = band_match_shares(model, edges[start:])
    return out


def m_step(band_p: np.ndarray, band_levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """m and u (fields x levels) with each band's match probability as every pair's
    responsibility; smoothed so that no m or u is zero."""
    band_p = np.asarray(band_p, np.float64)
    band_levels = np.asarray(band_levels, np.float64)
    if band_levels.ndim != 3 or band_levels.shape[0] != band_p.size:
        raise InvalidRequestError("band level counts must be bands x fields x levels")
    match_counts = (band_p[:, None, None] * band_levels).sum(axis=0)
    other_counts = ((1 - band_p)[:, None, None] * band_levels).sum(axis=0)
    return _normalise(match_counts), _normalise(other_counts)


def _normalise(counts: np.ndarray) -> np.ndarray:
    """Fields x levels counts as each field's level shares, smoothed as the EM's."""
    table = np.asarray(counts, np.float64) + _SMOOTHING / counts.shape[1]
    return table / table.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class AggregateModel:
    """The model, the per-merged-band match probabilities it used, and its cut."""

    model: FellegiSunterModel
    band_p: np.ndarray
    present_share: np.ndarray
    cut_bits: float
    expected_f1: float
    sample_matches: float


def model_from_counts(fields, edges, at_least, kept, band_pairs, band_levels, *,
                      all_pairs: float, max_matches: float | None = None) -> AggregateModel:
    """m, u, weights and cut from opened aggregates (see the module docstring).

    ``at_least``: the histogram (pairs at or above each edge, over the sample); ``kept``:
    the edges the cells were cut at; ``band_pairs`` and ``band_levels`` (merged bands x fields
    x 5 levels) from ``FieldCounts.band_level_counts`` (first band: below the lowest kept edge).
    """
    edges = np.asarray(edges, np.float64)
    at_least = np.asarray(at_least, np.int64)
    counts = at_least - np.append(at_least[1:], 0)
    p = band_probabilities(edges, counts, max_matches)
    # Merged band j > 0 holds the original bands kept[j-1] .. kept[j]-1; band 0 the pairs
    # below edges[kept[0]] (those below edges[0] have p 0).
    kept = np.asarray(kept, np.int64)
    bounds = np.r_[0, kept, edges.size]
    merged = np.zeros(kept.size + 1)
    matches = 0.0
    for j in range(kept.size + 1):
        lo, hi = bounds[j], bounds[j + 1]
        expected = float((counts[lo:hi] * p[lo:hi]).sum())
        matches += expected
        merged[j] = expected / max(float(band_pairs[j]), 1.0)
    band_levels = np.asarray(band_levels, np.float64)
    if band_levels.shape[0] != merged.size:
        raise InvalidRequestError("band level counts do not fit the kept edges")
    m, u = m_step(merged, band_levels)
    total_pairs = float(np.sum(band_pairs))
    model = FellegiSunterModel(tuple(fields), m, u, matches / max(total_pairs, 1.0))
    present = band_levels.sum(axis=(0, 2)) / max(total_pairs, 1.0)
    cut, expected_f1 = model_cut(model, present, all_pairs)
    return AggregateModel(model, merged, present, cut, expected_f1, matches)


def refined_model(fitted: AggregateModel, linked_pairs: int, linked_levels: np.ndarray,
                  sample_levels: np.ndarray, sample_pairs: int, *, all_pairs: float
                  ) -> AggregateModel:
    """One classification-EM step: m from the sample's pairs the first model links, u from
    the rest, the match share their share of the sample; cut again by ``model_cut``.

    ``linked_levels`` and ``sample_levels`` (fields x levels, missing left out) over the
    linked sampled pairs and over the whole sample (``field_refine``, ``field_train``).
    Measured (docs/quality.md): the first step's links are far purer than its band
    responsibilities, and one more step loses recall, so one is taken.

    Raises:
        InvalidRequestError: counts that do not fit the model, or a rule that links none or
            all of the sample (no classes to learn from).
    """
    linked = np.asarray(linked_levels, np.float64)
    sample = np.asarray(sample_levels, np.float64)
    if linked.shape != fitted.model.m.shape or sample.shape != linked.shape \
            or (linked > sample).any():
        raise InvalidRequestError("linked and sample level counts must be fields x levels, "
                                  "the linked within the sample")
    if not 0 < linked_pairs < sample_pairs:
        raise InvalidRequestError("the first model links none or all of the sample: "
                                  "nothing to refine on")
    model = FellegiSunterModel(fitted.model.fields, _normalise(linked),
                               _normalise(sample - linked), linked_pairs / sample_pairs)
    cut, expected_f1 = model_cut(model, fitted.present_share, all_pairs)
    return AggregateModel(model, fitted.band_p, fitted.present_share, cut, expected_f1,
                          model.match_share * all_pairs)


def within_model(fitted: AggregateModel, level_counts: np.ndarray) -> FellegiSunterModel:
    """The model for pairs inside one agency: the cross-agency m, u from the agency's own pairs.

    Why: u is how often two different people agree on a field, and inside one agency that
    is not what it is across agencies: relatives share an address and a family name, a
    company's staff its address and phone, so an agreement the cross model weighs as strong
    evidence is common there, and the cross weights link such pairs (design C's lost
    within-agency precision). An agency's own pairs are almost all non-matches (a few
    duplicates among tens of thousands of pairs), so their level counts (fields x 5, missing
    left out; opened as sums over a sample, ``field_train``) are its u. The prior and the cut
    stay the cross model's.
    """
    counts = np.asarray(level_counts, np.float64)
    if counts.shape != fitted.model.u.shape:
        raise InvalidRequestError("within-agency level counts must be fields x levels, as u")
    model = fitted.model
    return FellegiSunterModel(model.fields, model.m, _normalise(counts), model.match_share)
