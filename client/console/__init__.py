"""``linkage console``: a local web application for coordinators and agency analysts.

It runs on the user's own machine, on 127.0.0.1, and talks to the linkage
server only through ``LinkageClient`` with the caller's credentials, so it
adds nothing to the server's surface. Modules: ``access`` (the one-time link
and sessions), ``app`` (the Flask application, headers, errors), ``coordinator``
and ``agency`` (the pages), ``views`` (what the pages show, as plain data),
``runs`` (a run followed on a thread), ``serve`` (waitress on loopback).
"""

from .access import OneTimeToken
from .app import create_app
from .serve import check_bind, detect_role, serve_console

__all__ = ["OneTimeToken", "check_bind", "create_app", "detect_role", "serve_console"]
