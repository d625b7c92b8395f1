"""How long the commands take to start: ``--help`` of each, and a server's time to ready.

    python -m bench.startup                # medians of 7
    python -m bench.startup --repeats 3

Time to ready: from starting ``linkage-server --data-dir <fresh> --listen 127.0.0.1:<free>``
until its port accepts a TCP connection (polled every 5 ms), then the server is stopped.
Each run uses a fresh data directory, so it includes writing the first credentials and
creating the embedded store. Wall clock; the machine may be shared, so quote the load.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def time_to_ready(timeout: float = 30.0) -> float:
    """Seconds from process start until the server's port accepts a connection."""
    with tempfile.TemporaryDirectory() as data_dir:
        port = _free_port()
        started = time.perf_counter()
        server = subprocess.Popen([str(_BIN / "linkage-server"), "--data-dir", data_dir,
                                   "--listen", f"127.0.0.1:{port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.05).close()
                    return time.perf_counter() - started
                except OSError:
                    if server.poll() is not None:
                        raise SystemExit("linkage-server exited before it was ready") from None
                    if time.perf_counter() - started > timeout:
                        raise SystemExit(f"linkage-server not ready after {timeout} s") from None
                    time.sleep(0.005)
        finally:
            server.terminate()
            server.wait(timeout=30)


def time_command(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    paths = {
        "linkage --help": lambda: time_command([str(_BIN / "linkage"), "--help"]),
        "linkage match --help": lambda: time_command([str(_BIN / "linkage"), "match", "--help"]),
        "linkage-server --help": lambda: time_command([str(_BIN / "linkage-server"), "--help"]),
        "linkage-server: time to ready": time_to_ready,
    }
    print(f"| what | median s | runs s |  (repeats {args.repeats}, load average "
          f"{os.getloadavg()[0]:.1f} at the start)")
    print("|---|---|---|")
    for name, measure in paths.items():
        runs = [measure() for _ in range(args.repeats)]
        print(f"| {name} | {statistics.median(runs):.3f} | "
              f"{', '.join(f'{run:.3f}' for run in runs)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
