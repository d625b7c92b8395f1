"""A real ``linkage-server`` in a child process on a free loopback port: what the demo, the
tests and the benchmarks start, so that they all talk to the real thing over gRPC."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import click

from . import pki
from .api import LinkageClient

__all__ = ["ServerProcess", "end_process"]


def end_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ServerProcess:
    """A real ``linkage-server`` in a child process on a free loopback port.

    With ``tls_dir`` it serves mutual TLS: a CA and server certificate are created there on
    first start, and ``client`` connects with a client certificate issued on first use.
    """

    def __init__(self, data_dir: Path, *, extra_args: tuple[str, ...] = (),
                 tls_dir: Path | None = None, store: str | None = None):
        self.data_dir = data_dir
        self.tls_dir = tls_dir
        # 'sqlite' or a PostgreSQL URL, passed on as --store; None: the server's default
        # (LINKAGE_STORE from the environment, else sqlite)
        self.store = store
        self.extra_args = extra_args  # after the common flags (e.g. two-server mode's)
        self._log = data_dir.parent / "server.log"
        self.process: subprocess.Popen | None = None
        self.address = ""
        self._drainer: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tls_args: tuple[str, ...] = ()
        if self.tls_dir is not None:
            if not (self.tls_dir / "ca.pem").exists():
                pki.init_ca(self.tls_dir)
            tls_args = ("--tls-cert", str(self.tls_dir / "server.pem"),
                        "--tls-key", str(self.tls_dir / "server.key"),
                        "--client-ca", str(self.tls_dir / "ca.pem"))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "linkage_service.server.main", "--data-dir", str(self.data_dir),
             "--listen", "127.0.0.1:0", *(("--store", self.store) if self.store else ()),
             *tls_args, *self.extra_args],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + timeout
        lines = []
        assert self.process.stderr is not None
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"listening on (\S+):(\d+)", line)
            if found:
                self.address = f"127.0.0.1:{found.group(2)}"
                self._drainer = threading.Thread(target=self._drain, daemon=True)
                self._drainer.start()
                return self
        self.stop()
        raise click.ClickException("linkage-server did not start:\n" + "".join(lines))

    def _drain(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        with open(self._log, "a", encoding="utf-8") as log:
            for line in self.process.stderr:
                log.write(line)

    @property
    def coordinator_token(self) -> str:
        return (self.data_dir / "coordinator.token").read_text("utf-8").strip()

    def client_tls(self, name: str, role: str) -> dict[str, Path]:
        """``LinkageClient`` keyword arguments (ca, cert, key) for a caller, issuing its
        certificate on first use; empty without TLS."""
        if self.tls_dir is None:
            return {}
        out_dir = self.tls_dir / "clients" / role
        cert, key = out_dir / f"{name}.pem", out_dir / f"{name}.key"
        if not cert.exists():
            pki.issue(self.tls_dir, name, role, out_dir)
        return {"ca": self.tls_dir / "ca.pem", "cert": cert, "key": key}

    def client(self, token: str, name: str = "coordinator", role: str = "coordinator",
               **options) -> LinkageClient:
        """A client for this server as ``name`` in ``role`` (the coordinator by default)."""
        return LinkageClient(self.address, token, **self.client_tls(name, role), **options)

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to clean up (crash tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self.stop()

    def stop(self) -> None:
        """Ask the server to stop (SIGTERM), kill it if it does not, and close its pipe."""
        if self.process is None:
            return
        end_process(self.process)
        if self._drainer is not None:
            self._drainer.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
