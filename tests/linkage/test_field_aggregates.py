"""The aggregate M-step: with pure bands it is the classes' own level frequencies; an
agency's own pairs give its u."""

from __future__ import annotations

import numpy as np
import pytest

from linkage.errors import InvalidRequestError
from linkage.matching.fellegi_sunter import FellegiSunterModel
from linkage.matching.field_aggregates import (AggregateModel, m_step, refined_model,
                                              within_model)


def test_pure_bands_give_each_class_its_level_shares():
    rng = np.random.default_rng(3)
    non = rng.integers(0, 500, (2, 5))    # band 0: non-matches only (p 0)
    match = rng.integers(0, 50, (2, 5))   # band 1: matches only (p 1)
    m, u = m_step(np.array([0.0, 1.0]), np.stack([non, match]))
    expected_m = (match + 0.2) / (match + 0.2).sum(axis=1, keepdims=True)
    expected_u = (non + 0.2) / (non + 0.2).sum(axis=1, keepdims=True)
    assert np.allclose(m, expected_m) and np.allclose(u, expected_u)


def test_mixed_band_splits_by_its_probability():
    levels = np.array([[[100, 0, 0, 0, 0]], [[0, 0, 0, 0, 100]]], np.float64)
    m, u = m_step(np.array([0.5, 0.0]), levels)
    assert m[0, 0] == pytest.approx(50.2 / 51) and u[0, 0] == pytest.approx(50.2 / 151)


def test_shapes_are_checked():
    with pytest.raises(InvalidRequestError):
        m_step(np.array([0.5]), np.zeros((2, 1, 5)))


def _fitted(m, u) -> AggregateModel:
    model = FellegiSunterModel(("name", "address"), m, u, 1e-3)
    return AggregateModel(model, np.zeros(2), np.ones(2), 10.0, 0.9, 5.0)


def test_an_agencys_own_pairs_give_its_u_and_keep_the_cross_m():
    m = np.array([[0.9, 0.04, 0.03, 0.02, 0.01], [0.8, 0.1, 0.05, 0.03, 0.02]])
    u = np.array([[0.001, 0.009, 0.04, 0.15, 0.8], [0.001, 0.009, 0.04, 0.15, 0.8]])
    fitted = _fitted(m, u)
    # inside this agency a third of the pairs share the address exactly (one building)
    own = np.array([[30, 270, 1200, 4500, 24000], [10000, 100, 900, 2000, 17000]])
    model = within_model(fitted, own)
    assert np.array_equal(model.m, m) and model.match_share == fitted.model.match_share
    assert np.allclose(model.u, (own + 0.2) / (own + 0.2).sum(axis=1, keepdims=True))
    # an exact address is near-proof across agencies, weak evidence inside this one; the
    # name, as rare inside the agency as across, keeps about its weight
    cross, inside = fitted.model.weights, model.weights
    assert cross[1, 0] > 9 and inside[1, 0] < 1.5
    assert abs(inside[0, 0] - cross[0, 0]) < 1.0


def test_within_counts_must_fit_the_model():
    fitted = _fitted(np.full((2, 5), 0.2), np.full((2, 5), 0.2))
    with pytest.raises(InvalidRequestError):
        within_model(fitted, np.ones((3, 5)))


def test_refinement_learns_m_from_the_links_and_u_from_the_rest():
    fitted = _fitted(np.full((2, 5), 0.2), np.full((2, 5), 0.2))
    linked = np.array([[80, 10, 5, 3, 2], [60, 20, 10, 5, 5]])
    sample = linked + np.array([[1, 9, 90, 900, 9000], [5, 15, 80, 900, 9000]])
    refined = refined_model(fitted, 100, linked, sample, 10_100, all_pairs=1e6)
    assert np.allclose(refined.model.m, (linked + 0.2) / (linked + 0.2).sum(1, keepdims=True))
    rest = sample - linked
    assert np.allclose(refined.model.u, (rest + 0.2) / (rest + 0.2).sum(1, keepdims=True))
    assert refined.model.match_share == pytest.approx(100 / 10_100)
    # the cut is the new model's own: exact agreement on both fields links, none does not
    weights = refined.model.weights
    assert weights[:, 0].sum() > refined.cut_bits > weights[:, 4].sum()


@pytest.mark.parametrize("linked_pairs, linked_scale", [(0, 1), (10_100, 1), (100, 2)])
def test_refinement_needs_two_classes_and_links_inside_the_sample(linked_pairs, linked_scale):
    fitted = _fitted(np.full((2, 5), 0.2), np.full((2, 5), 0.2))
    sample = np.full((2, 5), 100)
    with pytest.raises(InvalidRequestError):
        refined_model(fitted, linked_pairs, np.full((2, 5), 60) * linked_scale, sample, 10_100,
                      all_pairs=1e6)
