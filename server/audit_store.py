"""The audit log's own SQLite file, written by one thread with group commits.

It lives beside the main store rather than in it because every call appends
an entry: in the main file each append would queue behind upload chunks for
SQLite's single writer, and small calls would wait for large uploads. Here a
writer thread takes whatever entries are waiting, chains and commits them in
one transaction (one fsync for many calls), and only then lets their calls
return, so no call finishes without its entry on disk.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from linkage.audit import GENESIS_HASH, AuditEntry, entry_hash

__all__ = ["AUDIT_DATABASE_NAME", "AuditFile"]

AUDIT_DATABASE_NAME = "audit.sqlite3"
_COLUMNS = ("sequence, time, caller, role, project, method, outcome, counts_json, "
            "previous_hash, entry_hash")
_WAIT_SECONDS = 30.0
_BATCH = 512
_PAGE_ROWS = 1000
_PAGE_BYTES = 1024 * 1024


@dataclass
class _Pending:
    entry: AuditEntry
    done: threading.Event = field(default_factory=threading.Event)
    stored: AuditEntry | None = None
    error: BaseException | None = None


class AuditFile:
    """Append-only, hash-chained entries in ``audit.sqlite3`` of a data directory."""

    def __init__(self, data_dir: Path):
        self.path = data_dir / AUDIT_DATABASE_NAME
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit reaches the OS before the call returns, so entries
        # survive a killed server; only an OS crash can lose the last moments. FULL would
        # add an fsync to every call and triple small-call latency during uploads.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS audit_log (sequence INTEGER PRIMARY KEY, "
                         "time TEXT NOT NULL, caller TEXT NOT NULL, role TEXT NOT NULL, "
                         "project TEXT NOT NULL, method TEXT NOT NULL, outcome TEXT NOT NULL, "
                         "counts_json TEXT NOT NULL, previous_hash TEXT NOT NULL, "
                         "entry_hash TEXT NOT NULL)")
        last = self._db.execute("SELECT sequence, entry_hash FROM audit_log "
                                "ORDER BY sequence DESC LIMIT 1").fetchone()
        self._head = (last[0], last[1]) if last else (0, GENESIS_HASH)
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._writer = threading.Thread(target=self._write_loop, name="audit-writer", daemon=True)
        self._writer.start()

    def append(self, entry: AuditEntry) -> AuditEntry:
        """Chain ``entry`` after the last one and return it once it is committed.

        Raises:
            TimeoutError: the writer did not commit it in time.
        """
        pending = _Pending(entry)
        self._queue.put(pending)
        if not pending.done.wait(_WAIT_SECONDS):
            raise TimeoutError("the audit log writer did not commit the entry in time")
        if pending.error is not None:
            raise pending.error
        assert pending.stored is not None
        return pending.stored

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(more)
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        sequence, previous = self._head
        rows = []
        for pending in batch:
            sequence += 1
            chained = replace(pending.entry, sequence=sequence, previous_hash=previous,
                              entry_hash="")
            chained = replace(chained, entry_hash=entry_hash(chained))
            pending.stored = chained
            previous = chained.entry_hash
            rows.append((chained.sequence, chained.time, chained.caller, chained.role,
                         chained.project, chained.method, chained.outcome,
                         chained.counts_json, chained.previous_hash, chained.entry_hash))
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 rows)
            self._db.execute("COMMIT")
            self._head = (sequence, previous)
        except BaseException as error:  # noqa: BLE001 - handed to every waiting call
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            for pending in batch:
                pending.stored, pending.error = None, error
        for pending in batch:
            pending.done.set()

    def entries(self, *, project="", caller="", method="", outcome="", since="",
                from_sequence=0) -> Iterator[AuditEntry]:
        """Entries in sequence order, filtered, read in pages (memory stays small)."""
        conditions, params = ["sequence > ?"], []
        for column, value in (("project", project), ("caller", caller), ("method", method),
                              ("outcome", outcome)):
            if value:
                conditions.append(f"{column} = ?")
                params.append(value)
        if since:
            conditions.append("time >= ?")
            params.append(since)
        position = max(int(from_sequence), 1) - 1
        while True:
            rows = self._page(f"SELECT {_COLUMNS} FROM audit_log WHERE "
                              f"{' AND '.join(conditions)} ORDER BY sequence LIMIT {_PAGE_ROWS}",
                              [position, *params])
            if not rows:
                return
            for row in rows:
                yield AuditEntry(*row)
            position = rows[-1][0]

    def _page(self, sql: str, params) -> list[tuple]:
        """Rows of one page: up to ``_PAGE_ROWS`` or ``_PAGE_BYTES`` of text, whichever comes
        first (and at least one row), so a page of huge entries cannot fill the memory."""
        self._query("SELECT 1")  # opens this thread's reader
        rows, size = [], 0
        cursor = self._local.reader.execute(sql, params)
        try:
            for row in cursor:
                rows.append(row)
                size += sum(len(value) for value in row if isinstance(value, str))
                if size >= _PAGE_BYTES:
                    break
        finally:
            cursor.close()
        return rows

    def call_counts(self) -> dict[str, int]:
        """Recorded calls per "method outcome"."""
        return {f"{method} {outcome}": count for method, outcome, count in self._query(
            "SELECT method, outcome, COUNT(*) FROM audit_log GROUP BY method, outcome")}

    def _query(self, sql: str, params=()) -> list[tuple]:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            reader.execute("PRAGMA query_only=ON")
            self._local.reader = reader
            with self._readers_lock:
                self._readers.append(reader)
        return reader.execute(sql, params).fetchall()

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join(timeout=_WAIT_SECONDS)
        with self._readers_lock:
            for reader in self._readers:
                reader.close()
        self._db.close()


def read_chain(path: Path) -> Iterator[AuditEntry]:
    """Every entry of an audit file, read-only (for offline checks)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for row in db.execute(f"SELECT {_COLUMNS} FROM audit_log ORDER BY sequence"):
            yield AuditEntry(*row)
    finally:
        db.close()
