"""Given and family names compared crosswise on shares (swapped names), exactly as the
plaintext rule ``fieldwise.plain_levels`` decides it, in the links and in the training."""

from __future__ import annotations

import numpy as np
import pytest

from linkage.encoding.field_segments import layout_for
from linkage.errors import InvalidRequestError
from linkage.matching.candidates import CandidatePairs
from linkage.mpc import Plan, rational_threshold, run_locally, split_clks
from linkage.mpc.bands import band_thresholds
from linkage.mpc.banded_run import SERVICE_EDGES
from linkage.mpc.field_dealer import FieldDealer, FieldMaterial
from linkage.mpc.field_train import SamplePair, field_totals_party
from linkage.mpc.fieldwise import (FIELD_THRESHOLDS, LocalDealer, field_columns, field_weights,
                                   fieldwise_links_party, fieldwise_party, links_material,
                                   name_swap_products, plain_levels)

from .test_mpc_fieldwise import recording_later

FIELDS = ["given_name", "family_name", "date_of_birth"]
BITS = (128, 128, 64)


def _pack(bits):
    return np.packbits(bits.astype(bool), axis=1, bitorder="little").view("<u8").astype(np.uint64)


def _people(rng, n, rows):
    """``rows`` noisy copies of ``n`` people: a quarter with given and family name swapped,
    a tenth with one name left empty. Returns (left CLKs, right CLKs, right's person)."""
    people = np.concatenate([rng.random((n, b)) < 0.25 for b in BITS], axis=1)
    who = rng.integers(0, n, rows)
    copies = people[who] ^ (rng.random((rows, sum(BITS))) < rng.uniform(0, 0.1, rows)[:, None])
    swapped = rng.random(rows) < 0.25
    given, family = copies[:, :128].copy(), copies[:, 128:256].copy()
    copies[swapped, :128], copies[swapped, 128:256] = family[swapped], given[swapped]
    emptied = rng.random(rows) < 0.1
    copies[emptied, :128] = False
    return _pack(people), _pack(copies), who


def _sides(left, right, plan, crossed):
    layout = layout_for(FIELDS, list(BITS))
    columns = field_columns(layout.word_starts, layout.word_counts)
    dealer = FieldDealer(plan, columns, crossed=crossed)
    l0, l1 = split_clks(left, plan.clk_bits)
    r0, r1 = split_clks(right, plan.clk_bits)
    return (layout, (l0, r0, FieldMaterial(0, plan, columns, dealer.seeds[0], crossed=crossed)),
            (l1, r1, FieldMaterial(1, plan, columns, dealer.seeds[1], dealer.corrections(),
                                   crossed=crossed)))


def _every(left, right, layout, crossed):
    lefts, rights = np.divmod(np.arange(left.shape[0] * right.shape[0]), right.shape[0])
    both = np.concatenate([left, right])
    pairs = CandidatePairs(lefts, rights + left.shape[0], np.zeros(lefts.size))
    return plain_levels(both, layout, pairs, crossed)


def test_the_name_fields_give_the_crossed_products():
    assert name_swap_products(FIELDS) == ((0, 1), (1, 0))
    assert name_swap_products(["date_of_birth", "family_name", "x", "given_name"]) == \
        ((3, 1), (1, 3))
    assert name_swap_products(["given_name", "date_of_birth"]) == ()


def test_plaintext_rule_swaps_the_swapped_copies():
    rng = np.random.default_rng(1)
    left, right, who = _people(rng, 20, 60)
    layout = layout_for(FIELDS, list(BITS))
    crossed = name_swap_products(FIELDS)
    straight = _every(left, right, layout, ()).reshape(20, 60, 3)
    swapped = _every(left, right, layout, crossed).reshape(20, 60, 3)
    same = straight[who, np.arange(60)], swapped[who, np.arange(60)]
    # with the rule, every true pair's names agree at 0.5 or better where both are present;
    # compared straight, the swapped copies' names do not
    present = same[1][:, :2] >= 0
    assert (same[1][:, :2][present] <= 3).all()
    assert ((same[0][:, :2] > 3) & present).any(axis=1).sum() >= 10
    assert np.array_equal(straight[..., 2], swapped[..., 2])  # other fields untouched


@pytest.mark.parametrize("seed", [0, 1])
def test_links_with_swapped_names_follow_the_plaintext_rule(seed):
    rng = np.random.default_rng(seed)
    left, right, _ = _people(rng, 20, 37)
    crossed = name_swap_products(FIELDS)
    plan = Plan(20, 37, sum(BITS), block_rows=7)
    layout, side0, side1 = _sides(left, right, plan, crossed)
    every = _every(left, right, layout, crossed)
    assert not np.array_equal(every, _every(left, right, layout, ()))
    table = np.array([[6.0, 3.0, 0.5, -2.0, -4.0], [6.0, 3.0, 0.5, -2.0, -4.0],
                      [4.0, 2.0, -0.5, -2.0, -3.0]])
    weights = field_weights(table, 6.0)
    later = LocalDealer()
    out0, out1, _ = run_locally(
        fieldwise_links_party(0, *side0[:2], weights, side0[2], later.for_party(0)),
        fieldwise_links_party(1, *side1[:2], weights, side1[2], later.for_party(1)))
    expected = np.flatnonzero(weights.link(every))
    assert 0 < expected.size < every.shape[0]
    for out in (out0, out1):
        assert np.array_equal(out.left * 37 + out.right, expected)
        assert np.array_equal(out.levels, every[expected])


def test_links_with_swapped_names_say_ahead_what_they_use():
    rng = np.random.default_rng(4)
    left, right, _ = _people(rng, 13, 17)
    crossed = name_swap_products(FIELDS)
    plan = Plan(13, 17, sum(BITS), block_rows=5)
    _, side0, side1 = _sides(left, right, plan, crossed)
    local = LocalDealer()
    said, used = [[], []], [[], []]
    recording = recording_later(local, said, used)

    weights = field_weights(np.tile([4.0, 2.0, 0.5, -1.0, -3.0], (3, 1)), 2.0)
    run_locally(fieldwise_links_party(0, *side0[:2], weights, side0[2], recording(0)),
                fieldwise_links_party(1, *side1[:2], weights, side1[2], recording(1)))
    expected = links_material(plan, side0[2].columns, 2)
    assert len(expected) == 1 + 4 * len(plan.blocks())  # one more comparison per block
    assert said == [expected, expected] and used == [expected, expected]


def test_training_totals_count_the_swapped_levels():
    rng = np.random.default_rng(2)
    left, right, _ = _people(rng, 9, 40)
    crossed = name_swap_products(FIELDS)
    plan = Plan(9, 40, sum(BITS))
    layout, side0, side1 = _sides(left, right, plan, crossed)
    later = LocalDealer()
    bands = band_thresholds(SERVICE_EDGES, plan.clk_bits)
    out0, out1, _ = run_locally(
        field_totals_party(0, [SamplePair(*side0, later.for_party(0))], bands),
        field_totals_party(1, [SamplePair(*side1, later.for_party(1))], bands))
    every = _every(left, right, layout, crossed)
    expected = np.stack([np.bincount(every[every[:, f] >= 0, f], minlength=5)
                         for f in range(3)])
    assert np.array_equal(out0.level_counts(), expected)
    assert np.array_equal(out1.totals, out0.totals)
    straight = _every(left, right, layout, ())
    assert (straight[:, :2] == 0).sum() < (every[:, :2] == 0).sum()


def test_crossed_products_are_checked():
    layout = layout_for(["given_name", "family_name"], [128, 64])
    columns = field_columns(layout.word_starts, layout.word_counts)
    plan = Plan(3, 4, layout.bits)
    with pytest.raises(InvalidRequestError, match="one width"):
        FieldDealer(plan, columns, crossed=((0, 1), (1, 0)))
    with pytest.raises(InvalidRequestError, match="two different field indices"):
        FieldDealer(plan, columns, crossed=((0, 0),))
    with pytest.raises(InvalidRequestError, match="two different field indices"):
        FieldDealer(plan, columns, crossed=((0, 5),))


def test_the_candidates_protocol_refuses_crossed_material():
    rng = np.random.default_rng(3)
    left, right, _ = _people(rng, 4, 5)
    crossed = name_swap_products(FIELDS)
    plan = Plan(4, 5, sum(BITS))
    _, side0, _ = _sides(left, right, plan, crossed)
    protocol = fieldwise_party(0, side0[0], side0[1], rational_threshold(0.5, plan.clk_bits),
                               side0[2],
                               LocalDealer().for_party(0), np.array([0]), np.array([0]))
    with pytest.raises(InvalidRequestError, match="crosswise"):
        next(protocol)
    assert FIELD_THRESHOLDS == (0.95, 0.85, 0.7, 0.5)
