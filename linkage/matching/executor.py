"""Where a run's comparisons happen: tasks planned here, scanned by an ``Executor``.

A run's comparisons are a list of ``ComparisonTask`` (rows against rows of one
CLK matrix). An executor splits them into units it can hand out, scans each
against the sides prepared once (``PreparedSides``: the kernel's sorted,
word-major copies, or for LSH the raw slices) and joins the pairs in the order
the tasks and their tiles were planned, so every executor returns the same
``CandidatePairs``, element for element:

* ``InProcessExecutor`` (the default, ``IN_PROCESS``) scans here on every core;
* ``linkage.matching.dask_executor.DaskExecutor`` sends the units to a Dask
  cluster, whose workers run the functions of ``linkage.matching.dask_tasks``.

Nothing here imports Dask (the Dask executor imports it only when it first
connects): the core stays arrays in, arrays out.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from linkage.matching.candidates import CandidatePairs
from linkage.matching.sides import PreparedSide, prepare_side

if TYPE_CHECKING:  # the kernel (numba) is imported where a scan runs: a server starts without it
    from linkage.matching.blocking import LshPlan

__all__ = [
    "IN_PROCESS",
    "TILE_ROWS",
    "ComparisonTask",
    "Executor",
    "InProcessExecutor",
    "PreparedSides",
    "ProgressCallback",
    "global_pairs",
    "load_kernels_in_background",
    "plan_new_record_tasks",
    "plan_owner_tasks",
    "tile_ranges",
]

ProgressCallback = Callable[[str, int, int], None]
#: Left rows per result tile: the grain of progress reports and of the pairs' order.
TILE_ROWS = 2048


@dataclass(frozen=True)
class ComparisonTask:
    """One block of a run's comparisons: rows ``left`` against rows ``right`` of the CLKs.

    With ``same`` the two are one set of rows compared with itself (each pair
    once). A run is a list of these, so that they can be scanned in any order,
    in this process or elsewhere, and the pairs joined afterwards.
    """

    left: np.ndarray
    right: np.ndarray
    same: bool = False

    @property
    def comparisons(self) -> float:
        """How many pairs the task compares (before any skipping by popcount)."""
        left, right = float(self.left.size), float(self.right.size)
        return left * (left - 1) / 2 if self.same else left * right


def plan_new_record_tasks(is_new: np.ndarray) -> list[ComparisonTask]:
    """New records against every old one, and against each other; old pairs are not redone."""
    new_rows = np.flatnonzero(is_new)
    old_rows = np.flatnonzero(~is_new)
    tasks = [ComparisonTask(new_rows, new_rows, same=True)]
    if old_rows.size:
        tasks.insert(0, ComparisonTask(new_rows, old_rows))
    return tasks


def plan_owner_tasks(owners: np.ndarray, cross_owner_only: bool) -> list[ComparisonTask]:
    """Every pair of records once; with ``cross_owner_only`` only pairs of different owners,
    one task per pair of owners (pairs within an owner are not compared at all)."""
    if not cross_owner_only:
        everything = np.arange(owners.shape[0])
        return [ComparisonTask(everything, everything, same=True)]
    rows = [np.flatnonzero(owners == owner) for owner in np.unique(owners)]
    return [ComparisonTask(rows[a], rows[b]) for a in range(len(rows))
            for b in range(a + 1, len(rows))]


def tile_ranges(rows: int, unit_rows: int) -> list[tuple[int, int]]:
    """``start:stop`` ranges of sorted left rows, ``unit_rows`` (a multiple of
    ``TILE_ROWS``) each, so that units of work end where result tiles do."""
    unit_rows = max(TILE_ROWS, (unit_rows // TILE_ROWS) * TILE_ROWS)
    return [(start, min(start + unit_rows, rows)) for start in range(0, rows, unit_rows)]


def global_pairs(task: ComparisonTask, found: CandidatePairs) -> CandidatePairs:
    """A task's pairs (rows of its two sides) as rows of the run's CLKs, ``left < right``."""
    first, second = task.left[found.left], task.right[found.right]
    return CandidatePairs(np.minimum(first, second), np.maximum(first, second), found.score)


@dataclass
class PreparedSides:
    """The prepared sides of one run's tasks, each built once however often it is scanned.

    Bound to one CLK matrix; ``handles`` is where an executor keeps what it made
    of a side (e.g. a Dask future of it), released with ``close``.
    """

    clks: np.ndarray
    _sides: dict[bytes, PreparedSide] = field(default_factory=dict, repr=False)
    handles: dict = field(default_factory=dict, repr=False)

    @staticmethod
    def key(rows: np.ndarray) -> bytes:
        """Names a set of rows (the same rows give the same key)."""
        return hashlib.blake2b(np.ascontiguousarray(rows, np.int64).tobytes(),
                               digest_size=16).digest()

    def side(self, rows: np.ndarray) -> PreparedSide:
        """The kernel's copy of ``clks[rows]``, prepared on first use."""
        key = self.key(rows)
        if key not in self._sides:
            self._sides[key] = prepare_side(self.clks[rows])
        return self._sides[key]

    def close(self) -> None:
        self._sides.clear()
        self.handles.clear()

    def __enter__(self) -> "PreparedSides":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Executor(Protocol):
    """Scans comparison tasks and returns the pairs at or above a floor."""

    def scan(self, clks: np.ndarray, tasks: Sequence[ComparisonTask], floor: float, *,
             plan: LshPlan | None = None, on_progress: ProgressCallback | None = None,
             prepared: PreparedSides | None = None) -> CandidatePairs:
        """Pairs at or above ``floor`` of every task (rows of ``clks``, ``left < right``),
        in task order and within a task in tile order (with a ``plan``: LSH-blocked,
        deduplicated per task). ``prepared`` carries sides over from earlier scans
        of the same run."""
        ...


class InProcessExecutor:
    """Runs the tasks one after another in this process, each on every core (the kernel's
    threads), reporting progress per tile."""

    def scan(self, clks: np.ndarray, tasks: Sequence[ComparisonTask], floor: float, *,
             plan: LshPlan | None = None, on_progress: ProgressCallback | None = None,
             prepared: PreparedSides | None = None) -> CandidatePairs:
        report = on_progress or (lambda stage, done, total: None)
        sides = prepared if prepared is not None else PreparedSides(clks)
        total = int(sum(task.left.size for task in tasks))
        parts = []
        done = 0
        report("comparing", 0, total)
        for task in tasks:
            for found, rows in self._tiles(sides, task, floor, plan):
                parts.append(global_pairs(task, found))
                done = min(done + rows, total)
                report("comparing", done, total)
        report("comparing", total, total)
        return CandidatePairs.concat(parts)

    @staticmethod
    def _tiles(sides: PreparedSides, task: ComparisonTask, floor: float,
               plan: LshPlan | None) -> Iterator[tuple[CandidatePairs, int]]:
        """The task's pairs (rows of its sides) tile by tile, with the left rows each covers."""
        from linkage.matching.blocking import lsh_candidates
        from linkage.matching.kernel import scan_prepared
        if plan is not None:
            left = sides.clks[task.left]
            right = left if task.same else sides.clks[task.right]
            yield lsh_candidates(left, right, floor, plan, same=task.same), int(task.left.size)
            return
        left = sides.side(task.left)
        right = left if task.same else sides.side(task.right)
        for found in scan_prepared(left, right, floor, same=task.same, tile_rows=TILE_ROWS):
            yield found, TILE_ROWS


IN_PROCESS = InProcessExecutor()


def load_kernels_in_background() -> threading.Thread:
    """Import the kernels and load their compiled code on a thread of its own.

    A caller about to scan here (``linkage match``, a server that just started) calls this
    first: numba's import and its first call of cached code take about a second of one
    core, which then overlaps the caller's reading of its input (or its idle wait for a
    first run) instead of delaying the scan. The import lock and the kernel's lock make a
    scan that comes first wait for it; nothing else changes.
    """
    def load() -> None:
        from linkage.matching.engine import preload
        preload()

    thread = threading.Thread(target=load, name="load-kernels", daemon=True)
    thread.start()
    return thread
