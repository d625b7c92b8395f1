"""Load test: many agencies upload at once while a coordinator keeps asking for reports.

Starts a real linkage-server on loopback, creates one project with N agencies,
and has every agency upload R random CLKs concurrently (resumable uploads with
retry on RESOURCE_EXHAUSTED), while a coordinator thread calls ListProjects and
GetReport in a loop. Prints, per store side by side (SQLite, and PostgreSQL on a
private server it starts), the stored records, upload throughput, the server's peak
RSS and p50/p99 latency of the small calls. Not part of the test run:

    python -m bench.load --agencies 10 --records 200000
    python -m bench.load --store postgresql --agencies 4 --records 50000
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

from linkage_service.client.api import LinkageClient
from linkage_service.client.demo import ServerProcess
from linkage.batch import EncodedBatch
from linkage.encoding.encoder import key_check_value
from linkage.encoding.schema import default_schema_text, load_schema


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


def measure(store: str, names: list[str], batches: dict[str, EncodedBatch],
            max_uploads: int) -> dict:
    """One load round on a fresh store: every agency uploads at once while a coordinator
    polls; returns what the table shows."""
    with tempfile.TemporaryDirectory() as folder:
        server = ServerProcess(Path(folder) / "data", store=store,
                               extra_args=("--max-uploads", str(max_uploads))).start()
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
    ms = sorted(x * 1000 for x in latencies)
    total = sum(len(batch) for batch in batches.values())
    return {"stored": stored, "failures": failures, "wall": wall, "rate": total / wall,
            "upload": statistics.median(upload_seconds.values()) if upload_seconds else
            float("nan"), "peak": peak, "p50": ms[len(ms) // 2],
            "p99": ms[min(len(ms) - 1, int(len(ms) * 0.99))], "total": total}


def _median_round(rounds: list[dict]) -> dict:
    """Per figure, the median over the rounds (stored and failures: the worst round)."""
    merged = {key: statistics.median(r[key] for r in rounds)
              for key in ("wall", "rate", "upload", "peak", "p50", "p99")}
    merged["stored"] = min(r["stored"] for r in rounds)
    merged["failures"] = [f for r in rounds for f in r["failures"]]
    merged["total"] = rounds[0]["total"]
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Concurrent upload load test.")
    parser.add_argument("--agencies", type=int, default=10)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--max-uploads", type=int, default=4,
                        help="server's concurrent upload limit (more are told to retry)")
    parser.add_argument("--store", choices=("both", "sqlite", "postgresql"), default="both",
                        help="which store(s) to load; postgresql starts a private server "
                             "(Debian's binaries, durable: fsync on) for the run")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds per store; the table shows medians")
    args = parser.parse_args(argv)
    schema = load_schema(default_schema_text())
    names = [f"agency-{i:02d}" for i in range(args.agencies)]
    print(f"building {args.agencies} x {args.records} random CLKs ...", flush=True)
    batches = {name: _batch(i, args.records, schema) for i, name in enumerate(names)}
    kinds = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    results: dict[str, dict] = {}
    postgres = None
    try:
        for kind in kinds:
            rounds = []
            for _ in range(args.repeats):
                spec = "sqlite"
                if kind == "postgresql":
                    if postgres is None:
                        from tests.postgres import PostgresServer  # the tests' private server
                        postgres = PostgresServer(durable=True).start()
                    spec = postgres.create_database("load")
                print(f"loading the {kind} store ...", flush=True)
                rounds.append(measure(spec, names, batches, args.max_uploads))
            results[kind] = _median_round(rounds)
    finally:
        if postgres is not None:
            postgres.stop()
    rows = [("stored records", "{stored:,}"), ("failed uploads", "{failures_count}"),
            ("wall s", "{wall:.1f}"), ("upload throughput, records/s", "{rate:,.0f}"),
            ("upload s per agency (median)", "{upload:.1f}"),
            ("small RPC p50 ms", "{p50:.1f}"), ("small RPC p99 ms", "{p99:.1f}"),
            ("linkage-server peak RSS MiB", "{peak:.0f}")]
    print(f"\n{args.agencies} agencies x {args.records:,} records, --max-uploads "
          f"{args.max_uploads}, median of {args.repeats} round(s)\n")
    header = "| figure | " + " | ".join(kinds) + (" | postgresql / sqlite |" if len(kinds) == 2
                                                   else " |")
    print(header)
    print("|---" * (len(kinds) + 1 + (len(kinds) == 2)) + "|")
    for label, form in rows:
        cells = [form.format(failures_count=len(results[k]["failures"]), **results[k])
                 for k in kinds]
        ratio = ""
        if len(kinds) == 2:
            key = form[1:].split(":")[0].split("}")[0]
            if key in ("wall", "rate", "upload", "p50", "p99", "peak"):
                base = results["sqlite"][key]
                ratio = f" {results['postgresql'][key] / base:.2f} |" if base else " - |"
            else:
                ratio = " |"
        print(f"| {label} | " + " | ".join(cells) + " |" + ratio)
    for kind in kinds:
        for failure in results[kind]["failures"]:
            print("FAILED", kind, failure)
    return 0 if all(r["stored"] == r["total"] and not r["failures"]
                    for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
