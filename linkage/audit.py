"""The audit log's hash chain: how an entry is hashed and how a chain is checked.

Each entry's hash covers the previous entry's hash and the entry's own fields
(as canonical JSON), so editing an entry changes its hash, removing or
reordering entries breaks a link or a sequence number, and only a rewrite of
every later hash hides a change. Against that rewrite, ``linkage audit
verify`` prints the head (last sequence number and hash) for the operator to
keep elsewhere and checks a kept head on the next verification. The server
and the client share these functions, so the client checks the chain
without trusting the server's code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

__all__ = ["GENESIS_HASH", "AuditEntry", "ChainProblem", "entry_hash", "verify_chain"]

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    """One recorded call; ``counts_json`` holds counts only, never ids or CLKs."""

    sequence: int
    time: str
    caller: str
    role: str
    project: str
    method: str
    outcome: str
    counts_json: str
    previous_hash: str
    entry_hash: str = ""

    def hashed_fields(self) -> dict:
        fields = asdict(self)
        del fields["entry_hash"]
        return fields


@dataclass(frozen=True)
class ChainProblem:
    """Where the chain breaks and how."""

    sequence: int
    message: str


def entry_hash(entry: AuditEntry) -> str:
    """SHA-256 (hex) of the previous hash and the entry's canonical JSON."""
    canonical = json.dumps(entry.hashed_fields(), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha256((entry.previous_hash + "\n" + canonical).encode("utf-8")).hexdigest()


def verify_chain(entries: Iterable[AuditEntry], *, start_sequence: int = 1,
                 start_hash: str = GENESIS_HASH) -> tuple[list[ChainProblem], AuditEntry | None]:
    """Check a run of entries beginning at ``start_sequence`` whose predecessor hashed to
    ``start_hash``; returns (problems, last entry seen). No problems means intact."""
    problems: list[ChainProblem] = []
    expected_sequence, expected_previous = start_sequence, start_hash
    last = None
    for entry in entries:
        if entry.sequence != expected_sequence:
            kind = "missing" if entry.sequence > expected_sequence else "repeated or reordered"
            problems.append(ChainProblem(entry.sequence, (
                f"expected entry {expected_sequence} here, found {entry.sequence}: "
                f"entries are {kind}")))
        if entry.previous_hash != expected_previous:
            problems.append(ChainProblem(entry.sequence, (
                "its link to the previous entry is broken: an entry before it was edited, "
                "removed or reordered")))
        if entry_hash(entry) != entry.entry_hash:
            problems.append(ChainProblem(entry.sequence, (
                "its content no longer matches its hash: the entry was edited")))
        expected_sequence = entry.sequence + 1
        expected_previous = entry.entry_hash
        last = entry
    return problems, last
