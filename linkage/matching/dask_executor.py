"""Comparisons on a Dask cluster: the client side of ``linkage.matching.dask_tasks``.

``linkage-server --executor dask://HOST:PORT`` and ``linkage match --executor``
both build their executor here (``make_executor``) and send a run's comparison
units to a running ``dask scheduler``; its workers need only the core package.
It lives in the core, beside the Executor protocol it implements, so that both
edges share it without the client importing the server; ``distributed`` is
imported only when a scan first needs the cluster.

What crosses to the cluster is the prepared sides of the run's tasks (CLKs
only, in the kernel's layout; never identifiers or the secret), scattered once
per run to every worker (``broadcast``), and what comes back is the pairs at or
above the floor. Grouping, the score model and persistence stay with the caller.

Failures: a unit whose worker dies is rerun elsewhere by the scheduler, and
``retries`` reruns units that raised. If a side's last copy is lost with its
worker (a worker that joined after the scatter holds none), the scheduler
forgets it and cancels the units that need it: the side is scattered again
(asked of the scheduler, ``_lost``) and those units resubmitted under new keys,
up to ``resubmits`` times each. Pairs are joined in plan order, so the result
is element for element the in-process one.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from linkage.matching.candidates import CandidatePairs
from linkage.errors import InvalidRequestError, RunStateError
from linkage.matching.executor import (
    ComparisonTask,
    PreparedSides,
    ProgressCallback,
    global_pairs,
    tile_ranges,
)

if TYPE_CHECKING:  # blocking (numba) is imported by a scan, not by a starting server
    from linkage.matching.blocking import LshPlan

__all__ = ["DaskExecutor", "ScanStats", "make_executor", "parse_executor"]

log = logging.getLogger(__name__)

#: Units per worker and task: enough that a slow or lost worker holds up little of a run.
_UNITS_PER_WORKER = 4


@dataclass
class ScanStats:
    """What the last ``scan`` cost in traffic and work units (for benchmarks and logs)."""

    units: int = 0
    resubmitted: int = 0
    rescattered: int = 0  # sides scattered again: their last copy went with a worker
    scattered_bytes: int = 0
    result_bytes: int = 0
    workers: int = 0
    seconds: float = 0.0


def parse_executor(text: str | None) -> str | None:
    """``dask://HOST:PORT`` as the scheduler address ``tcp://HOST:PORT``; ``None`` or
    "in-process" for this process.

    Raises:
        InvalidRequestError: anything else.
    """
    text = (text or "").strip()
    if text in ("", "in-process"):
        return None
    scheme, sep, rest = text.partition("://")
    host, colon, port = rest.rpartition(":")
    if scheme != "dask" or not sep or not colon or not host or not port.isdigit():
        raise InvalidRequestError(f"{text!r}: the executor is 'in-process' or "
                                  "dask://HOST:PORT (a running 'dask scheduler').")
    return f"tcp://{host}:{port}"


class DaskExecutor:
    """Scans comparison tasks on the Dask scheduler at ``address`` (``tcp://HOST:PORT``).

    Connects on first use and stays connected; safe to share between runs (one scan
    at a time per executor, as the server runs one comparison at a time anyway).
    """

    def __init__(self, address: str, *, retries: int = 3, resubmits: int = 3,
                 connect_seconds: float = 30.0, units_per_worker: int = _UNITS_PER_WORKER):
        self.address = address
        self.retries = retries
        self.resubmits = resubmits
        self.connect_seconds = connect_seconds
        self.units_per_worker = units_per_worker
        self.stats = ScanStats()
        self._client = None
        self._lock = threading.Lock()
        self._rows: dict[tuple, np.ndarray] = {}  # side key -> rows, to scatter it again

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _connected(self):
        if self._client is None:
            self._check_reachable()
            from distributed import Client  # only runs that use a cluster pay for it
            try:
                self._client = Client(self.address, timeout=self.connect_seconds,
                                      set_as_default=False)
            except (OSError, TimeoutError) as error:
                raise RunStateError(f"Cannot reach the Dask scheduler at {self.address}: "
                                    f"{error}. Start it ('dask scheduler') or run without "
                                    "--executor.") from None
        return self._client

    def _check_reachable(self) -> None:
        """Fail at once, and clearly, when nothing listens at the address (Dask's own
        client would retry for ``connect_seconds`` and then raise a bare timeout)."""
        host, _, port = self.address.removeprefix("tcp://").rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)),
                                     timeout=min(5.0, self.connect_seconds)).close()
        except OSError as error:
            raise RunStateError(f"Cannot reach the Dask scheduler at {self.address}: "
                                f"{error.strerror or error}. Start it ('dask scheduler "
                                f"--port {port}') or run without --executor.") from None

    def _workers(self, client) -> int:
        workers = len(client.scheduler_info().get("workers", {}))
        if workers == 0:
            client.wait_for_workers(1, timeout=self.connect_seconds)
            workers = len(client.scheduler_info().get("workers", {}))
        return workers

    def scan(self, clks: np.ndarray, tasks: Sequence[ComparisonTask], floor: float, *,
             plan: LshPlan | None = None, on_progress: ProgressCallback | None = None,
             prepared: PreparedSides | None = None) -> CandidatePairs:
        """As ``linkage.matching.executor.Executor.scan``, on the cluster.

        Raises:
            RunStateError: the scheduler cannot be reached, has no workers, or a unit
                failed more than ``resubmits`` times (nothing of the run is stored).
        """
        with self._lock:
            sides = prepared if prepared is not None else PreparedSides(clks)
            try:
                return self._scan(sides, tasks, float(floor), plan, on_progress)
            except TimeoutError as error:
                raise RunStateError(f"The Dask cluster at {self.address} has no workers "
                                    f"({error}); start 'dask worker {self.address}'.") from None
            finally:
                self._rows.clear()

    def _scan(self, sides: PreparedSides, tasks: Sequence[ComparisonTask], floor: float,
              plan: LshPlan | None, on_progress: ProgressCallback | None) -> CandidatePairs:
        from distributed import as_completed

        from linkage.matching import dask_tasks
        from linkage.matching.blocking import distinct_pairs, table_positions
        report = on_progress or (lambda stage, done, total: None)
        started = time.perf_counter()
        client = self._connected()
        stats = self.stats = ScanStats(workers=self._workers(client))
        spread = max(1, stats.workers * self.units_per_worker)
        run = uuid.uuid4().hex[:12]
        units = []  # (task index, function, side keys, other arguments, left rows covered)
        for index, task in enumerate(tasks):
            if plan is not None:
                left_key = self._side(client, sides, "raw", task.left)
                right_key = left_key if task.same else self._side(client, sides, "raw",
                                                                  task.right)
                positions = table_positions(sides.clks.shape[1] * 64, plan)
                per_unit = max(1, math.ceil(len(positions) / spread))
                for first in range(0, len(positions), per_unit):
                    share = len(positions[first:first + per_unit]) / len(positions)
                    units.append((index, dask_tasks.scan_lsh_tables, (left_key, right_key),
                                  (floor, task.same, positions[first:first + per_unit],
                                   positions[:first]),
                                  task.left.size * share))
                continue
            left_key = self._side(client, sides, "prepared", task.left)
            right_key = left_key if task.same else self._side(client, sides, "prepared",
                                                              task.right)
            for start, stop in tile_ranges(task.left.size,
                                           math.ceil(task.left.size / spread)):
                units.append((index, dask_tasks.scan_tile_range, (left_key, right_key),
                              (floor, task.same, start, stop), stop - start))
        total = int(sum(task.left.size for task in tasks))
        stats.units = len(units)
        report("comparing", 0, total)

        attempts = [0] * len(units)

        def submit(number: int):
            _, function, keys, arguments, _ = units[number]
            data = [sides.handles[key] for key in keys]
            # A new key per attempt: given a key it already holds a future of (here a
            # cancelled one), the client hands back that future instead of submitting.
            return client.submit(function, *data, *arguments,
                                 key=f"linkage-{run}-{number}-{attempts[number]}",
                                 retries=self.retries, pure=False)

        pending = {submit(number): number for number in range(len(units))}
        results: dict[int, CandidatePairs] = {}
        done = 0.0
        finished = as_completed(list(pending), loop=client.loop)
        for future in finished:
            number = pending.pop(future)
            if future.status == "finished":
                found = future.result()
                results[number] = found
                stats.result_bytes += sum(a.nbytes for a in (found.left, found.right,
                                                              found.score))
                done += units[number][4]
                report("comparing", min(int(done), total), total)
                continue
            attempts[number] += 1
            reason = self._failure(future)
            if attempts[number] > self.resubmits:
                raise RunStateError(f"A comparison unit failed {attempts[number]} times on "
                                    f"the Dask cluster ({reason}); nothing was stored. Check "
                                    "the workers and run again.")
            log.warning("Comparison unit %d failed (%s): resubmitting", number, reason)
            for key in self._lost(client, sides, units[number][2]):
                del sides.handles[key]
                self._side(client, sides, key[0], self._rows[key])
                stats.rescattered += 1
            stats.resubmitted += 1
            again = submit(number)
            pending[again] = number
            finished.add(again)
        report("comparing", total, total)
        parts = []
        for index, task in enumerate(tasks):
            mine = [results[n] for n, unit in enumerate(units) if unit[0] == index]
            found = CandidatePairs.concat(mine)
            if plan is not None:
                found = distinct_pairs(found, task.right.size)
            parts.append(global_pairs(task, found))
        stats.seconds = time.perf_counter() - started
        return CandidatePairs.concat(parts)

    def _side(self, client, sides: PreparedSides, kind: str, rows: np.ndarray) -> tuple:
        """The key of a side's scattered copy on every worker, scattered on first use."""
        key = (kind, PreparedSides.key(rows))
        self._rows[key] = rows
        if key not in sides.handles:
            data = sides.side(rows) if kind == "prepared" else sides.clks[rows]
            sides.handles[key] = client.scatter(data, broadcast=True, hash=False)
            size = data.nbytes
            self.stats.scattered_bytes += size * max(1, self.stats.workers)
        return key

    @staticmethod
    def _lost(client, sides: PreparedSides, keys) -> list[tuple]:
        """The sides among ``keys`` whose every copy is gone.

        Asked of the scheduler: when the last worker holding scattered data dies,
        the scheduler forgets the data, but the client's future of it can still
        read "finished", and every unit submitted with it is cancelled again.
        """
        handles = {key: sides.handles[key] for key in dict.fromkeys(keys)}
        finished = [handle for handle in handles.values() if handle.status == "finished"]
        try:
            holders = client.who_has(finished) if finished else {}
        except Exception:  # cancelled while we asked: lost too
            holders = {}
        return [key for key, handle in handles.items() if not holders.get(handle.key)]

    @staticmethod
    def _failure(future) -> str:
        if future.status == "cancelled":
            return "cancelled: its input data was lost"
        try:
            return repr(future.exception(timeout=5))
        except Exception as error:  # the exception itself could not be fetched
            return repr(error)


def make_executor(setting: str | None) -> DaskExecutor | None:
    """The executor ``--executor`` names: ``None`` (in this process) or a ``DaskExecutor``."""
    address = parse_executor(setting)
    return None if address is None else DaskExecutor(address)
