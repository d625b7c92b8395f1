"""Dice >= t on secret-shared CLKs must decide exactly as the plaintext kernel, and reveal no more.

The protocol is run with both servers' generators in one process (``run_locally``); the
two-process transport is tested in ``tests/bench/test_attacks.py``. Edge cases: pairs whose
Dice is exactly the threshold, the lowest and highest popcounts, partial blocks, and
thresholds that only a fraction decides like the kernel's float test.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from linkage.matching.candidates import candidates_reference
from linkage.errors import ClkError, InvalidRequestError
from linkage.matching.kernel import dice_candidates_native
from linkage.mpc import (AND_ROUNDS, Dealer, PartyMaterial, Plan, matmul_mod, rational_threshold,
                         reconstruct, run_locally, split_clks, threshold_party, unpack_bits)
from linkage.mpc.prg import random_words

SEED = bytes(range(32))


def _pack(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits.astype(bool), axis=1, bitorder="little").view("<u8").astype(np.uint64)


def _shared_hits(left: np.ndarray, right: np.ndarray, threshold: float, *, block_rows: int = 0):
    bits = left.shape[1] * 64
    plan = Plan(left.shape[0], right.shape[0], bits, block_rows=block_rows)
    dealer = Dealer(plan)
    l0, l1 = split_clks(left, bits)
    r0, r1 = split_clks(right, bits)
    rational = rational_threshold(threshold, bits)
    first = threshold_party(0, l0, r0, rational, PartyMaterial(0, plan, dealer.seeds[0]))
    second = threshold_party(1, l1, r1, rational,
                             PartyMaterial(1, plan, dealer.seeds[1], dealer.corrections()))
    hits0, hits1, sent = run_locally(first, second)
    assert np.array_equal(hits0.left, hits1.left) and np.array_equal(hits0.right, hits1.right)
    return hits0, sent


def _kernel_pairs(left, right, threshold):
    pairs = dice_candidates_native(left, right, threshold)
    order = np.lexsort((pairs.right, pairs.left))
    return pairs.left[order], pairs.right[order]


def _related(rng, n, m, bits, density=0.3, noise=0.08):
    left = rng.random((n, bits)) < density
    right = left[rng.integers(0, n, m)] ^ (rng.random((m, bits)) < noise)
    right[np.flatnonzero(~right.any(axis=1)), 0] = True
    left[np.flatnonzero(~left.any(axis=1)), 0] = True
    return _pack(left), _pack(right)


@pytest.mark.parametrize("threshold", [0.5, 0.75, 0.8, 0.85, 0.9, 1.0])
@pytest.mark.parametrize("bits", [64, 1024])
def test_shared_pairs_equal_the_kernels_pairs(threshold, bits):
    rng = np.random.default_rng(int(threshold * 100) + bits)
    left, right = _related(rng, 70, 45, bits)
    hits, _ = _shared_hits(left, right, threshold, block_rows=16)
    expected_left, expected_right = _kernel_pairs(left, right, threshold)
    assert np.array_equal(hits.left, expected_left)
    assert np.array_equal(hits.right, expected_right)
    assert len(hits) > 0 or threshold == 1.0


def test_pairs_exactly_at_the_threshold_are_linked():
    """For every popcount pair, the common-bit counts just below, at and above the threshold."""
    threshold, bits = 0.8, 64
    lefts, rights = [], []
    for a in (5, 10, 20, 40, 64):
        for b in (5, 10, 20, 40, 64):
            for common in range(max(0, a + b - bits), min(a, b) + 1):
                row_a = np.zeros(bits, bool)
                row_b = np.zeros(bits, bool)
                row_a[:a] = True
                row_b[a - common:a - common + b] = True
                lefts.append(row_a)
                rights.append(row_b)
    left, right = _pack(np.array(lefts)), _pack(np.array(rights))
    hits, _ = _shared_hits(left, right, threshold)
    reference = candidates_reference(left, right, threshold)
    found = set(zip(hits.left.tolist(), hits.right.tolist()))
    assert found == set(zip(reference.left.tolist(), reference.right.tolist()))
    at_threshold = [(i, i) for i in range(len(lefts))
                    if 2 * int((lefts[i] & rights[i]).sum())
                    == threshold * (lefts[i].sum() + rights[i].sum())]
    assert at_threshold and all(pair in found for pair in at_threshold)


def test_split_shares_add_up_and_each_is_uniform():
    rng = np.random.default_rng(3)
    bits = rng.random((400, 1024)) < 0.3
    bits[:, 0] = True
    share0, share1 = split_clks(_pack(bits), 1024, seed=SEED)
    assert np.array_equal(reconstruct(share0, share1), bits.astype(np.uint32))
    for share in (share0, share1):
        for bit in (False, True):
            values = share[bits == bit]
            top = np.bincount((values >> 24).astype(np.int64), minlength=256)
            assert chisquare(top).pvalue > 1e-4  # uniform whatever the bit is
            assert abs((values & 1).mean() - 0.5) < 0.01


def test_a_fresh_split_gives_fresh_shares():
    clks = _pack(np.eye(64, dtype=bool))
    assert not np.array_equal(split_clks(clks, 64)[0], split_clks(clks, 64)[0])


def test_matmul_mod_is_exact():
    rng = np.random.default_rng(4)
    left = rng.integers(0, 2**32, (17, 300), dtype=np.uint64).astype(np.uint32)
    right = rng.integers(0, 2**32, (9, 300), dtype=np.uint64).astype(np.uint32)
    expected = (left.astype(np.uint64) @ right.astype(np.uint64).T).astype(np.uint32)
    assert np.array_equal(matmul_mod(left, right), expected)


def test_dealer_material_is_correlated():
    plan = Plan(20, 13, 64, block_rows=8)
    dealer = Dealer(plan, seeds=(SEED, bytes(32)))
    first = PartyMaterial(0, plan, dealer.seeds[0])
    second = PartyMaterial(1, plan, dealer.seeds[1], dealer.corrections())
    a = reconstruct(first.masks()[0], second.masks()[0])
    b = reconstruct(first.masks()[1], second.masks()[1])
    for index, (lo, hi) in enumerate(plan.blocks()):
        m0, m1 = first.block(index), second.block(index)
        assert np.array_equal(m0.product + m1.product, matmul_mod(a[lo:hi], b))
        assert np.array_equal(m0.mask + m1.mask, m0.mask_bits ^ m1.mask_bits)
        assert np.array_equal((m0.and_a ^ m1.and_a) & (m0.and_b ^ m1.and_b),
                              m0.and_product ^ m1.and_product)
        assert m0.and_a.shape == (AND_ROUNDS, hi - lo, 13)


def test_prg_streams_are_independent_of_reading_order():
    first = random_words(SEED, "x", (4,), np.uint32)
    random_words(SEED, "y", (1000,), np.uint32)
    assert np.array_equal(first, random_words(SEED, "x", (4,), np.uint32))
    assert not np.array_equal(first, random_words(SEED, "y", (4,), np.uint32))
    with pytest.raises(ValueError, match="32 bytes"):
        random_words(b"short", "x", (1,), np.uint32)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), "0.8", None])
def test_thresholds_outside_zero_one_are_refused(bad):
    with pytest.raises(InvalidRequestError, match=r"\(0, 1\]"):
        rational_threshold(bad, 1024)


def test_threshold_becomes_the_fraction_that_decides_like_the_float_test():
    assert (rational_threshold(0.8, 1024).numerator, rational_threshold(0.8, 1024).denominator) \
        == (4, 5)
    odd = rational_threshold(0.123456789, 1024)  # some p/q decides like it up to 2048 bits
    sums = np.arange(1, 2049)[:, None]
    common = np.arange(0, 1025)[None, :]
    assert np.array_equal(2.0 * common / sums >= 0.123456789,
                          2 * odd.denominator * common >= odd.numerator * sums)
    with pytest.raises(InvalidRequestError, match="4 decimals"):
        rational_threshold(0.123456789, 1024, max_denominator=10)


def test_malformed_clks_are_refused_with_a_clear_error():
    with pytest.raises(ClkError, match="no bit set"):
        split_clks(np.zeros((3, 1), np.uint64), 64)
    with pytest.raises(ClkError, match="uint64"):
        split_clks(np.ones((3, 1), np.int64), 64)
    with pytest.raises(ClkError, match="the schema says 1024"):
        unpack_bits(np.ones((3, 1), np.uint64), 1024)


def test_shares_that_do_not_fit_the_plan_are_refused():
    plan = Plan(4, 3, 64)
    dealer = Dealer(plan)
    material = PartyMaterial(0, plan, dealer.seeds[0])
    rational = rational_threshold(0.8, 64)
    good = np.zeros((3, 64), np.uint32)
    for left, message in [(np.zeros((5, 64), np.uint32), r"shape \(4, 64\)"),
                          (np.zeros((4, 64), np.uint64), "uint32")]:
        with pytest.raises(InvalidRequestError, match=message):
            next(threshold_party(0, left, good, rational, material))
    with pytest.raises(InvalidRequestError, match="server 0's material"):
        next(threshold_party(1, np.zeros((4, 64), np.uint32), good, rational, material))


def test_dealer_material_is_used_once_and_by_the_right_server():
    plan = Plan(4, 3, 64, block_rows=2)
    dealer = Dealer(plan)
    with pytest.raises(InvalidRequestError, match="only server 1"):
        PartyMaterial(0, plan, dealer.seeds[0], dealer.corrections())
    with pytest.raises(InvalidRequestError, match="only server 1"):
        PartyMaterial(1, plan, dealer.seeds[1])
    material = PartyMaterial(0, plan, dealer.seeds[0])
    material.block(0)
    with pytest.raises(InvalidRequestError, match="used once, in order"):
        material.block(0)
    wrong = Dealer(Plan(4, 5, 64, block_rows=2)).corrections()
    with pytest.raises(InvalidRequestError, match="shape"):
        PartyMaterial(1, plan, dealer.seeds[1], wrong).block(0)


def test_messages_are_the_protocol_size():
    """Per pair: the masked value (4 B), 5 AND rounds (2 x 8 B), the result bit (1/8 B)."""
    rng = np.random.default_rng(9)
    left, right = _related(rng, 64, 64, 64)
    _, sent = _shared_hits(left, right, 0.8, block_rows=64)
    per_record = 4 * 64
    assert sent == 128 * per_record + 64 * 64 * (4 + AND_ROUNDS * 16) + 64 * 64 // 8


def test_public_names_are_sorted_and_the_core_does_no_io():
    import subprocess
    import sys

    import linkage.mpc as mpc

    assert mpc.__all__ == sorted(mpc.__all__)
    assert all(getattr(mpc, name) is not None for name in mpc.__all__)
    code = ("import sys, linkage.mpc; print(sorted(m for m in ('socket', 'grpc', 'sqlite3', "
            "'click', 'numba') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.sampled_from([0.3, 0.55, 0.7, 0.8, 0.875, 1.0]),
       st.integers(0, 2**32 - 1), st.integers(1, 5))
def test_shared_pairs_equal_the_reference_on_any_small_input(n, m, threshold, seed, block_rows):
    rng = np.random.default_rng(seed)
    density = rng.uniform(0.05, 0.95)
    left, right = _related(rng, n, m, 64, density=density, noise=rng.uniform(0, 0.3))
    hits, _ = _shared_hits(left, right, threshold, block_rows=block_rows)
    reference = candidates_reference(left, right, threshold)
    assert set(zip(hits.left.tolist(), hits.right.tolist())) \
        == set(zip(reference.left.tolist(), reference.right.tolist()))
