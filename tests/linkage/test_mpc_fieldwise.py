"""Field-wise levels on shares must be exactly the plaintext ``levels_of(field_similarities)``.

Both servers' generators run in one process (``run_locally``); the reference is the plaintext
per-field Dice of ``linkage.encoding.field_segments``, binned by ``levels_of``.
"""

from __future__ import annotations

import numpy as np
import pytest

from linkage.encoding.field_segments import field_similarities, layout_for
from linkage.errors import InvalidRequestError
from linkage.matching.candidates import CandidatePairs
from linkage.matching.fellegi_sunter import LEVEL_THRESHOLDS, levels_of
from linkage.matching.kernel import dice_candidates_native
from linkage.mpc import Plan, rational_threshold, run_locally, split_clks
from linkage.mpc.field_dealer import FieldDealer, FieldMaterial
from linkage.mpc.fieldwise import (FIELD_THRESHOLDS, LocalDealer, field_columns,
                                   fieldwise_party)

BITS = (64, 128, 64)  # three fields


def _pack(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits.astype(bool), axis=1, bitorder="little").view("<u8").astype(np.uint64)


def _records(rng, n, density=0.3, empty_share=0.2):
    """Records of three segments; about ``empty_share`` of each field empty (not all three)."""
    parts = []
    for bits in BITS:
        part = rng.random((n, bits)) < density
        part[rng.random(n) < empty_share] = False
        parts.append(part)
    out = np.concatenate(parts, axis=1)
    out[np.flatnonzero(~out.any(axis=1)), 0] = True
    return out


def _related(rng, n, m):
    """Right rows are copies of left rows with a noise rate of 0 to 0.35 each."""
    left = _records(rng, n)
    noise = rng.uniform(0, 0.35, m)[:, None]
    right = left[rng.integers(0, n, m)] ^ (rng.random((m, sum(BITS))) < noise)
    right[np.flatnonzero(~right.any(axis=1)), 0] = True
    return _pack(left), _pack(right)


def _run(left, right, threshold, random_left, random_right, *, block_rows=0):
    layout = layout_for(["a", "b", "c"], list(BITS))
    columns = field_columns(layout.word_starts, layout.word_counts)
    bits = layout.bits
    plan = Plan(left.shape[0], right.shape[0], bits, block_rows=block_rows)
    dealer, later = FieldDealer(plan, columns), LocalDealer()
    rational = rational_threshold(threshold, bits)
    l0, l1 = split_clks(left, bits)
    r0, r1 = split_clks(right, bits)
    out0, out1, _ = run_locally(
        fieldwise_party(0, l0, r0, rational, FieldMaterial(0, plan, columns, dealer.seeds[0]),
                        later.for_party(0), random_left, random_right),
        fieldwise_party(1, l1, r1, rational,
                        FieldMaterial(1, plan, columns, dealer.seeds[1], dealer.corrections()),
                        later.for_party(1), random_left, random_right))
    for name in ("left", "right", "levels", "random_present", "random_at_least"):
        assert np.array_equal(getattr(out0, name), getattr(out1, name))
    return layout, out0


def _plain_levels(left, right, layout, lefts, rights):
    """The plaintext levels of cross pairs (left rows, right rows)."""
    both = np.concatenate([left, right])
    pairs = CandidatePairs(np.asarray(lefts, np.int64),
                           np.asarray(rights, np.int64) + left.shape[0], np.zeros(len(lefts)))
    return levels_of(field_similarities(both, layout, pairs))


def _check(left, right, threshold, rng, *, samples=300, block_rows=0):
    random_left = rng.integers(0, left.shape[0], samples)
    random_right = rng.integers(0, right.shape[0], samples)
    layout, out = _run(left, right, threshold, random_left, random_right,
                       block_rows=block_rows)
    kernel = dice_candidates_native(left, right, threshold)
    order = np.lexsort((kernel.right, kernel.left))
    assert np.array_equal(out.left, kernel.left[order])
    assert np.array_equal(out.right, kernel.right[order])
    assert np.array_equal(out.levels, _plain_levels(left, right, layout, out.left, out.right))
    sampled = _plain_levels(left, right, layout, random_left, random_right)
    assert np.array_equal(out.random_present, (sampled >= 0).sum(axis=0))
    for k in range(len(FIELD_THRESHOLDS)):
        assert np.array_equal(out.random_at_least[k], ((sampled >= 0) & (sampled <= k)).sum(0))
    counts = np.stack([(sampled == level).sum(axis=0) for level in range(5)], axis=1)
    assert np.array_equal(out.random_level_counts, counts)
    return out


def test_thresholds_are_the_plaintext_levels():
    assert FIELD_THRESHOLDS == LEVEL_THRESHOLDS


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_records_levels_equal_plaintext(seed):
    rng = np.random.default_rng(seed)
    left, right = _related(rng, 40, 50)
    out = _check(left, right, 0.4, rng, block_rows=7)
    assert len(out) > 20 and (out.levels == -1).any() and (out.levels == 0).any()
    assert len(set(out.levels[out.levels >= 0].tolist())) == 5  # every level occurs


def test_levels_exactly_at_every_boundary_and_empty_fields():
    """Pairs whose per-field Dice is exactly each threshold, just below it, or empty."""
    rows_left, rows_right = [], []
    # field "a" (64 bits): |x| = |y| = 20 with c common bits: Dice = c / 20.
    for common in (19, 18, 17, 16, 14, 13, 10, 9, 20, 0):
        x = np.zeros(sum(BITS), bool)
        y = np.zeros(sum(BITS), bool)
        x[:20] = True
        y[:common] = True
        y[20:20 + 20 - common] = True
        x[64:100] = y[64:100] = True  # field b identical
        rows_left.append(x)
        rows_right.append(y)
    empty = np.zeros(sum(BITS), bool)
    empty[64:70] = True  # a and c empty, b present
    rows_left.append(empty.copy())
    rows_right.append(empty.copy())
    left, right = _pack(np.array(rows_left)), _pack(np.array(rows_right))
    n = left.shape[0]
    out = _check(left, right, 0.01, np.random.default_rng(5))
    diagonal = (out.left == out.right)
    levels = out.levels[diagonal]
    # Dice 0.95, 0.9, 0.85, 0.8, 0.7, 0.65, 0.5, 0.45, 1.0, 0.0 then empty.
    assert levels[:, 0].tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 0, 4, -1]
    assert levels[:, 2].tolist() == [-1] * n
    assert levels[-1, 1] == 0


def test_bad_sample_is_refused():
    rng = np.random.default_rng(3)
    left, right = _related(rng, 5, 5)
    with pytest.raises(InvalidRequestError, match="outside the plan"):
        _run(left, right, 0.5, np.array([0, 7]), np.array([0, 1]))


def _links(left, right, weights, *, block_rows=0):
    from linkage.mpc.fieldwise import fieldwise_links_party

    layout = layout_for(["a", "b", "c"], list(BITS))
    columns = field_columns(layout.word_starts, layout.word_counts)
    bits = layout.bits
    plan = Plan(left.shape[0], right.shape[0], bits, block_rows=block_rows)
    dealer, later = FieldDealer(plan, columns), LocalDealer()
    l0, l1 = split_clks(left, bits)
    r0, r1 = split_clks(right, bits)
    out0, out1, _ = run_locally(
        fieldwise_links_party(0, l0, r0, weights,
                              FieldMaterial(0, plan, columns, dealer.seeds[0]),
                              later.for_party(0)),
        fieldwise_links_party(1, l1, r1, weights,
                              FieldMaterial(1, plan, columns, dealer.seeds[1],
                                            dealer.corrections()), later.for_party(1)))
    for name in ("left", "right", "levels"):
        assert np.array_equal(getattr(out0, name), getattr(out1, name))
    return layout, out0


@pytest.mark.parametrize("seed", [0, 1])
def test_links_on_shares_follow_the_plaintext_rule(seed):
    from linkage.mpc.fieldwise import field_weights

    rng = np.random.default_rng(seed)
    left, right = _related(rng, 30, 40)
    # Non-increasing per field, negative at the bottom, as FellegiSunterModel.weights are.
    table = np.array([[6.5, 3.25, 0.5, -2.0, -4.75], [4.0, 2.0, 1.0, -1.5, -3.0],
                      [8.0, 5.0, -0.25, -3.0, -6.0]])
    layout = layout_for(["a", "b", "c"], list(BITS))
    every_left, every_right = np.divmod(np.arange(30 * 40), 40)
    all_levels = _plain_levels(left, right, layout, every_left, every_right)
    for cut in (4.0, -1.0, 12.5):
        weights = field_weights(table, cut)
        expected = np.flatnonzero(weights.link(all_levels))
        assert 0 < expected.size < 30 * 40 or cut != 4.0
        _, out = _links(left, right, weights, block_rows=11)
        assert np.array_equal(out.left * 40 + out.right, expected)
        assert np.array_equal(out.levels, all_levels[expected])


def test_weight_table_is_checked():
    from linkage.mpc.fieldwise import field_weights

    with pytest.raises(InvalidRequestError, match="fields x 5"):
        field_weights(np.zeros((3, 4)), 0.0)
    with pytest.raises(InvalidRequestError, match="too large"):
        field_weights(np.full((3, 5), 1e6), 0.0)


def test_links_plan_blocks_about_link_pairs_per_block():
    from linkage.mpc.fieldwise import LINK_PAIRS_PER_BLOCK, links_plan

    assert links_plan(250, 250, 256).block_rows == min(250, LINK_PAIRS_PER_BLOCK // 250)
    assert links_plan(3, 5000, 256).block_rows == min(3, LINK_PAIRS_PER_BLOCK // 5000)
    assert links_plan(3, 10 * LINK_PAIRS_PER_BLOCK, 256).block_rows == 1
    assert links_plan(7, 10, 256).block_rows == 7


def recording_later(local, said, used):
    """``LaterMaterial`` per party from ``local`` that records what is announced ahead
    (``said[party]``) and what is then asked for (``used[party]``)."""
    from linkage.mpc.fieldwise import LaterMaterial, comparisons_kind

    def recording(party):
        inner = local.for_party(party)

        def comparisons(count, thresholds, plane_bits=0):
            used[party].append((comparisons_kind(plane_bits), count, thresholds))
            return inner.comparisons(count, thresholds, plane_bits)

        def bits(words, dabits):
            used[party].append(("bits", words, dabits))
            return inner.bits(words, dabits)

        return LaterMaterial(comparisons, bits, said[party].extend)

    return recording


def test_links_say_ahead_exactly_what_later_material_they_will_use():
    """``links_material`` is what the service's dealer deals ahead: every call the links
    protocol then makes must be the next one it announced (uneven blocks included)."""
    from linkage.mpc.fieldwise import field_weights, fieldwise_links_party, links_material

    rng = np.random.default_rng(4)
    left, right = _related(rng, 23, 17)
    layout = layout_for(["a", "b", "c"], list(BITS))
    columns = field_columns(layout.word_starts, layout.word_counts)
    plan = Plan(23, 17, layout.bits, block_rows=5)
    dealer, local = FieldDealer(plan, columns), LocalDealer()
    said, used = [[], []], [[], []]
    recording = recording_later(local, said, used)

    weights = field_weights(np.tile([4.0, 2.0, 0.5, -1.0, -3.0], (3, 1)), 2.0)
    l0, l1 = split_clks(left, layout.bits)
    r0, r1 = split_clks(right, layout.bits)
    run_locally(fieldwise_links_party(0, l0, r0, weights,
                                      FieldMaterial(0, plan, columns, dealer.seeds[0]),
                                      recording(0)),
                fieldwise_links_party(1, l1, r1, weights,
                                      FieldMaterial(1, plan, columns, dealer.seeds[1],
                                                    dealer.corrections()), recording(1)))
    expected = links_material(plan, columns)
    assert len(expected) == 1 + 3 * len(plan.blocks()) and len(plan.blocks()) == 5
    assert said == [expected, expected] and used == [expected, expected]


@pytest.mark.parametrize("span", [1, 500, 1000])
def test_links_are_the_same_whatever_span_the_opened_terms_take(span, monkeypatch):
    """The opened Beaver terms are computed for several blocks at once
    (``OPENED_SPAN_PAIRS``); spans of one block, of two and of blocks cut mid-span give the
    same links as the plaintext rule."""
    import linkage.mpc.fieldwise as fieldwise

    monkeypatch.setattr(fieldwise, "OPENED_SPAN_PAIRS", span)
    rng = np.random.default_rng(9)
    left, right = _related(rng, 30, 40)
    weights = fieldwise.field_weights(np.tile([5.0, 2.5, 0.5, -1.5, -4.0], (3, 1)), 3.0)
    layout = layout_for(["a", "b", "c"], list(BITS))
    every_left, every_right = np.divmod(np.arange(30 * 40), 40)
    all_levels = _plain_levels(left, right, layout, every_left, every_right)
    expected = np.flatnonzero(weights.link(all_levels))
    assert 0 < expected.size < 30 * 40
    _, out = _links(left, right, weights, block_rows=7)
    assert np.array_equal(out.left * 40 + out.right, expected)
    assert np.array_equal(out.levels, all_levels[expected])
