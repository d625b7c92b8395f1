"""Hamming LSH blocking by bit sampling: compare only pairs that share a bucket somewhere.

Each of ``tables`` hash tables samples ``bits`` random bit positions; two CLKs
share a bucket in a table when they agree on all sampled bits. Two CLKs with
popcounts summing to S and Dice t differ in S(1 - t) bits, so they agree on a
random bit with probability q = 1 - S(1 - t)/L (L = CLK length) and are put
side by side at least once with probability 1 - (1 - q^bits)^tables. The
parameters are chosen from the threshold and the data's popcounts so that a
pair exactly at the threshold (with large popcounts, the hard case) is found
with probability >= ``completeness``; pairs above the threshold more often.
Nothing beyond the CLKs is needed, and nothing beyond them is revealed.

Every bucket pair is scored with the exact Dice formula, so the result is a
subset of the exhaustive candidates (never a false pair); a pair is reported
by the first table whose bucket it shares only, so nothing needs deduplicating.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange

from linkage.matching.candidates import CandidatePairs
from linkage.clks import popcounts
from linkage.matching.kernel import _KERNEL_LOCK, _next_ticket, _popcount64

__all__ = ["LshPlan", "distinct_pairs", "lsh_candidates", "lsh_table_pairs", "plan_lsh",
           "table_positions"]

_BITS_CHOICES = (12, 14, 16, 18, 20, 22, 24)
_RECORD_COST = 40


@dataclass(frozen=True)
class LshPlan:
    """Sampled bits per table, number of tables, and the completeness they promise."""

    bits: int
    tables: int
    expected_completeness: float
    agree_probability: float


def plan_lsh(clk_bits: int, popcount_sum: float, threshold: float, *,
             completeness: float = 0.995, max_tables: int = 400,
             records: int = 1_000_000, nonmatch_agree: float = 0.55) -> LshPlan | None:
    """Choose bits per table and tables for the threshold; ``None`` if blocking cannot pay.

    Args:
        clk_bits: CLK length in bits.
        popcount_sum: a high quantile of |a| + |b| over the data (the hard case).
        threshold: the Dice threshold pairs must reach.
        completeness: wanted probability of finding a pair exactly at the threshold.
        max_tables: above this many tables, exhaustive comparison is cheaper.
        records: records per side, to weigh bucket sizes against table count.
        nonmatch_agree: probability two unrelated CLKs agree on a random bit.
    """
    differing = popcount_sum * (1.0 - threshold)
    agree = max(0.0, 1.0 - differing / clk_bits)
    best = None
    for bits in _BITS_CHOICES:
        hit = agree ** bits
        if hit <= 0:
            continue
        tables = math.ceil(math.log(1 - completeness) / math.log1p(-hit)) if hit < 1 else 1
        if tables > max_tables:
            continue
        # Per table, sorting and bucketing cost about as much per record as scoring
        # _RECORD_COST pairs does (measured here).
        cost = tables * (_RECORD_COST * records + records * records * nonmatch_agree ** bits)
        if best is None or cost < best[0]:
            best = (cost, bits, tables, 1 - (1 - hit) ** tables)
    if best is None:
        return None
    return LshPlan(best[1], best[2], best[3], agree)


#: Buckets a thread takes from the shared counter at a time in ``_bucket_scan``.
_BUCKETS_PER_TICKET = 64
_MIN_CAPACITY = 1 << 12


@njit(cache=True, nogil=True)
def _keys(matrix, positions):
    keys = np.zeros(matrix.shape[0], np.uint64)
    for row in range(matrix.shape[0]):
        key = np.uint64(0)
        for position in positions:
            word = matrix[row, position // 64]
            bit = (word >> np.uint64(position % 64)) & np.uint64(1)
            key = (key << np.uint64(1)) | bit
        keys[row] = key
    return keys


@njit(cache=True, nogil=True)
def _score(a, b, ca, cb):
    common = 0
    for w in range(a.shape[0]):
        common += _popcount64(a[w] & b[w])
    total = ca + cb
    return 2.0 * common / total if total > 0 else 0.0


@njit(cache=True, nogil=True)
def _shared_earlier(a, b, masks, table):
    """Whether rows ``a`` and ``b`` agree on every sampled bit of a table before ``table``."""
    for earlier in range(table):
        agree = True
        for w in range(a.shape[0]):
            if (a[w] ^ b[w]) & masks[earlier, w]:
                agree = False
                break
        if agree:
            return True
    return False


@njit(cache=True, nogil=True, parallel=True)
def _bucket_scan(left, right, lcounts, rcounts, lorder, rorder, lstart, lstop, rstart, rstop,
                 threshold, same, masks, table, out_l, out_r, out_s, out_n):
    """Score every pair of each shared bucket in one pass on all threads.

    Bucket sizes vary a lot, so each thread takes the next ``_BUCKETS_PER_TICKET``
    buckets from a shared counter (as ``kernel._scan`` takes tiles) and writes
    its pairs to its own row of the ``out_*`` buffers; ``out_n[t]`` may exceed
    the width, and then the caller reruns with wider buffers. A pair that also
    shares a bucket of an earlier table (``masks[:table]``, the tables' sampled
    bits) was reported there and is skipped: a true match shares most tables'
    buckets, and keeping every copy cost memory and a sort of all of them.
    """
    buckets = lstart.shape[0]
    threads = out_n.shape[0]
    capacity = out_l.shape[1]
    tickets = (buckets + _BUCKETS_PER_TICKET - 1) // _BUCKETS_PER_TICKET
    counter = np.zeros(1, np.int64)
    for thread in prange(threads):
        n = 0
        while True:
            ticket = _next_ticket(counter)
            if ticket >= tickets:
                break
            for bucket in range(ticket * _BUCKETS_PER_TICKET,
                                min((ticket + 1) * _BUCKETS_PER_TICKET, buckets)):
                for i in range(lstart[bucket], lstop[bucket]):
                    a = lorder[i]
                    for j in range(rstart[bucket], rstop[bucket]):
                        b = rorder[j]
                        if same and a >= b:
                            continue
                        score = _score(left[a], right[b], lcounts[a], rcounts[b])
                        if score >= threshold and not _shared_earlier(left[a], right[b],
                                                                      masks, table):
                            if n < capacity:
                                out_l[thread, n] = a
                                out_r[thread, n] = b
                                out_s[thread, n] = score
                            n += 1
        out_n[thread] = n


def table_positions(clk_bits: int, plan: LshPlan, seed: int = 0) -> list[np.ndarray]:
    """The sampled bit positions of each of the plan's tables (sorted, ``int64``).

    Drawn from ``seed`` in table order, so any split of the tables between
    callers (processes, machines) samples exactly what one caller would.
    """
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(clk_bits, plan.bits, replace=False)).astype(np.int64)
            for _ in range(plan.tables)]


@njit(cache=True, nogil=True)
def _key_order(matrix, positions, digit_bits):
    """Rows in stable order of their keys, and the sorted keys: an LSD radix sort in
    passes of ``digit_bits`` bits (the order ``np.argsort(keys, kind="stable")`` gives)."""
    rows = matrix.shape[0]
    keys = _keys(matrix, positions)
    order = np.arange(rows)
    spare = np.empty(rows, np.int64)
    buckets = 1 << digit_bits
    mask = np.uint64(buckets - 1)
    counts = np.empty(buckets + 1, np.int64)
    shift = 0
    while shift < positions.shape[0]:
        counts[:] = 0
        for i in range(rows):
            counts[((keys[order[i]] >> np.uint64(shift)) & mask) + 1] += 1
        for d in range(buckets):
            counts[d + 1] += counts[d]
        for i in range(rows):
            row = order[i]
            digit = (keys[row] >> np.uint64(shift)) & mask
            spare[counts[digit]] = row
            counts[digit] += 1
        order, spare = spare, order
        shift += digit_bits
    return order, keys[order]


@njit(cache=True, nogil=True)
def _bucket_ranges(lsorted, rsorted):
    """Each key found in both sorted arrays: its row ranges on both sides, by one merge."""
    size = min(lsorted.shape[0], rsorted.shape[0])
    lstart = np.empty(size, np.int64)
    lstop = np.empty(size, np.int64)
    rstart = np.empty(size, np.int64)
    rstop = np.empty(size, np.int64)
    i = j = found = 0
    while i < lsorted.shape[0] and j < rsorted.shape[0]:
        if lsorted[i] < rsorted[j]:
            i += 1
        elif rsorted[j] < lsorted[i]:
            j += 1
        else:
            key = lsorted[i]
            lstart[found], rstart[found] = i, j
            while i < lsorted.shape[0] and lsorted[i] == key:
                i += 1
            while j < rsorted.shape[0] and rsorted[j] == key:
                j += 1
            lstop[found], rstop[found] = i, j
            found += 1
    return lstart[:found], lstop[:found], rstart[:found], rstop[:found]


def _shared_buckets(left: np.ndarray, right: np.ndarray, positions: np.ndarray):
    """One table's buckets found on both sides: row orders and each bucket's row ranges,
    or ``None`` when no bucket is shared.

    All in numba without the GIL (keys, radix sort, merge), so the "ahead" threads of
    ``lsh_table_pairs`` really run beside the scan; numpy's argsort, fancy indexing,
    ``searchsorted`` and the intersection cost 2x as much here and partly held the GIL.
    """
    bits = int(positions.size)
    digit_bits = bits if bits <= 16 else (bits + 1) // 2
    lorder, lsorted = _key_order(left, positions, digit_bits)
    rorder, rsorted = _key_order(right, positions, digit_bits)
    lstart, lstop, rstart, rstop = _bucket_ranges(lsorted, rsorted)
    if lstart.size == 0:
        return None
    return lorder, rorder, lstart, lstop, rstart, rstop


def _table_masks(words: int, positions: list[np.ndarray]) -> np.ndarray:
    """``masks[t]``: table t's sampled bits set, as CLK words (bit i in word i // 64 at
    position i % 64, as ``_keys`` reads them)."""
    masks = np.zeros((len(positions), words), np.uint64)
    for table, sampled in enumerate(positions):
        np.bitwise_or.at(masks[table], sampled // 64,
                         np.left_shift(np.uint64(1), (sampled % 64).astype(np.uint64)))
    return masks


def lsh_table_pairs(left: np.ndarray, right: np.ndarray, threshold: float,
                    positions: list[np.ndarray], *, same: bool = False,
                    earlier: list[np.ndarray] = ()) -> CandidatePairs:
    """Pairs (Dice >= threshold) sharing a bucket in any of these tables, each pair once.

    A pair is reported by the first table, in plan order, whose bucket it shares:
    ``earlier`` are the plan's tables before ``positions`` (scanned by another
    caller), so callers that split a plan's tables between them report every
    pair exactly once in all. Bucketing a table (keys, sorts) runs on one core,
    so while the scoring of one table runs on all of them, one thread per core
    buckets the tables after it (numba and numpy's sorts release the GIL), and
    every core stays busy.
    """
    lcounts, rcounts = popcounts(left), popcounts(right)
    parts = []
    capacity = _MIN_CAPACITY
    if not positions:
        return CandidatePairs.empty()
    masks = _table_masks(left.shape[1], [*earlier, *positions])
    ahead = max(1, numba.get_num_threads())
    with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="lsh-buckets") as pool:
        upcoming = deque(pool.submit(_shared_buckets, left, right, table_positions)
                         for table_positions in positions[:ahead])
        for table in range(len(positions)):
            buckets = upcoming.popleft().result()
            if table + ahead < len(positions):
                upcoming.append(pool.submit(_shared_buckets, left, right,
                                            positions[table + ahead]))
            if buckets is None:
                continue
            lorder, rorder, lstart, lstop, rstart, rstop = buckets
            threads = numba.get_num_threads()
            while True:
                out_l = np.empty((threads, capacity), np.int64)
                out_r = np.empty((threads, capacity), np.int64)
                out_s = np.empty((threads, capacity), np.float64)
                out_n = np.zeros(threads, np.int64)
                with _KERNEL_LOCK:
                    _bucket_scan(left, right, lcounts, rcounts, lorder, rorder, lstart, lstop,
                                 rstart, rstop, threshold, same, masks, len(earlier) + table,
                                 out_l, out_r, out_s, out_n)
                if int(out_n.max()) <= capacity:
                    break
                capacity = int(out_n.sum())  # which thread takes which bucket varies run to run
            for thread in range(threads):
                if out_n[thread]:
                    found_here = int(out_n[thread])
                    parts.append(CandidatePairs(out_l[thread, :found_here].copy(),
                                                out_r[thread, :found_here].copy(),
                                                out_s[thread, :found_here].copy()))
    return CandidatePairs.concat(parts)


def distinct_pairs(found: CandidatePairs, right_rows: int) -> CandidatePairs:
    """Each pair once, ordered by (left, right) (the order every executor returns)."""
    if len(found) == 0:
        return found
    keys = found.left * np.int64(right_rows) + found.right
    _, first = np.unique(keys, return_index=True)
    return CandidatePairs(found.left[first], found.right[first], found.score[first])


def lsh_candidates(left: np.ndarray, right: np.ndarray, threshold: float, plan: LshPlan, *,
                   same: bool = False, seed: int = 0) -> CandidatePairs:
    """Candidate pairs (Dice >= threshold) among the pairs that share a bucket.

    With ``same=True`` the matrices are one batch and only pairs i < j come back.
    """
    positions = table_positions(left.shape[1] * 64, plan, seed)
    return distinct_pairs(lsh_table_pairs(left, right, threshold, positions, same=same),
                          right.shape[0])
