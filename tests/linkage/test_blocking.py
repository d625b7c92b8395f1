"""LSH blocking: a subset of the exhaustive candidates that keeps what the plan promises."""

from __future__ import annotations

import numpy as np

from linkage.matching.blocking import lsh_candidates, plan_lsh
from linkage.clks import popcounts
from linkage.matching.kernel import dice_candidates_native


def test_lsh_finds_the_planted_pairs_and_nothing_false():
    rng = np.random.default_rng(4)
    count = 3000
    left = np.packbits(rng.random((count, 1024)) < 0.35, axis=1).view("<u8")
    right = np.packbits(rng.random((count, 1024)) < 0.35, axis=1).view("<u8")
    planted = 300
    noise = rng.uniform(0.02, 0.08, size=(planted, 1))
    right[:planted] = left[:planted] ^ np.packbits(rng.random((planted, 1024)) < noise,
                                                   axis=1).view("<u8")
    sums = np.concatenate([popcounts(left), popcounts(right)])
    plan = plan_lsh(1024, 2 * float(np.quantile(sums, 0.99)), 0.75, records=count)
    assert plan is not None and plan.expected_completeness >= 0.995
    exhaustive = dice_candidates_native(left, right, 0.75)
    blocked = lsh_candidates(left, right, 0.75, plan)
    expected = set(zip(exhaustive.left.tolist(), exhaustive.right.tolist()))
    found = set(zip(blocked.left.tolist(), blocked.right.tolist()))
    assert found <= expected
    assert len(found) / len(expected) >= 0.99
    assert len(found) == len(blocked)  # no pair reported twice


def test_same_batch_and_impossible_plans():
    rng = np.random.default_rng(5)
    clks = np.packbits(rng.random((500, 1024)) < 0.35, axis=1).view("<u8")
    clks[250:] = clks[:250] ^ np.packbits(rng.random((250, 1024)) < 0.02, axis=1).view("<u8")
    plan = plan_lsh(1024, 800, 0.8, records=500)
    pairs = lsh_candidates(clks, clks, 0.8, plan, same=True)
    assert (pairs.left < pairs.right).all() and len(pairs) >= 245
    assert plan_lsh(1024, 800, 0.3) is None  # too low a threshold: blocking cannot pay


def _bucket_reference(left, right, threshold, plan, same):
    """Every pair at or above the threshold that agrees on all sampled bits of some table,
    found the slow way: bits unpacked, each table's keys compared pair by pair."""
    from linkage.matching.blocking import table_positions
    exhaustive = dice_candidates_native(left, right, threshold, same=same)
    bits_left = np.unpackbits(left.view(np.uint8), axis=1, bitorder="little")
    bits_right = np.unpackbits(right.view(np.uint8), axis=1, bitorder="little")
    shared = np.zeros(len(exhaustive), bool)
    for positions in table_positions(left.shape[1] * 64, plan):
        shared |= (bits_left[exhaustive.left][:, positions]
                   == bits_right[exhaustive.right][:, positions]).all(axis=1)
    return {(a, b): s for a, b, s, keep in zip(exhaustive.left.tolist(),
                                                exhaustive.right.tolist(),
                                                exhaustive.score.tolist(), shared) if keep}


def test_lsh_reports_exactly_the_pairs_sharing_some_bucket_once_each():
    rng = np.random.default_rng(11)
    count = 1500
    left = np.packbits(rng.random((count, 1024)) < 0.4, axis=1).view("<u8")
    right = left ^ np.packbits(rng.random((count, 1024)) < rng.uniform(0.01, 0.1, (count, 1)),
                               axis=1).view("<u8")
    plan = plan_lsh(1024, 2 * 430.0, 0.8, records=count)
    assert plan is not None and plan.tables > 5
    for same, (a, b) in ((False, (left, right)), (True, (np.concatenate([left, right]),) * 2)):
        expected = _bucket_reference(a, b, 0.8, plan, same)
        found = lsh_candidates(a, b, 0.8, plan, same=same)
        assert len(found) == len(expected) > count // 2
        assert dict(zip(zip(found.left.tolist(), found.right.tolist()),
                        found.score.tolist())) == expected


def test_buckets_found_on_both_sides_are_numpys_intersection():
    from linkage.matching.blocking import _sorted_common
    rng = np.random.default_rng(12)
    for size in range(0, 60, 3):
        first = np.sort(rng.integers(0, 40, size)).astype(np.uint16)
        second = np.sort(rng.integers(0, 40, rng.integers(0, 60))).astype(np.uint16)
        assert np.array_equal(_sorted_common(first, second), np.intersect1d(first, second))
