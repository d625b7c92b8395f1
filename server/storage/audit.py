"""The audit log's writer, shared by both backends: group commits from one thread.

Every call appends an entry, so appends must not queue one by one behind large
uploads: a writer thread takes whatever entries are waiting, chains them after
the stored head and commits them in one transaction (one fsync for many calls),
and only then lets their calls return, so no call finishes without its entry
stored. The head is read inside that transaction, under the backend's lock, so
several processes on one database (replicas on PostgreSQL) extend one chain.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from linkage.audit import GENESIS_HASH, AuditEntry, entry_hash

__all__ = ["AUDIT_COLUMNS", "AuditWriter", "chain_after", "filtered_entries"]

AUDIT_COLUMNS = ("sequence, time, caller, role, project, method, outcome, counts_json, "
                 "previous_hash, entry_hash")
_WAIT_SECONDS = 30.0
_BATCH = 512


def chain_after(head: tuple[int, str] | None, entries: Sequence[AuditEntry]
                ) -> list[AuditEntry]:
    """``entries`` numbered and hash-chained after ``head`` (sequence, hash), or after the
    genesis hash when the log is empty."""
    sequence, previous = head if head is not None else (0, GENESIS_HASH)
    chained = []
    for entry in entries:
        sequence += 1
        linked = replace(entry, sequence=sequence, previous_hash=previous, entry_hash="")
        linked = replace(linked, entry_hash=entry_hash(linked))
        chained.append(linked)
        previous = linked.entry_hash
    return chained


def as_row(entry: AuditEntry) -> tuple:
    return (entry.sequence, entry.time, entry.caller, entry.role, entry.project, entry.method,
            entry.outcome, entry.counts_json, entry.previous_hash, entry.entry_hash)


@dataclass
class _Pending:
    entry: AuditEntry
    done: threading.Event = field(default_factory=threading.Event)
    stored: AuditEntry | None = None
    error: BaseException | None = None


class AuditWriter:
    """Appends through ``commit``: a function that chains a batch of entries after the
    stored head and stores them in one transaction, returning them as stored."""

    def __init__(self, commit: Callable[[list[AuditEntry]], list[AuditEntry]]):
        self._commit_batch = commit
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
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
            try:
                stored = self._commit_batch([pending.entry for pending in batch])
                for pending, entry in zip(batch, stored):
                    pending.stored = entry
            except BaseException as error:  # noqa: BLE001 - handed to every waiting call
                for pending in batch:
                    pending.stored, pending.error = None, error
            for pending in batch:
                pending.done.set()

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join(timeout=_WAIT_SECONDS)


def filtered_entries(page: Callable[[str, list], list[tuple]], *, project="", caller="",
                     method="", outcome="", since="", from_sequence=0, page_rows: int = 1000
                     ) -> Iterator[AuditEntry]:
    """Entries in sequence order, filtered, read a page at a time through ``page`` (SQL with
    ``?`` placeholders, parameters) so memory stays small."""
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
        rows = page(f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {' AND '.join(conditions)} "
                    f"ORDER BY sequence LIMIT {page_rows}", [position, *params])
        if not rows:
            return
        for row in rows:
            yield AuditEntry(*row)
        position = rows[-1][0]
