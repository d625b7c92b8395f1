"""The demo's deployments: one linkage-server, or two-server mode's pair of servers.

``linkage demo`` plays every role through the same steps either way; what differs is what the
operator starts and which calls carry an agency's CLKs or the coordinator's run. Keeping that in
one small type per deployment lets the demo's story stay one function.

* ``OneServer``: a normal server; it holds every CLK.
* ``TwoServers``: server 1, then server 0 with ``--peer`` (mutual TLS between them, one PKI);
  agencies split their CLKs locally and send one share to each (``client/shares.py``), the
  coordinator's client deals the run's randomness, and neither server ever holds a CLK.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from linkage.batch import EncodedBatch
from linkage.clks import clks_to_bytes
from linkage.mpc import unpack_bits

from . import pki
from .api import Receipt
from .server_process import ServerProcess

__all__ = ["OneServer", "TwoServers", "stored_clks"]

# A demo run is a batch job: a two-server run at the default size takes minutes.
RUN_TIMEOUT = 6 * 3600.0

Progress = Callable[[str, int, int], None]


class OneServer:
    """The normal deployment: one server on loopback, mutual TLS unless ``tls`` is off."""

    two_server = False

    def __init__(self, workdir: Path, *, tls: bool):
        self.tls = tls
        self.primary = ServerProcess(workdir / "server-data",
                                     tls_dir=workdir / "pki" if tls else None)
        self.servers = [self.primary]

    def set_up_pki(self, callers: list[tuple[str, str]]) -> list[Path]:
        """The operator's CA, server certificate and one client certificate per caller."""
        pki.init_ca(self.primary.tls_dir)
        return [self.primary.client_tls(name, role)["cert"] for name, role in callers]

    def __enter__(self) -> "OneServer":
        self.primary.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.primary.stop()

    @contextlib.contextmanager
    def coordinator(self):
        with self.primary.client(self.primary.coordinator_token, timeout=RUN_TIMEOUT) as client:
            yield _Coordinator(client, None)

    def submit(self, project: str, name: str, token: str, batch: EncodedBatch) -> Receipt:
        with self.primary.client(token, name, "agency") as agency:
            return agency.submit(project, batch)


class TwoServers:
    """Two-server mode on loopback: two ``linkage-server`` processes, each with its own data
    directory and store, sharing one PKI (the demo's operator runs both; in a deployment two
    independent operators do, and must not collude)."""

    two_server = True
    tls = True  # two-server mode refuses to start without mutual TLS
    server_names = ("server-0.demo", "server-1.demo")

    def __init__(self, workdir: Path):
        self.pki_dir = workdir / "pki"
        self.peer_dir = self.pki_dir / "peers"
        self.second = ServerProcess(workdir / "server-1" / "data", tls_dir=self.pki_dir,
                                    extra_args=("--two-server-role", "1"))
        self.primary = ServerProcess(workdir / "server-0" / "data", tls_dir=self.pki_dir)
        self.servers = [self.primary, self.second]
        self._stack = contextlib.ExitStack()

    def set_up_pki(self, callers: list[tuple[str, str]]) -> list[Path]:
        """One CA and one server certificate naming both servers, server 0's client
        certificate for the peer channel, and one client certificate per caller (valid on
        both servers)."""
        pki.init_ca(self.pki_dir, server_names=self.server_names)
        pki.issue(self.pki_dir, "server-0", "server", self.peer_dir)
        return [self.peer_dir / "server-0.pem",
                *(self.primary.client_tls(name, role)["cert"] for name, role in callers)]

    def __enter__(self) -> "TwoServers":
        """Server 1 first (server 0 dials it); on any failure both are stopped."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.second)
            self.primary.extra_args = (
                "--two-server-role", "0", "--peer", self.second.address,
                "--peer-cert", str(self.peer_dir / "server-0.pem"),
                "--peer-key", str(self.peer_dir / "server-0.key"))
            stack.enter_context(self.primary)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()  # server 0, then server 1

    @contextlib.contextmanager
    def coordinator(self):
        with self.primary.client(self.primary.coordinator_token, timeout=RUN_TIMEOUT) as first, \
                self.second.client(self.second.coordinator_token, timeout=RUN_TIMEOUT) as second:
            yield _Coordinator(first, second)

    def submit(self, project: str, name: str, token: str, batch: EncodedBatch) -> Receipt:
        """Split the CLKs here, at the agency, and send share 0 to server 0, share 1 to
        server 1 (fresh OS randomness: the shares differ on every run, the CLKs do not)."""
        from .shares import submit_shares

        with self.primary.client(token, name, "agency") as first, \
                self.second.client(token, name, "agency") as second:
            receipt, _ = submit_shares(first, second, project, batch)
        return receipt


class _Coordinator:
    """The coordinator's calls, on one server or (with ``second``) on both."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def create_project(self, name: str, schema_text: str, agencies: list[str],
                       stages: list[str]) -> dict[str, str]:
        if self.second is None:
            return self.first.create_project(name, schema_text, agencies, stages)
        from .shares import create_share_project
        return create_share_project(self.first, self.second, name, schema_text, agencies,
                                    stages)

    def run(self, project: str, threshold: str, on_progress: Progress) -> dict:
        """The run; in two-server mode this client is the dealer (client/shares.py).

        Raises:
            grpc.RpcError: a server refused, e.g. an 'auto' threshold that two-server mode
                cannot choose yet; its message says so.
        """
        if self.second is None:
            return self.first.run(project, threshold, on_progress=on_progress)
        from .shares import run_shares
        return run_shares(self.first, self.second, project, threshold, on_progress=on_progress)

    def report(self, project: str) -> dict:
        return self.first.report(project)


def stored_clks(server: ServerProcess, batches: dict[str, EncodedBatch],
                sample: int = 20) -> int:
    """How many of the first ``sample`` CLKs of each batch appear in the server's SQLite
    files, packed or as the per-bit integers a share is made of (0 for a two-server store).

    A sample, not every CLK: the demo prints it as evidence, the tests check more.
    """
    stored = b"".join(path.read_bytes()
                      for path in sorted(server.data_dir.glob("linkage.sqlite3*")))
    found = 0
    for batch in batches.values():
        packed = clks_to_bytes(batch.clks[:sample])
        bits = unpack_bits(batch.clks[:sample], batch.clk_bits).astype("<u4")
        found += sum(1 for clk, row in zip(packed, bits)
                     if clk in stored or np.ascontiguousarray(row).tobytes() in stored)
    return found
