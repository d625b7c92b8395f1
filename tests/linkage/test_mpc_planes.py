"""Secure comparisons on bit planes (mod 2^16 and 2^32, the field-wise run's) decide exactly
as the word layout's mod 2^32, in a fraction of the bytes."""

import numpy as np
import pytest

from linkage.errors import InvalidRequestError
from linkage.mpc import HitDealer, hit_material, run_locally
from linkage.mpc.fieldwise import FIELD_THRESHOLDS, level_plane_bits
from linkage.mpc.planes import plane_correction_bytes, plane_words, to_planes
from linkage.mpc.prg import random_words
from linkage.mpc.protocol import _non_negative, rational_threshold


def _compare(values: np.ndarray, plane_bits: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """``[value >= 0]`` decided on fresh additive shares mod 2^32 by both servers, and the
    bytes server 0 sent."""
    dealer = HitDealer(values.size, 1, plane_bits=plane_bits)
    correction = dealer.correction()
    mask = random_words(bytes([seed]) * 32, "values", values.shape, np.uint32)
    shares = (mask, values.astype(np.int64).astype(np.uint32) - mask)

    def side(party):
        material = hit_material(party, values.size, 1, dealer.seeds[party],
                                correction if party else None, plane_bits)
        bit = yield from _non_negative(party, shares[party][None], material)
        mine = bit.ravel()
        return mine ^ (yield mine)

    out0, out1, sent = run_locally(side(0), side(1))
    assert np.array_equal(out0, out1)
    return out0, sent


@pytest.mark.parametrize("plane_bits,edge_bits", [(16, 16), (32, 32), (0, 32)])
def test_every_value_in_range_and_its_edges_is_decided_exactly(plane_bits, edge_bits):
    edge = 1 << (edge_bits - 1)
    rng = np.random.default_rng(edge_bits + plane_bits)
    values = np.concatenate([np.arange(-300, 300), [edge - 1, -edge + 1, -edge, edge - 2],
                             rng.integers(-edge, edge, 5000)])
    decided, _ = _compare(values, plane_bits)
    assert np.array_equal(decided, (values >= 0).astype(np.uint8))


def test_planes_send_a_fraction_of_the_word_layout():
    values = np.arange(-500, 500)
    words = plane_words(values.size)
    # c (2 or 4 B a value); b - 1 combines of 3 bits each on planes of 64 values; the opened
    # bit (one byte a value here). The word layout: c, then 5 rounds of two uint64 words.
    assert _compare(values, 16)[1] == values.size * (2 + 1) + 15 * 3 * 8 * words
    assert _compare(values, 32)[1] == values.size * (4 + 1) + 31 * 3 * 8 * words
    assert _compare(values, 0)[1] == values.size * (4 + 5 * 16 + 1)
    assert _compare(values, 32)[1] < _compare(values, 0)[1] / 5
    for bits in (16, 32):
        assert HitDealer(values.size, 1, plane_bits=bits).correction().nbytes \
            == plane_correction_bytes(values.size, bits) == 8 * words * (3 * bits - 2)


def test_the_levels_ring_follows_the_widest_segment():
    """16 bits exactly while every level and swap value fits below 2^15 in magnitude."""
    for widest in (64, 128, 256, 512, 744):
        assert level_plane_bits(widest) == 16
        thresholds = [rational_threshold(t, widest) for t in FIELD_THRESHOLDS]
        assert max(2 * t.numerator * widest for t in thresholds) < 1 << 15
        assert 44 * widest + 1 < 1 << 15  # the swap's value, SWAP_MARGIN = 1/5
    assert level_plane_bits(768) == 32 and level_plane_bits(1024) == 32


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_planes_hold_bit_j_of_value_m_at_bit_m_of_plane_j(dtype):
    values = np.array([1, 2, 0x8000, 0xFFFF] + [0] * 61 + [3], dtype)
    if dtype == np.uint32:
        values[5] = 0xDEADBEEF
    planes = to_planes(values)
    bits = 8 * np.dtype(dtype).itemsize
    assert planes.shape == (bits, 2) and planes.dtype == np.uint64
    for j in range(bits):
        expected = [(int(v) >> j) & 1 for v in values]
        got = [(int(planes[j, m // 64]) >> (m % 64)) & 1 for m in range(values.size)]
        assert got == expected
    assert not (planes[:, 1] >> np.uint64(2)).any()  # values 64 and 65, then padding: 0


def test_material_of_another_layout_or_size_is_refused():
    words = HitDealer(10, 2)
    with pytest.raises(InvalidRequestError, match="word layout, not on bit planes"):
        hit_material(1, 10, 2, words.seeds[1], words.correction(), 16)
    planes = HitDealer(100, 2, plane_bits=16)
    with pytest.raises(InvalidRequestError, match="on bit planes, not in the word layout"):
        hit_material(1, 100, 2, planes.seeds[1], planes.correction(), 0)
    with pytest.raises(InvalidRequestError, match="plane correction has shapes"):
        hit_material(1, 100, 2, planes.seeds[1], planes.correction(), 32)
    with pytest.raises(InvalidRequestError, match="plane correction has shapes"):
        hit_material(1, 100, 1, planes.seeds[1], planes.correction(), 16)
    with pytest.raises(InvalidRequestError, match="2\\^16 or 2\\^32"):
        HitDealer(10, 2, plane_bits=24)
