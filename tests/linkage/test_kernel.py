"""The native Dice kernel must agree exactly with the readable reference.

The kernel skips work (popcount ranges, blocks abandoned part-way) and decides
pairs with an integer table instead of the float formula, so every shortcut is
a place where it could silently drop or invent a pair at the threshold edge.
These tests compare it with ``candidates_reference`` on inputs built to hit
those edges: odd sizes that leave partial blocks, every CLK width from 64 to
2048 bits, empty and full CLKs, duplicates, and thresholds equal to a score
some pair actually has.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkage.matching import kernel
from linkage.matching.candidates import CandidatePairs, candidates_reference
from linkage.errors import ClkError
from linkage.matching.kernel import dice_candidates_native, iter_dice_tiles

SIZES = [0, 1, 7, 63, 130]
WORDS = [1, 2, 3, 4, 8, 16, 32]  # 64 .. 2048 bits
KINDS = ["zero", "sparse", "dense", "mixed", "full"]

@pytest.fixture(autouse=True, scope="module")
def _always_parallel():
    """Small problems normally run on one thread; force the multi-thread path here."""
    saved = kernel._SERIAL_PAIRS
    kernel._SERIAL_PAIRS = 0
    yield
    kernel._SERIAL_PAIRS = saved


FAST = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _clks(rng: np.random.Generator, rows: int, words: int, kind: str) -> np.ndarray:
    """Random CLKs of one density profile; 'mixed' varies density per row."""
    if kind == "zero":
        return np.zeros((rows, words), np.uint64)
    if kind == "full":
        density = np.full(rows, 0.97)
    elif kind == "sparse":
        density = np.full(rows, 0.03)
    elif kind == "dense":
        density = np.full(rows, 0.6)
    else:
        density = rng.uniform(0.0, 1.0, rows)
        density[rng.random(rows) < 0.1] = 0.0
    bits = rng.random((rows, words * 64)) < density[:, None]
    return np.packbits(bits, axis=1).view("<u8").reshape(rows, words).copy()


def _near_copies(rng: np.random.Generator, src: np.ndarray, dst: np.ndarray) -> None:
    """Overwrite some rows of ``dst`` with exact or slightly perturbed rows of ``src``."""
    if len(src) == 0 or len(dst) == 0:
        return
    count = int(rng.integers(0, len(dst) // 3 + 2))
    for _ in range(count):
        row = src[rng.integers(len(src))].copy()
        flips = rng.integers(0, 4)
        for _ in range(flips):
            bit = int(rng.integers(row.shape[0] * 64))
            row[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
        dst[rng.integers(len(dst))] = row


def _all_scores(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Every pair's Dice score, computed the reference's way (for picking thresholds)."""
    if len(left) == 0 or len(right) == 0:
        return np.zeros(0)
    common = np.bitwise_count(left[:, None, :] & right[None, :, :]).sum(axis=2)
    total = np.bitwise_count(left).sum(1)[:, None] + np.bitwise_count(right).sum(1)[None, :]
    return np.asarray([2.0 * int(c) / int(t) for c, t in zip(common.ravel(), total.ravel()) if t])


def _assert_same(native: CandidatePairs, reference: CandidatePairs) -> None:
    expected = reference.sorted()
    got = native.sorted()
    assert got.left.dtype == np.int64 and got.right.dtype == np.int64
    assert got.score.dtype == np.float64
    assert got.left.tolist() == expected.left.tolist()
    assert got.right.tolist() == expected.right.tolist()
    assert got.score.view(np.uint64).tolist() == expected.score.view(np.uint64).tolist()


@st.composite
def problems(draw):
    """(left, right, threshold, same) covering the kernel's edge cases."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    words = draw(st.sampled_from(WORDS))
    same = draw(st.booleans())
    left = _clks(rng, draw(st.sampled_from(SIZES)), words, draw(st.sampled_from(KINDS)))
    _near_copies(rng, left, left)
    if same:
        right = left
    else:
        right = _clks(rng, draw(st.sampled_from(SIZES)), words, draw(st.sampled_from(KINDS)))
        _near_copies(rng, left, right)
    how = draw(st.sampled_from(["fixed", "uniform", "hit", "just_above_hit"]))
    scores = _all_scores(left, right)
    if how in ("hit", "just_above_hit") and scores.size:
        threshold = float(scores[draw(st.integers(0, scores.size - 1))])
        if how == "just_above_hit":
            threshold = float(np.nextafter(threshold, 2.0))
    elif how == "uniform":
        threshold = draw(st.floats(0.0, 1.0))
    else:
        threshold = draw(st.sampled_from([0.0, 1.0, 0.5, 0.8, 0.95, -0.25, 1.5]))
    return left, right, threshold, same


@FAST
@given(problems())
def test_native_matches_reference(problem):
    left, right, threshold, same = problem
    native = dice_candidates_native(left, right, threshold, same=same)
    _assert_same(native, candidates_reference(left, right, threshold, same=same))


@settings(FAST, max_examples=15)
@given(problems(), st.integers(1, 40))
def test_tiles_partition_the_left_rows(problem, tile_rows):
    left, right, threshold, same = problem
    saved = kernel._SERIAL_PAIRS
    kernel._SERIAL_PAIRS = 1 << 22  # the default: tiles this small take the one-thread path
    try:
        tiles = list(iter_dice_tiles(left, right, threshold, same=same, tile_rows=tile_rows))
    finally:
        kernel._SERIAL_PAIRS = saved
    assert len(tiles) == -(-left.shape[0] // tile_rows)  # one per tile, empty ones too
    if not same:
        seen: set[int] = set()
        for tile in tiles:
            rows = set(tile.left.tolist())
            assert not rows & seen, "a left row appeared in two tiles"
            seen |= rows
    merged = CandidatePairs.concat(tiles)
    _assert_same(merged, dice_candidates_native(left, right, threshold, same=same))


@settings(FAST, max_examples=10)
@given(problems())
def test_single_thread_and_tiny_buffers_agree(problem):
    """One thread, and result buffers so small every tile overflows and reruns."""
    left, right, threshold, same = problem
    before = numba.get_num_threads()
    saved = kernel._MIN_CAPACITY
    numba.set_num_threads(1)
    kernel._MIN_CAPACITY = 2
    try:
        native = dice_candidates_native(left, right, threshold, same=same)
    finally:
        numba.set_num_threads(before)
        kernel._MIN_CAPACITY = saved
    _assert_same(native, candidates_reference(left, right, threshold, same=same))



@settings(FAST, max_examples=25)
@given(problems(), st.data())
def test_every_placement_of_the_checks_gives_the_same_pairs(problem, data):
    """Where a scan checks whether a block can still pass is chosen per scan from sampled
    data (``kernel._cuts``): only speed may depend on it, so any placement must agree."""
    left, right, threshold, same = problem
    words = left.shape[1]
    inner = data.draw(st.lists(st.integers(1, max(words - 1, 1)), max_size=5, unique=True))
    cuts = np.asarray(sorted({0, words, *[c for c in inner if 0 < c < words]}), np.int64)
    saved = kernel._cuts
    kernel._cuts = lambda *args: cuts
    try:
        native = dice_candidates_native(left, right, threshold, same=same)
    finally:
        kernel._cuts = saved
    _assert_same(native, candidates_reference(left, right, threshold, same=same))


def test_the_checks_move_with_the_threshold():
    """On random CLKs 30-50% full, blocks die later at a lower threshold: so do the checks."""
    rng = np.random.default_rng(5)
    density = rng.uniform(0.3, 0.5, 4000)[:, None]
    clks = np.packbits(rng.random((4000, 1024)) < density, axis=1).view("<u8").copy()
    left, right = kernel.prepare_side(clks[:2000]), kernel.prepare_side(clks[2000:])
    first = {}
    for threshold in (0.8, 0.7, 0.6):
        cuts = kernel._row_ranges(left, right, threshold, False)[0]
        assert cuts[0] == 0 and cuts[-1] == 16 and np.all(np.diff(cuts) > 0)
        first[threshold] = int(cuts[1])
    assert first[0.8] < first[0.7] < first[0.6]

@settings(FAST, max_examples=15)
@given(st.integers(0, 2**32 - 1), st.sampled_from(WORDS), st.sampled_from(KINDS))
def test_dice_properties(seed, words, kind):
    rng = np.random.default_rng(seed)
    left = _clks(rng, 7, words, kind)
    right = _clks(rng, 63, words, "mixed")
    forward = dice_candidates_native(left, right, 0.0)
    backward = dice_candidates_native(right, left, 0.0)
    assert len(forward) == left.shape[0] * right.shape[0]
    # symmetric
    flipped = CandidatePairs(backward.right, backward.left, backward.score).sorted()
    assert flipped.left.tolist() == forward.left.tolist()
    assert flipped.right.tolist() == forward.right.tolist()
    assert flipped.score.tolist() == forward.score.tolist()
    # within [0, 1]
    assert np.all((forward.score >= 0.0) & (forward.score <= 1.0))
    # identical non-empty CLKs score exactly 1; two empty ones score 0
    identical = dice_candidates_native(left, left, 1.0)
    nonempty = np.flatnonzero(np.bitwise_count(left).sum(1) > 0)
    diagonal = identical.left == identical.right
    assert identical.left[diagonal].tolist() == nonempty.tolist()
    assert np.all(identical.score == 1.0)
    empty = np.zeros((3, words), np.uint64)
    assert len(dice_candidates_native(empty, empty, 1e-12)) == 0
    zero = dice_candidates_native(empty, empty, 0.0)
    assert len(zero) == 9 and np.all(zero.score == 0.0)


def test_same_reports_each_pair_once_with_left_below_right():
    rng = np.random.default_rng(5)
    batch = _clks(rng, 63, 16, "dense")
    batch[10] = batch[40]
    batch[50] = batch[3]
    pairs = dice_candidates_native(batch, batch, 0.0, same=True)
    assert len(pairs) == 63 * 62 // 2
    assert np.all(pairs.left < pairs.right)
    exact = dice_candidates_native(batch, batch, 1.0, same=True)
    assert list(zip(exact.left.tolist(), exact.right.tolist())) == [(3, 50), (10, 40)]


def test_block_whose_smallest_sum_can_never_pass_is_still_scanned():
    """At threshold 1 an odd popcount sum never passes but the next even one can.

    A block is skipped by a lower bound on what its lanes need; that bound must
    not come from the block's smallest sum alone (regression: pairs were lost).
    """
    right = np.zeros((130, 1), np.uint64)
    right[:65] = np.uint64(0b1)  # popcount 1: with a popcount-2 row, sum 3 never passes
    right[65:] = np.uint64(0b11)  # popcount 2: identical to the left row
    left = np.asarray([[0b11]], np.uint64)
    for threshold in (1.0, 0.9, 0.75):
        _assert_same(
            dice_candidates_native(left, right, threshold),
            candidates_reference(left, right, threshold),
        )
    assert len(dice_candidates_native(left, right, 1.0)) == 65


def test_rejects_bad_inputs():
    ok = np.zeros((2, 16), np.uint64)
    with pytest.raises(ClkError):
        dice_candidates_native(ok, np.zeros((2, 8), np.uint64), 0.5)
    with pytest.raises(ClkError):
        dice_candidates_native(ok.astype(np.int64), ok, 0.5)
    with pytest.raises(ClkError):
        dice_candidates_native(ok[0], ok, 0.5)
    with pytest.raises(ValueError):
        dice_candidates_native(ok, ok, float("nan"))
    with pytest.raises(ValueError):
        dice_candidates_native(ok, ok + np.uint64(1), 0.5, same=True)
    with pytest.raises(ValueError):
        list(iter_dice_tiles(ok, ok, 0.5, tile_rows=0))


def test_inner_loop_uses_hardware_popcount():
    """The AND-popcount loop must compile to vpopcntq where the CPU has it."""
    import llvmlite.binding as llvm

    if "+avx512vpopcntdq" not in llvm.get_host_cpu_features().flatten().split(","):
        pytest.skip("host CPU has no AVX-512 VPOPCNTDQ")

    @numba.njit
    def probe(acc, blocks, left):
        kernel._and_popcount_block(acc, blocks, 0, left, 0, 0, left.shape[1])

    acc = np.zeros(kernel._LANES, np.int64)
    blocks = np.ones((1, 4, kernel._LANES), np.uint64)
    left = np.full((1, 4), np.uint64(3), np.uint64)
    probe(acc, blocks, left)
    assert acc.tolist() == [4] * kernel._LANES
    asm = "\n".join(probe.inspect_asm().values())
    assert "vpopcntq" in asm and "zmm" in asm


def test_a_sides_popcount_profile_is_each_rows_set_bits_from_every_word_on():
    """``sides`` prepares sides with numpy alone (while numba loads elsewhere): its profile
    must be the kernel's bounds exactly, here against a plain count of every word."""
    from linkage.matching.sides import _popcount_profile

    rng = np.random.default_rng(7)
    matrix = rng.integers(0, 2**64, size=(50, 16), dtype=np.uint64, endpoint=False)
    matrix[3] = 0
    matrix[4] = np.uint64(2**64 - 1)
    counts, suffix = _popcount_profile(matrix)
    expected = [[sum(bin(int(word)).count("1") for word in row[w:]) for w in range(17)]
                for row in matrix]
    assert suffix.dtype == np.int16 and counts.dtype == np.int64
    assert suffix.tolist() == expected
    assert counts.tolist() == [row[0] for row in expected]
