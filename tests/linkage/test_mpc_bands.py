"""K thresholds on shares: the opened histogram and the hits' bands must be the kernel's.

Both servers' generators run in one process (``run_locally``). The reference is the plaintext
kernel's float scores, binned at the same edges; pairs exactly at every edge are included.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.errors import InvalidRequestError
from linkage.matching.candidates import candidates_reference
from linkage.matching.kernel import dice_candidates_native
from linkage.mpc import (AND_ROUNDS, BandDealer, BandMaterial, Dealer, HitDealer, PartyMaterial,
                         Plan, band_plan, band_thresholds, bands_party, hit_material, hits_party,
                         run_locally, split_clks)

EDGES = (0.5, 0.6, 0.7, 0.75, 0.8, 0.9)


def _pack(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits.astype(bool), axis=1, bitorder="little").view("<u8").astype(np.uint64)


def _related(rng, n, m, bits, density=0.3, noise=0.08):
    """Right rows are noisy copies of left rows; ``noise`` may be one rate per right row."""
    left = rng.random((n, bits)) < density
    noise = np.broadcast_to(np.asarray(noise, np.float64), (m,))[:, None]
    right = left[rng.integers(0, n, m)] ^ (rng.random((m, bits)) < noise)
    right[np.flatnonzero(~right.any(axis=1)), 0] = True
    left[np.flatnonzero(~left.any(axis=1)), 0] = True
    return _pack(left), _pack(right)


def _run(left, right, edges, choose, *, block_rows=0, dealer=None):
    bits = left.shape[1] * 64
    bands = band_thresholds(edges, bits)
    plan = band_plan(left.shape[0], right.shape[0], bits, len(bands))
    if block_rows:
        plan = type(plan)(plan.left_rows, plan.right_rows, bits, block_rows=block_rows)
    dealer = dealer or BandDealer(plan, len(bands))
    l0, l1 = split_clks(left, bits)
    r0, r1 = split_clks(right, bits)
    first = bands_party(0, l0, r0, bands, BandMaterial(0, plan, len(bands), dealer.seeds[0]),
                        choose)
    second = bands_party(1, l1, r1, bands,
                         BandMaterial(1, plan, len(bands), dealer.seeds[1],
                                      dealer.corrections()), choose)
    out0, out1, sent = run_locally(first, second)
    for name in ("at_least", "left", "right", "band"):
        assert np.array_equal(getattr(out0, name), getattr(out1, name))
    return out0, sent


def _reference(left, right, edges, link):
    """The kernel's pairs at the lowest edge, binned by its float scores."""
    pairs = dice_candidates_native(left, right, edges[0])
    at_least = np.array([(pairs.score >= edge).sum() for edge in edges])
    keep = pairs.score >= edges[link]
    order = np.lexsort((pairs.right[keep], pairs.left[keep]))
    band = np.searchsorted(np.asarray(edges), pairs.score[keep][order], side="right") - 1
    return at_least, pairs.left[keep][order], pairs.right[keep][order], band


@pytest.mark.parametrize("bits", [64, 1024])
@pytest.mark.parametrize("link", [0, 3, 5])
def test_histogram_and_bands_equal_the_kernels(bits, link):
    rng = np.random.default_rng(bits + link)
    left, right = _related(rng, 60, 40, bits, noise=rng.uniform(0, 0.35, 40))
    seen = []
    out, _ = _run(left, right, EDGES, lambda counts: seen.append(counts) or link, block_rows=7)
    at_least, ref_left, ref_right, ref_band = _reference(left, right, EDGES, link)
    assert np.array_equal(out.at_least, at_least)
    assert np.array_equal(seen[0], at_least)
    assert out.link == link
    assert np.array_equal(out.left, ref_left) and np.array_equal(out.right, ref_right)
    assert np.array_equal(out.band, ref_band)
    assert len(out) > 0 and out.counts.sum() == at_least[0]
    assert np.unique(out.band).size >= min(3, len(EDGES) - link)  # several bands really seen
    assert np.array_equal(out.score, np.asarray(EDGES)[ref_band])


def test_pairs_exactly_at_every_edge():
    """Common-bit counts just below, at and above each edge, for many popcount pairs."""
    bits, edges = 64, (0.5, 0.6, 0.75, 0.8, 0.875)
    lefts, rights = [], []
    for a in (4, 8, 16, 20, 40, 64):
        for b in (4, 8, 16, 30, 64):
            for common in range(max(1, a + b - bits), min(a, b) + 1):
                row_a = np.zeros(bits, bool)
                row_b = np.zeros(bits, bool)
                row_a[:a] = True
                row_b[a - common:a - common + b] = True
                lefts.append(row_a)
                rights.append(row_b)
    left, right = _pack(np.array(lefts)), _pack(np.array(rights))
    dice = 2 * np.array([(x & y).sum() for x, y in zip(lefts, rights)]) / \
        np.array([x.sum() + y.sum() for x, y in zip(lefts, rights)])
    assert any(np.isclose(dice, edge).any() for edge in edges)  # edges are really hit
    out, _ = _run(left, right, edges, lambda counts: 0)
    at_least, ref_left, ref_right, ref_band = _reference(left, right, edges, 0)
    assert np.array_equal(out.at_least, at_least)
    assert np.array_equal(out.band, ref_band) and np.array_equal(out.left, ref_left)


def test_the_histogram_equals_the_plaintext_histogram():
    rng = np.random.default_rng(5)
    left, right = _related(rng, 50, 50, 64, density=0.4, noise=0.15)
    out, _ = _run(left, right, EDGES, lambda counts: 4)
    reference = candidates_reference(left, right, EDGES[0])
    expected, _ = np.histogram(reference.score, bins=[*EDGES, 1.0 + 1e-12])
    assert np.array_equal(out.counts, expected)


def test_only_hits_get_a_band_and_messages_have_the_protocol_size():
    """Per pair: K x (masked value 4 B + 5 AND rounds 16 B + daBit 1/8 B), the hit bit 1/8 B;
    per hit, a bit per threshold above the link; K counts of 4 B."""
    rng = np.random.default_rng(9)
    left, right = _related(rng, 64, 64, 64)
    k, link = len(EDGES), 4
    out, sent = _run(left, right, EDGES, lambda counts: link, block_rows=64)
    pairs = 64 * 64
    above = -(-len(out) * (k - link - 1) // 8)
    assert sent == (128 * 4 * 64 + pairs * k * (4 + AND_ROUNDS * 16) + pairs * k // 8
                    + 4 * k + pairs // 8 + above)
    assert (out.band >= link).all()


def test_malformed_input_is_refused():
    with pytest.raises(InvalidRequestError, match="strictly increasing"):
        band_thresholds([0.8, 0.7], 64)
    with pytest.raises(InvalidRequestError, match="strictly increasing"):
        band_thresholds([0.8, 0.8], 64)
    with pytest.raises(InvalidRequestError, match="1 to 64"):
        band_thresholds([], 64)
    with pytest.raises(InvalidRequestError, match="in \\(0, 1\\]"):
        band_thresholds([0.5, 1.5], 64)
    bands = band_thresholds(EDGES, 64)
    plan = band_plan(4, 3, 64, len(bands))
    dealer = BandDealer(plan, len(bands))
    good = np.zeros((3, 64), np.uint32)
    material = BandMaterial(0, plan, len(bands), dealer.seeds[0])
    with pytest.raises(InvalidRequestError, match="uint32 of shape"):
        next(bands_party(0, np.zeros((4, 64), np.int64), good, bands, material, int))
    with pytest.raises(InvalidRequestError, match="server 0's material"):
        next(bands_party(1, np.zeros((4, 64), np.uint32), good, bands, material, int))
    other = BandMaterial(0, plan, 2, dealer.seeds[0])
    with pytest.raises(InvalidRequestError, match="for 2 thresholds"):
        next(bands_party(0, np.zeros((4, 64), np.uint32), good, bands, other, int))
    rng = np.random.default_rng(1)
    left, right = _related(rng, 6, 5, 64)
    with pytest.raises(InvalidRequestError, match="chose 6"):
        _run(left, right, EDGES, lambda counts: 6)


def test_reused_material_is_refused():
    bands = band_thresholds(EDGES, 64)
    plan = band_plan(4, 3, 64, len(bands))
    dealer = BandDealer(plan, len(bands))
    with pytest.raises(InvalidRequestError, match="only server 1"):
        BandMaterial(0, plan, len(bands), dealer.seeds[0], dealer.corrections())
    material = BandMaterial(0, plan, len(bands), dealer.seeds[0])
    material.masks()
    with pytest.raises(InvalidRequestError, match="used once"):
        material.masks()
    material.block(0)
    with pytest.raises(InvalidRequestError, match="used once, in order"):
        material.block(0)
    wrong = BandDealer(band_plan(4, 3, 64, 2), 2).corrections()
    with pytest.raises(InvalidRequestError, match="shape"):
        BandMaterial(1, plan, len(bands), dealer.seeds[1], wrong).block(0)
    # A whole run on used material fails at once (the masks were taken).
    rng = np.random.default_rng(2)
    left, right = _related(rng, 4, 3, 64)
    shares = split_clks(left, 64)[0], split_clks(right, 64)[0]
    used = BandMaterial(0, plan, len(bands), dealer.seeds[0])
    next(bands_party(0, *shares, bands, used, int))
    with pytest.raises(InvalidRequestError, match="used once"):
        next(bands_party(0, *shares, bands, used, int))


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 10), st.integers(1, 10), st.integers(0, 2**32 - 1), st.integers(1, 4),
       st.integers(0, 2))
def test_bands_equal_the_reference_on_any_small_input(n, m, seed, block_rows, link):
    rng = np.random.default_rng(seed)
    left, right = _related(rng, n, m, 64, density=rng.uniform(0.05, 0.95),
                           noise=rng.uniform(0, 0.3))
    edges = (0.3, 0.55, 0.875)
    out, _ = _run(left, right, edges, lambda counts: link, block_rows=block_rows)
    reference = candidates_reference(left, right, edges[0])
    score = {(int(a), int(b)): s for a, b, s in
             zip(reference.left, reference.right, reference.score)}
    assert out.at_least.tolist() == [sum(s >= e for s in score.values()) for e in edges]
    expected = {pair: int(np.searchsorted(edges, s, side="right") - 1)
                for pair, s in score.items() if s >= edges[link]}
    assert dict(zip(zip(out.left.tolist(), out.right.tolist()), out.band.tolist())) == expected


def _run_hits(left, right, edges, link, *, block_rows=0):
    """The sampled design's second half: the hit graph at ``edges[link]``, bands of hits."""
    bits = left.shape[1] * 64
    bands = band_thresholds(edges, bits)
    plan = Plan(left.shape[0], right.shape[0], bits, block_rows=block_rows)
    dealer = Dealer(plan)
    l0, l1 = split_clks(left, bits)
    r0, r1 = split_clks(right, bits)
    hit_dealers = []

    def material_for(party):
        def make(count):
            if party == 0:
                hit_dealers.append(HitDealer(count, len(edges) - link - 1))
                return hit_material(0, count, len(edges) - link - 1, hit_dealers[0].seeds[0])
            return hit_material(1, count, len(edges) - link - 1, hit_dealers[0].seeds[1],
                                hit_dealers[0].correction())
        return make

    first = hits_party(0, l0, r0, bands, link, PartyMaterial(0, plan, dealer.seeds[0]),
                       material_for(0))
    second = hits_party(1, l1, r1, bands, link,
                        PartyMaterial(1, plan, dealer.seeds[1], dealer.corrections()),
                        material_for(1))
    out0, out1, sent = run_locally(first, second)
    for name in ("at_least", "left", "right", "band"):
        assert np.array_equal(getattr(out0, name), getattr(out1, name))
    return out0, sent


@pytest.mark.parametrize("link", [0, 2, 5])
def test_hit_bands_on_hits_alone_equal_the_kernels(link):
    rng = np.random.default_rng(20 + link)
    left, right = _related(rng, 50, 45, 1024, noise=rng.uniform(0, 0.35, 45))
    out, sent = _run_hits(left, right, EDGES, link, block_rows=9)
    at_least, ref_left, ref_right, ref_band = _reference(left, right, EDGES, link)
    assert np.array_equal(out.left, ref_left) and np.array_equal(out.right, ref_right)
    assert np.array_equal(out.band, ref_band)
    assert np.array_equal(out.at_least[link:], at_least[link:])
    assert (out.at_least[:link] == -1).all()
    assert np.unique(out.band).size >= min(3, len(EDGES) - link)
    # Only the hits pay for the upper bands: per hit 4 + 5 x 16 B per threshold above.
    pairs, higher = 50 * 45, len(EDGES) - link - 1
    hit_bits = sum(-(-rows * 45 // 8) for rows in (9, 9, 9, 9, 9, 5))  # per block
    assert sent == (95 * 4 * 1024 + pairs * (4 + AND_ROUNDS * 16) + hit_bits
                    + len(out) * higher * (4 + AND_ROUNDS * 16) + -(-len(out) * higher // 8))


def test_hit_bands_at_every_edge_and_a_wrong_link_is_refused():
    rng = np.random.default_rng(8)
    left, right = _related(rng, 12, 10, 64, noise=rng.uniform(0, 0.3, 10))
    out, _ = _run_hits(left, right, (0.3, 0.5, 0.6, 0.75), 1, block_rows=5)
    reference = candidates_reference(left, right, 0.5)
    assert sorted(zip(out.left.tolist(), out.right.tolist())) == \
        sorted(zip(reference.left.tolist(), reference.right.tolist()))
    bands = band_thresholds(EDGES, 64)
    plan = Plan(3, 3, 64)
    material = PartyMaterial(0, plan, Dealer(plan).seeds[0])
    with pytest.raises(InvalidRequestError, match="link 6"):
        next(hits_party(0, np.zeros((3, 64), np.uint32), np.zeros((3, 64), np.uint32), bands, 6,
                        material, None))
    with pytest.raises(InvalidRequestError, match="only server 1"):
        hit_material(1, 3, 2, bytes(32))


def test_the_sampled_design_end_to_end_equals_the_kernel():
    """Histogram on sampled left rows, a public rule on it, hits and bands for every pair."""
    from linkage.mpc import sampled_auto_party

    rng = np.random.default_rng(31)
    left, right = _related(rng, 40, 30, 64, noise=rng.uniform(0, 0.35, 30))
    bits, rows = 64, np.array([1, 5, 8, 13, 20, 33])
    bands = band_thresholds(EDGES, bits)
    sample_plan = band_plan(rows.size, 30, bits, len(bands))
    band_dealer = BandDealer(sample_plan, len(bands))
    plan = Plan(40, 30, bits, block_rows=7)
    dealer = Dealer(plan)
    l0, l1 = split_clks(left, bits)
    r0, r1 = split_clks(right, bits)
    seen, hit_dealers = [], {}

    def choose(at_least):
        seen.append(at_least)
        return int(np.argmax(at_least < at_least[0]))  # the first edge that loses pairs

    def hit_material_for(party):
        def make(count, thresholds):
            hit = hit_dealers.setdefault((count, thresholds), HitDealer(count, thresholds))
            return hit_material(party, count, thresholds, hit.seeds[party],
                                hit.correction() if party else None)
        return make

    first = sampled_auto_party(0, l0, r0, bands, rows,
                               BandMaterial(0, sample_plan, len(bands), band_dealer.seeds[0]),
                               PartyMaterial(0, plan, dealer.seeds[0]), choose,
                               hit_material_for(0))
    second = sampled_auto_party(1, l1, r1, bands, rows,
                                BandMaterial(1, sample_plan, len(bands), band_dealer.seeds[1],
                                             band_dealer.corrections()),
                                PartyMaterial(1, plan, dealer.seeds[1], dealer.corrections()),
                                choose, hit_material_for(1))
    (sample0, hits0), (sample1, hits1), _ = run_locally(first, second)
    sampled, *_ = _reference(left[rows], right, EDGES, 0)
    assert np.array_equal(sample0, sampled) and np.array_equal(sample1, sampled)
    link = choose(sampled)
    _, ref_left, ref_right, ref_band = _reference(left, right, EDGES, link)
    for hits in (hits0, hits1):
        assert hits.link == link and np.array_equal(hits.left, ref_left)
        assert np.array_equal(hits.right, ref_right) and np.array_equal(hits.band, ref_band)
    with pytest.raises(InvalidRequestError, match="sample rows"):
        next(sampled_auto_party(0, l0, r0, bands, np.array([5, 1]), None, None, choose, None))
