"""The same comparison job in this process and on a local Dask cluster of 1 and 2 workers.

    python -m bench.distributed                                  # defaults below
    python -m bench.distributed --exhaustive 300000 --blocked 1000000 --repeats 3

Jobs (random 1024-bit CLKs, half of one side planted noisy copies, threshold 0.8):

* exhaustive N x N (``--exhaustive``), the kernel on every pair;
* LSH-blocked N x N (``--blocked``), the tables split between units;
* a person-record run (``--persons`` records per agency, five agencies, encoded
  with the shipped schema, ``link_records`` with ``auto``: sample, scans, model).

Each job runs in this process with one kernel thread and with all of them, then
on a cluster started here with the installed CLI (``dask scheduler``, ``dask
worker --nthreads 1``, each worker one kernel thread: ``NUMBA_NUM_THREADS=1``).
Columns: wall time (median), comparisons per second, efficiency (in-process
one-thread time / (workers x cluster time)), per-unit overhead ((workers x
cluster time - one-thread time) / units), bytes moved (scattered to workers
plus pairs returned), peak RSS of this process and of the largest worker, and
whether the pairs equal the in-process pairs element for element. On a 2-core
machine two workers use both cores, as in-process with all threads does; the
machine may be shared, so quote ratios from one run.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalCluster:
    """``dask scheduler`` and ``dask worker`` processes (the installed CLI) on loopback, one
    thread and one kernel thread per worker. Logs go to ``folder``."""

    def __init__(self, folder: Path, workers: int = 2):
        self.folder = folder
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.dask = str(Path(sys.executable).parent / "dask")
        self.env = dict(os.environ, NUMBA_NUM_THREADS="1")
        self.scheduler = self._start("scheduler", [
            "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"])
        self.workers: list[subprocess.Popen] = []
        for _ in range(workers):
            self.add_worker()

    def _start(self, name: str, arguments: list[str]) -> subprocess.Popen:
        with open(self.folder / f"{name}-{time.monotonic_ns()}.log", "w") as log:
            return subprocess.Popen([self.dask, *arguments], stdout=log,
                                    stderr=subprocess.STDOUT, env=self.env)

    def add_worker(self) -> None:
        self.workers.append(self._start("worker", [
            "worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
            "--host", "127.0.0.1", "--memory-limit", "0"]))

    def wait(self, count: int, timeout: float = 90.0) -> None:
        """Until exactly ``count`` workers are registered."""
        from distributed import Client
        with Client(self.address, timeout=timeout) as client:
            client.wait_for_workers(count, timeout=timeout)
            deadline = time.monotonic() + timeout
            while len(client.scheduler_info()["workers"]) > count:  # a killed one unregisters
                if time.monotonic() > deadline:
                    raise TimeoutError("a killed worker stayed registered")
                time.sleep(0.2)

    def alive(self) -> list[subprocess.Popen]:
        return [w for w in self.workers if w.poll() is None]

    def kill_one(self) -> None:
        os.kill(self.alive()[0].pid, signal.SIGKILL)

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.workers, self.scheduler]:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _worker_peak_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ``ru_maxrss`` it is not inherited
    from the parent that started the process)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _same(a, b) -> bool:
    return (np.array_equal(a.left, b.left) and np.array_equal(a.right, b.right)
            and np.array_equal(a.score, b.score))


def _random_job(n: int, seed: int):
    from bench.match_speed import make_clks
    from linkage.matching.executor import plan_owner_tasks
    left, right = make_clks(n, seed)
    clks = np.concatenate([left, right])
    return clks, plan_owner_tasks(np.repeat(np.arange(2), n), True)


def _person_job(records: int):
    from linkage_service.client import files
    from linkage_service.client.synthetic import SyntheticConfig, generate
    from linkage.encoding.schema import default_schema_text
    secret = b"s" * 32
    data = generate(SyntheticConfig(seed=5, records_per_agency=records))
    schema = default_schema_text()
    batches = [files.encode_export(schema, secret, export.to_csv().encode("utf-8"),
                                   export.mapping_toml(),
                                   case_key=name.encode("utf-8").ljust(32, b"#")).batch
               for name, export in data.exports.items()]
    clks = np.concatenate([batch.clks for batch in batches])
    owners = np.repeat(np.arange(len(batches)), [len(batch) for batch in batches])
    return clks, owners


def _serial_parts(clks: np.ndarray, tasks, pairs) -> dict[str, float]:
    """Seconds of the parts of a run that stay on the server: preparing the sides,
    joining the units' pairs, grouping."""
    from linkage.matching.candidates import CandidatePairs
    from linkage.matching.executor import PreparedSides
    from linkage.matching.grouping import greedy_groups
    started = time.perf_counter()
    with PreparedSides(clks) as sides:
        for task in tasks:
            sides.side(task.left)
            sides.side(task.right)
    prepare = time.perf_counter() - started
    started = time.perf_counter()
    halves = len(pairs) // 2
    CandidatePairs.concat([CandidatePairs(pairs.left[:halves], pairs.right[:halves],
                                          pairs.score[:halves]),
                           CandidatePairs(pairs.left[halves:], pairs.right[halves:],
                                          pairs.score[halves:])])
    join = time.perf_counter() - started
    owners = np.repeat(np.arange(2), clks.shape[0] // 2)
    started = time.perf_counter()
    greedy_groups(pairs, clks.shape[0], owners, max_per_owner=1)
    group = time.perf_counter() - started
    return {"prepare": prepare, "join": join, "group": group}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exhaustive", type=int, default=60_000, help="N of the N x N job")
    parser.add_argument("--blocked", type=int, default=200_000, help="N of the blocked job")
    parser.add_argument("--persons", type=int, default=2_000, help="records per agency")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import numba

    from linkage.matching.blocking import plan_lsh
    from linkage.clks import popcounts
    from linkage.matching.engine import link_records
    from linkage.matching.executor import IN_PROCESS, PreparedSides
    from linkage.matching.dask_executor import DaskExecutor

    jobs = {}
    if args.exhaustive:
        jobs[f"exhaustive {args.exhaustive:,} x {args.exhaustive:,}"] = (
            *_random_job(args.exhaustive, 0), None)
    if args.blocked:
        clks, tasks = _random_job(args.blocked, 1)
        plan = plan_lsh(1024, 2 * float(np.quantile(popcounts(clks), 0.99)), args.threshold,
                        records=args.blocked)
        jobs[f"LSH-blocked {args.blocked:,} x {args.blocked:,}"] = (clks, tasks, plan)

    def timed(scan):
        seconds, result = [], None
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = scan()
            seconds.append(time.perf_counter() - started)
        return statistics.median(seconds), result

    rows = []
    serial: dict[str, dict[str, float]] = {}
    for name, (clks, tasks, plan) in jobs.items():
        comparisons = sum(task.comparisons for task in tasks)
        print(f"{name}: in-process ...", file=sys.stderr, flush=True)

        def here():
            with PreparedSides(clks) as sides:
                return IN_PROCESS.scan(clks, tasks, args.threshold, plan=plan, prepared=sides)

        all_threads = numba.get_num_threads()
        numba.set_num_threads(1)
        one_thread, reference = timed(here)
        serial[name] = _serial_parts(clks, tasks, reference)
        numba.set_num_threads(all_threads)
        every_thread, _ = timed(here)
        rows.append((name, "in-process, 1 kernel thread", one_thread, comparisons, 1.0, None,
                     0, _worker_peak_mib(), None, True))
        rows.append((name, f"in-process, {all_threads} kernel threads", every_thread,
                     comparisons, one_thread / (all_threads * every_thread), None, 0,
                     _worker_peak_mib(), None, True))
        for workers in args.workers:
            print(f"{name}: {workers} Dask worker(s) ...", file=sys.stderr, flush=True)
            folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-dask-{os.getpid()}"
            folder.mkdir(exist_ok=True)
            with LocalCluster(folder, workers) as cluster:
                cluster.wait(workers)
                executor = DaskExecutor(cluster.address)
                try:
                    executor.scan(clks[:4096], tasks[:0], args.threshold)  # connect, untimed
                    seconds, found = timed(lambda: executor.scan(clks, tasks, args.threshold,
                                                                 plan=plan))
                    stats = executor.stats
                    worker_peak = max(executor._connected().run(_worker_peak_mib).values())
                finally:
                    executor.close()
            overhead = (workers * seconds - one_thread) / max(stats.units, 1)
            rows.append((name, f"Dask, {workers} worker(s)", seconds, comparisons,
                         one_thread / (workers * seconds), overhead,
                         stats.scattered_bytes + stats.result_bytes, _worker_peak_mib(),
                         worker_peak, _same(reference, found)))

    if args.persons:
        clks, owners = _person_job(args.persons)
        name = f"person records, 5 x {args.persons:,}, auto"
        print(f"{name}: in-process ...", file=sys.stderr, flush=True)
        limits = {"cross_owner_only": True, "max_per_owner": 1, "tail_sample": True}
        seconds, reference = timed(lambda: link_records(clks, owners, **limits))
        comparisons = float(len(owners)) ** 2 * 0.4  # cross-owner pairs of 5 equal files
        rows.append((name, "in-process", seconds, comparisons, 1.0, None, 0,
                     _worker_peak_mib(), None, True))
        for workers in args.workers:
            folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-dask-{os.getpid()}"
            folder.mkdir(exist_ok=True)
            with LocalCluster(folder, workers) as cluster:
                cluster.wait(workers)
                executor = DaskExecutor(cluster.address)
                try:
                    there_seconds, found = timed(lambda: link_records(
                        clks, owners, executor=executor, **limits))
                    worker_peak = max(executor._connected().run(_worker_peak_mib).values())
                finally:
                    executor.close()
            same = (_same(reference.pairs, found.pairs)
                    and np.array_equal(reference.grouping.labels, found.grouping.labels))
            rows.append((name, f"Dask, {workers} worker(s)", there_seconds, comparisons,
                         seconds / there_seconds, None, None, _worker_peak_mib(), worker_peak,
                         same))

    print(f"\nthreshold {args.threshold}; medians of {args.repeats}; {os.cpu_count()} CPUs "
          f"(load average at the end {os.getloadavg()[0]:.1f})\n")
    print("Serial parts (not divided among workers), seconds, one run each:\n")
    print("| job | prepare sides | join pairs | group (1-to-1) |")
    print("|---|---|---|---|")
    for name, parts in serial.items():
        print(f"| {name} | {parts['prepare']:.2f} | {parts['join']:.2f} | {parts['group']:.2f} |")
    print()
    print("| job | where | wall s | comparisons/s | efficiency | overhead per unit s | "
          "bytes moved | peak MiB here | peak MiB worker | same pairs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    failed = False
    for (name, where, seconds, comparisons, efficiency, overhead, moved, here_peak,
         worker_peak, same) in rows:
        failed |= not same
        print(f"| {name} | {where} | {seconds:.2f} | {comparisons / seconds:.3g} | "
              f"{efficiency:.2f} | {'-' if overhead is None else f'{overhead:.3f}'} | "
              f"{'-' if not moved else f'{moved / 2**20:.1f} MiB'} | {here_peak:.0f} | "
              f"{'-' if worker_peak is None else f'{worker_peak:.0f}'} | "
              f"{'yes' if same else 'NO'} |")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
