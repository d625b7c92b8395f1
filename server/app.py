"""Building and running the gRPC server: ``create_server`` is separate from ``serve``
so tests can start a real server on a free loopback port."""

from __future__ import annotations

import logging
import os
import signal
import threading
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from protos.linkage.v1 import linkage_pb2, linkage_pb2_grpc

from . import failpoints
from .auth import GuardInterceptor, hash_token, new_token
from .config import ServerConfig
from .service import AgencyServicer, CoordinatorServicer
from .store import SqliteStore, Store

__all__ = ["COORDINATOR_TOKEN_FILE", "create_server", "ensure_coordinator", "serve"]

log = logging.getLogger("linkage.server")
COORDINATOR_TOKEN_FILE = "coordinator.token"
_SERVICES = ("linkage.v1.AgencyService", "linkage.v1.CoordinatorService")


def ensure_coordinator(store: Store, data_dir: Path) -> Path | None:
    """On first start, write a coordinator credential (mode 0600) into the data dir.

    Returns its path when it was just created, else ``None``.
    """
    path = data_dir / COORDINATOR_TOKEN_FILE
    if store.setting("coordinator_created") is not None:
        return None
    token = new_token()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    store.add_coordinator("coordinator", hash_token(token))
    store.set_setting("coordinator_created", b"1")
    return path


def create_server(config: ServerConfig) -> tuple[grpc.Server, int, SqliteStore]:
    """Open the store and build a server bound to ``config.listen``; returns (server, port, store).

    Raises:
        RuntimeError: the address cannot be bound.
    """
    failpoints.configure(config.pause_at, config.data_dir)
    store = SqliteStore(config.data_dir)
    interrupted = store.interrupt_running_runs()
    if interrupted:
        log.warning("%d linkage run(s) were interrupted by the last stop and are marked failed; "
                    "run them again", interrupted)
    created = ensure_coordinator(store, config.data_dir)
    if created is not None:
        log.warning("First start: the coordinator credential was written to %s", created)
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.workers),
                         interceptors=[GuardInterceptor(store)], options=options,
                         maximum_concurrent_rpcs=config.max_concurrent_rpcs)
    linkage_pb2_grpc.add_AgencyServiceServicer_to_server(
        AgencyServicer(store, config.max_concurrent_uploads), server)
    linkage_pb2_grpc.add_CoordinatorServiceServicer_to_server(CoordinatorServicer(store), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *_SERVICES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    service_names = (*(linkage_pb2.DESCRIPTOR.services_by_name[n.split(".")[-1]].full_name
                       for n in _SERVICES),
                     health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(service_names, server)
    try:
        port = server.add_insecure_port(config.listen)
    except RuntimeError as error:
        store.close()
        raise RuntimeError(f"Cannot listen on {config.listen}: {error}") from None
    if port == 0:
        store.close()
        raise RuntimeError(f"Cannot listen on {config.listen}: the address is in use or invalid.")
    return server, port, store


def serve(server: grpc.Server, store: SqliteStore, *, grace_seconds: float = 10.0) -> None:
    """Start the server and block until SIGINT/SIGTERM, then stop gracefully."""
    stopped = threading.Event()

    def stop(signum, _frame):
        log.warning("Signal %s: stopping (in-flight calls get %ss)", signum, grace_seconds)
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.start()
    stopped.wait()
    server.stop(grace_seconds).wait()
    store.close()
