"""Compatibility shim: the audit log now lives in each store (``server.storage``); on
SQLite in its own file ``audit.sqlite3``, on PostgreSQL in the shared database."""

from __future__ import annotations

from .storage.sqlite import AUDIT_DATABASE_NAME  # noqa: F401 - re-exported

__all__ = ["AUDIT_DATABASE_NAME"]
