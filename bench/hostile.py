"""Small-call latency while hostile calls are open (issue 17).

Starts a real linkage-server on loopback and measures the latency of the coordinator's
ListProjects and the operator's GetMetrics, first on a quiet server, then while hostile
callers hold calls open: calls without a token that never send their message, calls with an
agency token that never send theirs, stuck health checks and SubmitBatch streams that send a
header and then nothing. Prints p50/p95/max per scenario. Not part of the test run:

    python -m bench.hostile                 # 200 calls per scenario, 96 hostile calls
    python -m bench.hostile --calls 500 --hostile 200
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import grpc

from linkage_service.client.api import LinkageClient
from linkage_service.client.demo import ServerProcess
from linkage.encoding.schema import default_schema_text

PROJECT = "bench-hostile"


class _Hostile:
    """Calls that send their headers and then nothing, until released."""

    def __init__(self):
        self.release = threading.Event()
        self.calls: list = []
        self.channels: list[grpc.Channel] = []

    def _requests(self):
        self.release.wait()
        return
        yield

    def open(self, address: str, method: str, count: int, token: str | None, *,
             streaming: bool, per_channel: int = 24, timeout: float | None = None):
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        for start in range(0, count, per_channel):
            channel = grpc.insecure_channel(address)
            self.channels.append(channel)
            for _ in range(min(per_channel, count - start)):
                if streaming:
                    self.calls.append(channel.stream_stream(method)(
                        self._requests(), metadata=metadata, timeout=timeout))
                else:
                    self.calls.append(channel.stream_unary(method).future(
                        self._requests(), metadata=metadata, timeout=timeout))

    def close(self):
        self.release.set()
        for call in self.calls:
            call.cancel()
        for channel in self.channels:
            channel.close()


def _latencies(call, count: int) -> tuple[list[float], int]:
    """Seconds per answered call, and how many calls failed (timed out)."""
    seconds, failed = [], 0
    for _ in range(count):
        started = time.perf_counter()
        try:
            call()
        except grpc.RpcError:
            failed += 1
            continue
        seconds.append(time.perf_counter() - started)
    return seconds, failed


def _row(name: str, measured: tuple[list[float], int]) -> str:
    seconds, failed = measured
    if not seconds:
        return f"| {name:<58} |        – |        – |        – | {failed:6} |"
    ordered = sorted(seconds)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return (f"| {name:<58} | {statistics.median(ordered) * 1000:8.1f} | {p95 * 1000:8.1f} | "
            f"{ordered[-1] * 1000:8.1f} | {failed:6} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="Small calls per scenario.")
    parser.add_argument("--hostile", type=int, default=96, help="Hostile calls per kind.")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="Deadline of each measured call (a failure when exceeded).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        # a high rate limit, so that the small calls measure latency, not the limiter
        with ServerProcess(Path(workdir) / "data", extra_args=(
                "--calls-per-second", "10000", "--call-burst", "10000")) as server:
            operator_token = (server.data_dir / "operator.token").read_text().strip()
            with server.client(server.coordinator_token, timeout=30) as coordinator:
                tokens = coordinator.create_project(PROJECT, default_schema_text(), ["a", "b"])
            coordinator = server.client(server.coordinator_token, timeout=args.timeout)
            operator = LinkageClient(server.address, operator_token, timeout=args.timeout)
            scenarios = {
                "quiet server": [],
                "no token, no message, no deadline": [
                    ("/linkage.v1.CoordinatorService/GetReport", None, False, None),
                    ("/linkage.v1.AgencyService/GetResults", None, True, None),
                    ("/linkage.v1.AgencyService/SubmitBatch", None, False, None)],
                "agency token, no message (1 h deadline)": [
                    ("/linkage.v1.AgencyService/GetResults", tokens["a"], True, 3600.0),
                    ("/linkage.v1.AgencyService/SubmitBatch", tokens["b"], False, 3600.0)],
                "stuck health checks": [("/grpc.health.v1.Health/Check", None, False, 3600.0)],
            }
            print(f"{args.calls} calls per scenario; {args.hostile} hostile calls per kind; "
                  "the machine is shared with other work, so compare rows of one run.")
            print(f"| {'scenario: call':<58} |   p50 ms |   p95 ms |   max ms | failed |")
            print(f"|{'-' * 60}|----------|----------|----------|--------|")
            for name, kinds in scenarios.items():
                hostile = _Hostile()
                try:
                    for method, token, streaming, timeout in kinds:
                        hostile.open(server.address, method, args.hostile, token,
                                     streaming=streaming, timeout=timeout)
                    time.sleep(1.0)
                    print(_row(f"{name}: ListProjects",
                               _latencies(coordinator.list_projects, args.calls)))
                    print(_row(f"{name}: GetMetrics", _latencies(operator.metrics, args.calls)))
                finally:
                    hostile.close()
            coordinator.close()
            operator.close()


if __name__ == "__main__":
    main()
