"""Native Dice candidate kernel: the all-pairs comparison the server runs for every linkage.

Comparing every CLK of one batch with every CLK of another is the one quadratic
step of a linkage run, so it gets a compiled kernel instead of the numpy path in
``candidates.py`` (which materialises a tile x block x words temporary and
manages about 10^7 comparisons per second). The kernel is numba-compiled for
the host CPU, which buys three things numpy cannot:

* the AND-popcount loop compiles to ``popcnt`` (``vpopcntq`` where AVX-512
  VPOPCNTDQ exists) through LLVM's ``ctpop`` intrinsic, vectorised *across right
  rows* (the right side is stored word-major in blocks of ``_LANES`` rows) so
  there is no per-pair horizontal sum;
* work is skipped exactly, never approximately: both sides are sorted by
  popcount so each left row only meets the right rows whose popcount can still
  reach the threshold (Dice <= 2 min(|a|,|b|) / (|a|+|b|)), and a block of right
  rows is abandoned part-way (at two checks placed per scan, where sampled
  blocks of this data at this threshold die: ``_cuts``) as soon as no row in
  it can reach the threshold even if every remaining bit matched;
* the left rows are split into small tiles that run on all cores (``prange``,
  ``nogil``), each tile sweeping a block of right rows that stays in L1 while
  all of the tile's rows pass over it; each thread fills its own result buffer,
  so results come back as arrays with no Python work per pair. Result tiles
  too small to repay waking a second thread run on one.

Every accept/reject decision compares an integer count of common bits with a
precomputed table of the smallest count that passes, where the table is built by
evaluating exactly the reference's float64 expression ``2.0 * common / (|a|+|b|)
>= threshold``. Reported scores use that same expression, so the result is the
same set of pairs with bit-identical scores as ``candidates_reference``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from linkage.matching.candidates import CandidatePairs
from linkage.errors import ClkError
from linkage.matching.sides import _LANES, PreparedSide, prepare_side

__all__ = ["PreparedSide", "dice_candidates_native", "iter_dice_tiles", "prepare_side",
           "scan_prepared"]

# Right rows per block (_LANES, in ``sides``): the kernel's vector lanes.
# Left rows per unit of parallel work: the rows that share one sweep of blocks,
# so a block is fetched into L1 once per _TILE_ROWS rows.
_TILE_ROWS = 64
# Left rows per yielded result tile unless the caller says otherwise.
_DEFAULT_TILE_ROWS = 4096
# Result slots per thread for the first result tile; grows to what tiles need.
_MIN_CAPACITY = 1 << 14
# Result tiles with fewer candidate-range pairs than this run on one thread:
# about a millisecond of work, less than waking a second thread can cost when
# the machine is busy (measured: 3 ms single vs ~35 ms two-thread for 2k x 2k
# with another process holding one core).
_SERIAL_PAIRS = 1 << 22
# "No count of common bits passes" in the threshold table.
_NEVER = np.int64(1) << np.int64(40)

# numba's workqueue threading layer must not be entered by two threads at once;
# the kernel uses every core anyway, so concurrent callers simply take turns.
_KERNEL_LOCK = threading.Lock()

_VECTOR = 8  # 64-bit lanes per 512-bit register
_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_V64 = ir.VectorType(_I64, _VECTOR)


@intrinsic
def _popcount64(typingctx, word):
    """Set bits of one 64-bit word, as LLVM's ``ctpop`` (a single ``popcnt``)."""
    if not isinstance(word, types.Integer) or word.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.int64(word), codegen


@intrinsic
def _next_ticket(typingctx, counter):
    """Atomically ``counter[0] += 1``; returns the value before (a work ticket)."""
    if not (
        isinstance(counter, types.Array) and counter.ndim == 1 and counter.dtype == types.int64
    ):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", array.data, ir.Constant(_I64, 1), "monotonic")

    return types.int64(counter), codegen


def _wide_vectors(function) -> None:
    """Let LLVM use 512-bit registers in ``function``.

    x86 CPUs with AVX-512 are tuned to prefer 256-bit vectors; without these
    attributes an explicit <8 x i64> would be split in two. llvmlite only knows a
    fixed set of attribute names, so the string attributes go in directly.
    """
    set.add(function.attributes, '"prefer-vector-width"="512"')
    set.add(function.attributes, '"min-legal-vector-width"="512"')


@intrinsic
def _and_popcount_block(typingctx, acc, blocks, block, left, row, w_start, w_stop):
    """``acc[lane] += popcount(left[row, w] & blocks[block, w, lane])`` for w in range.

    Emitted as explicit vector IR: the ``_LANES`` accumulators live in
    registers across the word loop (``_LANES / 8`` registers of 8 lanes), each
    step is one broadcast, and per register one AND (with the load folded in),
    one ``vpopcntq`` and one add. Without AVX-512 LLVM lowers the same IR to
    whatever the CPU has (AVX2 nibble lookups, scalar ``popcnt``).

    No bounds checks: the caller guarantees ``acc`` has ``_LANES`` entries,
    ``blocks`` is (blocks, words, ``_LANES``) and ``0 <= w_start <= w_stop <=
    words`` for both matrices.
    """
    if not (
        isinstance(acc, types.Array) and acc.ndim == 1 and acc.dtype == types.int64
        and isinstance(blocks, types.Array) and blocks.ndim == 3 and blocks.dtype == types.uint64
        and isinstance(left, types.Array) and left.ndim == 2 and left.dtype == types.uint64
        and acc.layout == "C" and blocks.layout == "C" and left.layout == "C"
    ):
        return None
    sig = types.none(acc, blocks, block, left, row, w_start, w_stop)

    def codegen(context, builder, signature, args):
        _wide_vectors(builder.function)
        acc_arr = context.make_array(signature.args[0])(context, builder, args[0])
        blocks_arr = context.make_array(signature.args[1])(context, builder, args[1])
        left_arr = context.make_array(signature.args[3])(context, builder, args[3])
        block_i, row_i, start, stop = (
            context.cast(builder, value, ty, types.int64)
            for value, ty in zip(
                (args[2], args[4], args[5], args[6]),
                (signature.args[2], signature.args[4], signature.args[5], signature.args[6]),
            )
        )
        words = cgutils.unpack_tuple(builder, blocks_arr.shape, 3)[1]
        left_words = cgutils.unpack_tuple(builder, left_arr.shape, 2)[1]
        ctpop = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_V64, [_V64]), "llvm.ctpop.v8i64"
        )
        n_vec = _LANES // _VECTOR
        acc_ptr = builder.bitcast(acc_arr.data, _V64.as_pointer())
        slots = []
        for k in range(n_vec):
            slot = cgutils.alloca_once(builder, _V64)
            src = builder.gep(acc_ptr, [ir.Constant(_I64, k)])
            builder.store(builder.load(src, align=8), slot)
            slots.append(slot)
        row_base = builder.mul(row_i, left_words)
        block_base = builder.mul(block_i, words)
        zero_mask = ir.Constant(ir.VectorType(_I32, _VECTOR), [0] * _VECTOR)
        with cgutils.for_range_slice(builder, start, stop, ir.Constant(_I64, 1)) as (w, _):
            word_ptr = builder.gep(left_arr.data, [builder.add(row_base, w)])
            word = builder.load(word_ptr, align=8)
            splat = builder.insert_element(ir.Constant(_V64, ir.Undefined), word,
                                           ir.Constant(_I32, 0))
            splat = builder.shuffle_vector(splat, ir.Constant(_V64, ir.Undefined), zero_mask)
            lane_ptr = builder.gep(
                blocks_arr.data,
                [builder.mul(builder.add(block_base, w), ir.Constant(_I64, _LANES))],
            )
            vec_ptr = builder.bitcast(lane_ptr, _V64.as_pointer())
            for k in range(n_vec):
                data = builder.load(builder.gep(vec_ptr, [ir.Constant(_I64, k)]), align=8)
                count = builder.call(ctpop, [builder.and_(data, splat)])
                builder.store(builder.add(builder.load(slots[k]), count), slots[k])
        for k in range(n_vec):
            dst = builder.gep(acc_ptr, [ir.Constant(_I64, k)])
            builder.store(builder.load(slots[k]), dst, align=8)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def _need_table(threshold: float, max_sum: int) -> np.ndarray:
    """Smallest common-bit count that passes, for every popcount sum 0..max_sum.

    ``need[s]`` is the least ``c`` with ``2.0 * c / s >= threshold`` evaluated in
    float64 exactly as the reference does (``_NEVER`` if no ``c <= s // 2`` does).
    The float expression is monotone in ``c``, so ``c >= need[s]`` is equivalent
    to the reference's comparison. It is not monotone in ``s`` (a small sum may never
    pass while a larger one can), hence the suffix minimum ``need_floor`` for bounds.
    """
    need = np.empty(max_sum + 1, np.int64)
    need[0] = 0 if 0.0 >= threshold else _NEVER
    for s in range(1, max_sum + 1):
        top = s // 2
        if not 2.0 * top / s >= threshold:
            need[s] = _NEVER
            continue
        guess = threshold * s / 2.0
        c = 0
        if guess > 0.0:
            c = min(int(math.floor(guess)), top)
        while c > 0 and 2.0 * (c - 1) / s >= threshold:
            c -= 1
        while not 2.0 * c / s >= threshold:
            c += 1
        need[s] = c
    return need


@njit(cache=True, nogil=True)
def _feasible_counts(need: np.ndarray, max_bits: int):
    """For each left popcount, the range of right popcounts that can still pass.

    A pair can only pass if ``min(|a|, |b|) >= need[|a| + |b|]`` (all of the
    smaller CLK's bits in common). Returns inclusive ``(low, high)`` arrays,
    ``low > high`` where nothing can pass; the range is the hull of the feasible
    popcounts, so it never excludes a passing pair.
    """
    low = np.full(max_bits + 1, max_bits + 1, np.int64)
    high = np.full(max_bits + 1, -1, np.int64)
    for a in range(max_bits + 1):
        for b in range(max_bits + 1):
            if min(a, b) >= need[a + b]:
                if b < low[a]:
                    low[a] = b
                high[a] = b
    return low, high


@njit(cache=True, nogil=True, parallel=True)
def _scan(
    left,
    left_counts,
    left_rest,
    left_lo,
    left_hi,
    blocks,
    right_counts,
    right_rest,
    cuts,
    need,
    need_floor,
    n_right,
    start,
    stop,
    out_row,
    out_col,
    out_common,
    out_n,
):
    """Compare sorted left rows ``start:stop`` with the blocked right side.

    One ``prange`` iteration per thread; each thread takes the next tile from
    a shared atomic counter until none are left, so tiles of uneven cost, or a
    core shared with another process, do not leave a thread idle. Thread ``t``
    writes its pairs to row ``t`` of the ``out_*`` buffers; ``out_n[t]`` is the
    number it found, which may exceed the buffer width: then the caller reruns
    with wider buffers.
    """
    threads = out_n.shape[0]
    capacity = out_row.shape[1]
    n_cuts = cuts.shape[0] - 1
    n_tiles = (stop - start + _TILE_ROWS - 1) // _TILE_ROWS
    counter = np.zeros(1, np.int64)
    for thread in prange(threads):
        acc = np.zeros(_LANES, np.int64)
        found = 0
        while True:
            tile = _next_ticket(counter)
            if tile >= n_tiles:
                break
            first = start + tile * _TILE_ROWS
            last = min(first + _TILE_ROWS, stop)
            lo = n_right
            hi = 0
            for p in range(first, last):
                if left_lo[p] < left_hi[p]:
                    lo = min(lo, left_lo[p])
                    hi = max(hi, left_hi[p])
            if lo >= hi:
                continue
            for block in range(lo // _LANES, (hi + _LANES - 1) // _LANES):
                base = block * _LANES
                block_min = right_counts[base]
                for p in range(first, last):
                    row_lo = left_lo[p]
                    row_hi = left_hi[p]
                    if row_lo >= row_hi or row_hi <= base or row_lo >= base + _LANES:
                        continue
                    ca = left_counts[p]
                    # need_floor[s] = min(need[s:]) and the block is sorted by
                    # popcount, so this bounds every lane's requirement from below
                    # (need itself is not monotone: small sums can never pass).
                    need_low = need_floor[ca + block_min]
                    for lane in range(_LANES):
                        acc[lane] = 0
                    alive = True
                    for cut in range(n_cuts):
                        _and_popcount_block(acc, blocks, block, left, p, cuts[cut], cuts[cut + 1])
                        if cut + 1 < n_cuts:
                            # Even if every remaining bit matched, can any lane pass?
                            at = cuts[cut + 1]
                            rest = np.int64(left_rest[p, at])
                            hit = 0
                            for lane in range(_LANES):
                                bound = acc[lane] + min(rest, np.int64(right_rest[block, at, lane]))
                                hit |= bound >= need_low
                            if hit == 0:
                                alive = False
                                break
                    if not alive:
                        continue
                    hit = 0
                    for lane in range(_LANES):
                        hit |= acc[lane] >= need_low
                    if hit == 0:
                        continue
                    for lane in range(_LANES):
                        q = base + lane
                        if q < row_lo or q >= row_hi:
                            continue
                        common = acc[lane]
                        if common >= need[ca + right_counts[q]]:
                            if found < capacity:
                                out_row[thread, found] = p
                                out_col[thread, found] = q
                                out_common[thread, found] = common
                            found += 1
        out_n[thread] = found


@contextmanager
def _thread_count(threads: int) -> Iterator[None]:
    """Run numba parallel code in this block with ``threads`` threads (this thread only)."""
    previous = numba.get_num_threads()
    if threads == previous:
        yield
        return
    numba.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


#: Sampled (left row, right block) visits from which ``_cuts`` places the checks.
_CUT_SAMPLES = 96
#: The first check goes where, in a sampled visit, no more than this share of the block's
#: lanes can still pass on average: the block is then nearly always dropped there.
_CUT_ALIVE_SHARE = 0.15
_CUT_SEED = 0x6375_7473
#: Cuts of recent scans (a few milliseconds each to choose), by what they depend on.
_CUT_CACHE: dict[tuple, np.ndarray] = {}


def _fixed_cuts(words: int) -> np.ndarray:
    """Checks at 3/8, 1/2 and 3/4 of the words: the placement before it was chosen per scan
    (kept for scans too small to sample)."""
    inner = sorted({c for c in ((3 * words) // 8, words // 2, (3 * words) // 4) if 0 < c < words})
    return np.asarray([0, *inner, words], np.int64)


def _cuts(left: "PreparedSide", right: "PreparedSide", threshold: float, same: bool,
          need_floor: np.ndarray, left_lo: np.ndarray, left_hi: np.ndarray) -> np.ndarray:
    """Word offsets where the kernel checks whether a block can still pass, for this scan.

    Where a block of right rows dies depends on the threshold and the data: on
    random CLKs 30-50% full, nearly every block is dropped after 6 of 16 words
    at 0.8 but only after 8-9 at 0.72, so fixed checks are early (wasted) or
    late (wasted words) for one of them. A check costs more than a word, and
    measured there two checks beat three or four. So a few sampled visits
    (left rows against blocks in their ranges, the kernel's own bound) give
    the share of lanes still able to pass after each word; the first check is
    where that share falls to ``_CUT_ALIVE_SHARE``, the second two words later.
    Only speed depends on this: every placement gives the same pairs.
    """
    words = left.words
    rows = np.flatnonzero(left_hi > left_lo)
    if words < 4 or rows.size == 0:
        return _fixed_cuts(words)
    key = (left.digest, right.digest, threshold, same)
    cached = _CUT_CACHE.get(key)
    if cached is not None:  # the same scan again, e.g. the next unit of a run on a worker
        return cached
    rng = np.random.default_rng(_CUT_SEED)
    picked = rows[rng.integers(0, rows.size, _CUT_SAMPLES)]
    first_block = left_lo[picked] // _LANES
    last_block = (left_hi[picked] - 1) // _LANES
    blocks = first_block + (rng.random(_CUT_SAMPLES) * (last_block - first_block + 1)
                            ).astype(np.int64)
    # common[s, w, lane]: common bits of sampled visit s in word w; cum: in words :w.
    common = np.bitwise_count(left.rows[picked][:, :, None] & right.blocks[blocks]).astype(
        np.int16)
    cum = np.zeros((_CUT_SAMPLES, words + 1, _LANES), np.int64)
    np.cumsum(common, axis=1, out=cum[:, 1:])
    bound = cum + np.minimum(left.rest[picked][:, :, None], right.blocked_rest[blocks])
    block_min = right.counts[np.minimum(blocks * _LANES, right.size - 1)]
    need_low = need_floor[left.counts[picked] + block_min]
    alive = (bound >= need_low[:, None, None]).mean(axis=(0, 2))
    inner = np.flatnonzero(alive[2:words - 1] <= _CUT_ALIVE_SHARE)
    first = int(inner[0]) + 2 if inner.size else words - 2
    cuts = np.asarray(sorted({0, first, *([first + 2] if first + 2 < words else []), words}),
                      np.int64)
    if len(_CUT_CACHE) >= 64:
        _CUT_CACHE.clear()
    _CUT_CACHE[key] = cuts
    return cuts


def _check_pair(left: PreparedSide, right: PreparedSide, threshold: float, same: bool) -> float:
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("threshold is NaN")
    if same and (left.size != right.size or left.digest != right.digest):
        raise ValueError("same=True compares one batch with itself: pass the same matrix twice")
    if left.size and right.size and left.words != right.words:
        raise ClkError(
            f"left CLKs are {left.words * 64} bits but right CLKs are "
            f"{right.words * 64}: were the batches encoded with different schemas?"
        )
    return threshold


def _row_ranges(left: PreparedSide, right: PreparedSide, threshold: float, same: bool):
    """Per sorted left row, the sorted right rows ``[lo, hi)`` whose popcount can pass,
    and the tables the scan needs."""
    bits = left.words * 64
    need = _need_table(threshold, 2 * bits)
    need_floor = np.minimum.accumulate(need[::-1])[::-1].copy()
    low, high = _feasible_counts(need, bits)
    # first[v]: index of the first sorted right row with popcount >= v.
    first = np.searchsorted(right.counts, np.arange(bits + 2), side="left")
    counts = left.counts
    feasible = low[counts] <= high[counts]
    left_lo = np.where(feasible, first[np.minimum(low[counts], bits + 1)], 0)
    left_hi = np.where(feasible, first[np.clip(high[counts] + 1, 0, bits + 1)], 0)
    if same:
        left_lo = np.maximum(left_lo, np.arange(left.size) + 1)
    left_lo = left_lo.astype(np.int64)
    left_hi = np.maximum(left_hi, left_lo).astype(np.int64)
    cuts = _cuts(left, right, threshold, same, need_floor, left_lo, left_hi)
    return cuts, need, need_floor, left_lo, left_hi


def scan_prepared(
    left: PreparedSide,
    right: PreparedSide,
    threshold: float,
    *,
    same: bool = False,
    start: int = 0,
    stop: int | None = None,
    tile_rows: int = _DEFAULT_TILE_ROWS,
) -> Iterator[CandidatePairs]:
    """Pairs with Dice >= ``threshold`` of sorted left rows ``start:stop`` (positions in
    popcount order, not input rows), one tile of ``tile_rows`` of them at a time.

    Row numbers in the results are input rows of the two prepared matrices. The
    tiles of ``start:stop`` ranges that cover ``0:left.size`` together are
    exactly what ``iter_dice_tiles`` yields, so a comparison can be split into
    such ranges and run anywhere. Raises as ``iter_dice_tiles``.
    """
    threshold = _check_pair(left, right, threshold, same)
    if tile_rows < 1:
        raise ValueError(f"tile_rows must be at least 1, got {tile_rows}")
    stop = left.size if stop is None else min(stop, left.size)
    if left.size == 0 or right.size == 0:
        for _ in range(start, stop, tile_rows):
            yield CandidatePairs.empty()
        return
    cuts, need, need_floor, left_lo, left_hi = _row_ranges(left, right, threshold, same)
    all_threads = numba.get_num_threads()
    capacity = _MIN_CAPACITY
    n_right = right.size
    for tile_start in range(start, stop, tile_rows):
        tile_stop = min(tile_start + tile_rows, stop)
        work = int(np.sum(left_hi[tile_start:tile_stop] - left_lo[tile_start:tile_stop]))
        if work == 0:
            yield CandidatePairs.empty()
            continue
        threads = all_threads if work >= _SERIAL_PAIRS else 1
        while True:
            out_row = np.empty((threads, capacity), np.int64)
            out_col = np.empty((threads, capacity), np.int64)
            out_common = np.empty((threads, capacity), np.int64)
            out_n = np.zeros(threads, np.int64)
            with _KERNEL_LOCK, _thread_count(threads):
                _scan(
                    left.rows, left.counts, left.rest, left_lo, left_hi,
                    right.blocks, right.counts, right.blocked_rest, cuts, need, need_floor,
                    n_right, tile_start, tile_stop, out_row, out_col, out_common, out_n,
                )
            if int(out_n.max()) <= capacity:
                break
            # Which thread gets which tile varies run to run, so only the total
            # is sure to fit every thread's share on the rerun.
            capacity = int(out_n.sum())
        if not out_n.any():
            yield CandidatePairs.empty()
            continue
        rows = np.concatenate([out_row[t, : out_n[t]] for t in range(threads)])
        cols = np.concatenate([out_col[t, : out_n[t]] for t in range(threads)])
        common = np.concatenate([out_common[t, : out_n[t]] for t in range(threads)])
        totals = left.counts[rows] + right.counts[cols]
        scores = np.zeros(rows.shape[0], np.float64)
        nonzero = totals > 0
        scores[nonzero] = 2.0 * common[nonzero] / totals[nonzero]
        left_ids = left.order[rows]
        right_ids = right.order[cols]
        if same:
            left_ids, right_ids = np.minimum(left_ids, right_ids), np.maximum(left_ids, right_ids)
        order = np.lexsort((right_ids, left_ids))
        yield CandidatePairs(left_ids[order], right_ids[order], scores[order])


def iter_dice_tiles(
    left: np.ndarray | PreparedSide,
    right: np.ndarray | PreparedSide,
    threshold: float,
    *,
    same: bool = False,
    tile_rows: int = _DEFAULT_TILE_ROWS,
) -> Iterator[CandidatePairs]:
    """Yield every pair with Dice >= ``threshold``, one tile of left rows at a time.

    There are exactly ``ceil(len(left) / tile_rows)`` tiles, empty ones
    included, so callers can report progress per tile. Each covers up to
    ``tile_rows`` left rows (taken in popcount order, so a tile's row numbers
    are not contiguous); every left row is in exactly one tile (with
    ``same=True``: every pair) and pairs within a tile are ordered by (left,
    right). Memory beyond the inputs is O(rows + tile results), whatever the
    batch sizes. The kernel uses ``numba.get_num_threads()`` threads (set
    ``NUMBA_NUM_THREADS`` or call ``numba.set_num_threads``).

    Args:
        left: packed CLKs, a (records, words) ``uint64`` matrix, or its
            ``prepare_side`` (to scan the same rows many times without re-sorting).
        right: packed CLKs with the same number of words, or its ``prepare_side``.
        threshold: report pairs whose Dice coefficient is >= this (float64).
        same: ``left`` and ``right`` are one batch compared with itself; only
            pairs ``i < j`` are reported (as ``left=i, right=j``).
        tile_rows: left rows per yielded tile (bounds the memory of one tile).

    Yields:
        ``CandidatePairs`` with ``int64`` row numbers and ``float64`` scores equal
        bit for bit to ``candidates_reference``.

    Raises:
        ClkError: a matrix is not 2-D ``uint64`` or the two CLK lengths differ.
        ValueError: ``threshold`` is NaN, ``tile_rows < 1``, or ``same=True`` with
            two different matrices.
    """
    if not isinstance(left, PreparedSide) and isinstance(right, np.ndarray) and left is right:
        right = left = prepare_side(left, "left")
    left = left if isinstance(left, PreparedSide) else prepare_side(left, "left")
    right = right if isinstance(right, PreparedSide) else prepare_side(right, "right")
    yield from scan_prepared(left, right, threshold, same=same, tile_rows=tile_rows)


def dice_candidates_native(
    left: np.ndarray, right: np.ndarray, threshold: float, *, same: bool = False
) -> CandidatePairs:
    """All pairs with Dice >= ``threshold``, computed by the native kernel.

    The same pairs and bit-identical scores as ``candidates_reference``, ordered
    by (left, right).

    Args:
        left: packed CLKs, a (records, words) ``uint64`` matrix.
        right: packed CLKs with the same number of words.
        threshold: report pairs whose Dice coefficient is >= this (float64).
        same: ``left`` and ``right`` are one batch compared with itself; only
            pairs ``i < j`` are reported.

    Returns:
        ``CandidatePairs`` sorted by (left, right).

    Raises:
        ClkError: a matrix is not 2-D ``uint64`` or the two CLK lengths differ.
        ValueError: ``threshold`` is NaN or ``same=True`` with two different matrices.
    """
    tiles = list(iter_dice_tiles(left, right, threshold, same=same))
    return CandidatePairs.concat(tiles).sorted()
