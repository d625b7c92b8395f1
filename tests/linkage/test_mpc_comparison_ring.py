"""Secure comparisons mod 2^16 on bit planes (the field levels') decide exactly as those mod
2^32, in fewer bytes."""

import numpy as np
import pytest

from linkage.errors import InvalidRequestError
from linkage.mpc import HitDealer, hit_material, run_locally
from linkage.mpc.planes import plane_words, to_planes
from linkage.mpc.fieldwise import FIELD_THRESHOLDS, level_ring_bits
from linkage.mpc.prg import random_words
from linkage.mpc.protocol import _non_negative, rational_threshold


def _compare(values: np.ndarray, ring_bits: int, seed: int = 0) -> np.ndarray:
    """``[value >= 0]`` decided on fresh additive shares mod 2^32 by both servers."""
    dealer = HitDealer(values.size, 1, ring_bits=ring_bits)
    correction = dealer.correction()
    mask = random_words(bytes([seed]) * 32, "values", values.shape, np.uint32)
    shares = (mask, values.astype(np.int64).astype(np.uint32) - mask)

    def side(party):
        material = hit_material(party, values.size, 1, dealer.seeds[party],
                                correction if party else None, ring_bits)
        bit = yield from _non_negative(party, shares[party][None], material)
        mine = bit.ravel()
        return mine ^ (yield mine)

    out0, out1, sent = run_locally(side(0), side(1))
    assert np.array_equal(out0, out1)
    return out0, sent


@pytest.mark.parametrize("ring_bits", [16, 32])
def test_every_value_in_range_and_its_edges_is_decided_exactly(ring_bits):
    edge = 1 << (ring_bits - 1)
    rng = np.random.default_rng(ring_bits)
    values = np.concatenate([np.arange(-300, 300), [edge - 1, -edge + 1, -edge, edge - 2],
                             rng.integers(-edge, edge, 5000)])
    decided, _ = _compare(values, ring_bits)
    assert np.array_equal(decided, (values >= 0).astype(np.uint8))


def test_mod_2_16_sends_less_than_half():
    values = np.arange(-500, 500)
    _, narrow = _compare(values, 16)
    _, wide = _compare(values, 32)
    # c (2 B a value against 4); 15 combines of 3 bits each on planes of 64 values, against 5
    # rounds of two uint64 words a value; and the opened bit (one byte a value here)
    assert narrow == values.size * (2 + 1) + 15 * 3 * 8 * plane_words(values.size)
    assert wide == values.size * (4 + 5 * 16 + 1)
    assert narrow < wide / 8


def test_the_ring_follows_the_widest_segment():
    """16 bits exactly while every level and swap value fits below 2^15 in magnitude."""
    for widest in (64, 128, 256, 512, 744):
        assert level_ring_bits(widest) == 16
        thresholds = [rational_threshold(t, widest) for t in FIELD_THRESHOLDS]
        assert max(2 * t.numerator * widest for t in thresholds) < 1 << 15
        assert 44 * widest + 1 < 1 << 15  # the swap's value, SWAP_MARGIN = 1/5
    assert level_ring_bits(768) == 32 and level_ring_bits(1024) == 32


def test_planes_hold_bit_j_of_value_m_at_bit_m_of_plane_j():
    values = np.array([1, 2, 0x8000, 0xFFFF] + [0] * 61 + [3], np.uint16)
    planes = to_planes(values)
    assert planes.shape == (16, 2) and planes.dtype == np.uint64
    for j in range(16):
        expected = [(int(v) >> j) & 1 for v in values]
        got = [(int(planes[j, m // 64]) >> (m % 64)) & 1 for m in range(values.size)]
        assert got == expected
    assert not (planes[:, 1] >> np.uint64(2)).any()  # values 64 and 65, then padding: 0


def test_material_of_another_ring_or_size_is_refused():
    dealer = HitDealer(10, 2, ring_bits=32)
    with pytest.raises(InvalidRequestError, match="mod 2\\^32, not mod 2\\^16"):
        hit_material(1, 10, 2, dealer.seeds[1], dealer.correction(), 16)
    narrow = HitDealer(100, 2, ring_bits=16)
    with pytest.raises(InvalidRequestError, match="mod 2\\^16, not mod 2\\^32"):
        hit_material(1, 100, 2, narrow.seeds[1], narrow.correction(), 32)
    with pytest.raises(InvalidRequestError, match="plane correction has shapes"):
        hit_material(1, 100, 1, narrow.seeds[1], narrow.correction(), 16)
    with pytest.raises(InvalidRequestError, match="2\\^32 or 2\\^16"):
        HitDealer(10, 2, ring_bits=24)
