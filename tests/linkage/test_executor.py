"""The comparison seam: prepared sides, units of work, and executors that agree element for
element with the in-process scan (the Dask executor's own test is tests/server/test_dask.py)."""

from __future__ import annotations

import numpy as np
import pytest

from linkage.matching import dask_tasks
from linkage.matching.blocking import distinct_pairs, lsh_candidates, plan_lsh, table_positions
from linkage.matching.candidates import CandidatePairs, candidates_reference
from linkage.matching.engine import compare_new_records, link_records
from linkage.errors import ClkError
from linkage.matching.executor import (
    IN_PROCESS,
    TILE_ROWS,
    ComparisonTask,
    PreparedSides,
    global_pairs,
    plan_new_record_tasks,
    tile_ranges,
)
from linkage.matching.kernel import iter_dice_tiles, prepare_side, scan_prepared


def _random_clks(rng, count: int, words: int = 16) -> np.ndarray:
    density = rng.uniform(0.3, 0.5, count)[:, None]
    return np.packbits(rng.random((count, words * 64)) < density, axis=1).view("<u8").copy()


def _with_copies(count: int, seed: int) -> np.ndarray:
    """Random CLKs, a third of them damaged copies of others (pairs at every score)."""
    rng = np.random.default_rng(seed)
    clks = _random_clks(rng, count)
    copies = count // 3
    noise = np.packbits(rng.random((copies, 1024)) < rng.uniform(0.01, 0.2, copies)[:, None],
                        axis=1).view("<u8")
    clks[-copies:] = clks[:copies] ^ noise
    return clks


def _same(a: CandidatePairs, b: CandidatePairs) -> bool:
    return (np.array_equal(a.left, b.left) and np.array_equal(a.right, b.right)
            and np.array_equal(a.score, b.score))


def test_a_prepared_side_scans_as_the_raw_matrices_do_and_as_the_reference():
    clks = _with_copies(900, seed=3)
    left, right = clks[:400], clks[400:]
    raw = CandidatePairs.concat(list(iter_dice_tiles(left, right, 0.7, tile_rows=128)))
    prepared = CandidatePairs.concat(list(iter_dice_tiles(prepare_side(left),
                                                          prepare_side(right), 0.7,
                                                          tile_rows=128)))
    assert _same(raw, prepared)
    assert _same(raw.sorted(), candidates_reference(left, right, 0.7).sorted())
    side = prepare_side(clks)
    within = CandidatePairs.concat(list(scan_prepared(side, side, 0.7, same=True)))
    assert _same(within.sorted(), candidates_reference(clks, clks, 0.7, same=True).sorted())


def test_ranges_of_sorted_rows_cover_the_scan_exactly_in_its_order():
    clks = _with_copies(3 * TILE_ROWS + 500, seed=5)
    side = prepare_side(clks)
    whole = CandidatePairs.concat(list(scan_prepared(side, side, 0.6, same=True,
                                                     tile_rows=TILE_ROWS)))
    ranges = tile_ranges(side.size, 2 * TILE_ROWS)
    assert ranges == [(0, 2 * TILE_ROWS), (2 * TILE_ROWS, side.size)]
    units = [dask_tasks.scan_tile_range(side, side, 0.6, True, start, stop)
             for start, stop in ranges]
    assert len(whole) > 1000
    assert _same(CandidatePairs.concat(units), whole)


def test_lsh_tables_split_between_callers_find_what_one_caller_finds():
    clks = _with_copies(3000, seed=7)
    plan = plan_lsh(1024, 2 * 460.0, 0.8, records=1500)
    assert plan is not None and plan.tables > 2
    whole = lsh_candidates(clks[:1500], clks[1500:], 0.8, plan)
    positions = table_positions(1024, plan)
    one_caller = dask_tasks.scan_lsh_tables(clks[:1500], clks[1500:], 0.8, False, positions)
    split = [dask_tasks.scan_lsh_tables(clks[:1500], clks[1500:], 0.8, False,
                                        positions[first:first + 3])
             for first in range(0, len(positions), 3)]
    assert _same(distinct_pairs(one_caller, 1500), whole)
    assert _same(distinct_pairs(CandidatePairs.concat(split), 1500), whole)
    assert len(whole) > 500
    # Told the tables before theirs, the callers report each pair once in all: a copy is
    # found by most tables, and keeping every find cost memory and a sort of them all.
    told = [dask_tasks.scan_lsh_tables(clks[:1500], clks[1500:], 0.8, False,
                                       positions[first:first + 3], positions[:first])
            for first in range(0, len(positions), 3)]
    assert len(one_caller) == len(whole) == sum(len(part) for part in told)
    assert len(CandidatePairs.concat(split)) > 2 * len(whole)
    assert _same(distinct_pairs(CandidatePairs.concat(told), 1500), whole)


def test_a_run_prepares_each_side_once_however_many_scans_use_it():
    clks = _with_copies(2000, seed=9)
    is_new = np.zeros(2000, bool)
    is_new[1200:] = True
    tasks = plan_new_record_tasks(is_new)
    with PreparedSides(clks) as sides:
        first = IN_PROCESS.scan(clks, tasks, 0.6, prepared=sides)
        again = IN_PROCESS.scan(clks, tasks, 0.8, prepared=sides)
        assert len(sides._sides) == 2  # new rows, old rows: built once for both scans
    assert _same(first, compare_new_records(clks, is_new, 0.6))
    keep = first.score >= 0.8
    assert _same(again.sorted(), CandidatePairs(first.left[keep], first.right[keep],
                                                first.score[keep]).sorted())


def test_global_pairs_name_rows_of_the_run_with_left_below_right():
    task = ComparisonTask(np.array([7, 3]), np.array([1, 9]))
    found = CandidatePairs(np.array([0, 1]), np.array([0, 1]), np.array([0.9, 0.8]))
    mapped = global_pairs(task, found)
    assert mapped.left.tolist() == [1, 3] and mapped.right.tolist() == [7, 9]


def test_executor_none_is_the_in_process_run():
    clks = _with_copies(1500, seed=11)
    owners = np.repeat(np.arange(3), 500)
    default = link_records(clks, owners, threshold=0.75, cross_owner_only=True)
    explicit = link_records(clks, owners, threshold=0.75, cross_owner_only=True,
                            executor=IN_PROCESS)
    assert _same(default.pairs, explicit.pairs)
    assert np.array_equal(default.grouping.labels, explicit.grouping.labels)


def test_bad_sides_are_refused_with_the_kernels_errors():
    clks = _with_copies(100, seed=13)
    with pytest.raises(ClkError):
        prepare_side(clks.astype(np.int64))
    with pytest.raises(ValueError, match="same=True"):
        list(scan_prepared(prepare_side(clks[:50]), prepare_side(clks[50:]), 0.8, same=True))
    with pytest.raises(ClkError, match="bits"):
        list(scan_prepared(prepare_side(clks), prepare_side(clks[:, :8].copy()), 0.8))
