"""Load test: many agencies upload at once while a coordinator keeps asking for reports.

Starts a real linkage-server on loopback, creates one project with N agencies,
and has every agency upload R random CLKs concurrently (resumable uploads with
retry on RESOURCE_EXHAUSTED), while a coordinator thread calls ListProjects and
GetReport in a loop. Prints upload times, retries, the server's peak RSS and
p50/p99 latency of the small calls. Not part of the test run:

    python -m bench.load --agencies 10 --records 200000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from client.api import LinkageClient
from client.demo import ServerProcess
from linkage.batch import EncodedBatch
from linkage.encoding import key_check_value
from linkage.schema import default_schema_text, load_schema


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _batch(agency_index: int, records: int, schema) -> EncodedBatch:
    rng = np.random.default_rng(agency_index)
    bits = rng.random((records, schema.clk_bits), dtype=np.float32) < 0.35
    clks = np.packbits(bits, axis=1).view("<u8")
    return EncodedBatch([f"r{agency_index:02d}-{i:07d}" for i in range(records)], clks,
                        schema.clk_bits, schema.fingerprint, key_check_value(b"k" * 32))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Concurrent upload load test.")
    parser.add_argument("--agencies", type=int, default=10)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--max-uploads", type=int, default=4,
                        help="server's concurrent upload limit (more are told to retry)")
    args = parser.parse_args(argv)
    schema = load_schema(default_schema_text())
    names = [f"agency-{i:02d}" for i in range(args.agencies)]
    print(f"building {args.agencies} x {args.records} random CLKs ...", flush=True)
    batches = {name: _batch(i, args.records, schema) for i, name in enumerate(names)}
    with tempfile.TemporaryDirectory() as folder:
        server = ServerProcess(Path(folder) / "data",
                               extra_args=("--max-uploads", str(args.max_uploads))).start()
        try:
            with LinkageClient(server.address, server.coordinator_token) as coordinator:
                tokens = coordinator.create_project("load", default_schema_text(), names)
            upload_seconds: dict[str, float] = {}
            failures: list[str] = []
            latencies: list[float] = []
            done = threading.Event()

            def upload(name: str) -> None:
                started = time.monotonic()
                try:
                    with LinkageClient(server.address, tokens[name], timeout=1800) as agency:
                        agency.submit("load", batches[name], retries=200, backoff=0.5)
                    upload_seconds[name] = time.monotonic() - started
                except grpc.RpcError as error:
                    failures.append(f"{name}: {error.code().name} {error.details()}")

            def watch() -> None:
                with LinkageClient(server.address, server.coordinator_token) as coordinator:
                    while not done.is_set():
                        started = time.monotonic()
                        coordinator.list_projects()
                        latencies.append(time.monotonic() - started)
                        try:
                            coordinator.report("load")
                        except grpc.RpcError:
                            pass  # no run yet: FAILED_PRECONDITION, still a served call
                        time.sleep(0.05)

            watcher = threading.Thread(target=watch)
            watcher.start()
            started = time.monotonic()
            workers = [threading.Thread(target=upload, args=(name,)) for name in names]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            wall = time.monotonic() - started
            done.set()
            watcher.join()
            with LinkageClient(server.address, server.coordinator_token) as coordinator:
                stored = coordinator.list_projects()[0]["records"]
            peak = _peak_rss_mib(server.process.pid)
        finally:
            server.stop()
    total = args.agencies * args.records
    ms = sorted(x * 1000 for x in latencies)
    print("\n| agencies | records each | stored | failed uploads | wall s | records/s | "
          "upload s (median) | server peak RSS MiB | small RPC p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.agencies} | {args.records} | {stored} | {len(failures)} | {wall:.1f} | "
          f"{total / wall:,.0f} | {statistics.median(upload_seconds.values()):.1f} | {peak:.0f} | "
          f"{ms[len(ms) // 2]:.1f} | {ms[min(len(ms) - 1, int(len(ms) * 0.99))]:.1f} |")
    for failure in failures:
        print("FAILED", failure)
    return 0 if stored == total and not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
