"""Serving the console: loopback only, waitress as the WSGI server, one printed link.

The console holds the caller's linkage credentials, so it listens on
127.0.0.1 and nowhere else (reach it from another machine through an SSH
tunnel, which authenticates the person first). waitress is a production WSGI
server with no debugger or reloader to expose.
"""

from __future__ import annotations

import errno
import signal
import threading
from collections.abc import Callable

import grpc
from waitress.server import create_server

from linkage.errors import InvalidRequestError

from .access import OneTimeToken
from .app import Role, create_app

__all__ = ["LOOPBACK", "check_bind", "detect_role", "serve_console"]

LOOPBACK = "127.0.0.1"


def check_bind(address: str) -> str:
    """The address to listen on, which must be loopback.

    Raises:
        InvalidRequestError: any other address.
    """
    if address != LOOPBACK:
        raise InvalidRequestError(
            f"The console listens on {LOOPBACK} only, not {address!r}: it acts with your "
            "linkage token, so it must not be reachable from the network. To use it from "
            "another machine, forward the port over SSH (ssh -L PORT:127.0.0.1:PORT host).")
    return address


def detect_role(client, project: str | None) -> Role:
    """"coordinator" if the token may list projects, else "agency" (which needs ``project``).

    Raises:
        InvalidRequestError: an agency token without a project.
        grpc.RpcError: the server refuses the token for the project too.
    """
    try:
        client.list_projects()
        return "coordinator"
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.PERMISSION_DENIED:
            raise
    if not project:
        raise InvalidRequestError("This is not a coordinator token, so it is an agency's: say "
                                  "which project it belongs to with --project.")
    try:
        for _ in client.results(project):
            break
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.FAILED_PRECONDITION:  # no run yet is fine
            raise
    return "agency"


def serve_console(client, *, project: str | None, port: int = 0, bind: str = LOOPBACK,
                  announce: Callable[[str, Role], None] = lambda url, role: None,
                  threads: int = 4) -> None:
    """Serve the console until interrupted (Ctrl-C or SIGTERM).

    ``announce(url, role)`` receives the one-time link once the port is bound.

    Raises:
        InvalidRequestError: a non-loopback ``bind``, a port in use, or an agency token
            without ``project``.
        grpc.RpcError: the server refuses the credentials.
    """
    host = check_bind(bind)
    role = detect_role(client, project)
    access = OneTimeToken()
    app = create_app(client, role=role, project=project, access=access)
    try:
        server = create_server(app, host=host, port=port, threads=threads,
                               ident="linkage-console", expose_tracebacks=False,
                               clear_untrusted_proxy_headers=True)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise InvalidRequestError(f"Port {port} on {host} is in use: pick another --port, "
                                      "or leave it out for a free one.") from None
        raise
    bound = server.effective_port
    app.config.update(ALLOWED_HOSTS=(f"{host}:{bound}", f"localhost:{bound}"),
                      SESSION_COOKIE_NAME=f"linkage-console-{bound}")
    announce(f"http://{host}:{bound}/?token={access.value}", role)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(0)
