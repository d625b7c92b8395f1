"""A whole field-wise run on shares equals the same pipeline computed on plaintext levels."""

from __future__ import annotations

import numpy as np
import pytest

from linkage.encoding.field_segments import layout_for
from linkage.errors import InvalidRequestError
from linkage.matching.field_aggregates import model_from_counts, refined_model, within_model
from linkage.mpc import Plan, run_locally, split_clks
from linkage.mpc.banded_run import MATCHES_PER_SAMPLED_RECORD, SERVICE_EDGES, sample_rows
from linkage.mpc.bands import band_thresholds
from linkage.mpc.field_dealer import FieldDealer, FieldMaterial
from linkage.mpc.field_run import FieldRunShares, LinkShares, field_run_party, own_sample
from linkage.mpc.field_train import FieldCounts, SamplePair, merged_edges
from linkage.mpc.fieldwise import (FIELD_THRESHOLDS, LocalDealer, field_columns, field_weights,
                                   links_plan)

from .test_mpc_fieldwise import BITS, _pack, _plain_levels, _records

SEED = 5


def _agencies(rng):
    """Three agencies holding noisy copies of overlapping people; agency c (over
    ``MIN_SAMPLE_ROWS``, so it has its own sample) also holds some people twice."""
    people = _records(rng, 200)
    held = {"a": np.arange(0, 40), "b": np.arange(20, 60),
            "c": np.concatenate([np.arange(10, 130), np.arange(100, 115)])}
    out, who = {}, {}
    for name, rows in held.items():
        noise = rng.uniform(0, 0.08, rows.size)[:, None]
        copies = people[rows] ^ (rng.random((rows.size, people.shape[1])) < noise)
        copies[np.flatnonzero(~copies.any(axis=1)), 0] = True
        out[name], who[name] = _pack(copies), rows
    return out, who


def _both(left, right, plan, columns, later):
    dealer = FieldDealer(plan, columns)
    l0, l1 = split_clks(left, plan.clk_bits)
    r0, r1 = split_clks(right, plan.clk_bits)
    return ((l0, r0, FieldMaterial(0, plan, columns, dealer.seeds[0]), later.for_party(0)),
            (l1, r1, FieldMaterial(1, plan, columns, dealer.seeds[1], dealer.corrections()),
             later.for_party(1)))


def _shares(clks, layout):
    """Both servers' ``FieldRunShares`` as the service plans them, and the plaintext blocks."""
    columns = field_columns(layout.word_starts, layout.word_counts)
    bits = layout.bits
    names = sorted(clks)
    later = LocalDealer()
    samples, own, links = ([], []), ({}, {}), ([], [])
    plain = {"samples": [], "own": {}, "links": []}
    cross, sampled = 0, 0
    for index, (left, right) in enumerate((l, r) for i, l in enumerate(names)
                                          for r in names[i + 1:]):
        rows = sample_rows(clks[left].shape[0], SEED, index)
        sampled += rows.size
        cross += clks[left].shape[0] * clks[right].shape[0]
        pair = (clks[left][rows], clks[right])
        plain["samples"].append(pair)
        for party, side in enumerate(_both(*pair, Plan(rows.size, pair[1].shape[0], bits),
                                           columns, later)):
            samples[party].append(SamplePair(*side))
        for party, side in enumerate(_both(clks[left], clks[right], links_plan(
                clks[left].shape[0], clks[right].shape[0], bits), columns, later)):
            links[party].append(LinkShares(*side))
        plain["links"].append((clks[left], clks[right], None))
    for index, name in enumerate(names):
        records = clks[name]
        drawn = own_sample(records.shape[0], SEED, index)
        if drawn is not None:
            pair = (records[drawn[0]], records[drawn[1]])
            plain["own"][name] = pair
            for party, side in enumerate(_both(*pair, Plan(*(p.shape[0] for p in pair), bits),
                                               columns, later)):
                own[party][name] = SamplePair(*side)
        for party, side in enumerate(_both(records, records, links_plan(
                records.shape[0], records.shape[0], bits), columns, later)):
            links[party].append(LinkShares(*side, agency=name))
        plain["links"].append((records, records, name))
    shares = [FieldRunShares(samples[p], own[p], links[p], tuple(layout.fields), cross,
                             MATCHES_PER_SAMPLED_RECORD * sampled) for p in (0, 1)]
    return shares, plain


def _every_pair(left, right, layout):
    lefts, rights = np.divmod(np.arange(left.shape[0] * right.shape[0]), right.shape[0])
    return lefts, rights, _plain_levels(left, right, layout, lefts, rights)


def _cumulative(levels, at):
    """(present, >= each FIELD_THRESHOLDS) x fields counts of the pairs where ``at``."""
    codes = [levels >= 0] + [(levels >= 0) & (levels <= k)
                             for k in range(len(FIELD_THRESHOLDS))]
    return np.stack([(c & at[:, None]).sum(0) for c in codes])


def _level_counts(levels):
    return np.stack([np.bincount(levels[levels[:, f] >= 0, f], minlength=5)
                     for f in range(levels.shape[1])])


def _plain_models(plain, layout, bands, shares):
    """The first, refined and own models computed from plaintext levels and record Dice."""
    edges = np.asarray(bands.edges, np.float64)
    levels, dice = [], []
    for left, right in plain["samples"]:
        lefts, rights, found = _every_pair(left, right, layout)
        a = np.unpackbits(left.view(np.uint8), axis=1).astype(np.int64)
        b = np.unpackbits(right.view(np.uint8), axis=1).astype(np.int64)
        common = (a @ b.T).ravel()
        sums = (a.sum(1)[:, None] + b.sum(1)[None, :]).ravel()
        levels.append(found)
        dice.append((common, sums))
    levels = np.concatenate(levels)
    common = np.concatenate([c for c, _ in dice])
    sums = np.concatenate([s for _, s in dice])
    # Dice >= t exactly as the protocol decides it: 2 q common >= p sums for t = p / q
    band = np.stack([2 * t.denominator * common >= t.numerator * sums for t in bands.thresholds])
    at_least = band.sum(axis=1)
    kept = merged_edges(at_least)
    everyone = np.ones(levels.shape[0], bool)
    counts = FieldCounts(edges, levels.shape[0], at_least, kept,
                         np.stack([_cumulative(levels, band[j]) for j in kept]),
                         _cumulative(levels, everyone))
    band_pairs, band_levels = counts.band_level_counts()
    first = model_from_counts(shares.fields, edges, at_least, kept, band_pairs, band_levels,
                              all_pairs=shares.cross_pairs, max_matches=shares.max_matches)
    link = field_weights(first.model.weights, first.cut_bits).link(levels)
    refined = refined_model(first, int(link.sum()), _level_counts(levels[link]),
                            band_levels.sum(axis=0), levels.shape[0],
                            all_pairs=shares.cross_pairs)
    own = {name: within_model(refined, _level_counts(_every_pair(*pair, layout)[2]))
           for name, pair in plain["own"].items()}
    return first, refined, own


def test_a_whole_run_equals_the_plaintext_pipeline():
    rng = np.random.default_rng(21)
    clks, who = _agencies(rng)
    layout = layout_for(["a", "b", "c"], list(BITS))
    bands = band_thresholds(SERVICE_EDGES, layout.bits)
    shares, plain = _shares(clks, layout)
    out0, out1, _ = run_locally(field_run_party(0, shares[0], bands),
                                field_run_party(1, shares[1], bands))
    assert out0.refined.cut_bits == out1.refined.cut_bits
    assert sorted(out0.own) == sorted(out1.own) == ["c"]  # only c is large enough to sample

    first, refined, own = _plain_models(plain, layout, bands, shares[0])
    assert np.allclose(out0.first.model.weights, first.model.weights)
    assert out0.first.cut_bits == pytest.approx(first.cut_bits)
    assert np.allclose(out0.refined.model.weights, refined.model.weights)
    assert out0.refined.cut_bits == pytest.approx(refined.cut_bits)
    assert np.allclose(out0.own["c"].weights, own["c"].weights)
    assert not np.allclose(own["c"].weights, refined.model.weights)  # its own u matters

    for (left, right, agency), links0, links1, probability in zip(
            plain["links"], out0.links, out1.links, out0.probabilities):
        for name in ("left", "right", "levels"):
            assert np.array_equal(getattr(links0, name), getattr(links1, name))
        model = own.get(agency, refined.model) if agency else refined.model
        rule = field_weights(model.weights, refined.cut_bits)
        lefts, rights, levels = _every_pair(left, right, layout)
        expected = rule.link(levels) & ((lefts < rights) if agency else True)
        assert np.array_equal(links0.left, lefts[expected])
        assert np.array_equal(links0.right, rights[expected])
        assert np.array_equal(links0.levels, levels[expected])
        assert np.allclose(probability, model.match_probability(levels[expected]))
    found_true = total_true = linked = 0
    # the rules find the people the agencies share, and those agency c holds twice
    names = sorted(clks)
    blocks = [(l, r) for i, l in enumerate(names) for r in names[i + 1:]] + \
        [(n, n) for n in names]
    for (left_name, right_name), links in zip(blocks, out0.links):
        truth = who[left_name][:, None] == who[right_name][None, :]
        if left_name == right_name:
            truth = np.triu(truth, 1)
        total_true += int(truth.sum())
        found_true += int(truth[links.left, links.right].sum())
        linked += len(links)
    # random segments with up to 8% of their bits flipped and a fifth of the fields empty:
    # measured recall 0.90 (94 of 105), precision 1.0
    assert total_true > 50 and found_true >= 0.85 * total_true and found_true >= 0.9 * linked


def test_a_run_without_pairs_to_decide_is_refused():
    rng = np.random.default_rng(3)
    clks, _ = _agencies(rng)
    layout = layout_for(["a", "b", "c"], list(BITS))
    shares, _ = _shares(clks, layout)
    empty = FieldRunShares(shares[0].samples, shares[0].own, [], shares[0].fields,
                           shares[0].cross_pairs)
    with pytest.raises(InvalidRequestError):
        next(field_run_party(0, empty, band_thresholds(SERVICE_EDGES, layout.bits)))
