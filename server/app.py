"""Building and running the gRPC server: ``create_server`` is separate from ``serve``
so tests can start a real server on a free loopback port."""

from __future__ import annotations

import logging
import os
import signal
import stat
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from linkage.errors import InvalidRequestError
from linkage.matching.dask_executor import make_executor
from linkage_service.protos.linkage.v1 import linkage_pb2, linkage_pb2_grpc, shares_pb2_grpc

from . import failpoints
from .auth import CallLimits, GuardInterceptor, RateLimiter, hash_token, new_token
from .config import ServerConfig
from .peer import PeerLink, Sessions, peer_name
from .service import AgencyServicer, CoordinatorServicer, OperatorServicer
from .shares_service import PeerServicer, ShareServicer
from .storage import SqliteStore, Store
from .tls import server_credentials

__all__ = [
    "COORDINATOR_TOKEN_FILE",
    "OPERATOR_TOKEN_FILE",
    "create_server",
    "ensure_staff_credentials",
    "secure_data_dir",
    "serve",
]

log = logging.getLogger("linkage.server")
COORDINATOR_TOKEN_FILE = "coordinator.token"
OPERATOR_TOKEN_FILE = "operator.token"
_SERVICES = ("linkage.v1.AgencyService", "linkage.v1.CoordinatorService",
             "linkage.v1.OperatorService")


def ensure_staff_credentials(store: Store, data_dir: Path) -> list[Path]:
    """On first start, write the coordinator and operator credentials (mode 0600) into the
    data dir; returns the paths written (none after the first start)."""
    written = []
    for role, setting in (("coordinator", "coordinator_created"), ("operator", "operator_created")):
        if store.setting(setting) is not None:
            continue
        path = data_dir / f"{role}.token"
        token = new_token()
        # The row is claimed first: of replicas starting together on one database, one
        # creates each credential and writes its file; the others find it there.
        if not store.add_staff(role, role, hash_token(token)):
            store.set_setting(setting, b"1")
            continue
        if os.path.lexists(path):
            path.unlink()  # a leftover of an interrupted first start, or a planted link
        # O_EXCL|O_NOFOLLOW: never write through a symlink or into a file someone else made
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(token + "\n")
        store.set_setting(setting, b"1")
        written.append(path)
    return written


def secure_data_dir(data_dir: Path) -> None:
    """Create the data directory 0700, or check an existing one: it must be a directory of
    this user (not a symlink), and is narrowed to 0700 if others could read it. It holds CLKs,
    record ids, token hashes and the group-key secret.

    Raises:
        InvalidRequestError: it is a symlink, not a directory, or owned by someone else.
    """
    if not os.path.lexists(data_dir):
        data_dir.mkdir(parents=True, mode=0o700)
    info = os.lstat(data_dir)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise InvalidRequestError(f"The data directory {data_dir} is a symlink or not a "
                                  "directory; give the real directory's path.")
    if info.st_uid != os.getuid():
        raise InvalidRequestError(f"The data directory {data_dir} belongs to user id "
                                  f"{info.st_uid}, not to this server's user ({os.getuid()}); "
                                  "run the server as its owner or chown it.")
    if stat.S_IMODE(info.st_mode) & 0o077:
        log.warning("The data directory %s was readable by others (mode %o); narrowed to 0700",
                    data_dir, stat.S_IMODE(info.st_mode))
        data_dir.chmod(0o700)


def create_server(config: ServerConfig, store: Store | None = None
                  ) -> tuple[grpc.Server, int, Store]:
    """Build a server on ``store`` bound to ``config.listen``; returns (server, port, store).

    Without ``store`` it opens the embedded SQLite store in ``config.data_dir``. The
    server owns the store from here on: it is closed when the address cannot be bound,
    and by ``serve`` when the server stops.

    With ``config.tls_cert``/``tls_key``/``client_ca`` set it serves mutual TLS only;
    without them, plaintext (and warns: that is for loopback only).

    Raises:
        RuntimeError: the address cannot be bound.
        InvalidRequestError: the TLS files are incomplete, unreadable or do not fit together.
    """
    credentials = server_credentials(config.tls_cert, config.tls_key, config.client_ca)
    check_two_server(config, credentials is not None)
    if credentials is None:
        log.warning("NO TLS: serving plaintext gRPC on %s; tokens and CLKs cross the wire "
                    "unencrypted. Use this on loopback only; pass --tls-cert, --tls-key and "
                    "--client-ca for anything else.", config.listen)
    failpoints.configure(config.pause_at, config.data_dir)
    secure_data_dir(config.data_dir)
    if store is None:
        store = SqliteStore(config.data_dir)
    interrupted = store.interrupt_running_runs()
    if interrupted:
        log.warning("%d linkage run(s) were interrupted by the last stop and are marked failed; "
                    "run them again", interrupted)
    expired = store.expire_uploads(config.upload_expiry_hours * 3600.0)
    if expired:
        log.warning("%d unfinished upload(s) older than %gh expired", expired,
                    config.upload_expiry_hours)
    for created in ensure_staff_credentials(store, config.data_dir):
        log.warning("First start: a credential was written to %s", created)
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_concurrent_streams", config.max_streams_per_connection),
        # gRPC turns SO_REUSEPORT on by default: a second server on a port in use would start
        # and silently share the traffic (and the first one's clients) with the first.
        ("grpc.so_reuseport", 0),
    ]
    limits = CallLimits(first_message_seconds=config.first_message_seconds,
                        message_gap_seconds=config.message_gap_seconds,
                        calls_per_caller=config.calls_per_caller,
                        longest_deadline_seconds=config.longest_deadline_seconds)
    limiter = RateLimiter(config.calls_per_second, config.call_burst)
    role = config.two_server_role
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.workers),
                         interceptors=[GuardInterceptor(
                             store, limiter, limits,
                             peer_name=None if role is None else peer_name(1 - role))],
                         options=options,
                         maximum_concurrent_rpcs=config.max_concurrent_rpcs)
    linkage_pb2_grpc.add_AgencyServiceServicer_to_server(
        AgencyServicer(store, config.max_concurrent_uploads,
                       allow_secret_reuse=config.allow_secret_reuse,
                       uploads_per_agency=config.uploads_per_agency,
                       unfinished_per_agency=config.unfinished_uploads_per_agency,
                       upload_expiry_seconds=config.upload_expiry_hours * 3600.0), server)
    linkage_pb2_grpc.add_CoordinatorServiceServicer_to_server(
        CoordinatorServicer(store, page_bytes=min(config.report_page_bytes,
                                                  config.max_message_bytes // 2),
                            executor=make_executor(config.executor)), server)
    linkage_pb2_grpc.add_OperatorServiceServicer_to_server(OperatorServicer(store), server)
    sessions = Sessions()
    link = (PeerLink(config.peer, config.client_ca, config.peer_cert, config.peer_key)
            if role == 0 else None)
    shares_pb2_grpc.add_ShareServiceServicer_to_server(
        ShareServicer(store, role, sessions, link), server)
    shares_pb2_grpc.add_PeerServiceServicer_to_server(PeerServicer(store, role, sessions), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *_SERVICES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    service_names = (*(linkage_pb2.DESCRIPTOR.services_by_name[n.split(".")[-1]].full_name
                       for n in _SERVICES),
                     health.SERVICE_NAME, reflection.SERVICE_NAME, REFLECTION_V1)
    reflection.enable_server_reflection(service_names, server)
    _enable_reflection_v1(service_names, server)
    try:
        port = (server.add_secure_port(config.listen, credentials) if credentials is not None
                else server.add_insecure_port(config.listen))
    except RuntimeError as error:
        store.close()
        raise RuntimeError(f"Cannot listen on {config.listen}: {error}") from None
    if port == 0:
        store.close()
        raise RuntimeError(f"Cannot listen on {config.listen}: the address is in use or invalid.")
    return server, port, store


def check_two_server(config: ServerConfig, tls: bool) -> None:
    """Two-server mode needs mutual TLS, the peer's address and, on server 0, this server's
    peer certificate.

    Raises:
        InvalidRequestError: a piece is missing or the role is not 0 or 1.
    """
    role = config.two_server_role
    if role is None:
        if config.peer or config.peer_cert or config.peer_key:
            raise InvalidRequestError("--peer, --peer-cert and --peer-key need "
                                      "--two-server-role 0|1.")
        return
    if role not in (0, 1):
        raise InvalidRequestError(f"--two-server-role is 0 or 1, not {role!r}.")
    if not tls:
        raise InvalidRequestError("Two-server mode needs mutual TLS between the servers: pass "
                                  "--tls-cert, --tls-key and --client-ca (linkage pki init).")
    if role == 0 and not config.peer:
        raise InvalidRequestError("Server 0 needs --peer HOST:PORT: the address of server 1, "
                                  "which it dials (server 1 only answers).")
    if role == 0 and (config.peer_cert is None or config.peer_key is None):
        raise InvalidRequestError(
            "Server 0 dials server 1 with its own client certificate: pass --peer-cert and "
            "--peer-key (linkage pki issue --name server-0 --role server).")
    for path in (config.peer_cert, config.peer_key):
        if path is not None and not Path(path).is_file():
            raise InvalidRequestError(f"Cannot read the peer certificate file {path}.")


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def _enable_reflection_v1(service_names, server: grpc.Server) -> None:
    """Serve reflection under ``grpc.reflection.v1`` too (grpcurl and Postman ask for v1
    first). grpcio-reflection ships only v1alpha, whose messages are field for field those
    of v1, so v1alpha's servicer answers v1 calls over the same wire format."""
    from grpc_reflection.v1alpha import reflection_pb2

    servicer = reflection.ReflectionServicer(service_names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        REFLECTION_V1, {"ServerReflectionInfo": handler}),))


def serve(server: grpc.Server, store: Store, *, grace_seconds: float = 10.0,
          preload: bool = False) -> None:
    """Start the server and block until SIGINT/SIGTERM, then stop gracefully.

    ``preload``: once serving, load the run's kernels on a thread of their own, so that
    neither start-up nor the first run waits for them.
    """
    stopped = threading.Event()

    def stop(signum, _frame):
        log.warning("Signal %s: stopping (in-flight calls get %ss)", signum, grace_seconds)
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.start()
    if preload:
        from linkage.matching.executor import load_kernels_in_background
        load_kernels_in_background()
    stopped.wait()
    began = time.monotonic()
    server.stop(grace_seconds).wait()
    log.warning("Calls ended after %.1f s; closing the store", time.monotonic() - began)
    store.close()
    log.warning("Stopped after %.1f s", time.monotonic() - began)
