"""Operator checks on a store: integrity verification and backups, through the store's
own ``check``/``backup`` (no backend is opened behind its interface)."""

from __future__ import annotations

from pathlib import Path

from .storage import open_store

__all__ = ["backup_store", "check_store"]


def check_store(data_dir: Path, store: str = "sqlite") -> tuple[list[str], list[str]]:
    """Verify the store: the database's own checks plus the service's invariants.

    Returns ``(problems, notes)``: problems mean damage; notes are states that
    the next start repairs by itself (an interrupted run). Safe beside a running server.
    """
    try:
        opened = open_store(store, data_dir, read_only=True)
    except FileNotFoundError as missing:
        return [str(missing)], []
    try:
        return opened.check()
    finally:
        opened.close()


def backup_store(data_dir: Path, destination: Path, store: str = "sqlite") -> int:
    """Back the store up into the new directory ``destination`` (safe while the server
    runs); returns the size of the backup in bytes.

    Raises:
        InvalidRequestError: the backend is backed up with its own tools (PostgreSQL).
    """
    opened = open_store(store, data_dir, read_only=True)
    try:
        return opened.backup(destination)
    finally:
        opened.close()
