"""Server configuration, read once at start and passed in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ServerConfig"]

MiB = 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    """Where the server keeps its data and how it listens.

    ``max_message_bytes`` bounds one gRPC message (uploads arrive as many
    chunks well below it); ``workers`` is the RPC thread pool size;
    ``max_concurrent_uploads`` uploads are received at once, more are refused
    with RESOURCE_EXHAUSTED (clients retry); ``max_concurrent_rpcs`` bounds all
    calls in flight the same way. ``pause_at`` arms crash-test pause points
    (see ``failpoints``); empty in normal operation. Each caller may make
    ``calls_per_second`` calls on average with bursts of ``call_burst``; more
    are refused with RESOURCE_EXHAUSTED. ``tls_cert``, ``tls_key`` and
    ``client_ca`` (all three or none) switch on mutual TLS: callers then need
    a client certificate issued by ``client_ca``. A batch encoded under a
    secret that another project uses is refused unless ``allow_secret_reuse``.
    ``executor`` is where runs compare CLKs: "in-process", or ``dask://HOST:PORT``
    for a Dask scheduler (``linkage.matching.dask_executor``). ``two_server_role`` and ``peer`` make
    this one of the two share-holding servers of two-server mode; they talk over mutual TLS
    (``client_ca`` checks the peer, ``peer_cert``/``peer_key`` identify this server to it).
    """

    data_dir: Path
    listen: str = "127.0.0.1:50051"
    workers: int = 16
    max_message_bytes: int = 4 * MiB
    max_concurrent_uploads: int = 4
    max_concurrent_rpcs: int = 64
    pause_at: frozenset[str] = frozenset()
    calls_per_second: float = 50.0
    call_burst: int = 200
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    allow_secret_reuse: bool = False
    # Hostile-caller bounds (docs/security.md): see ``server.auth.CallLimits``.
    first_message_seconds: float = 10.0
    message_gap_seconds: float = 60.0
    calls_per_caller: int = 4
    max_streams_per_connection: int = 32
    longest_deadline_seconds: float = 24 * 3600.0
    uploads_per_agency: int = 2
    unfinished_uploads_per_agency: int = 4
    upload_expiry_hours: float = 7 * 24.0
    report_page_bytes: int = MiB  # groups per GetReport reply, by serialised size
    executor: str = "in-process"
    # Two-server mode (server/two_server.py): this server's role (0 or 1, None: normal), the
    # other server's HOST:PORT, and the client certificate this server presents to it.
    two_server_role: int | None = None
    peer: str | None = None
    peer_cert: Path | None = None
    peer_key: Path | None = None
