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


def _numpy_buckets(left, right, positions):
    """The buckets of one table the slow way: keys, numpy's stable argsort, intersection."""
    def keys(matrix):
        bits = np.unpackbits(matrix.view(np.uint8), axis=1, bitorder="little")[:, positions]
        return (bits.astype(np.uint64) << np.arange(len(positions))[::-1].astype(np.uint64)
                ).sum(axis=1, dtype=np.uint64)
    lkeys, rkeys = keys(left), keys(right)
    lorder, rorder = np.argsort(lkeys, kind="stable"), np.argsort(rkeys, kind="stable")
    lsorted, rsorted = lkeys[lorder], rkeys[rorder]
    shared = np.intersect1d(lsorted, rsorted)
    return (lorder, rorder, np.searchsorted(lsorted, shared, "left"),
            np.searchsorted(lsorted, shared, "right"), np.searchsorted(rsorted, shared, "left"),
            np.searchsorted(rsorted, shared, "right"))


def test_buckets_found_on_both_sides_match_numpys_sort_and_intersection():
    """The radix sort (one pass up to 16 bits, two above) and the merge give exactly numpy's
    stable order and intersection, so tables are scanned bucket by bucket as before."""
    from linkage.matching.blocking import _shared_buckets
    rng = np.random.default_rng(12)
    for bits in (3, 12, 16, 17, 20, 24):
        for rows in (0, 1, 7, 400):
            positions = np.sort(rng.choice(128, bits, replace=False)).astype(np.int64)
            # few distinct values on the sampled bits, so buckets hold several rows
            base = rng.integers(0, 2**63, (4, 2), dtype=np.int64).view(np.uint64)
            left = base[rng.integers(0, 4, rows)] ^ (rng.random((rows, 2)) < 0.1).astype(np.uint64)
            right = base[rng.integers(0, 4, rows + 3)]
            found = _shared_buckets(np.ascontiguousarray(left), np.ascontiguousarray(right),
                                    positions)
            expected = _numpy_buckets(left, right, positions)
            if found is None:
                assert expected[2].size == 0
                continue
            for got, want in zip(found, expected):
                assert np.array_equal(got, want)
