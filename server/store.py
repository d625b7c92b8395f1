"""Persistent state behind a small ``Store`` protocol; SQLite (WAL) is the embedded default.

Algorithms never touch the database: the server loads arrays from here, hands
them to ``linkage`` and writes results back. Schema changes are named
migrations applied in transactions and recorded in ``schema_migrations``.
A batch is written in one transaction, so a half-received upload is never
visible.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

import numpy as np

from linkage.audit import AuditEntry
from linkage.errors import (
    AlreadyExistsError,
    InvalidRequestError,
    NotFoundError,
    RunStateError,
    ServerBusyError,
)

from . import failpoints
from .audit_store import AuditFile

__all__ = [
    "AgencyRow",
    "EntitySchemaRow",
    "FollowUpRow",
    "BatchRow",
    "GroupRow",
    "ProjectRow",
    "RunRow",
    "SqliteStore",
    "StoredRecords",
    "UploadRow",
    "Store",
]

DATABASE_NAME = "linkage.sqlite3"

MIGRATIONS: list[tuple[str, str]] = [
    ("0001_initial", """
        CREATE TABLE settings (key TEXT PRIMARY KEY, value BLOB NOT NULL);
        CREATE TABLE coordinators (
            id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
            token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL);
        CREATE TABLE projects (
            id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, schema_json TEXT NOT NULL,
            schema_fingerprint TEXT NOT NULL, clk_bits INTEGER NOT NULL, key_check TEXT,
            created_at TEXT NOT NULL);
        CREATE TABLE agencies (
            id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects(id),
            name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, UNIQUE (project_id, name));
        CREATE TABLE batches (
            id TEXT PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects(id),
            agency_id INTEGER NOT NULL REFERENCES agencies(id), record_count INTEGER NOT NULL,
            content_hash TEXT NOT NULL, created_at TEXT NOT NULL);
        CREATE TABLE records (
            id INTEGER PRIMARY KEY, batch_id TEXT NOT NULL REFERENCES batches(id),
            agency_id INTEGER NOT NULL REFERENCES agencies(id), record_id TEXT NOT NULL,
            clk BLOB NOT NULL, UNIQUE (agency_id, record_id));
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects(id),
            number INTEGER NOT NULL, status TEXT NOT NULL, started_at TEXT NOT NULL,
            finished_at TEXT, summary TEXT, UNIQUE (project_id, number));
        CREATE TABLE groups (
            run_id INTEGER NOT NULL REFERENCES runs(id), group_key TEXT NOT NULL,
            confidence REAL NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (run_id, group_key));
        CREATE TABLE group_members (
            run_id INTEGER NOT NULL REFERENCES runs(id), group_key TEXT NOT NULL,
            agency_id INTEGER NOT NULL REFERENCES agencies(id), record_id TEXT NOT NULL);
        CREATE INDEX group_members_by_agency ON group_members (run_id, agency_id);
        CREATE TABLE reviews (
            project_id INTEGER NOT NULL REFERENCES projects(id), group_key TEXT NOT NULL,
            decision TEXT NOT NULL, note TEXT NOT NULL, decided_at TEXT NOT NULL,
            PRIMARY KEY (project_id, group_key));
    """),
    ("0002_incremental_pairs", """
        ALTER TABLE batches ADD COLUMN compared INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE projects ADD COLUMN pair_floor REAL;
        CREATE TABLE pair_blocks (
            id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects(id),
            lefts BLOB NOT NULL, rights BLOB NOT NULL, scores BLOB NOT NULL);
    """),
    ("0003_resumable_uploads", """
        CREATE TABLE uploads (
            batch_id TEXT PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects(id),
            agency_id INTEGER NOT NULL REFERENCES agencies(id), header TEXT NOT NULL,
            records_received INTEGER NOT NULL DEFAULT 0, started_at TEXT NOT NULL);
        CREATE TABLE upload_chunks (
            batch_id TEXT NOT NULL REFERENCES uploads(batch_id), first_record INTEGER NOT NULL,
            record_ids TEXT NOT NULL, clks BLOB NOT NULL, PRIMARY KEY (batch_id, first_record));
    """),
    ("0004_record_attributes", """
        ALTER TABLE projects ADD COLUMN stages TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE upload_chunks ADD COLUMN attributes TEXT;
        ALTER TABLE records ADD COLUMN entity_type TEXT NOT NULL DEFAULT '';
        ALTER TABLE records ADD COLUMN case_ref TEXT NOT NULL DEFAULT '';
        ALTER TABLE records ADD COLUMN stage TEXT NOT NULL DEFAULT '';
        ALTER TABLE batches ADD COLUMN has_attributes INTEGER NOT NULL DEFAULT 0;
    """),
    ("0005_entity_schemas", """
        CREATE TABLE entity_schemas (
            project_id INTEGER NOT NULL REFERENCES projects(id), entity_type TEXT NOT NULL,
            schema_json TEXT NOT NULL, fingerprint TEXT NOT NULL, clk_bits INTEGER NOT NULL,
            PRIMARY KEY (project_id, entity_type));
        INSERT INTO entity_schemas
            SELECT id, 'person', schema_json, schema_fingerprint, clk_bits FROM projects;
    """),
    ("0006_follow_ups", """
        CREATE TABLE follow_ups (
            id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects(id),
            group_key TEXT NOT NULL, requested_by TEXT NOT NULL,
            agency_id INTEGER NOT NULL REFERENCES agencies(id), note TEXT NOT NULL,
            status TEXT NOT NULL, answer_note TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL, answered_at TEXT);
    """),
    ("0007_roles_purge", """
        ALTER TABLE coordinators ADD COLUMN role TEXT NOT NULL DEFAULT 'coordinator';
        ALTER TABLE projects ADD COLUMN purged_at TEXT;
    """),
    ("0008_review_feedback_dedup", """
        ALTER TABLE groups ADD COLUMN weakest_score REAL;
        ALTER TABLE batches ADD COLUMN deduplicated INTEGER NOT NULL DEFAULT 0;
    """),
]


@dataclass(frozen=True)
class ProjectRow:
    id: int
    name: str
    schema_json: str
    schema_fingerprint: str
    clk_bits: int
    key_check: str | None
    stages_json: str = "[]"
    purged_at: str | None = None

    @property
    def stages(self) -> list[str]:
        return json.loads(self.stages_json)


@dataclass(frozen=True)
class AgencyRow:
    id: int
    project_id: int
    name: str


@dataclass(frozen=True)
class BatchRow:
    id: str
    agency_id: int
    record_count: int
    content_hash: str


@dataclass(frozen=True)
class EntitySchemaRow:
    """The schema one entity type of a project is encoded with."""

    entity_type: str
    schema_json: str
    fingerprint: str
    clk_bits: int


@dataclass(frozen=True)
class StoredRecords:
    """Every record of a project, in storage order.

    ``row_ids`` are the store's own record keys (what stored pairs refer to);
    ``is_new`` marks records of batches not yet compared in any run.
    """

    row_ids: np.ndarray
    agency_ids: np.ndarray
    record_ids: list[str]
    clks: list[bytes]
    is_new: np.ndarray
    new_batches: list[str]
    entity_types: list[str]


@dataclass(frozen=True)
class UploadRow:
    """An upload in progress: held durably, invisible to runs until committed."""

    batch_id: str
    project_id: int
    agency_id: int
    header: str
    records_received: int


@dataclass(frozen=True)
class FollowUpRow:
    """A recorded follow-up request and its answer."""

    id: int
    group_key: str
    requested_by: str
    agency_id: int
    note: str
    status: str
    answer_note: str


@dataclass(frozen=True)
class RunRow:
    id: int
    project_id: int
    number: int
    status: str
    summary: dict


@dataclass(frozen=True)
class GroupRow:
    key: str
    confidence: float
    size: int
    members_by_agency: dict[int, int]
    weakest_score: float | None = None


class Store(Protocol):
    """What the server needs from persistent storage."""

    def setting(self, key: str) -> bytes | None: ...
    def set_setting(self, key: str, value: bytes) -> None: ...
    def add_staff(self, name: str, role: str, token_hash: str) -> None: ...
    def staff_by_token(self, token_hash: str) -> tuple[str, str, str] | None: ...
    def append_audit(self, entry: AuditEntry) -> AuditEntry: ...
    def audit_entries(self, *, project: str = "", caller: str = "", method: str = "",
                      outcome: str = "", since: str = "", from_sequence: int = 0
                      ) -> Iterator[AuditEntry]: ...
    def metrics(self) -> dict: ...
    def purge_project(self, project_id: int) -> tuple[int, int]: ...
    def run_in_progress(self, project_id: int) -> bool: ...
    def group_members(self, project_id: int, group_keys: Sequence[str]
                      ) -> dict[str, list[tuple[int, str]]]: ...
    def key_check_elsewhere(self, project_id: int, key_check: str) -> bool: ...
    def deduplicated_agencies(self, project_id: int) -> set[int]: ...
    def reviewed_scores(self, project_id: int, entity_type: str | None = None
                        ) -> tuple[np.ndarray, np.ndarray]: ...
    def create_project(self, name: str, schema_json: str, fingerprint: str, clk_bits: int,
                       agencies: Sequence[tuple[str, str]], stages: Sequence[str] = (),
                       entity_schemas: Sequence[EntitySchemaRow] = ()) -> ProjectRow: ...
    def entity_schemas(self, project_id: int) -> list[EntitySchemaRow]: ...
    def project(self, name: str) -> ProjectRow: ...
    def projects(self) -> list[ProjectRow]: ...
    def agencies(self, project_id: int) -> list[AgencyRow]: ...
    def agency_by_token(self, token_hash: str) -> tuple[ProjectRow, AgencyRow, str] | None: ...
    def batch_by_hash(self, agency_id: int, content_hash: str) -> BatchRow | None: ...
    def existing_record_ids(self, agency_id: int, record_ids: Sequence[str]) -> list[str]: ...
    def batches(self, project_id: int) -> list[BatchRow]: ...
    def batch(self, batch_id: str) -> BatchRow | None: ...
    def upload(self, batch_id: str) -> UploadRow | None: ...
    def begin_upload(self, project_id: int, agency_id: int, batch_id: str, header: str, *,
                     most_unfinished: int | None = None) -> None: ...
    def expire_uploads(self, older_than_seconds: float) -> int: ...
    def append_chunk(self, batch_id: str, first_record: int, record_ids: Sequence[str],
                     clks: Sequence[bytes],
                     attributes: Sequence[tuple[str, str, str]] | None = None) -> int: ...
    def upload_chunks(self, batch_id: str) -> Iterator[
        tuple[list[str], list[bytes], list[tuple[str, str, str]] | None]]: ...
    def member_attributes(self, run_id: int) -> list[tuple[str, int, str, str, str]]: ...
    def commit_upload(self, project: ProjectRow, agency: AgencyRow, batch_id: str,
                      content_hash: str, key_check: str) -> BatchRow: ...
    def discard_upload(self, batch_id: str) -> None: ...
    def interrupt_running_runs(self) -> int: ...
    def load_records(self, project_id: int) -> StoredRecords: ...
    def pair_floor(self, project_id: int) -> float | None: ...
    def add_pairs(self, project_id: int, floor: float, lefts: np.ndarray, rights: np.ndarray,
                  scores: np.ndarray, compared_batches: Sequence[str]) -> None: ...
    def load_pairs(self, project_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
    def reset_pairs(self, project_id: int) -> None: ...
    def start_run(self, project_id: int) -> int: ...
    def finish_run(self, run_id: int, summary: dict,
                   groups: Sequence[tuple[str, float, Sequence[tuple[int, str]]]]) -> None: ...
    def fail_run(self, run_id: int, message: str) -> None: ...
    def latest_run(self, project_id: int) -> RunRow | None: ...
    def previous_run(self, project_id: int, number: int) -> RunRow | None: ...
    def groups(self, run_id: int) -> list[GroupRow]: ...
    def agency_results(self, run_id: int, agency_id: int) -> Iterator[tuple[str, str]]: ...
    def group_agencies(self, run_id: int, group_keys: Sequence[str]) -> dict[str, dict[int, int]]: ...
    def set_review(self, project_id: int, group_key: str, decision: str, note: str) -> None: ...
    def reviews(self, project_id: int) -> dict[str, tuple[str, str]]: ...
    def withdraw_batch(self, project_id: int, batch_id: str,
                       agency_id: int | None = None) -> tuple[int, bool]: ...
    def add_follow_ups(self, project_id: int, group_key: str, requested_by: str,
                       agency_ids: Sequence[int], note: str, *,
                       most_per_agency: int | None = None) -> list[FollowUpRow]: ...
    def follow_ups(self, project_id: int) -> list[FollowUpRow]: ...
    def answer_follow_up(self, project_id: int, follow_up_id: int, agency_id: int,
                         decision: str, note: str) -> FollowUpRow: ...
    # Project maintenance by the coordinator (issue 15).
    def set_stages(self, project_id: int, stages: Sequence[str]) -> None: ...
    def stages_in_use(self, project_id: int) -> set[str]: ...
    def has_run(self, project_id: int) -> bool: ...
    def delete_project(self, project_id: int) -> tuple[int, int]: ...
    def set_agency_token(self, agency_id: int, token_hash: str) -> None: ...
    def close(self) -> None: ...


#: Held (flock) by the one process that owns a data directory's SQLite store.
LOCK_NAME = "linkage.lock"


def _claim_data_dir(data_dir: Path) -> int:
    """Lock the data directory for this process; returns the lock's descriptor.

    Why: two servers on one SQLite directory would each mark the other's running
    runs as interrupted at start and interleave their writes. The lock is an
    advisory ``flock`` on ``LOCK_NAME``; the OS drops it when the process dies.

    Raises:
        RuntimeError: another process holds the directory.
    """
    descriptor = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise RuntimeError(f"Another linkage-server is using {data_dir} (it holds "
                           f"{data_dir / LOCK_NAME}): stop it first, or give this server a "
                           "--data-dir of its own.") from None
    return descriptor


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class SqliteStore:
    """The embedded store: one SQLite file in WAL mode in the server's data directory.

    Writes go through one connection guarded by a lock (SQLite serialises
    writers anyway); reads use one read-only connection per thread, which WAL
    lets run beside a writer, so small calls stay fast during large uploads.
    """

    def __init__(self, data_dir: Path):
        data_dir.mkdir(parents=True, exist_ok=True)
        self._owner = _claim_data_dir(data_dir)
        self.path = data_dir / DATABASE_NAME
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._migrate()
        self._audit = AuditFile(data_dir)

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            reader.execute("PRAGMA query_only=ON")
            self._local.reader = reader
            with self._lock:
                self._readers.append(reader)
        return reader.execute(sql, params).fetchall()

    def _migrate(self) -> None:
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                       "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
            applied = {row[0] for row in db.execute("SELECT name FROM schema_migrations")}
        for name, script in MIGRATIONS:
            if name in applied:
                continue
            with self._transaction() as db:
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, _now()))

    def close(self) -> None:
        self._audit.close()
        with self._lock:
            for reader in self._readers:
                reader.close()
            self._db.close()
        os.close(self._owner)  # closing the descriptor releases the data directory

    # -- settings and credentials -----------------------------------------------------------

    def setting(self, key: str) -> bytes | None:
        rows = self._query("SELECT value FROM settings WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_setting(self, key: str, value: bytes) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, value))

    def add_staff(self, name: str, role: str, token_hash: str) -> None:
        """Add a coordinator or operator credential (kept as a hash)."""
        with self._transaction() as db:
            db.execute("INSERT INTO coordinators (name, token_hash, created_at, role) "
                       "VALUES (?, ?, ?, ?)", (name, token_hash, _now(), role))

    def staff_by_token(self, token_hash: str) -> tuple[str, str, str] | None:
        """(name, role, stored hash) of a coordinator or operator credential."""
        rows = self._query("SELECT name, role, token_hash FROM coordinators WHERE token_hash = ?",
                           (token_hash,))
        return tuple(rows[0]) if rows else None

    # -- audit log ----------------------------------------------------------------------------

    def append_audit(self, entry: AuditEntry) -> AuditEntry:
        """Chain ``entry`` to the last one (its sequence and hashes are set there) and return
        it once stored; the log has its own file (see ``audit_store``)."""
        return self._audit.append(entry)

    def audit_entries(self, **filters) -> Iterator[AuditEntry]:
        return self._audit.entries(**filters)

    def metrics(self) -> dict:
        """Counts for operators: nothing that identifies a record or a group."""
        (projects,), = self._query("SELECT COUNT(*) FROM projects")
        (batches, records), = self._query("SELECT COUNT(*), COALESCE(SUM(record_count), 0) "
                                          "FROM batches")
        (runs,), = self._query("SELECT COUNT(*) FROM runs WHERE status = 'done'")
        calls = self._audit.call_counts()
        (uploads,), = self._query("SELECT COUNT(*) FROM uploads")
        (upload_bytes,), = self._query("SELECT COALESCE(SUM(length(record_ids) + length(clks) + "
                                       "COALESCE(length(attributes), 0)), 0) FROM upload_chunks")
        return {"projects": projects, "batches": batches, "records": records, "runs": runs,
                "audit_entries": sum(calls.values()), "calls": calls,
                "unfinished_uploads": uploads, "unfinished_upload_bytes": upload_bytes}

    # -- projects and agencies --------------------------------------------------------------

    def create_project(self, name, schema_json, fingerprint, clk_bits, agencies,
                       stages=(), entity_schemas=()) -> ProjectRow:
        try:
            with self._transaction() as db:
                cursor = db.execute(
                    "INSERT INTO projects (name, schema_json, schema_fingerprint, clk_bits, "
                    "created_at, stages) VALUES (?, ?, ?, ?, ?, ?)",
                    (name, schema_json, fingerprint, clk_bits, _now(), json.dumps(list(stages))))
                project_id = cursor.lastrowid
                db.executemany("INSERT INTO agencies (project_id, name, token_hash) VALUES (?, ?, ?)",
                               [(project_id, agency, token_hash) for agency, token_hash in agencies])
                db.executemany(
                    "INSERT INTO entity_schemas VALUES (?, ?, ?, ?, ?)",
                    [(project_id, "person", schema_json, fingerprint, clk_bits)]
                    + [(project_id, e.entity_type, e.schema_json, e.fingerprint, e.clk_bits)
                       for e in entity_schemas])
        except sqlite3.IntegrityError:
            raise AlreadyExistsError(f"A project named {name!r} exists already; "
                                     "choose another name.") from None
        return self.project(name)

    def project(self, name: str) -> ProjectRow:
        rows = self._query("SELECT id, name, schema_json, schema_fingerprint, clk_bits, key_check, "
                           "stages, purged_at FROM projects WHERE name = ?", (name,))
        if not rows:
            shown = name if len(name) <= 80 else name[:80] + "…"
            raise NotFoundError(f"No project named {shown!r}; 'linkage project list' shows them.")
        return ProjectRow(*rows[0])

    def projects(self) -> list[ProjectRow]:
        rows = self._query("SELECT id, name, schema_json, schema_fingerprint, clk_bits, key_check, "
                           "stages, purged_at FROM projects ORDER BY name")
        return [ProjectRow(*row) for row in rows]

    def entity_schemas(self, project_id: int) -> list[EntitySchemaRow]:
        rows = self._query("SELECT entity_type, schema_json, fingerprint, clk_bits FROM "
                           "entity_schemas WHERE project_id = ? ORDER BY entity_type = 'person' "
                           "DESC, entity_type", (project_id,))
        return [EntitySchemaRow(*row) for row in rows]

    def agencies(self, project_id: int) -> list[AgencyRow]:
        rows = self._query("SELECT id, project_id, name FROM agencies WHERE project_id = ? "
                           "ORDER BY name", (project_id,))
        return [AgencyRow(*row) for row in rows]

    def agency_by_token(self, token_hash: str):
        rows = self._query("SELECT a.id, a.project_id, a.name, p.name, a.token_hash FROM agencies a "
                           "JOIN projects p ON p.id = a.project_id WHERE a.token_hash = ?",
                           (token_hash,))
        if not rows:
            return None
        agency_id, project_id, agency_name, project_name, stored_hash = rows[0]
        return self.project(project_name), AgencyRow(agency_id, project_id, agency_name), stored_hash

    # -- batches ------------------------------------------------------------------------------

    def batch_by_hash(self, agency_id: int, content_hash: str) -> BatchRow | None:
        rows = self._query("SELECT id, agency_id, record_count, content_hash FROM batches "
                           "WHERE agency_id = ? AND content_hash = ?", (agency_id, content_hash))
        return BatchRow(*rows[0]) if rows else None

    def existing_record_ids(self, agency_id: int, record_ids: Sequence[str]) -> list[str]:
        found: list[str] = []
        for start in range(0, len(record_ids), 500):
            chunk = list(record_ids[start:start + 500])
            marks = ",".join("?" * len(chunk))
            found.extend(row[0] for row in self._query(
                f"SELECT record_id FROM records WHERE agency_id = ? AND record_id IN ({marks})",
                [agency_id, *chunk]))
        return found

    def batch(self, batch_id: str) -> BatchRow | None:
        rows = self._query("SELECT id, agency_id, record_count, content_hash FROM batches "
                           "WHERE id = ?", (batch_id,))
        return BatchRow(*rows[0]) if rows else None

    # -- uploads in progress ------------------------------------------------------------------

    def upload(self, batch_id: str) -> UploadRow | None:
        rows = self._query("SELECT batch_id, project_id, agency_id, header, records_received "
                           "FROM uploads WHERE batch_id = ?", (batch_id,))
        return UploadRow(*rows[0]) if rows else None

    def begin_upload(self, project_id, agency_id, batch_id, header, *,
                     most_unfinished=None) -> None:
        """Hold a new upload (a no-op for one already held).

        Raises:
            ServerBusyError: the agency holds ``most_unfinished`` unfinished uploads already.
        """
        with self._transaction() as db:
            if most_unfinished is not None and not db.execute(
                    "SELECT 1 FROM uploads WHERE batch_id = ?", (batch_id,)).fetchone():
                (held,) = db.execute("SELECT COUNT(*) FROM uploads WHERE agency_id = ?",
                                     (agency_id,)).fetchone()
                if held >= most_unfinished:
                    raise ServerBusyError(
                        f"Your agency has {held} unfinished uploads on this server, the most "
                        "allowed: finish them (run 'linkage submit' again with the same batch) "
                        "or withdraw them ('linkage batch withdraw'); stale ones expire.")
            db.execute("INSERT OR IGNORE INTO uploads (batch_id, project_id, agency_id, header, "
                       "started_at) VALUES (?, ?, ?, ?, ?)",
                       (batch_id, project_id, agency_id, header, _now()))

    def append_chunk(self, batch_id, first_record, record_ids, clks, attributes=None) -> int:
        """Keep one chunk durably; returns the records now held. The caller checks order."""
        with self._transaction() as db:
            db.execute("INSERT INTO upload_chunks (batch_id, first_record, record_ids, clks, "
                       "attributes) VALUES (?, ?, ?, ?, ?)",
                       (batch_id, first_record, json.dumps(list(record_ids)), b"".join(clks),
                        None if attributes is None else json.dumps([list(a) for a in attributes])))
            db.execute("UPDATE uploads SET records_received = records_received + ? "
                       "WHERE batch_id = ?", (len(record_ids), batch_id))
            (received,) = db.execute("SELECT records_received FROM uploads WHERE batch_id = ?",
                                     (batch_id,)).fetchone()
        return received

    def upload_chunks(self, batch_id: str):
        """The held chunks in order, one at a time (memory stays at one chunk):
        (record ids, CLKs, attributes or None)."""
        upload = self.upload(batch_id)
        if upload is None:
            return
        clk_bytes = json.loads(upload.header)["clk_bits"] // 8
        positions = [row[0] for row in self._query(
            "SELECT first_record FROM upload_chunks WHERE batch_id = ? ORDER BY first_record",
            (batch_id,))]
        for position in positions:
            ((ids_json, blob, attributes),) = self._query(
                "SELECT record_ids, clks, attributes FROM upload_chunks WHERE batch_id = ? AND "
                "first_record = ?", (batch_id, position))
            ids = json.loads(ids_json)
            yield (ids, [blob[i * clk_bytes:(i + 1) * clk_bytes] for i in range(len(ids))],
                   None if attributes is None else [tuple(a) for a in json.loads(attributes)])

    def commit_upload(self, project, agency, batch_id, content_hash, key_check) -> BatchRow:
        """Move a complete, verified upload into the records in one transaction."""
        chunks = self.upload_chunks(batch_id)
        with_attributes = False
        with self._transaction() as db:
            current = db.execute("SELECT key_check FROM projects WHERE id = ?",
                                 (project.id,)).fetchone()[0]
            if current is None:
                db.execute("UPDATE projects SET key_check = ? WHERE id = ?", (key_check, project.id))
            (count,) = db.execute("SELECT records_received FROM uploads WHERE batch_id = ?",
                                  (batch_id,)).fetchone()
            db.execute("INSERT INTO batches (id, project_id, agency_id, record_count, "
                       "content_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                       (batch_id, project.id, agency.id, count, content_hash, _now()))
            try:
                header = json.loads(self.upload(batch_id).header)
                entity_type = header.get("entity_type") or ""
                db.execute("UPDATE batches SET deduplicated = ? WHERE id = ?",
                           (int(bool(header.get("deduplicated"))), batch_id))
                for ids, clks, attributes in chunks:
                    with_attributes = with_attributes or attributes is not None
                    extra = [(entity_type or a[0], a[1], a[2]) for a in attributes] if \
                        attributes else [(entity_type, "", "")] * len(ids)
                    db.executemany(
                        "INSERT INTO records (batch_id, agency_id, record_id, clk, entity_type, "
                        "case_ref, stage) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        ((batch_id, agency.id, rid, clk, *attrs)
                         for rid, clk, attrs in zip(ids, clks, extra)))
            except sqlite3.IntegrityError:
                raise AlreadyExistsError("Some record ids of this batch are already stored for "
                                         "this agency; record ids must be unique.") from None
            db.execute("UPDATE batches SET has_attributes = ? WHERE id = ?",
                       (int(with_attributes), batch_id))
            db.execute("DELETE FROM upload_chunks WHERE batch_id = ?", (batch_id,))
            db.execute("DELETE FROM uploads WHERE batch_id = ?", (batch_id,))
        return BatchRow(batch_id, agency.id, count, content_hash)

    def expire_uploads(self, older_than_seconds: float) -> int:
        """Delete unfinished uploads begun longer ago than that; returns how many."""
        cutoff = (datetime.now(timezone.utc) - timedelta(seconds=older_than_seconds)
                  ).isoformat(timespec="seconds")
        with self._transaction() as db:
            db.execute("DELETE FROM upload_chunks WHERE batch_id IN "
                       "(SELECT batch_id FROM uploads WHERE started_at < ?)", (cutoff,))
            return db.execute("DELETE FROM uploads WHERE started_at < ?", (cutoff,)).rowcount

    def discard_upload(self, batch_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM upload_chunks WHERE batch_id = ?", (batch_id,))
            db.execute("DELETE FROM uploads WHERE batch_id = ?", (batch_id,))

    def batches(self, project_id: int) -> list[BatchRow]:
        rows = self._query("SELECT id, agency_id, record_count, content_hash FROM batches "
                           "WHERE project_id = ? ORDER BY created_at, id", (project_id,))
        return [BatchRow(*row) for row in rows]

    def load_records(self, project_id: int) -> StoredRecords:
        rows = self._query("SELECT r.id, r.agency_id, r.record_id, r.clk, b.compared, b.id, "
                           "r.entity_type "
                           "FROM records r JOIN batches b ON b.id = r.batch_id "
                           "WHERE b.project_id = ? ORDER BY r.id", (project_id,))
        new_batches = sorted({row[5] for row in rows if not row[4]})
        return StoredRecords(
            row_ids=np.array([row[0] for row in rows], dtype=np.int64),
            agency_ids=np.array([row[1] for row in rows], dtype=np.int64),
            record_ids=[row[2] for row in rows],
            clks=[row[3] for row in rows],
            is_new=np.array([not row[4] for row in rows], dtype=bool),
            new_batches=new_batches,
            entity_types=[row[6] or "person" for row in rows],
        )

    # -- candidate pairs, kept between runs so new batches are compared only once ------------

    def pair_floor(self, project_id: int) -> float | None:
        rows = self._query("SELECT pair_floor FROM projects WHERE id = ?", (project_id,))
        return rows[0][0] if rows else None

    def add_pairs(self, project_id, floor, lefts, rights, scores, compared_batches) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO pair_blocks (project_id, lefts, rights, scores) "
                       "VALUES (?, ?, ?, ?)",
                       (project_id, np.asarray(lefts, "<i8").tobytes(),
                        np.asarray(rights, "<i8").tobytes(),
                        np.asarray(scores, "<f8").tobytes()))
            db.executemany("UPDATE batches SET compared = 1 WHERE id = ?",
                           [(batch,) for batch in compared_batches])
            db.execute("UPDATE projects SET pair_floor = ? WHERE id = ?", (floor, project_id))

    def load_pairs(self, project_id: int):
        rows = self._query("SELECT lefts, rights, scores FROM pair_blocks WHERE project_id = ? "
                           "ORDER BY id", (project_id,))
        if not rows:
            empty = np.zeros(0, np.int64)
            return empty, empty, np.zeros(0, np.float64)
        return (np.concatenate([np.frombuffer(r[0], "<i8") for r in rows]),
                np.concatenate([np.frombuffer(r[1], "<i8") for r in rows]),
                np.concatenate([np.frombuffer(r[2], "<f8") for r in rows]))

    def reset_pairs(self, project_id: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM pair_blocks WHERE project_id = ?", (project_id,))
            db.execute("UPDATE batches SET compared = 0 WHERE project_id = ?", (project_id,))
            db.execute("UPDATE projects SET pair_floor = NULL WHERE id = ?", (project_id,))

    # -- runs and results -------------------------------------------------------------------------

    def start_run(self, project_id: int) -> int:
        """Number the project's next run; one run per project at a time, checked in the same
        transaction that starts it.

        Raises:
            RunStateError: a run of the project is in progress already.
        """
        with self._transaction() as db:
            running = db.execute("SELECT number FROM runs WHERE project_id = ? AND "
                                 "status = 'running'", (project_id,)).fetchone()
            if running is not None:
                raise RunStateError(f"Run #{running[0]} of this project is in progress; wait for "
                                    "it to finish ('linkage report' shows it), then run again.")
            (last,) = db.execute("SELECT COALESCE(MAX(number), 0) FROM runs WHERE project_id = ?",
                                 (project_id,)).fetchone()
            cursor = db.execute("INSERT INTO runs (project_id, number, status, started_at) "
                                "VALUES (?, ?, 'running', ?)", (project_id, last + 1, _now()))
            return cursor.lastrowid

    def finish_run(self, run_id, summary, groups) -> None:
        """Store a run's groups: (key, confidence, weakest pair score, members) each."""
        with self._transaction() as db:
            db.executemany("INSERT INTO groups (run_id, group_key, confidence, size, "
                           "weakest_score) VALUES (?, ?, ?, ?, ?)",
                           ((run_id, key, confidence, len(members), weakest)
                            for key, confidence, weakest, members in groups))
            db.executemany("INSERT INTO group_members (run_id, group_key, agency_id, record_id) "
                           "VALUES (?, ?, ?, ?)",
                           ((run_id, key, agency_id, record_id)
                            for key, _, _, members in groups for agency_id, record_id in members))
            failpoints.reached("run-writing-results")
            db.execute("UPDATE runs SET status = 'done', finished_at = ?, summary = ? WHERE id = ?",
                       (_now(), json.dumps(summary), run_id))

    def interrupt_running_runs(self) -> int:
        """Mark runs left 'running' by a stopped server as failed; returns how many."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE runs SET status = 'failed', finished_at = ?, summary = ? "
                "WHERE status = 'running'",
                (_now(), json.dumps({"error": "interrupted: the server stopped during this run; "
                                              "start it again with 'linkage run'"})))
            return cursor.rowcount

    def fail_run(self, run_id: int, message: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE runs SET status = 'failed', finished_at = ?, summary = ? WHERE id = ?",
                       (_now(), json.dumps({"error": message}), run_id))

    def previous_run(self, project_id: int, number: int) -> RunRow | None:
        """The last finished run before run ``number``."""
        return self._finished_run("AND number < ?", (project_id, number))

    def latest_run(self, project_id: int) -> RunRow | None:
        return self._finished_run("", (project_id,))

    def _finished_run(self, condition: str, params: tuple) -> RunRow | None:
        rows = self._query("SELECT id, project_id, number, status, summary FROM runs WHERE "
                           f"project_id = ? AND status = 'done' {condition} "
                           "ORDER BY number DESC LIMIT 1", params)
        if not rows:
            return None
        run_id, project, number, status, summary = rows[0]
        return RunRow(run_id, project, number, status, json.loads(summary))

    def groups(self, run_id: int) -> list[GroupRow]:
        members: dict[str, dict[int, int]] = {}
        for key, agency_id, count in self._query(
                "SELECT group_key, agency_id, COUNT(*) FROM group_members WHERE run_id = ? "
                "GROUP BY group_key, agency_id", (run_id,)):
            members.setdefault(key, {})[agency_id] = count
        rows = self._query("SELECT group_key, confidence, size, weakest_score FROM groups "
                           "WHERE run_id = ? ORDER BY confidence DESC, group_key", (run_id,))
        return [GroupRow(key, confidence, size, members.get(key, {}), weakest)
                for key, confidence, size, weakest in rows]

    def agency_results(self, run_id: int, agency_id: int) -> Iterator[tuple[str, str]]:
        rows = self._query("SELECT record_id, group_key FROM group_members "
                           "WHERE run_id = ? AND agency_id = ? ORDER BY record_id",
                           (run_id, agency_id))
        yield from rows

    def group_agencies(self, run_id, group_keys) -> dict[str, dict[int, int]]:
        result: dict[str, dict[int, int]] = {}
        keys = list(group_keys)
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, agency_id, count in self._query(
                    f"SELECT group_key, agency_id, COUNT(*) FROM group_members WHERE run_id = ? "
                    f"AND group_key IN ({marks}) GROUP BY group_key, agency_id", [run_id, *chunk]):
                result.setdefault(key, {})[agency_id] = count
        return result

    def member_attributes(self, run_id: int) -> list[tuple[str, int, str, str, str]]:
        """(group, agency, entity type, case ref, stage) of every group member of a run."""
        return self._query(
            "SELECT m.group_key, m.agency_id, r.entity_type, r.case_ref, r.stage "
            "FROM group_members m JOIN records r ON r.agency_id = m.agency_id AND "
            "r.record_id = m.record_id WHERE m.run_id = ?", (run_id,))

    def set_review(self, project_id, group_key, decision, note) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO reviews (project_id, group_key, decision, note, "
                       "decided_at) VALUES (?, ?, ?, ?, ?)",
                       (project_id, group_key, decision, note, _now()))

    def add_follow_ups(self, project_id, group_key, requested_by, agency_ids, note, *,
                       most_per_agency=None):
        with self._transaction() as db:
            if most_per_agency is not None:
                for agency in agency_ids:
                    (held,) = db.execute(
                        "SELECT COUNT(*) FROM follow_ups WHERE project_id = ? AND group_key = ? "
                        "AND agency_id = ?", (project_id, group_key, agency)).fetchone()
                    if held >= most_per_agency:
                        raise InvalidRequestError(
                            f"This group holds {held} follow-ups for one of its agencies "
                            f"already, the most allowed ({most_per_agency}); answer or "
                            "follow up the open ones through the legal channel.")
            ids = [db.execute("INSERT INTO follow_ups (project_id, group_key, requested_by, "
                              "agency_id, note, status, created_at) VALUES (?, ?, ?, ?, ?, "
                              "'open', ?)", (project_id, group_key, requested_by, agency, note,
                                             _now())).lastrowid
                   for agency in agency_ids]
        return [f for f in self.follow_ups(project_id) if f.id in ids]

    def follow_ups(self, project_id: int) -> list[FollowUpRow]:
        rows = self._query("SELECT id, group_key, requested_by, agency_id, note, status, "
                           "answer_note FROM follow_ups WHERE project_id = ? ORDER BY id",
                           (project_id,))
        return [FollowUpRow(*row) for row in rows]

    def answer_follow_up(self, project_id, follow_up_id, agency_id, decision, note):
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE follow_ups SET status = ?, answer_note = ?, answered_at = ? "
                "WHERE id = ? AND project_id = ? AND agency_id = ? AND status = 'open'",
                (decision, note, _now(), follow_up_id, project_id, agency_id))
            updated = cursor.rowcount
        if not updated:
            raise NotFoundError(f"No open follow-up f-{follow_up_id} addressed to your agency in "
                                "this project; 'linkage results' lists yours.")
        return next(f for f in self.follow_ups(project_id) if f.id == follow_up_id)

    def reviewed_scores(self, project_id: int, entity_type: str | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Weakest-pair scores of accepted and of rejected groups, each group once (its
        latest run): labelled points for the score model. With ``entity_type``, only
        groups of that type (each type has its own model; a company's review must not
        train the persons' one). A group whose records are gone (purged) has no type."""
        typed = ""
        parameters: tuple = (project_id, project_id)
        if entity_type is not None:
            typed = (" AND EXISTS (SELECT 1 FROM group_members m JOIN records x ON "
                     "x.agency_id = m.agency_id AND x.record_id = m.record_id WHERE "
                     "m.run_id = g.run_id AND m.group_key = g.group_key AND "
                     "x.entity_type = ?)")
            parameters = (project_id, project_id, entity_type)
        rows = self._query(
            "SELECT r.group_key, r.decision, g.weakest_score FROM reviews r "
            "JOIN groups g ON g.group_key = r.group_key JOIN runs u ON u.id = g.run_id "
            "WHERE r.project_id = ? AND u.project_id = ? AND g.weakest_score IS NOT NULL"
            + typed + " ORDER BY u.number", parameters)
        latest = {key: (decision, score) for key, decision, score in rows}
        accepted = [score for decision, score in latest.values() if decision == "accepted"]
        rejected = [score for decision, score in latest.values() if decision == "rejected"]
        return np.array(accepted, np.float64), np.array(rejected, np.float64)

    def deduplicated_agencies(self, project_id: int) -> set[int]:
        """Agencies that declared a batch of this project deduplicated."""
        return {row[0] for row in self._query(
            "SELECT DISTINCT agency_id FROM batches WHERE project_id = ? AND deduplicated = 1",
            (project_id,))}

    def key_check_elsewhere(self, project_id: int, key_check: str) -> bool:
        """True when another project's batches were encoded under the same secret."""
        return bool(self._query("SELECT 1 FROM projects WHERE key_check = ? AND id != ?",
                                (key_check, project_id)))

    def group_members(self, project_id, group_keys) -> dict[str, list[tuple[int, str]]]:
        """(agency, record id) members of groups by key, from whichever run formed them."""
        result: dict[str, list[tuple[int, str]]] = {}
        keys = list(group_keys)
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, agency_id, record_id in self._query(
                    "SELECT DISTINCT m.group_key, m.agency_id, m.record_id FROM group_members m "
                    f"JOIN runs u ON u.id = m.run_id WHERE u.project_id = ? AND m.group_key IN "
                    f"({marks})", [project_id, *chunk]):
                result.setdefault(key, []).append((agency_id, record_id))
        return result

    def run_in_progress(self, project_id: int) -> bool:
        return bool(self._query("SELECT 1 FROM runs WHERE project_id = ? AND status = 'running'",
                                (project_id,)))

    def purge_project(self, project_id: int) -> tuple[int, int]:
        """Erase the CLKs (record rows stay for reports), pairs and held uploads of a
        project and mark it purged; returns (CLKs erased, pair blocks deleted)."""
        with self._transaction() as db:
            records = db.execute(
                "UPDATE records SET clk = X'' WHERE length(clk) > 0 AND batch_id IN "
                "(SELECT id FROM batches WHERE project_id = ?)", (project_id,)).rowcount
            blocks = db.execute("DELETE FROM pair_blocks WHERE project_id = ?",
                                (project_id,)).rowcount
            db.execute("DELETE FROM upload_chunks WHERE batch_id IN "
                       "(SELECT batch_id FROM uploads WHERE project_id = ?)", (project_id,))
            db.execute("DELETE FROM uploads WHERE project_id = ?", (project_id,))
            db.execute("UPDATE projects SET purged_at = COALESCE(purged_at, ?), pair_floor = NULL "
                       "WHERE id = ?", (_now(), project_id))
        with self._lock:
            self._db.execute("VACUUM")  # erased CLKs must not linger in free pages
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # nor in the write-ahead log
        return records, blocks

    # -- withdrawing a batch before a run has used it ------------------------------------------

    def withdraw_batch(self, project_id, batch_id, agency_id=None) -> tuple[int, bool]:
        """Delete a batch (or an unfinished upload) that no run has compared yet; ``agency_id``
        limits it to that agency's own batches. Returns (records deleted, was an upload).

        Raises:
            NotFoundError: no such batch in the project (or not the agency's: same answer).
            RunStateError: a run has used the batch, or one is in progress.
        """
        owner = "" if agency_id is None else " AND agency_id = ?"
        params = (batch_id, project_id) + (() if agency_id is None else (agency_id,))
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM runs WHERE project_id = ? AND status = 'running'",
                          (project_id,)).fetchone():
                raise RunStateError("A run of this project is in progress; withdraw the batch "
                                    "after it has finished (if it has not used the batch).")
            batch = db.execute(f"SELECT compared FROM batches WHERE id = ? AND project_id = ?"
                               f"{owner}", params).fetchone()
            if batch is None:
                upload = db.execute(f"SELECT records_received FROM uploads WHERE batch_id = ? "
                                    f"AND project_id = ?{owner}", params).fetchone()
                if upload is None:
                    raise NotFoundError(f"No batch {batch_id[:40]!r} of yours in this project; "
                                        "'linkage submit' printed the batch id.")
                db.execute("DELETE FROM upload_chunks WHERE batch_id = ?", (batch_id,))
                db.execute("DELETE FROM uploads WHERE batch_id = ?", (batch_id,))
                return int(upload[0]), True
            if batch[0]:
                (number,) = db.execute(
                    "SELECT COALESCE(MIN(number), 0) FROM runs WHERE project_id = ? AND "
                    "status = 'done'", (project_id,)).fetchone()
                raise RunStateError(
                    f"Batch {batch_id} was compared in a linkage run (run #{number} or later) and "
                    "is part of its results, so it cannot be withdrawn. To take its records out "
                    "of further linkage, the coordinator purges the project ('linkage project "
                    "purge') and the agencies submit their corrected batches to a new project.")
            deleted = db.execute("DELETE FROM records WHERE batch_id = ?", (batch_id,)).rowcount
            db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
        return deleted, False

    def reviews(self, project_id: int) -> dict[str, tuple[str, str]]:
        rows = self._query("SELECT group_key, decision, note FROM reviews WHERE project_id = ?",
                           (project_id,))
        return {key: (decision, note) for key, decision, note in rows}

    # -- project maintenance by the coordinator ---------------------------------------------

    def set_stages(self, project_id: int, stages: Sequence[str]) -> None:
        with self._transaction() as db:
            db.execute("UPDATE projects SET stages = ? WHERE id = ?",
                       (json.dumps(list(stages)), project_id))

    def stages_in_use(self, project_id: int) -> set[str]:
        """Stages that stored records of the project carry."""
        return {row[0] for row in self._query(
            "SELECT DISTINCT r.stage FROM records r JOIN batches b ON b.id = r.batch_id "
            "WHERE b.project_id = ? AND r.stage != ''", (project_id,))}

    def has_run(self, project_id: int) -> bool:
        """True once any run of the project started (finished, failed or running)."""
        return bool(self._query("SELECT 1 FROM runs WHERE project_id = ?", (project_id,)))

    def delete_project(self, project_id: int) -> tuple[int, int]:
        """Remove a never-run project and everything stored for it; returns (batches,
        records) deleted. The audit log is a separate file and keeps its entries."""
        with self._transaction() as db:
            (batches, records), = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(record_count), 0) FROM batches "
                "WHERE project_id = ?", (project_id,)).fetchall()
            db.execute("DELETE FROM records WHERE batch_id IN "
                       "(SELECT id FROM batches WHERE project_id = ?)", (project_id,))
            db.execute("DELETE FROM upload_chunks WHERE batch_id IN "
                       "(SELECT batch_id FROM uploads WHERE project_id = ?)", (project_id,))
            for table in ("uploads", "batches", "pair_blocks", "follow_ups", "reviews",
                          "entity_schemas"):
                db.execute(f"DELETE FROM {table} WHERE project_id = ?", (project_id,))
            db.execute("DELETE FROM agencies WHERE project_id = ?", (project_id,))
            db.execute("DELETE FROM projects WHERE id = ?", (project_id,))
        with self._lock:
            self._db.execute("VACUUM")  # deleted CLKs must not linger in free pages
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(batches), int(records)

    def set_agency_token(self, agency_id: int, token_hash: str) -> None:
        """Replace an agency's token hash: the old token stops working."""
        with self._transaction() as db:
            db.execute("UPDATE agencies SET token_hash = ? WHERE id = ?", (token_hash, agency_id))
