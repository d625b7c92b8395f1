"""A private PostgreSQL server for tests and benchmarks: initdb and pg_ctl into a temporary
directory, on a free loopback port and a socket directory of its own (never the system's
service, never a fixed port). Run as root, the server runs as the ``postgres`` OS user,
since initdb refuses root.

``PostgresServer.start()`` raises ``PostgresUnavailable`` when the binaries are missing or
the server does not start; the fixtures fail on it under CI and skip otherwise.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PostgresServer", "PostgresUnavailable", "find_bin_dir"]


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries here, or the server would not start."""


def find_bin_dir() -> Path | None:
    """Debian's versioned binaries (newest first), else whatever ``pg_ctl`` is on PATH."""
    configured = os.environ.get("LINKAGE_PG_BIN")
    if configured:
        return Path(configured)
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                            key=lambda p: int(Path(p).parent.name) if Path(p).parent.name
                            .isdigit() else 0, reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """One throw-away cluster; ``url(database)`` names a database on it.

    ``durable=False`` (tests) turns fsync off: fast, and nothing here outlives the run.
    Benchmarks keep it on, to compare with SQLite's synchronous commits fairly.
    """

    def __init__(self, *, durable: bool = False):
        self.durable = durable
        self.port = 0
        self.base: Path | None = None
        self._as_postgres: list[str] = []
        self._counter = 0
        self._template: str | None = None

    @property
    def data(self) -> Path:
        assert self.base is not None
        return self.base / "data"

    def _run(self, *command: str) -> None:
        try:
            subprocess.run([*self._as_postgres, *command], check=True, capture_output=True,
                           text=True, timeout=120)
        except subprocess.CalledProcessError as error:
            raise PostgresUnavailable(f"{command[0]} failed: {error.stderr or error.stdout}"
                                      ) from None

    def start(self) -> "PostgresServer":
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise PostgresUnavailable("No PostgreSQL server binaries (apt-get install "
                                      "postgresql, or set LINKAGE_PG_BIN).")
        self.base = Path(tempfile.mkdtemp(prefix="linkage-pg-"))
        (self.base / "socket").mkdir()
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("Running as root and there is no 'postgres' user to "
                                          "run PostgreSQL as.") from None
            for path in (self.base, self.base / "socket"):
                os.chown(path, user.pw_uid, user.pw_gid)
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        self._run(str(bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        self.port = _free_port()
        options = [f"-p {self.port}", "-c listen_addresses=127.0.0.1",
                   f"-c unix_socket_directories={self.base / 'socket'}",
                   "-c max_connections=300", "-c shared_buffers=64MB"]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(str(bin_dir / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.base / "server.log"), "-w", "-t", "60", "-o", " ".join(options),
                  "start")
        self._bin = bin_dir
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "linkage") -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        self._counter += 1
        name = f"{prefix}_{os.getpid()}_{self._counter}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def create_migrated_database(self, prefix: str = "linkage") -> str:
        """A fresh database with the store's migrations applied: a clone (CREATE DATABASE
        ... TEMPLATE) of one migrated once per session, about half the cost of migrating.
        Tests of migrating an empty database use ``create_database``."""
        import psycopg

        from linkage_service.server.storage.postgres import PostgresStore

        if self._template is None:
            url = self.create_database("linkage_template")
            PostgresStore(url).close()
            self._template = url.rsplit("/", 1)[1]
        self._counter += 1
        name = f"{prefix}_{os.getpid()}_{self._counter}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
        return self.url(name)

    def stop(self) -> None:
        if self.base is None:
            return
        if (self.data / "postmaster.pid").exists():
            subprocess.run([*self._as_postgres, str(self._bin / "pg_ctl"), "-D", str(self.data),
                            "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
