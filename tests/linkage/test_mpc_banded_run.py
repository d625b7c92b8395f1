"""The service's banded run (``linkage.mpc.banded_run``): several agency pairs, one threshold,
and each hit's band, equal to the plaintext kernel's on the same CLKs."""

from __future__ import annotations

import numpy as np
import pytest

from linkage.errors import InvalidRequestError
from linkage.matching.kernel import dice_candidates_native
from linkage.mpc import (BandDealer, BandMaterial, Dealer, HitDealer, PartyMaterial, Plan,
                         band_plan, hit_material, run_locally, split_clks)
from linkage.mpc.banded_run import SERVICE_EDGES, PairShares, hit_edges, run_party, sample_rows
from tests.linkage.test_mpc_bands import _related


def _banded(sides, threshold, choose):
    """Both servers' run_party over agency pairs ``sides`` [(left, right)], in one process."""
    bits = sides[0][0].shape[1] * 64
    shares = {0: [], 1: []}
    hit_dealers: dict[int, HitDealer] = {}
    for index, (left, right) in enumerate(sides):
        plan = Plan(left.shape[0], right.shape[0], bits)
        dealer = Dealer(plan)
        l0, l1 = split_clks(left, bits)
        r0, r1 = split_clks(right, bits)
        rows = sample = None
        if threshold is None:
            rows = sample_rows(left.shape[0], 7, index)
            sample = band_plan(rows.size, right.shape[0], bits, len(SERVICE_EDGES))
            band_dealer = BandDealer(sample, len(SERVICE_EDGES))
        for party, (lp, rp) in ((0, (l0, r0)), (1, (l1, r1))):
            corrections = dealer.corrections() if party else None
            material = None
            if threshold is None:
                material = BandMaterial(party, sample, len(SERVICE_EDGES),
                                        band_dealer.seeds[party],
                                        band_dealer.corrections() if party else None)
            shares[party].append(PairShares(lp, rp, PartyMaterial(party, plan,
                                                                  dealer.seeds[party],
                                                                  corrections), rows, material))

    def hits_for(party):
        def make(index, count, thresholds):
            dealer = hit_dealers.setdefault(index, HitDealer(count, thresholds))
            return hit_material(party, count, thresholds, dealer.seeds[party],
                                dealer.correction() if party else None)
        return make

    out0, out1, _ = run_locally(
        run_party(0, shares[0], bits, threshold, choose, hits_for(0)),
        run_party(1, shares[1], bits, threshold, None, hits_for(1)))
    assert out0.link == out1.link
    for a, b in zip(out0.hits, out1.hits):
        assert np.array_equal(a.left, b.left) and np.array_equal(a.band, b.band)
    return out0


def _check_hits(out, sides):
    for found, (left, right) in zip(out.hits, sides):
        pairs = dice_candidates_native(left, right, out.threshold)
        order = np.lexsort((pairs.right, pairs.left))
        assert np.array_equal(found.left, pairs.left[order])
        assert np.array_equal(found.right, pairs.right[order])
        expected = np.searchsorted(out.edges, pairs.score[order], side="right") - 1
        assert np.array_equal(found.band, expected)
        assert len(found) > 5


def test_numeric_run_opens_each_hits_band_on_the_grid_above_the_threshold():
    rng = np.random.default_rng(3)
    sides = [_related(rng, 40, 50, 256, noise=rng.uniform(0.0, 0.25, 50)) for _ in range(2)]
    out = _banded(sides, 0.7, None)
    assert out.threshold == 0.7 and out.link == 0 and out.histogram_counts is None
    assert np.allclose(out.edges, np.round(np.arange(70, 100) / 100, 2))
    _check_hits(out, sides)
    assert len(np.unique(np.concatenate([h.band for h in out.hits]))) > 3  # bands separate


def test_auto_run_chooses_from_the_summed_sample_histogram():
    rng = np.random.default_rng(5)
    sides = [_related(rng, 120, 150, 256, noise=rng.uniform(0.0, 0.3, 150)) for _ in range(2)]
    seen = {}

    def choose(edges, counts):
        seen["counts"] = counts
        return 0.72

    out = _banded(sides, None, choose)
    assert out.threshold == 0.72 and out.edges[out.link] == 0.72
    expected = np.zeros(len(SERVICE_EDGES), np.int64)
    for index, (left, right) in enumerate(sides):
        rows = sample_rows(left.shape[0], 7, index)
        scores = dice_candidates_native(left[rows], right, SERVICE_EDGES[0]).score
        expected += np.bincount(np.searchsorted(SERVICE_EDGES, scores, side="right") - 1,
                                minlength=len(SERVICE_EDGES))
    assert np.array_equal(seen["counts"], expected) and expected.sum() > 0
    assert np.array_equal(out.histogram_counts, expected)
    _check_hits(out, sides)


def test_a_rule_that_chooses_no_edge_is_refused():
    rng = np.random.default_rng(1)
    sides = [_related(rng, 20, 20, 128)]
    with pytest.raises(InvalidRequestError, match="no band edge"):
        _banded(sides, None, lambda edges, counts: 0.731)


def test_hit_edges_add_the_grid_above_the_link_only():
    edges = hit_edges(SERVICE_EDGES, SERVICE_EDGES.index(0.8))
    assert list(edges[:10]) == list(SERVICE_EDGES[:10])
    assert np.allclose(edges[9:], np.arange(80, 100) / 100)
    assert list(hit_edges((0.777,), 0)[:3]) == [0.777, 0.78, 0.79]
    rows = sample_rows(1000, 3, 1)
    assert rows.size == 100 and np.array_equal(rows, sample_rows(1000, 3, 1))
    assert not np.array_equal(rows, sample_rows(1000, 3, 2))
