"""The SQL both backends share: every aggregate's queries, written once in the dialect
SQLite and PostgreSQL have in common (``?`` placeholders, ``ON CONFLICT``, ``RETURNING``).

A backend supplies the plumbing: ``_transaction`` (one writer transaction),
``_query`` (a read), how records are bulk-loaded and read back, and how freed pages
are compacted after a purge. Nothing here imports a driver.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta, timezone

import numpy as np

from linkage.audit import AuditEntry, verify_chain
from linkage.batch import RecordAttributes, content_hash
from linkage.errors import (
    AlreadyExistsError,
    BatchFormatError,
    InvalidRequestError,
    NotFoundError,
    RunStateError,
    ServerBusyError,
)

from .. import failpoints
from .shares import ShareSql
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

__all__ = ["SqlStore", "now"]

_PROJECT_COLUMNS = ("id, name, schema_json, schema_fingerprint, clk_bits, key_check, stages, "
                    "purged_at")
_INTERRUPTED = ("interrupted: the server stopped during this run; start it again with "
                "'linkage run'")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


#: LIMIT of a query that wants every row (a number both SQLite and PostgreSQL take).
_NO_LIMIT = 2 ** 62


class SqlStore(ShareSql):
    """Shared queries; subclasses provide the connection plumbing (see module docstring)."""

    #: Exceptions the driver raises for a violated constraint.
    _integrity_errors: tuple[type[BaseException], ...] = ()
    #: Appended to a SELECT that must lock its row until the transaction ends.
    _for_update = ""
    location = ""

    # -- plumbing a backend provides ------------------------------------------------------

    def _transaction(self) -> AbstractContextManager:
        raise NotImplementedError

    def _query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        raise NotImplementedError

    def _insert_records(self, db, rows: list[tuple]) -> None:
        """Insert (batch, agency, record id, CLK, entity type, case ref, stage) rows."""
        db.executemany("INSERT INTO records (batch_id, agency_id, record_id, clk, entity_type, "
                       "case_ref, stage) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def _record_rows(self, project_id: int) -> list[tuple]:
        """(row id, agency, record id, CLK, compared, batch, entity type) in storage order."""
        return self._query("SELECT r.id, r.agency_id, r.record_id, r.clk, b.compared, b.id, "
                           "r.entity_type FROM records r JOIN batches b ON b.id = r.batch_id "
                           "WHERE b.project_id = ? ORDER BY r.id", (project_id,))

    def _run_transaction(self, run_id: int) -> AbstractContextManager:
        """The transaction that writes a run's results (PostgreSQL: on its owner's session)."""
        return self._transaction()

    def _compact(self) -> None:
        """Make erased rows unreadable from the database's free space (after purge/delete)."""

    def _audit_counts(self) -> dict[str, int]:
        raise NotImplementedError

    # -- settings and credentials -----------------------------------------------------------

    def setting(self, key: str) -> bytes | None:
        rows = self._query("SELECT value FROM settings WHERE key = ?", (key,))
        return bytes(rows[0][0]) if rows else None

    def set_setting(self, key: str, value: bytes) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) "
                       "DO UPDATE SET value = excluded.value", (key, value))

    def add_staff(self, name: str, role: str, token_hash: str) -> bool:
        """Add a coordinator or operator credential (kept as a hash); ``False`` if one of
        that name exists already (another replica created it first)."""
        with self._transaction() as db:
            added = db.execute("INSERT INTO coordinators (name, token_hash, created_at, role) "
                               "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                               (name, token_hash, now(), role)).rowcount
        return added == 1

    def staff_by_token(self, token_hash: str) -> StaffRow | None:
        """(name, role, stored hash) of a coordinator or operator credential."""
        rows = self._query("SELECT name, role, token_hash FROM coordinators WHERE token_hash = ?",
                           (token_hash,))
        return StaffRow(*rows[0]) if rows else None

    # -- operator metrics ---------------------------------------------------------------------

    def metrics(self) -> dict:
        """Counts for operators: nothing that identifies a record or a group."""
        (projects,), = self._query("SELECT COUNT(*) FROM projects")
        (batches, records), = self._query("SELECT COUNT(*), COALESCE(SUM(record_count), 0) "
                                          "FROM batches")
        (runs,), = self._query("SELECT COUNT(*) FROM runs WHERE status = 'done'")
        calls = self._audit_counts()
        (uploads,), = self._query("SELECT COUNT(*) FROM uploads")
        (upload_bytes,), = self._query("SELECT COALESCE(SUM(length(record_ids) + length(clks) + "
                                       "COALESCE(length(attributes), 0)), 0) FROM upload_chunks")
        return {"projects": int(projects), "batches": int(batches), "records": int(records),
                "runs": int(runs), "audit_entries": sum(calls.values()), "calls": calls,
                "unfinished_uploads": int(uploads), "unfinished_upload_bytes": int(upload_bytes)}

    # -- projects and agencies --------------------------------------------------------------

    def create_project(self, name, schema_json, fingerprint, clk_bits, agencies,
                       stages=(), entity_schemas=()) -> ProjectRow:
        try:
            with self._transaction() as db:
                (project_id,) = db.execute(
                    "INSERT INTO projects (name, schema_json, schema_fingerprint, clk_bits, "
                    "created_at, stages) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    (name, schema_json, fingerprint, clk_bits, now(),
                     json.dumps(list(stages)))).fetchone()
                db.executemany("INSERT INTO agencies (project_id, name, token_hash) "
                               "VALUES (?, ?, ?)",
                               [(project_id, agency, token_hash) for agency, token_hash in agencies])
                db.executemany(
                    "INSERT INTO entity_schemas (project_id, entity_type, schema_json, "
                    "fingerprint, clk_bits) VALUES (?, ?, ?, ?, ?)",
                    [(project_id, "person", schema_json, fingerprint, clk_bits)]
                    + [(project_id, e.entity_type, e.schema_json, e.fingerprint, e.clk_bits)
                       for e in entity_schemas])
        except self._integrity_errors:
            raise AlreadyExistsError(f"A project named {name!r} exists already; "
                                     "choose another name.") from None
        return self.project(name)

    def project(self, name: str) -> ProjectRow:
        rows = self._query(f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE name = ?", (name,))
        if not rows:
            shown = name if len(name) <= 80 else name[:80] + "…"
            raise NotFoundError(f"No project named {shown!r}; 'linkage project list' shows them.")
        return ProjectRow(*rows[0])

    def projects(self) -> list[ProjectRow]:
        rows = self._query(f"SELECT {_PROJECT_COLUMNS} FROM projects ORDER BY name")
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
        rows = self._query("SELECT a.id, a.project_id, a.name, p.name, a.token_hash FROM agencies "
                           "a JOIN projects p ON p.id = a.project_id WHERE a.token_hash = ?",
                           (token_hash,))
        if not rows:
            return None
        agency_id, project_id, agency_name, project_name, stored_hash = rows[0]
        return self.project(project_name), AgencyRow(agency_id, project_id, agency_name), stored_hash

    def key_check_elsewhere(self, project_id: int, key_check: str) -> bool:
        """True when another project's batches were encoded under the same secret."""
        return bool(self._query("SELECT 1 FROM projects WHERE key_check = ? AND id != ?",
                                (key_check, project_id)))

    def set_stages(self, project_id: int, stages: Sequence[str]) -> None:
        with self._transaction() as db:
            db.execute("UPDATE projects SET stages = ? WHERE id = ?",
                       (json.dumps(list(stages)), project_id))

    def stages_in_use(self, project_id: int) -> set[str]:
        """Stages that stored records (or share records) of the project carry."""
        table = self.attribute_table(project_id)
        return {row[0] for row in self._query(
            f"SELECT DISTINCT r.stage FROM {table} r JOIN batches b ON b.id = r.batch_id "
            "WHERE b.project_id = ? AND r.stage != ''", (project_id,))}

    def set_agency_token(self, agency_id: int, token_hash: str) -> None:
        """Replace an agency's token hash: the old token stops working."""
        with self._transaction() as db:
            db.execute("UPDATE agencies SET token_hash = ? WHERE id = ?", (token_hash, agency_id))

    def purge_project(self, project_id: int) -> tuple[int, int]:
        """Erase the CLKs (record rows stay for reports), pairs and held uploads of a
        project and mark it purged; returns (CLKs erased, pair blocks deleted)."""
        with self._transaction() as db:
            records = db.execute(
                "UPDATE records SET clk = ? WHERE length(clk) > 0 AND batch_id IN "
                "(SELECT id FROM batches WHERE project_id = ?)", (b"", project_id)).rowcount
            blocks = db.execute("DELETE FROM pair_blocks WHERE project_id = ?",
                                (project_id,)).rowcount
            records += db.execute(  # the attributes stay, for reports, as records' do
                "UPDATE share_records SET share = ? WHERE length(share) > 0 AND batch_id IN "
                "(SELECT id FROM batches WHERE project_id = ?)", (b"", project_id)).rowcount
            db.execute("DELETE FROM upload_chunks WHERE batch_id IN "
                       "(SELECT batch_id FROM uploads WHERE project_id = ?)", (project_id,))
            db.execute("DELETE FROM uploads WHERE project_id = ?", (project_id,))
            db.execute("UPDATE projects SET purged_at = COALESCE(purged_at, ?), pair_floor = NULL "
                       "WHERE id = ?", (now(), project_id))
        self._compact()  # erased CLKs must not linger in free pages or the write-ahead log
        return records, blocks

    def delete_project(self, project_id: int) -> tuple[int, int]:
        """Remove a never-run project and everything stored for it; returns (batches,
        records) deleted. The audit log keeps its entries."""
        with self._transaction() as db:
            (batches, records), = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(record_count), 0) FROM batches "
                "WHERE project_id = ?", (project_id,)).fetchall()
            db.execute("DELETE FROM records WHERE batch_id IN "
                       "(SELECT id FROM batches WHERE project_id = ?)", (project_id,))
            db.execute("DELETE FROM share_records WHERE batch_id IN "
                       "(SELECT id FROM batches WHERE project_id = ?)", (project_id,))
            db.execute("DELETE FROM share_projects WHERE project_id = ?", (project_id,))
            db.execute("DELETE FROM upload_chunks WHERE batch_id IN "
                       "(SELECT batch_id FROM uploads WHERE project_id = ?)", (project_id,))
            for table in ("uploads", "batches", "pair_blocks", "follow_ups", "reviews",
                          "entity_schemas"):
                db.execute(f"DELETE FROM {table} WHERE project_id = ?", (project_id,))
            db.execute("DELETE FROM agencies WHERE project_id = ?", (project_id,))
            db.execute("DELETE FROM projects WHERE id = ?", (project_id,))
        self._compact()  # deleted CLKs must not linger in free pages
        return int(batches), int(records)

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

    def batches(self, project_id: int) -> list[BatchRow]:
        rows = self._query("SELECT id, agency_id, record_count, content_hash FROM batches "
                           "WHERE project_id = ? ORDER BY created_at, id", (project_id,))
        return [BatchRow(*row) for row in rows]

    def deduplicated_agencies(self, project_id: int) -> set[int]:
        """Agencies that declared a batch of this project deduplicated."""
        return {row[0] for row in self._query(
            "SELECT DISTINCT agency_id FROM batches WHERE project_id = ? AND deduplicated = 1",
            (project_id,))}

    def withdraw_batch(self, project_id, batch_id, agency_id=None) -> tuple[int, bool]:
        """Delete a batch (or an unfinished upload) that no run has compared yet; ``agency_id``
        limits it to that agency's own batches. Returns (records deleted, was an upload).

        Raises:
            NotFoundError: no such batch in the project (or not the agency's: same answer).
            RunStateError: a run has used the batch, or one is in progress.
        """
        if self.run_in_progress(project_id):
            raise RunStateError("A run of this project is in progress; withdraw the batch "
                                "after it has finished (if it has not used the batch).")
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
            deleted += db.execute("DELETE FROM share_records WHERE batch_id = ?",
                                  (batch_id,)).rowcount
            db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
        return deleted, False

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
            db.execute("INSERT INTO uploads (batch_id, project_id, agency_id, header, "
                       "started_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (batch_id) DO NOTHING",
                       (batch_id, project_id, agency_id, header, now()))

    def append_chunk(self, batch_id, first_record, record_ids, clks, attributes=None) -> int:
        """Keep one chunk durably; returns the records now held.

        Idempotent, so that a retried upload racing its first attempt is safe: a chunk
        whose records are all held already changes nothing. The count is read with its
        row locked (PostgreSQL) or under the single writer (SQLite), so two attempts
        cannot both append at one position.

        Raises:
            BatchFormatError: the chunk starts elsewhere than at the records held.
            NotFoundError: the upload is no longer held (committed, withdrawn, expired).
        """
        with self._transaction() as db:
            row = db.execute("SELECT records_received FROM uploads WHERE batch_id = ?"
                             + self._for_update, (batch_id,)).fetchone()
            if row is None:
                raise NotFoundError("This upload is no longer held (it was committed by another "
                                    "attempt, withdrawn or expired); 'linkage submit' again "
                                    "reports which.")
            (held,) = row
            if first_record + len(record_ids) <= held:
                return held  # a resent chunk: already kept
            if first_record != held:
                raise BatchFormatError(f"A chunk starts at record {first_record} but the server "
                                       f"holds {held}; resume from record {held}.")
            db.execute("INSERT INTO upload_chunks (batch_id, first_record, record_ids, clks, "
                       "attributes) VALUES (?, ?, ?, ?, ?)",
                       (batch_id, first_record, json.dumps(list(record_ids)), b"".join(clks),
                        None if attributes is None else json.dumps([list(a) for a in attributes])))
            db.execute("UPDATE uploads SET records_received = ? WHERE batch_id = ?",
                       (held + len(record_ids), batch_id))
        return held + len(record_ids)

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
            found = self._query(
                "SELECT record_ids, clks, attributes FROM upload_chunks WHERE batch_id = ? AND "
                "first_record = ?", (batch_id, position))
            if not found:
                return  # committed or discarded meanwhile
            ((ids_json, blob, attributes),) = found
            ids, blob = json.loads(ids_json), bytes(blob)
            yield (ids, [blob[i * clk_bytes:(i + 1) * clk_bytes] for i in range(len(ids))],
                   None if attributes is None else [tuple(a) for a in json.loads(attributes)])

    def commit_upload(self, project, agency, batch_id, content_hash, key_check) -> BatchRow:
        """Move a complete, verified upload into the records in one transaction.

        A second attempt committing the same upload gets the batch the first stored.
        """
        with self._transaction() as db:
            held = db.execute("SELECT records_received, header FROM uploads WHERE batch_id = ?"
                              + self._for_update, (batch_id,)).fetchone()
            if held is None:
                stored = db.execute("SELECT id, agency_id, record_count, content_hash FROM "
                                    "batches WHERE id = ?", (batch_id,)).fetchone()
                if stored is not None and stored[1] == agency.id and stored[3] == content_hash:
                    return BatchRow(*stored)
                raise NotFoundError("This upload is no longer held (withdrawn or expired); "
                                    "submit the batch again.")
            count, header_json = held
            header = json.loads(header_json)
            current = db.execute("SELECT key_check FROM projects WHERE id = ?",
                                 (project.id,)).fetchone()[0]
            if current is None:
                db.execute("UPDATE projects SET key_check = ? WHERE id = ?", (key_check, project.id))
            seen = {"attributes": False}
            try:
                db.execute("INSERT INTO batches (id, project_id, agency_id, record_count, "
                           "content_hash, created_at, deduplicated) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (batch_id, project.id, agency.id, count, content_hash, now(),
                            int(bool(header.get("deduplicated")))))
                self._insert_records(db, self._chunk_records(batch_id, agency.id, header, seen))
            except self._integrity_errors:
                raise AlreadyExistsError("Some record ids of this batch are already stored for "
                                         "this agency; record ids must be unique.") from None
            db.execute("UPDATE batches SET has_attributes = ? WHERE id = ?",
                       (int(seen["attributes"]), batch_id))
            db.execute("DELETE FROM upload_chunks WHERE batch_id = ?", (batch_id,))
            db.execute("DELETE FROM uploads WHERE batch_id = ?", (batch_id,))
        return BatchRow(batch_id, agency.id, count, content_hash)

    def _chunk_records(self, batch_id: str, agency_id: int, header: dict, seen: dict
                       ) -> Iterator[tuple]:
        """Record rows of a held upload, read one chunk at a time (memory stays at one
        chunk); sets ``seen["attributes"]`` when a chunk carried attributes."""
        entity_type = header.get("entity_type") or ""
        for ids, clks, attributes in self.upload_chunks(batch_id):
            seen["attributes"] = seen["attributes"] or attributes is not None
            extra = ([(entity_type or a[0], a[1], a[2]) for a in attributes] if attributes
                     else [(entity_type, "", "")] * len(ids))
            for record_id, clk, attrs in zip(ids, clks, extra):
                yield (batch_id, agency_id, record_id, clk, *attrs)

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

    # -- records and the candidate pairs kept between runs -------------------------------------

    def load_records(self, project_id: int) -> StoredRecords:
        rows = self._record_rows(project_id)
        new_batches = sorted({row[5] for row in rows if not row[4]})
        return StoredRecords(
            row_ids=np.array([row[0] for row in rows], dtype=np.int64),
            agency_ids=np.array([row[1] for row in rows], dtype=np.int64),
            record_ids=[row[2] for row in rows],
            clks=[bytes(row[3]) for row in rows],
            is_new=np.array([not row[4] for row in rows], dtype=bool),
            new_batches=new_batches,
            entity_types=[row[6] or "person" for row in rows],
        )

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
        return (np.concatenate([np.frombuffer(bytes(r[0]), "<i8") for r in rows]),
                np.concatenate([np.frombuffer(bytes(r[1]), "<i8") for r in rows]),
                np.concatenate([np.frombuffer(bytes(r[2]), "<f8") for r in rows]))

    def reset_pairs(self, project_id: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM pair_blocks WHERE project_id = ?", (project_id,))
            db.execute("UPDATE batches SET compared = 0 WHERE project_id = ?", (project_id,))
            db.execute("UPDATE projects SET pair_floor = NULL WHERE id = ?", (project_id,))

    # -- runs and results -------------------------------------------------------------------------

    def _insert_run(self, db, project_id: int) -> int:
        """Number and insert the project's next run inside ``db``'s transaction.

        Raises:
            RunStateError: a run of the project is in progress already.
        """
        running = db.execute("SELECT number FROM runs WHERE project_id = ? AND "
                             "status = 'running'", (project_id,)).fetchone()
        if running is not None:
            raise RunStateError(f"Run #{running[0]} of this project is in progress; wait for "
                                "it to finish ('linkage report' shows it), then run again.")
        (last,) = db.execute("SELECT COALESCE(MAX(number), 0) FROM runs WHERE project_id = ?",
                             (project_id,)).fetchone()
        (run_id,) = db.execute("INSERT INTO runs (project_id, number, status, started_at) "
                               "VALUES (?, ?, 'running', ?) RETURNING id",
                               (project_id, last + 1, now())).fetchone()
        return run_id

    def start_run(self, project_id: int) -> int:
        """Number the project's next run; one run per project at a time, checked in the same
        transaction that starts it.

        Raises:
            RunStateError: a run of the project is in progress already.
        """
        with self._transaction() as db:
            return self._insert_run(db, project_id)

    def finish_run(self, run_id, summary, groups) -> None:
        """Store a run's groups: (key, confidence, weakest pair score, members) each.

        The summary's ``waterfalls`` (one per field-wise group) go to a table of their
        own, read a page at a time (``waterfalls``); the summary is stored without them.
        """
        summary = dict(summary)
        waterfalls = summary.pop("waterfalls", None) or {}
        with self._run_transaction(run_id) as db:
            db.executemany("INSERT INTO group_waterfalls (run_id, group_key, probability, "
                           "waterfall) VALUES (?, ?, ?, ?)",
                           [(run_id, key, float(waterfall["probability"]), json.dumps(waterfall))
                            for key, waterfall in waterfalls.items()])
            db.executemany("INSERT INTO groups (run_id, group_key, confidence, size, "
                           "weakest_score) VALUES (?, ?, ?, ?, ?)",
                           [(run_id, key, confidence, len(members), weakest)
                            for key, confidence, weakest, members in groups])
            db.executemany("INSERT INTO group_members (run_id, group_key, agency_id, record_id) "
                           "VALUES (?, ?, ?, ?)",
                           [(run_id, key, agency_id, record_id)
                            for key, _, _, members in groups for agency_id, record_id in members])
            failpoints.reached("run-writing-results")
            db.execute("UPDATE runs SET status = 'done', finished_at = ?, summary = ? WHERE id = ?",
                       (now(), json.dumps(summary), run_id))

    def interrupt_running_runs(self) -> int:
        """Mark runs left 'running' by a stopped server as failed; returns how many."""
        with self._transaction() as db:
            return db.execute(
                "UPDATE runs SET status = 'failed', finished_at = ?, summary = ? "
                "WHERE status = 'running'",
                (now(), json.dumps({"error": _INTERRUPTED}))).rowcount

    def fail_run(self, run_id: int, message: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE runs SET status = 'failed', finished_at = ?, summary = ? WHERE id = ?",
                       (now(), json.dumps({"error": message}), run_id))

    def run_in_progress(self, project_id: int) -> bool:
        return bool(self._query("SELECT 1 FROM runs WHERE project_id = ? AND status = 'running'",
                                (project_id,)))

    def has_run(self, project_id: int) -> bool:
        """True once any run of the project started (finished, failed or running)."""
        return bool(self._query("SELECT 1 FROM runs WHERE project_id = ?", (project_id,)))

    def run_status(self, project_id: int, number: int) -> str | None:
        """'running', 'done' or 'failed' for a run of the project (None if there is none)."""
        rows = self._query("SELECT status FROM runs WHERE project_id = ? AND number = ?",
                           (project_id, number))
        return rows[0][0] if rows else None

    def waterfalls(self, run_id: int, offset: int = 0, limit: int | None = None
                   ) -> list[tuple[str, dict]]:
        """A page of the run's group explanations, the least certain first."""
        return [(key, json.loads(text)) for key, text in self._query(
            "SELECT group_key, waterfall FROM group_waterfalls WHERE run_id = ? "
            "ORDER BY probability, group_key LIMIT ? OFFSET ?",
            (run_id, _NO_LIMIT if limit is None else int(limit), int(offset)))]

    def waterfall_count(self, run_id: int) -> int:
        """How many groups of the run have an explanation stored."""
        return int(self._query("SELECT COUNT(*) FROM group_waterfalls WHERE run_id = ?",
                               (run_id,))[0][0])

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
            members.setdefault(key, {})[agency_id] = int(count)
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
                result.setdefault(key, {})[agency_id] = int(count)
        return result

    def member_attributes(self, run_id: int) -> list[tuple[str, int, str, str, str]]:
        """(group, agency, entity type, case ref, stage) of every group member of a run (a
        two-server run's from its share records: server 0 stores their attributes)."""
        table = self._run_attribute_table(run_id)
        return self._query(
            "SELECT m.group_key, m.agency_id, r.entity_type, r.case_ref, r.stage "
            f"FROM group_members m JOIN {table} r ON r.agency_id = m.agency_id AND "
            "r.record_id = m.record_id WHERE m.run_id = ? "
            # an order of its own: PostgreSQL's join order changes as tables grow, and the
            # network drawn from these rows must not change with it
            "ORDER BY m.group_key, m.agency_id, m.record_id", (run_id,))

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
                    f"({marks}) ORDER BY m.group_key, m.agency_id, m.record_id",
                    [project_id, *chunk]):
                result.setdefault(key, []).append((agency_id, record_id))
        return result

    # -- reviews and follow-ups ---------------------------------------------------------------

    def set_review(self, project_id, group_key, decision, note) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO reviews (project_id, group_key, decision, note, decided_at) "
                       "VALUES (?, ?, ?, ?, ?) ON CONFLICT (project_id, group_key) DO UPDATE SET "
                       "decision = excluded.decision, note = excluded.note, "
                       "decided_at = excluded.decided_at",
                       (project_id, group_key, decision, note, now()))

    def reviews(self, project_id: int) -> dict[str, tuple[str, str]]:
        rows = self._query("SELECT group_key, decision, note FROM reviews WHERE project_id = ?",
                           (project_id,))
        return {key: (decision, note) for key, decision, note in rows}

    def reviewed_scores(self, project_id: int, entity_type: str | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Weakest-pair scores of accepted and of rejected groups, each group once (its
        latest run): labelled points for the score model. With ``entity_type``, only
        groups of that type (each type has its own model; a company's review must not
        train the persons' one). A group whose records are gone (purged) has no type."""
        typed = ""
        parameters: tuple = (project_id, project_id)
        if entity_type is not None:
            typed = (" AND EXISTS (SELECT 1 FROM group_members m JOIN "
                     f"{self.attribute_table(project_id)} x ON "
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
                              "'open', ?) RETURNING id",
                              (project_id, group_key, requested_by, agency, note,
                               now())).fetchone()[0]
                   for agency in agency_ids]
        return [f for f in self.follow_ups(project_id) if f.id in ids]

    def follow_ups(self, project_id: int) -> list[FollowUpRow]:
        rows = self._query("SELECT id, group_key, requested_by, agency_id, note, status, "
                           "answer_note FROM follow_ups WHERE project_id = ? ORDER BY id",
                           (project_id,))
        return [FollowUpRow(*row) for row in rows]

    def answer_follow_up(self, project_id, follow_up_id, agency_id, decision, note):
        with self._transaction() as db:
            updated = db.execute(
                "UPDATE follow_ups SET status = ?, answer_note = ?, answered_at = ? "
                "WHERE id = ? AND project_id = ? AND agency_id = ? AND status = 'open'",
                (decision, note, now(), follow_up_id, project_id, agency_id)).rowcount
        if not updated:
            raise NotFoundError(f"No open follow-up f-{follow_up_id} addressed to your agency in "
                                "this project; 'linkage results' lists yours.")
        return next(f for f in self.follow_ups(project_id) if f.id == follow_up_id)

    # -- the service's invariants, for --check ------------------------------------------------

    def _check_share_batch(self, batch_id, expected, stored_hash, with_attributes, purged
                           ) -> list[str]:
        """A two-server batch: its shares (and attributes) match its count and hash (the
        shares are blank if purged)."""
        rows = self._query("SELECT record_id, share, entity_type, case_ref, stage FROM "
                           "share_records WHERE batch_id = ? ORDER BY position", (batch_id,))
        if purged:
            return ([f"batch {batch_id}: its project was purged but shares remain"]
                    if any(len(r[1]) for r in rows) else [])
        if len(rows) != expected:
            return [f"batch {batch_id}: {len(rows)} shares stored, {expected} committed"]
        attributes = [RecordAttributes(*r[2:]) for r in rows] if with_attributes else None
        if content_hash([r[0] for r in rows], [bytes(r[1]) for r in rows],
                        attributes) != stored_hash:
            return [f"batch {batch_id}: shares do not match the batch's hash"]
        return []

    def _check_invariants(self, audit: Iterator[AuditEntry] | None
                          ) -> tuple[list[str], list[str]]:
        """What ``check`` verifies on every backend: batches match their content hash (or
        are purged), held uploads their counts, pair blocks refer to stored records, groups
        have their members, the audit chain is unbroken. Returns (problems, notes)."""
        problems: list[str] = []
        notes: list[str] = []
        for batch_id, expected, stored_hash, with_attributes, purged, share_role in self._query(
                "SELECT b.id, b.record_count, b.content_hash, b.has_attributes, p.purged_at, "
                "(SELECT s.role FROM share_projects s WHERE s.project_id = p.id) "
                "FROM batches b JOIN projects p ON p.id = b.project_id ORDER BY b.id"):
            if share_role is not None:
                problems.extend(self._check_share_batch(batch_id, expected, stored_hash,
                                                        with_attributes, purged))
                continue
            rows = self._query("SELECT record_id, clk, entity_type, case_ref, stage FROM records "
                               "WHERE batch_id = ? ORDER BY id", (batch_id,))
            attributes = [RecordAttributes(*r[2:]) for r in rows] if with_attributes else None
            if len(rows) != expected:
                problems.append(f"batch {batch_id}: {len(rows)} records stored, {expected} "
                                "committed")
            elif purged:
                if any(len(r[1]) for r in rows):
                    problems.append(f"batch {batch_id}: its project was purged but CLKs remain")
            elif content_hash([r[0] for r in rows], [bytes(r[1]) for r in rows],
                              attributes) != stored_hash:
                problems.append(f"batch {batch_id}: content does not match its hash")
        for batch_id, received, header in self._query(
                "SELECT batch_id, records_received, header FROM uploads"):
            held = sum(len(json.loads(ids)) for (ids,) in self._query(
                "SELECT record_ids FROM upload_chunks WHERE batch_id = ?", (batch_id,)))
            if held != received:
                problems.append(f"upload {batch_id}: {held} records held, {received} counted")
            else:
                total = json.loads(header).get("record_count")
                notes.append(f"upload {batch_id} in progress: {received} of {total} records "
                             "held (invisible until complete)")
        record_ids = {row[0] for row in self._query("SELECT id FROM records")}
        for block_id, lefts, rights, scores in self._query(
                "SELECT id, lefts, rights, scores FROM pair_blocks"):
            if not len(lefts) == len(rights) == len(scores):
                problems.append(f"pair block {block_id}: arrays of different lengths")
                continue
            referenced = set(np.frombuffer(bytes(lefts), "<i8").tolist()) | set(
                np.frombuffer(bytes(rights), "<i8").tolist())
            if not referenced <= record_ids:
                problems.append(f"pair block {block_id}: refers to records that do not exist")
        for run_id, size, members in self._query(
                "SELECT g.run_id, g.size, (SELECT COUNT(*) FROM group_members m WHERE "
                "m.run_id = g.run_id AND m.group_key = g.group_key) FROM groups g"):
            if size != members:
                problems.append(f"run {run_id}: a group of size {size} has {members} members")
        if audit is not None:
            chain, last = verify_chain(audit)
            problems.extend(f"audit log entry {p.sequence}: {p.message}" for p in chain)
            if last is not None and not chain:
                notes.append(f"audit log intact: {last.sequence} entries; head "
                             f"{last.sequence}:{last.entry_hash}")
        for number, project in self._query(
                "SELECT r.number, p.name FROM runs r JOIN projects p ON p.id = r.project_id "
                "WHERE r.status = 'running'"):
            notes.append(f"run {number} of {project} was interrupted; the server marks it "
                         "failed when it starts")
        return problems, notes
