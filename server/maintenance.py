"""Operator checks on a data directory: integrity verification and online backups."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np

from linkage.audit import verify_chain
from linkage.batch import RecordAttributes, content_hash

from .audit_store import AUDIT_DATABASE_NAME, read_chain
from .store import DATABASE_NAME

__all__ = ["backup_store", "check_store"]


def check_store(data_dir: Path) -> tuple[list[str], list[str]]:
    """Verify the store: SQLite's own checks plus the service's invariants.

    Returns ``(problems, notes)``: problems mean damage; notes are states that
    the next start repairs by itself (an interrupted run).
    """
    path = data_dir / DATABASE_NAME
    if not path.exists():
        return [f"No store at {path}."], []
    problems: list[str] = []
    notes: list[str] = []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (integrity,) = db.execute("PRAGMA integrity_check").fetchone()
        if integrity != "ok":
            problems.append(f"SQLite integrity check: {integrity}")
            return problems, notes
        for table, row, parent, _ in db.execute("PRAGMA foreign_key_check"):
            problems.append(f"{table} row {row} refers to a missing {parent}")
        for batch_id, expected, stored_hash, with_attributes, purged in db.execute(
                "SELECT b.id, b.record_count, b.content_hash, b.has_attributes, p.purged_at "
                "FROM batches b JOIN projects p ON p.id = b.project_id ORDER BY b.id"):
            rows = db.execute("SELECT record_id, clk, entity_type, case_ref, stage FROM records "
                              "WHERE batch_id = ? ORDER BY id", (batch_id,)).fetchall()
            attributes = [RecordAttributes(*r[2:]) for r in rows] if with_attributes else None
            if len(rows) != expected:
                problems.append(f"batch {batch_id}: {len(rows)} records stored, {expected} "
                                "committed")
            elif purged:
                if any(len(r[1]) for r in rows):
                    problems.append(f"batch {batch_id}: its project was purged but CLKs remain")
            elif content_hash([r[0] for r in rows], [r[1] for r in rows],
                              attributes) != stored_hash:
                problems.append(f"batch {batch_id}: content does not match its hash")
        for batch_id, received, header in db.execute(
                "SELECT batch_id, records_received, header FROM uploads"):
            held = sum(len(json.loads(ids)) for (ids,) in db.execute(
                "SELECT record_ids FROM upload_chunks WHERE batch_id = ?", (batch_id,)))
            if held != received:
                problems.append(f"upload {batch_id}: {held} records held, {received} counted")
            else:
                total = json.loads(header).get("record_count")
                notes.append(f"upload {batch_id} in progress: {received} of {total} records "
                             "held (invisible until complete)")
        record_ids = {row[0] for row in db.execute("SELECT id FROM records")}
        for block_id, lefts, rights, scores in db.execute(
                "SELECT id, lefts, rights, scores FROM pair_blocks"):
            if not len(lefts) == len(rights) == len(scores):
                problems.append(f"pair block {block_id}: arrays of different lengths")
                continue
            referenced = set(np.frombuffer(lefts, "<i8").tolist()) | set(
                np.frombuffer(rights, "<i8").tolist())
            if not referenced <= record_ids:
                problems.append(f"pair block {block_id}: refers to records that do not exist")
        for run_id, size, members in db.execute(
                "SELECT g.run_id, g.size, (SELECT COUNT(*) FROM group_members m WHERE "
                "m.run_id = g.run_id AND m.group_key = g.group_key) FROM groups g"):
            if size != members:
                problems.append(f"run {run_id}: a group of size {size} has {members} members")
        audit_path = data_dir / AUDIT_DATABASE_NAME
        if audit_path.exists():
            chain, last = verify_chain(read_chain(audit_path))
            problems.extend(f"audit log entry {p.sequence}: {p.message}" for p in chain)
            if last is not None and not chain:
                notes.append(f"audit log intact: {last.sequence} entries; head "
                             f"{last.sequence}:{last.entry_hash}")
        for number, project in db.execute(
                "SELECT r.number, p.name FROM runs r JOIN projects p ON p.id = r.project_id "
                "WHERE r.status = 'running'"):
            notes.append(f"run {number} of {project} was interrupted; the server marks it "
                         "failed when it starts")
    finally:
        db.close()
    return problems, notes


def backup_store(data_dir: Path, destination: Path) -> int:
    """Copy the store and the audit log into the new directory ``destination`` with SQLite's
    online backup API (safe while the server runs); the copy is a data directory the server
    can start on. Returns the size of the backup in bytes.
    """
    destination.mkdir(parents=True, mode=0o700)
    destination.chmod(0o700)  # a backup holds what the store holds: its owner only
    size = 0
    for name in (DATABASE_NAME, AUDIT_DATABASE_NAME):
        if not (data_dir / name).exists():
            continue
        source = sqlite3.connect(data_dir / name)
        os.close(os.open(destination / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         0o600))
        target = sqlite3.connect(destination / name)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        size += (destination / name).stat().st_size
    return size
