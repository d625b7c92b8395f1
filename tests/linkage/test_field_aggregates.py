"""The aggregate M-step: with pure bands it is the classes' own level frequencies."""

from __future__ import annotations

import numpy as np
import pytest

from linkage.errors import InvalidRequestError
from linkage.matching.field_aggregates import m_step


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
