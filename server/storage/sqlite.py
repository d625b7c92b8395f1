"""The embedded store: SQLite files in WAL mode in the server's data directory.

``linkage.sqlite3`` holds the service's state; ``audit.sqlite3`` the audit log,
beside it rather than in it because every call appends an entry and SQLite has a
single writer: in the main file each append would queue behind upload chunks.
Both files are versioned with named migrations, each applied in its own
transaction and recorded in ``schema_migrations``.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from linkage.audit import AuditEntry

from .audit import AUDIT_COLUMNS, AuditWriter, as_row, chain_after, filtered_entries
from .shares import SHARE_ATTRIBUTES_MIGRATION, share_migration
from .sql import SqlStore, now

__all__ = ["AUDIT_DATABASE_NAME", "DATABASE_NAME", "LOCK_NAME", "MIGRATIONS", "SqliteStore"]

DATABASE_NAME = "linkage.sqlite3"
AUDIT_DATABASE_NAME = "audit.sqlite3"
#: Held (flock) by the one process that owns a data directory's SQLite store.
LOCK_NAME = "linkage.lock"

Migration = tuple[str, Sequence[str] | Callable[[sqlite3.Connection], None]]

#: The main file's schema history: (name, statements) applied in order, each migration in
#: one transaction. Never edit an applied one; add a new one.
MIGRATIONS: list[Migration] = [
    ("0001_initial", (
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
        "CREATE TABLE coordinators (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
        "token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL)",
        "CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
        "schema_json TEXT NOT NULL, schema_fingerprint TEXT NOT NULL, clk_bits INTEGER NOT NULL, "
        "key_check TEXT, created_at TEXT NOT NULL)",
        "CREATE TABLE agencies (id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL "
        "REFERENCES projects(id), name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, "
        "UNIQUE (project_id, name))",
        "CREATE TABLE batches (id TEXT PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES "
        "projects(id), agency_id INTEGER NOT NULL REFERENCES agencies(id), record_count INTEGER "
        "NOT NULL, content_hash TEXT NOT NULL, created_at TEXT NOT NULL)",
        "CREATE TABLE records (id INTEGER PRIMARY KEY, batch_id TEXT NOT NULL REFERENCES "
        "batches(id), agency_id INTEGER NOT NULL REFERENCES agencies(id), record_id TEXT NOT "
        "NULL, clk BLOB NOT NULL, UNIQUE (agency_id, record_id))",
        "CREATE TABLE runs (id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES "
        "projects(id), number INTEGER NOT NULL, status TEXT NOT NULL, started_at TEXT NOT NULL, "
        "finished_at TEXT, summary TEXT, UNIQUE (project_id, number))",
        "CREATE TABLE groups (run_id INTEGER NOT NULL REFERENCES runs(id), group_key TEXT NOT "
        "NULL, confidence REAL NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (run_id, group_key))",
        "CREATE TABLE group_members (run_id INTEGER NOT NULL REFERENCES runs(id), group_key TEXT "
        "NOT NULL, agency_id INTEGER NOT NULL REFERENCES agencies(id), record_id TEXT NOT NULL)",
        "CREATE INDEX group_members_by_agency ON group_members (run_id, agency_id)",
        "CREATE TABLE reviews (project_id INTEGER NOT NULL REFERENCES projects(id), group_key "
        "TEXT NOT NULL, decision TEXT NOT NULL, note TEXT NOT NULL, decided_at TEXT NOT NULL, "
        "PRIMARY KEY (project_id, group_key))",
    )),
    ("0002_incremental_pairs", (
        "ALTER TABLE batches ADD COLUMN compared INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE projects ADD COLUMN pair_floor REAL",
        "CREATE TABLE pair_blocks (id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL "
        "REFERENCES projects(id), lefts BLOB NOT NULL, rights BLOB NOT NULL, scores BLOB NOT "
        "NULL)",
    )),
    ("0003_resumable_uploads", (
        "CREATE TABLE uploads (batch_id TEXT PRIMARY KEY, project_id INTEGER NOT NULL "
        "REFERENCES projects(id), agency_id INTEGER NOT NULL REFERENCES agencies(id), header "
        "TEXT NOT NULL, records_received INTEGER NOT NULL DEFAULT 0, started_at TEXT NOT NULL)",
        "CREATE TABLE upload_chunks (batch_id TEXT NOT NULL REFERENCES uploads(batch_id), "
        "first_record INTEGER NOT NULL, record_ids TEXT NOT NULL, clks BLOB NOT NULL, "
        "PRIMARY KEY (batch_id, first_record))",
    )),
    ("0004_record_attributes", (
        "ALTER TABLE projects ADD COLUMN stages TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE upload_chunks ADD COLUMN attributes TEXT",
        "ALTER TABLE records ADD COLUMN entity_type TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE records ADD COLUMN case_ref TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE records ADD COLUMN stage TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE batches ADD COLUMN has_attributes INTEGER NOT NULL DEFAULT 0",
    )),
    ("0005_entity_schemas", (
        "CREATE TABLE entity_schemas (project_id INTEGER NOT NULL REFERENCES projects(id), "
        "entity_type TEXT NOT NULL, schema_json TEXT NOT NULL, fingerprint TEXT NOT NULL, "
        "clk_bits INTEGER NOT NULL, PRIMARY KEY (project_id, entity_type))",
        "INSERT INTO entity_schemas SELECT id, 'person', schema_json, schema_fingerprint, "
        "clk_bits FROM projects",
    )),
    ("0006_follow_ups", (
        "CREATE TABLE follow_ups (id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL "
        "REFERENCES projects(id), group_key TEXT NOT NULL, requested_by TEXT NOT NULL, "
        "agency_id INTEGER NOT NULL REFERENCES agencies(id), note TEXT NOT NULL, status TEXT "
        "NOT NULL, answer_note TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL, "
        "answered_at TEXT)",
    )),
    ("0007_roles_purge", (
        "ALTER TABLE coordinators ADD COLUMN role TEXT NOT NULL DEFAULT 'coordinator'",
        "ALTER TABLE projects ADD COLUMN purged_at TEXT",
    )),
    ("0008_review_feedback_dedup", (
        "ALTER TABLE groups ADD COLUMN weakest_score REAL",
        "ALTER TABLE batches ADD COLUMN deduplicated INTEGER NOT NULL DEFAULT 0",
    )),
    # A field-wise group's explanation (about 1 KB) in a row of its own, not in the summary:
    # a run of a million groups would otherwise load a gigabyte to show forty of them.
    ("0009_group_waterfalls", (
        "CREATE TABLE group_waterfalls (run_id INTEGER NOT NULL REFERENCES runs(id), "
        "group_key TEXT NOT NULL, probability REAL NOT NULL, waterfall TEXT NOT NULL, "
        "PRIMARY KEY (run_id, group_key))",
        "CREATE INDEX group_waterfalls_by_probability ON group_waterfalls "
        "(run_id, probability, group_key)",
    )),
    share_migration("BLOB", "INTEGER"),
    SHARE_ATTRIBUTES_MIGRATION,
]

#: The audit file's schema history. The first one is IF NOT EXISTS: files written before
#: the audit log was versioned have the table already.
AUDIT_MIGRATIONS: list[Migration] = [
    ("0001_audit_log", (
        "CREATE TABLE IF NOT EXISTS audit_log (sequence INTEGER PRIMARY KEY, time TEXT NOT "
        "NULL, caller TEXT NOT NULL, role TEXT NOT NULL, project TEXT NOT NULL, method TEXT NOT "
        "NULL, outcome TEXT NOT NULL, counts_json TEXT NOT NULL, previous_hash TEXT NOT NULL, "
        "entry_hash TEXT NOT NULL)",
    )),
]

_PAGE_BYTES = 1024 * 1024


def migrate(db: sqlite3.Connection, migrations: Sequence[Migration]) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction; returns their names.

    A migration is a sequence of statements or a function of the connection.
    """
    db.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
               "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    applied = {row[0] for row in db.execute("SELECT name FROM schema_migrations")}
    done = []
    for name, step in migrations:
        if name in applied:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            if callable(step):
                step(db)
            else:
                for statement in step:
                    db.execute(statement)
            db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, now()))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        done.append(name)
    return done


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


def _create_private(path: Path) -> None:
    """Create ``path`` 0600 if it does not exist (SQLite would create it 0644 under umask)."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))


class _Readers:
    """One read-only connection per thread to one file (WAL lets reads run beside a writer)."""

    def __init__(self, path: Path, *, uri: bool = False):
        self._path, self._uri = path, uri
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def connection(self) -> sqlite3.Connection:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            target = f"file:{self._path}?mode=ro" if self._uri else self._path
            reader = sqlite3.connect(target, uri=self._uri, isolation_level=None,
                                     check_same_thread=False)
            reader.execute("PRAGMA query_only=ON")
            self._local.reader = reader
            with self._lock:
                self._all.append(reader)
        return reader

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        return self.connection().execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            for reader in self._all:
                reader.close()
            self._all.clear()


class SqliteStore(SqlStore):
    """The embedded store (the default): one data directory, one server process.

    Writes go through one connection guarded by a lock (SQLite serialises
    writers anyway); reads use one read-only connection per thread, so small
    calls stay fast during large uploads. ``read_only`` opens an existing store
    for ``--check`` beside a running server: no lock, no migrations, no writes.
    """

    _integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self, data_dir: Path, *, read_only: bool = False):
        self.data_dir = data_dir
        self.path = data_dir / DATABASE_NAME
        self.location = str(self.path)
        self.audit_path = data_dir / AUDIT_DATABASE_NAME
        self._lock = threading.RLock()
        self._read_only = read_only
        self._owner: int | None = None
        self._db: sqlite3.Connection | None = None
        self._audit_db: sqlite3.Connection | None = None
        self._audit: AuditWriter | None = None
        if read_only:
            if not self.path.exists():
                raise FileNotFoundError(f"No store at {self.path}.")
            self._readers = _Readers(self.path, uri=True)
            self._audit_readers = _Readers(self.audit_path, uri=True)
            return
        data_dir.mkdir(parents=True, exist_ok=True)
        self._owner = _claim_data_dir(data_dir)
        for path in (self.path, self.audit_path):
            _create_private(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        migrate(self._db, MIGRATIONS)
        self._readers = _Readers(self.path)
        self._audit_db = sqlite3.connect(self.audit_path, check_same_thread=False,
                                         isolation_level=None)
        self._audit_db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit reaches the OS before the call returns, so entries
        # survive a killed server; only an OS crash can lose the last moments. FULL would
        # add an fsync to every call and triple small-call latency during uploads.
        self._audit_db.execute("PRAGMA synchronous=NORMAL")
        migrate(self._audit_db, AUDIT_MIGRATIONS)
        self._audit_readers = _Readers(self.audit_path)
        self._audit = AuditWriter(self._commit_audit)
        for path in data_dir.glob("*.sqlite3*"):  # databases, their WAL and SHM files
            path.chmod(0o600)

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self._db is None:
            raise RuntimeError("this store was opened read-only (for --check)")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        return self._readers.query(sql, params)

    def _compact(self) -> None:
        assert self._db is not None
        with self._lock:
            self._db.execute("VACUUM")  # erased CLKs must not linger in free pages
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # nor in the write-ahead log

    def close(self) -> None:
        if self._audit is not None:
            self._audit.close()
        self._readers.close()
        self._audit_readers.close()
        with self._lock:
            for db in (self._db, self._audit_db):
                if db is not None:
                    db.close()
        if self._owner is not None:
            os.close(self._owner)  # closing the descriptor releases the data directory
            self._owner = None

    # -- audit log ----------------------------------------------------------------------------

    def _commit_audit(self, entries: list[AuditEntry]) -> list[AuditEntry]:
        db = self._audit_db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            head = db.execute("SELECT sequence, entry_hash FROM audit_log "
                              "ORDER BY sequence DESC LIMIT 1").fetchone()
            chained = chain_after(head, entries)
            db.executemany("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           [as_row(entry) for entry in chained])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return chained

    def append_audit(self, entry: AuditEntry) -> AuditEntry:
        """Chain ``entry`` to the last one (its sequence and hashes are set there) and return
        it once stored."""
        if self._audit is None:
            raise RuntimeError("this store was opened read-only (for --check)")
        return self._audit.append(entry)

    def audit_entries(self, **filters) -> Iterator[AuditEntry]:
        if not self.audit_path.exists():
            return iter(())
        return filtered_entries(self._audit_page, **filters)

    def _audit_page(self, sql: str, params) -> list[tuple]:
        """Up to the page's rows or ``_PAGE_BYTES`` of text, whichever comes first (and at
        least one row), so a page of huge entries cannot fill the memory."""
        rows, size = [], 0
        cursor = self._audit_readers.connection().execute(sql, params)
        try:
            for row in cursor:
                rows.append(row)
                size += sum(len(value) for value in row if isinstance(value, str))
                if size >= _PAGE_BYTES:
                    break
        finally:
            cursor.close()
        return rows

    def _audit_counts(self) -> dict[str, int]:
        return {f"{method} {outcome}": count for method, outcome, count in
                self._audit_readers.query("SELECT method, outcome, COUNT(*) FROM audit_log "
                                          "GROUP BY method, outcome")}

    # -- maintenance ----------------------------------------------------------------------------

    def check(self) -> tuple[list[str], list[str]]:
        """SQLite's own integrity and foreign-key checks, then the service's invariants."""
        (integrity,) = self._query("PRAGMA integrity_check")[0]
        if integrity != "ok":
            return [f"SQLite integrity check: {integrity}"], []
        problems = [f"{table} row {row} refers to a missing {parent}"
                    for table, row, parent, _ in self._query("PRAGMA foreign_key_check")]
        audit = (AuditEntry(*row) for row in self._audit_readers.query(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY sequence")
        ) if self.audit_path.exists() else None
        more, notes = self._check_invariants(audit)
        return problems + more, notes

    def backup(self, destination: Path) -> int:
        """Copy the store and the audit log into the new directory ``destination`` with
        SQLite's online backup API (safe while the server runs); the copy is a data
        directory the server can start on. Returns the size of the backup in bytes."""
        destination.mkdir(parents=True, mode=0o700)
        destination.chmod(0o700)  # a backup holds what the store holds: its owner only
        size = 0
        for name in (DATABASE_NAME, AUDIT_DATABASE_NAME):
            if not (self.data_dir / name).exists():
                continue
            source = sqlite3.connect(self.data_dir / name)
            os.close(os.open(destination / name,
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            target = sqlite3.connect(destination / name)
            try:
                source.backup(target)
            finally:
                target.close()
                source.close()
            size += (destination / name).stat().st_size
        return size
