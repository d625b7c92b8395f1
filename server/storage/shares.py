"""Two-server mode in the store: which projects hold shares, and the share batches.

A two-server project's batches are rows of ``batches`` as usual (ids, counts, hashes, so
listings, withdrawal checks and reports work unchanged), but their records live in
``share_records``: this server's additive share of each CLK, never the CLK, and on server 0
the record's attributes (entity type, case reference, stage) as ``records`` holds them for a
normal batch, so the report's network and broker ranking are drawn as for a normal run.
``records`` holds nothing for such a project: the queries that read attributes ask
``attribute_table`` which of the two tables a project's records are in. A purge blanks the
shares and keeps the attributes, as it blanks the CLKs of ``records``. The SQL is the
dialect both backends share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from linkage.errors import AlreadyExistsError, BatchFormatError, ShareModeError

__all__ = ["SHARE_ATTRIBUTES_MIGRATION", "SHARE_MIGRATION_NAME", "ShareRecords", "ShareSql",
           "ShareStore", "share_migration"]

SHARE_MIGRATION_NAME = "0010_two_server_shares"

#: Server 0 keeps a share batch's record attributes beside the shares (both backends).
SHARE_ATTRIBUTES_MIGRATION = ("0011_share_record_attributes", tuple(
    f"ALTER TABLE share_records ADD COLUMN {column} TEXT NOT NULL DEFAULT ''"
    for column in ("entity_type", "case_ref", "stage")))


def share_migration(blob: str, key: str) -> tuple[str, tuple[str, ...]]:
    """The named migration, in a backend's types (``blob``: BLOB or BYTEA; ``key``: the
    integer type of ids)."""
    return (SHARE_MIGRATION_NAME, (
        f"CREATE TABLE share_projects (project_id {key} PRIMARY KEY REFERENCES projects(id), "
        "role INTEGER NOT NULL)",
        f"CREATE TABLE share_records (batch_id TEXT NOT NULL REFERENCES batches(id), "
        f"agency_id {key} NOT NULL REFERENCES agencies(id), position INTEGER NOT NULL, "
        f"record_id TEXT NOT NULL, share {blob} NOT NULL, UNIQUE (agency_id, record_id))",
    ))


@dataclass(frozen=True)
class ShareRecords:
    """A project's share records in (agency, record id) order: the order both servers use."""

    agency_ids: list[int]
    record_ids: list[str]
    shares: list[bytes]
    batch_ids: list[str]


class ShareStore(Protocol):
    """What two-server mode needs from the store."""

    def set_share_role(self, project_id: int, role: int) -> None: ...
    def share_role(self, project_id: int) -> int | None: ...
    def attribute_table(self, project_id: int) -> str: ...
    def add_share_batch(self, project_id: int, agency_id: int, batch_id: str,
                        content_hash: str, key_check: str, deduplicated: bool,
                        record_ids: Sequence[str], shares: Sequence[bytes],
                        attributes: Sequence[tuple[str, str, str]] | None = None,
                        entity_type: str = "") -> None: ...
    def load_shares(self, project_id: int) -> ShareRecords: ...
    def mark_compared(self, batch_ids: Sequence[str]) -> None: ...


class ShareSql:
    """The shared SQL of ``ShareStore``; mixed into ``SqlStore``."""

    def set_share_role(self, project_id: int, role: int) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO share_projects (project_id, role) VALUES (?, ?)",
                       (project_id, int(role)))

    def share_role(self, project_id: int) -> int | None:
        rows = self._query("SELECT role FROM share_projects WHERE project_id = ?", (project_id,))
        return int(rows[0][0]) if rows else None

    def attribute_table(self, project_id: int) -> str:
        """The table holding the project's record attributes: ``share_records`` for a
        two-server project, ``records`` otherwise."""
        return "records" if self.share_role(project_id) is None else "share_records"

    def _run_attribute_table(self, run_id: int) -> str:
        rows = self._query("SELECT project_id FROM runs WHERE id = ?", (run_id,))
        return self.attribute_table(int(rows[0][0])) if rows else "records"

    def add_share_batch(self, project_id, agency_id, batch_id, content_hash, key_check,
                        deduplicated, record_ids, shares, attributes=None,
                        entity_type="") -> None:
        """Store a complete share batch in one transaction (the project's key check is set by
        the first batch, as for CLK batches). ``attributes``: (entity type, case ref, stage)
        per record, or None; without them every record gets ``entity_type``."""
        extra = (list(attributes) if attributes is not None
                 else [(entity_type, "", "")] * len(record_ids))
        if len(extra) != len(record_ids):
            raise BatchFormatError("A share batch has attributes for some records only.")
        try:
            with self._transaction() as db:
                current = db.execute("SELECT key_check FROM projects WHERE id = ?",
                                     (project_id,)).fetchone()[0]
                if current is None:
                    db.execute("UPDATE projects SET key_check = ? WHERE id = ?",
                               (key_check, project_id))
                db.execute("INSERT INTO batches (id, project_id, agency_id, record_count, "
                           "content_hash, created_at, deduplicated, has_attributes) VALUES "
                           "(?, ?, ?, ?, ?, ?, ?, ?)",
                           (batch_id, project_id, agency_id, len(record_ids), content_hash,
                            _now(), int(bool(deduplicated)), int(attributes is not None)))
                db.executemany("INSERT INTO share_records (batch_id, agency_id, position, "
                               "record_id, share, entity_type, case_ref, stage) VALUES "
                               "(?, ?, ?, ?, ?, ?, ?, ?)",
                               [(batch_id, agency_id, i, r, s, *a) for i, (r, s, a)
                                in enumerate(zip(record_ids, shares, extra))])
        except self._integrity_errors:
            raise AlreadyExistsError("This batch, or some of its record ids, is already stored "
                                     "for this agency; record ids must be unique.") from None

    def mark_compared(self, batch_ids: Sequence[str]) -> None:
        """A run used these batches: they can no longer be withdrawn (its groups name them)."""
        with self._transaction() as db:
            db.executemany("UPDATE batches SET compared = 1 WHERE id = ?",
                           [(batch,) for batch in sorted(set(batch_ids))])

    def load_shares(self, project_id: int) -> ShareRecords:
        rows = self._query("SELECT s.agency_id, s.record_id, s.share, s.batch_id FROM "
                           "share_records s JOIN batches b ON b.id = s.batch_id WHERE "
                           "b.project_id = ?", (project_id,))
        rows.sort(key=lambda row: (int(row[0]), row[1]))  # in Python: no collation differs
        return ShareRecords([int(r[0]) for r in rows], [r[1] for r in rows],
                            [bytes(r[2]) for r in rows], [r[3] for r in rows])


def require_share_role(store: ShareStore, project_id: int, name: str, role: int | None
                       ) -> int:
    """The project's role on this server; refuses a normal project or the wrong server.

    Raises:
        ShareModeError: the project is not in two-server mode, or ``role`` is given and differs.
    """
    held = store.share_role(project_id)
    if held is None:
        raise ShareModeError(f"Project {name!r} is a normal (single-server) project: submit "
                             "CLKs with 'linkage submit' without --server-1.")
    if role is not None and held != role:
        raise ShareModeError(f"This is server {held} of project {name!r}, not server {role}.")
    return held


def _now() -> str:
    from .sql import now
    return now()
