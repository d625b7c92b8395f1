"""Persistent state behind small Protocols (``protocols``); two backends implement them.

- ``SqliteStore``: the embedded default, files in the data directory, one server.
- ``PostgresStore``: a PostgreSQL database shared by several server replicas.

Algorithms never touch the database: the server loads arrays from here, hands them
to ``linkage`` and writes results back. Each backend versions its schema with named
migrations, each applied in one transaction and recorded in ``schema_migrations``.
"""

from __future__ import annotations

from pathlib import Path

from .protocols import (
    AuditStore,
    MaintenanceStore,
    ProjectStore,
    RecordStore,
    ReviewStore,
    RunStore,
    Store,
    UploadStore,
)
from .rows import (
    AgencyRow,
    BatchRow,
    EntitySchemaRow,
    FollowUpRow,
    GroupRow,
    ProjectRow,
    RunRow,
    StaffRow,
    StoredRecords,
    UploadRow,
)
from .sqlite import AUDIT_DATABASE_NAME, DATABASE_NAME, SqliteStore

__all__ = [
    "AUDIT_DATABASE_NAME",
    "AgencyRow",
    "AuditStore",
    "BatchRow",
    "DATABASE_NAME",
    "EntitySchemaRow",
    "FollowUpRow",
    "GroupRow",
    "MaintenanceStore",
    "ProjectRow",
    "ProjectStore",
    "RecordStore",
    "ReviewStore",
    "RunRow",
    "RunStore",
    "SqliteStore",
    "StaffRow",
    "Store",
    "StoredRecords",
    "UploadRow",
    "UploadStore",
    "is_postgres_url",
    "open_store",
    "parse_store_option",
]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(spec: str) -> bool:
    return spec.startswith(_POSTGRES_SCHEMES)


def parse_store_option(spec: str) -> str:
    """Check a ``--store`` value: 'sqlite' or a PostgreSQL URL; returns it normalised.

    Raises:
        ValueError: anything else, with what is expected.
    """
    spec = (spec or "sqlite").strip()
    if spec == "sqlite" or is_postgres_url(spec):
        return spec
    raise ValueError(f"--store {spec!r}: expected 'sqlite' or "
                     "postgresql://USER@HOST:PORT/DATABASE")


def open_store(spec: str, data_dir: Path, *, read_only: bool = False) -> Store:
    """Open the store ``spec`` names: 'sqlite' (files in ``data_dir``) or a PostgreSQL URL.

    ``read_only`` opens it for ``--check`` and ``backup`` beside a running server: no
    lock on the data directory, no migrations, no background writer.
    """
    spec = parse_store_option(spec)
    if spec == "sqlite":
        return SqliteStore(data_dir, read_only=read_only)
    from .postgres import PostgresStore  # psycopg is needed only here
    return PostgresStore(spec, read_only=read_only,
                         data_dir=None if read_only else data_dir)
