"""The native Dice kernel finds exactly the reference's pairs, with bit-identical scores."""

from __future__ import annotations

import numba
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.matching.candidates import candidates_reference
from linkage.matching.kernel import dice_candidates_native, iter_dice_tiles


def _clks(rng, count, words, density):
    bits = rng.random((count, words * 64)) < density
    return np.packbits(bits, axis=1).view("<u8").reshape(count, words)


@given(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 7, 63, 130]),
       st.sampled_from([0, 1, 9, 70]), st.sampled_from([1, 2, 16, 32]),
       st.sampled_from([0.0, 0.3, 0.5, 0.8, 0.95, 1.0]), st.booleans(),
       st.sampled_from([0.0, 0.05, 0.4, 0.9]))
@settings(max_examples=80, deadline=None)
def test_native_equals_reference(seed, left_count, right_count, words, threshold, same,
                                 density):
    rng = np.random.default_rng(seed)
    left = _clks(rng, left_count, words, density)
    right = left if same else _clks(rng, right_count, words, density)
    if not same and left_count and right_count:
        right = right.copy()
        shared = min(3, left_count, right_count)
        right[:shared] = left[:shared]
        flips = rng.random(right[:shared].shape) < 0.02
        right[:shared] ^= flips.astype(np.uint64)
    expected = candidates_reference(left, right, threshold, same=same).sorted()
    actual = dice_candidates_native(left, right, threshold, same=same).sorted()
    assert np.array_equal(actual.left, expected.left)
    assert np.array_equal(actual.right, expected.right)
    assert np.array_equal(actual.score, expected.score)


def test_tiles_cover_every_pair_once_and_one_thread_agrees():
    rng = np.random.default_rng(1)
    clks = _clks(rng, 300, 16, 0.3)
    clks[150:] = clks[:150] ^ (rng.random((150, 16)) < 0.01).astype(np.uint64)
    whole = dice_candidates_native(clks, clks, 0.6, same=True).sorted()
    tiled = [t for t in iter_dice_tiles(clks, clks, 0.6, same=True, tile_rows=7)]
    joined = type(whole).concat(tiled).sorted()
    assert np.array_equal(joined.left, whole.left) and np.array_equal(joined.score, whole.score)
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        single = dice_candidates_native(clks, clks, 0.6, same=True).sorted()
    finally:
        numba.set_num_threads(previous)
    assert np.array_equal(single.left, whole.left) and np.array_equal(single.right, whole.right)
    assert len(whole) >= 150
