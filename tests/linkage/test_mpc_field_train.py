"""The training run's opened counts must equal the same sums computed on plaintext levels."""

from __future__ import annotations

import numpy as np
import pytest

from linkage.encoding.field_segments import layout_for
from linkage.errors import InvalidRequestError
from linkage.mpc import Plan, run_locally, split_clks
from linkage.mpc.bands import band_thresholds
from linkage.mpc.field_dealer import FieldDealer, FieldMaterial
from linkage.mpc.field_train import (SamplePair, field_totals_party, field_train_party,
                                     merged_edges)
from linkage.mpc.fieldwise import FIELD_THRESHOLDS, LocalDealer, field_columns

from .test_mpc_fieldwise import BITS, _plain_levels, _related

EDGES = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)


def _dice(left, right):
    a = np.unpackbits(left.view(np.uint8), axis=1).astype(np.int64)
    b = np.unpackbits(right.view(np.uint8), axis=1).astype(np.int64)
    return a, b


def _plain_cells(left, right, layout, kept):
    """Plaintext reference: record Dice per pair (exact rational test) and level counts."""
    lefts, rights = np.divmod(np.arange(left.shape[0] * right.shape[0]), right.shape[0])
    a, b = _dice(left, right)
    common = a @ b.T
    sums = a.sum(1)[:, None] + b.sum(1)[None, :]
    dice = (2 * common / np.maximum(sums, 1)).ravel()
    levels = _plain_levels(left, right, layout, lefts, rights)       # P x F
    at_least = np.array([(dice >= t).sum() for t in EDGES])
    codes = [levels >= 0] + [(levels >= 0) & (levels <= k) for k in range(len(FIELD_THRESHOLDS))]
    totals = np.stack([c.sum(0) for c in codes])
    cells = np.stack([np.stack([(c & (dice >= EDGES[j])[:, None]).sum(0) for c in codes])
                      for j in kept]) if len(kept) else np.zeros((0, *totals.shape))
    return at_least, totals, cells


def _sides(agency_pairs):
    layout = layout_for(["a", "b", "c"], list(BITS))
    columns = field_columns(layout.word_starts, layout.word_counts)
    bands = band_thresholds(EDGES, layout.bits)
    sides = ([], [])
    for left, right in agency_pairs:
        plan = Plan(left.shape[0], right.shape[0], layout.bits)
        dealer, later = FieldDealer(plan, columns), LocalDealer()
        l0, l1 = split_clks(left, layout.bits)
        r0, r1 = split_clks(right, layout.bits)
        sides[0].append(SamplePair(l0, r0, FieldMaterial(0, plan, columns, dealer.seeds[0]),
                                   later.for_party(0)))
        sides[1].append(SamplePair(l1, r1, FieldMaterial(1, plan, columns, dealer.seeds[1],
                                                         dealer.corrections()),
                                   later.for_party(1)))
    return layout, bands, sides


def _train(agency_pairs, min_pairs=10):
    layout, bands, sides = _sides(agency_pairs)
    out0, out1, _ = run_locally(field_train_party(0, sides[0], bands, min_pairs),
                                field_train_party(1, sides[1], bands, min_pairs))
    for name in ("at_least", "kept", "cells", "totals"):
        assert np.array_equal(getattr(out0, name), getattr(out1, name))
    return layout, out0


@pytest.mark.parametrize("seed", [0, 1])
def test_counts_equal_plaintext_sums_over_agency_pairs(seed):
    rng = np.random.default_rng(seed)
    agency_pairs = [_related(rng, 9, 40), _related(rng, 7, 33)]
    layout, out = _train(agency_pairs)
    at_least = sum(_plain_cells(l, r, layout, [])[0] for l, r in agency_pairs)
    assert np.array_equal(out.at_least, at_least)
    assert np.array_equal(out.kept, merged_edges(at_least, 10))
    assert out.kept.size >= 2  # the data make several bands, so the cells are really tested
    totals = sum(_plain_cells(l, r, layout, out.kept)[1] for l, r in agency_pairs)
    cells = sum(_plain_cells(l, r, layout, out.kept)[2] for l, r in agency_pairs)
    assert np.array_equal(out.totals, totals)
    assert np.array_equal(out.cells, cells)
    assert out.pairs == sum(l.shape[0] * r.shape[0] for l, r in agency_pairs)
    pairs, levels = out.band_level_counts()
    assert pairs.sum() == out.pairs and (pairs[1:] >= 10).all()
    assert np.array_equal(levels.sum(axis=0).sum(axis=1), totals[0])


def test_sparse_top_bands_merge_down():
    # 5 pairs >= edge 3, 8 more in band 2, 30 in band 1, 100 in band 0
    at_least = np.array([143, 43, 13, 5])
    assert merged_edges(at_least, 10).tolist() == [0, 1, 2]
    assert merged_edges(np.array([12, 3]), 10).tolist() == [0]
    assert merged_edges(np.array([9, 3]), 10).tolist() == []


def test_no_pairs_refused():
    layout = layout_for(["a", "b", "c"], list(BITS))
    with pytest.raises(InvalidRequestError):
        run_locally(field_train_party(0, [], band_thresholds(EDGES, layout.bits)),
                    field_train_party(1, [], band_thresholds(EDGES, layout.bits)))


def test_totals_only_run_opens_the_plaintext_level_sums():
    rng = np.random.default_rng(7)
    samples = [_related(rng, 8, 30), _related(rng, 6, 25)]
    layout, bands, sides = _sides(samples)
    out0, out1, _ = run_locally(field_totals_party(0, sides[0], bands),
                                field_totals_party(1, sides[1], bands))
    assert np.array_equal(out0.totals, out1.totals) and out0.pairs == out1.pairs == 390
    totals = sum(_plain_cells(l, r, layout, [])[1] for l, r in samples)
    assert np.array_equal(out0.totals, totals)
    lefts = [np.divmod(np.arange(l.shape[0] * r.shape[0]), r.shape[0]) for l, r in samples]
    levels = np.concatenate([_plain_levels(l, r, layout, i, j)
                             for (l, r), (i, j) in zip(samples, lefts)])
    expected = np.stack([np.bincount(levels[levels[:, f] >= 0, f], minlength=5)
                         for f in range(levels.shape[1])])
    assert np.array_equal(out0.level_counts(), expected)
    assert (expected[:, 0] > 0).all() and (expected[:, -1] > 0).all()  # levels really vary


def test_totals_run_without_samples_is_refused():
    with pytest.raises(InvalidRequestError):
        next(field_totals_party(0, [], band_thresholds(EDGES, sum(BITS))))


def test_refinement_step_opens_the_plaintext_sums_over_the_rules_links():
    from linkage.mpc.fieldwise import FieldWeights

    rng = np.random.default_rng(11)
    samples = [_related(rng, 8, 30), _related(rng, 6, 25)]
    layout, bands, sides = _sides(samples)
    # exact agreement on a field is strong evidence, disagreement against; missing neutral
    weights = FieldWeights(np.tile([3000, 1500, 500, -500, -2000], (3, 1)), 2500)
    seen = []

    def rule(counts):  # what both servers derive from the opened counts
        seen.append(counts)
        return weights

    out0, out1, _ = run_locally(field_train_party(0, sides[0], bands, 10, rule),
                                field_train_party(1, sides[1], bands, 10, rule))
    assert len(seen) == 2 and all(c.linked is None for c in seen)
    assert out0.linked.pairs == out1.linked.pairs
    assert np.array_equal(out0.linked.totals, out1.linked.totals)
    plain = _train(samples)[1]  # the counts are those of a run without the step
    for name in ("at_least", "kept", "cells", "totals"):
        assert np.array_equal(getattr(out0, name), getattr(plain, name))
    lefts = [np.divmod(np.arange(l.shape[0] * r.shape[0]), r.shape[0]) for l, r in samples]
    levels = np.concatenate([_plain_levels(l, r, layout, i, j)
                             for (l, r), (i, j) in zip(samples, lefts)])
    link = weights.link(levels)
    assert 0 < link.sum() < link.size  # the rule really splits the sample
    assert out0.linked.pairs == int(link.sum())
    linked = levels[link]
    codes = [linked >= 0] + [(linked >= 0) & (linked <= k) for k in range(len(FIELD_THRESHOLDS))]
    assert np.array_equal(out0.linked.totals, np.stack([c.sum(0) for c in codes]))
    assert np.array_equal(out0.linked.level_counts(),
                          np.stack([np.bincount(linked[linked[:, f] >= 0, f], minlength=5)
                                    for f in range(3)]))


def test_refinement_rule_must_fit_the_fields():
    from linkage.mpc.fieldwise import FieldWeights

    rng = np.random.default_rng(12)
    samples = [_related(rng, 5, 20)]
    _, bands, sides = _sides(samples)
    wrong = FieldWeights(np.zeros((2, 5), np.int64), 0)
    with pytest.raises(InvalidRequestError):
        run_locally(field_train_party(0, sides[0], bands, 10, lambda counts: wrong),
                    field_train_party(1, sides[1], bands, 10, lambda counts: wrong))
