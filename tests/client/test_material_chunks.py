"""The dealer's corrections reach server 1 as chunks of CHUNK_BYTES, byte for byte."""

from dataclasses import dataclass

import numpy as np

from linkage_service.client.api import CHUNK_BYTES
from linkage_service.client.shares import _corrections_chunks


@dataclass(frozen=True)
class _Correction:
    words: np.ndarray
    wide: np.ndarray


def test_chunks_are_full_but_the_last_and_carry_every_byte_in_order():
    rng = np.random.default_rng(0)
    sizes = [(10, 3), (300_000, 5), (1, 1), (CHUNK_BYTES // 4, 0), (2_000_000, 1_500_000),
             (7, 0)]
    corrections = [_Correction(rng.integers(0, 2**32, n, dtype=np.uint32),
                               rng.integers(0, 2**63, m, dtype=np.uint64)) for n, m in sizes]
    parts = list(_corrections_chunks(3, corrections, "sample_corrections"))
    expected = b"".join(part.astype("<u4" if part.dtype == np.uint32 else "<u8").tobytes()
                        for c in corrections for part in (c.words, c.wide))
    assert b"".join(p.chunk.sample_corrections for p in parts) == expected
    assert [len(p.chunk.sample_corrections) for p in parts[:-1]] == [CHUNK_BYTES] * (
        len(parts) - 1)
    assert 0 < len(parts[-1].chunk.sample_corrections) <= CHUNK_BYTES
    assert len(parts) == -(-len(expected) // CHUNK_BYTES)
    assert {p.chunk.pair for p in parts} == {3} and not any(p.chunk.corrections for p in parts)


def test_no_corrections_give_no_chunk():
    assert list(_corrections_chunks(0, [], "corrections")) == []
