"""A side of a comparison in the kernel's layout (``PreparedSide``), built with numpy alone.

Why a module of its own: preparing a side needs no numba, so a caller can prepare both
sides while numba is still being imported and its cached code loaded on another thread
(``executor.load_kernels_in_background``); the kernel (``kernel.scan_prepared``) then only
scans them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from linkage.errors import ClkError

__all__ = ["PreparedSide", "prepare_side"]

# Right rows per block: the kernel's vector lanes, held in _LANES / 8 AVX-512
# registers. A block of 1024-bit CLKs is 16 KiB and stays in L1. Measured on
# 30k x 30k, 1024 bits: 128 beats 64 (less per-block overhead) and 256 (a
# block is abandoned early less often).
_LANES = 128


def _checked(matrix: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(matrix, np.ndarray) or matrix.ndim != 2 or matrix.dtype != np.uint64:
        raise ClkError(
            f"{name} CLKs must be a 2-D uint64 matrix (records, words) as clks_from_bytes "
            f"returns, got {getattr(matrix, 'dtype', type(matrix).__name__)} with shape "
            f"{getattr(matrix, 'shape', '?')}"
        )
    return np.ascontiguousarray(matrix)


def _popcount_profile(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's popcount, and its popcount from every word to the end.

    Returns ``(counts, suffix)`` with ``suffix[i, w]`` the set bits of row ``i``
    in words ``w:`` (``suffix[i, words] == 0``), as ``int16`` (a CLK has fewer
    than 32768 bits): whatever cuts a scan chooses, its bounds read from here.
    """
    rows, words = matrix.shape
    suffix = np.zeros((rows, words + 1), np.int16)
    if words:
        per_word = np.bitwise_count(matrix).astype(np.int16)
        suffix[:, :words] = np.cumsum(per_word[:, ::-1], axis=1, dtype=np.int16)[:, ::-1]
    return suffix[:, 0].astype(np.int64), suffix


def _blocked(sorted_rows: np.ndarray, sorted_suffix: np.ndarray):
    """Word-major blocks of ``_LANES`` rows: ``blocks[b, w, lane]``, zero padded; the same
    for the suffix popcounts."""
    rows, words = sorted_rows.shape
    n_blocks = max((rows + _LANES - 1) // _LANES, 1)
    padded = np.zeros((n_blocks * _LANES, words), np.uint64)
    padded[:rows] = sorted_rows
    blocks = np.ascontiguousarray(padded.reshape(n_blocks, _LANES, words).transpose(0, 2, 1))
    rest = np.zeros((n_blocks * _LANES, sorted_suffix.shape[1]), np.int16)
    rest[:rows] = sorted_suffix
    rest = np.ascontiguousarray(rest.reshape(n_blocks, _LANES, -1).transpose(0, 2, 1))
    return blocks, rest


@dataclass(frozen=True)
class PreparedSide:
    """One side of a comparison in the kernel's layout, built once and scanned many times.

    Rows sorted by popcount (``order[k]`` is the input row at sorted position k),
    their popcount profile (``rest[k, w]``: set bits in words ``w:``; for the
    blocks ``blocked_rest[b, w, lane]``), and the word-major blocks of
    ``_LANES`` rows. None of
    it depends on the threshold, so a run that scans the same rows at several
    floors (a sample, then everything) or in many tiles (on other machines)
    prepares each side once. ``digest`` names the rows' contents, so that two
    sides can be checked to be one batch without comparing them.
    """

    order: np.ndarray
    rows: np.ndarray
    counts: np.ndarray
    rest: np.ndarray
    blocks: np.ndarray
    blocked_rest: np.ndarray
    digest: bytes

    @property
    def size(self) -> int:
        return int(self.rows.shape[0])

    @property
    def words(self) -> int:
        return int(self.rows.shape[1])

    @property
    def nbytes(self) -> int:
        return int(sum(getattr(self, name).nbytes for name in
                       ("order", "rows", "counts", "rest", "blocks", "blocked_rest")))


def prepare_side(matrix: np.ndarray, name: str = "CLK") -> PreparedSide:
    """The kernel's sorted, word-major copy of ``matrix`` (see ``PreparedSide``).

    Raises:
        ClkError: ``matrix`` is not a 2-D ``uint64`` matrix, or has zero-length CLKs.
    """
    matrix = _checked(matrix, name)
    if matrix.shape[0] and matrix.shape[1] == 0:
        raise ClkError("CLKs must be at least 64 bits long")
    counts, rest = _popcount_profile(matrix)
    order = np.argsort(counts, kind="stable").astype(np.int64)
    rows = matrix[order]
    sorted_rest = rest[order]
    blocks, blocked_rest = _blocked(rows, sorted_rest)
    digest = hashlib.blake2b(matrix.tobytes(), digest_size=16,
                             person=str(matrix.shape).encode()[:16]).digest()
    return PreparedSide(order, rows, counts[order], sorted_rest, blocks, blocked_rest, digest)
