"""CLKs as packed bit matrices.

A batch of CLKs is held as one ``uint64`` matrix of shape (records, words):
bit ``i`` of a CLK lives in byte ``i // 8`` at bit position ``7 - i % 8`` of the
big-endian byte string that clkhash produces, and the bytes are viewed as
little-endian 64-bit words. The word view is only ever used for popcounts and
AND-popcounts, which do not care about bit order, so the layout round-trips
exactly to clkhash's bytes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

import numpy as np

from linkage.errors import ClkError

__all__ = [
    "clks_from_base64",
    "clks_from_buffer",
    "clks_from_bytes",
    "clks_to_base64",
    "clks_to_bytes",
    "popcounts",
]

WORD_BITS = 64


def clks_from_bytes(clks: Sequence[bytes], clk_bits: int) -> np.ndarray:
    """Pack raw CLK byte strings into a (records, words) ``uint64`` matrix.

    Raises:
        ClkError: if ``clk_bits`` is not a positive multiple of 64 or any CLK has
            another length (the message gives the first offending index).
    """
    words = _words_for(clk_bits)
    expected = clk_bits // 8
    if any(len(clk) != expected for clk in clks):
        index = next(i for i, clk in enumerate(clks) if len(clk) != expected)
        raise ClkError(
            f"CLK #{index} is {len(clks[index]) * 8} bits long but the schema says {clk_bits}: "
            "was this batch encoded with another linkage schema?"
        )
    # One join and no further copy: a bytearray's buffer is writable, so the matrix is too.
    buffer = bytearray(b"".join(clks))
    return np.frombuffer(buffer, dtype="<u8").reshape(len(clks), words)


def clks_from_buffer(data, offset: int, count: int, clk_bits: int) -> np.ndarray:
    """The matrix of ``count`` CLKs stored back to back in ``data`` from ``offset`` (a
    batch file's CLK section), copied once and without a Python object per CLK.

    Raises:
        ClkError: ``clk_bits`` is not a positive multiple of 64, or ``data`` is too short.
    """
    words = _words_for(clk_bits)
    if offset + count * (clk_bits // 8) > len(data):
        raise ClkError(f"Expected {count} CLKs of {clk_bits} bits, but the data ends early.")
    return np.frombuffer(data, dtype="<u8", count=count * words, offset=offset).reshape(
        count, words).copy()


def clks_from_base64(encoded: Sequence[str], clk_bits: int) -> np.ndarray:
    """Decode base64 CLKs (clkhash's JSON form) into a packed matrix.

    Raises:
        ClkError: a CLK is not valid base64 or has the wrong length.
    """
    raw = []
    for index, text in enumerate(encoded):
        if not isinstance(text, str):
            raise ClkError(f"CLK #{index} is a {type(text).__name__}, expected a base64 string")
        try:
            raw.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise ClkError(f"CLK #{index} is not valid base64") from None
    return clks_from_bytes(raw, clk_bits)


def clks_to_bytes(matrix: np.ndarray) -> list[bytes]:
    """The byte string of each CLK in a packed matrix, in clkhash's order."""
    row_bytes = np.ascontiguousarray(matrix, dtype="<u8").view(np.uint8)
    return [row.tobytes() for row in row_bytes]


def clks_to_base64(matrix: np.ndarray) -> list[str]:
    """Each CLK of a packed matrix as base64, as clkhash writes it."""
    return [base64.b64encode(clk).decode("ascii") for clk in clks_to_bytes(matrix)]


def popcounts(matrix: np.ndarray) -> np.ndarray:
    """Number of set bits of each CLK (``int64`` vector)."""
    if matrix.size == 0:
        return np.zeros(matrix.shape[0], dtype=np.int64)
    return np.bitwise_count(matrix).sum(axis=1, dtype=np.int64)


def _words_for(clk_bits: int) -> int:
    if clk_bits <= 0 or clk_bits % WORD_BITS:
        raise ClkError(f"CLK length must be a positive multiple of 64 bits, got {clk_bits}")
    return clk_bits // WORD_BITS
