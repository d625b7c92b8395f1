"""The console's Flask application: access control, security headers, errors, shared state.

``create_app`` builds the application for one caller and one role; the pages
live in ``coordinator.py`` and ``agency.py``. Every request needs the session
that the one-time link opened (see ``access.py``), every state-changing one a
CSRF token (Flask-WTF), and the Host header must name this console, so a web
page elsewhere cannot reach it by DNS rebinding either.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import grpc
from flask import Flask, current_app, jsonify, redirect, render_template, request, session, \
    url_for
from flask_wtf.csrf import CSRFError, CSRFProtect

from linkage.errors import LinkageError

from .access import OneTimeToken, SessionRegistry
from .runs import RunWatch

if TYPE_CHECKING:
    from ..api import LinkageClient

__all__ = ["ConsoleState", "create_app", "state"]

Role = Literal["coordinator", "agency"]

_CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; "
                            "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                            "frame-ancestors 'none'; base-uri 'none'")
_OPEN_ENDPOINTS = {"enter"}
# gRPC codes that mean "the request was wrong", shown as the caller's mistake (4xx).
_CALLER_CODES = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 409,
                 grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.PERMISSION_DENIED: 403,
                 grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.RESOURCE_EXHAUSTED: 429}


@dataclass
class ConsoleState:
    """What the routes share: the client, who it acts as, the access gate and caches."""

    client: "LinkageClient"
    role: Role
    project: str | None
    access: OneTimeToken
    sessions: SessionRegistry = field(default_factory=SessionRegistry)
    runs: RunWatch | None = None
    layouts: dict = field(default_factory=dict)
    layout_lock: threading.Lock = field(default_factory=threading.Lock)


def state() -> ConsoleState:
    return current_app.extensions["linkage_console"]


def create_app(client: "LinkageClient", *, role: Role, project: str | None, access: OneTimeToken,
               allowed_hosts: tuple[str, ...] = (), cookie_name: str = "linkage-console"
               ) -> Flask:
    """The console application acting through ``client`` as ``role``.

    Args:
        client: a ``LinkageClient`` holding the caller's credentials.
        role: "coordinator" or "agency": which pages the console offers.
        project: the project to open (required for an agency token, whose token belongs to
            one project; a coordinator may switch between projects).
        access: the one-time token printed in the console's URL.
        allowed_hosts: the Host header values to accept (``127.0.0.1:PORT``); empty accepts
            any, for tests through Flask's test client.
        cookie_name: the session cookie's name; cookies are kept per host, not per port, so
            each console on 127.0.0.1 needs its own.
    """
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secrets.token_bytes(32),
        SESSION_COOKIE_NAME=cookie_name,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=False,  # plain HTTP on loopback
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_CSRF_SSL_STRICT=False,
        MAX_CONTENT_LENGTH=64 * 1024,
        ALLOWED_HOSTS=tuple(allowed_hosts),
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.extensions["linkage_console"] = ConsoleState(
        client, role, project, access,
        runs=RunWatch(client) if role == "coordinator" else None)
    _install_access(app)  # first: a request without the session is refused before all else
    CSRFProtect(app)
    _install_errors(app)
    if role == "coordinator":
        from .coordinator import pages
    else:
        from .agency import pages
    app.register_blueprint(pages)
    return app


def _install_access(app: Flask) -> None:
    @app.before_request
    def check_access():
        hosts = current_app.config["ALLOWED_HOSTS"]
        if hosts and request.host not in hosts:
            return _refusal("This console answers only at the address it printed.", 403)
        if request.endpoint in _OPEN_ENDPOINTS:
            return None
        if not state().sessions.valid(session.get("sid")):
            return _refusal("Open the link that 'linkage console' printed; this browser has "
                            "no session with it.", 401)
        return None

    @app.after_request
    def harden(response):
        response.headers["Content-Security-Policy"] = _CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        return response

    @app.get("/", endpoint="enter")
    def enter():
        """Exchange the one-time token for a session, then drop it from the address bar."""
        console = state()
        offered = request.args.get("token", "")
        if console.sessions.valid(session.get("sid")):
            return redirect(url_for("pages.home"), 303)
        if not offered:
            return _refusal("Open the link that 'linkage console' printed, with its token.", 401)
        if not console.access.redeem(offered):
            reason = ("This access link was used already; it opens one session only. Restart "
                      "'linkage console' for a new link." if console.access.used else
                      "This access token is wrong; copy the whole link that 'linkage console' "
                      "printed.")
            return _refusal(reason, 403)
        session.clear()
        session["sid"] = console.sessions.open()
        return redirect(url_for("pages.home"), 303)

    @app.post("/logout")
    def logout():
        state().sessions.close(session.get("sid"))
        session.clear()
        return _refusal("Signed out. Restart 'linkage console' for a new link.", 200)


def _refusal(message: str, status: int):
    if _wants_json():
        return jsonify(error=message), status
    return render_template("refused.html", message=message), status


def _wants_json() -> bool:
    return request.is_json or request.path.startswith("/api/") or request.path.endswith(".csv")


def _install_errors(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_refused(error):
        return _refusal(f"Refused: {error.description} Reload the page and try again.", 400)

    @app.errorhandler(grpc.RpcError)
    def server_refused(error):
        code = error.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            message = ("Cannot reach the linkage server: is it running? With mutual TLS: are "
                       "--ca, --cert and --key right?")
        else:
            message = f"The server refused ({code.name}): {error.details()}"
        status = _CALLER_CODES.get(code, 502)
        if _wants_json():
            return jsonify(error=message, code=code.name), status
        return render_template("error.html", message=message), status

    @app.errorhandler(LinkageError)
    def linkage_refused(error):
        if _wants_json():
            return jsonify(error=str(error)), 400
        return render_template("error.html", message=str(error)), 400
