"""What the server does, in plain Python: no protobuf here.

Servicers convert requests into calls of these functions and their results
back into messages (``convert.py``). Every function takes the store and the
caller's identity explicitly.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from linkage.batch import EncodedBatch
from linkage.clks import clks_from_bytes
from linkage.candidates import CandidatePairs
from linkage.engine import choose_floor, compare_new_records, decide
from linkage.errors import (
    BatchFormatError,
    ClkError,
    DuplicateRecordError,
    EmptyBatchError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RunStateError,
    SchemaError,
    SecretError,
)
from linkage.schema import load_schema
from linkage.threshold import parse_threshold, score_histogram

from .auth import Identity, hash_token, new_token
from .store import ProjectRow, Store

__all__ = [
    "AgencyReport",
    "BatchHeaderInfo",
    "GroupReport",
    "ProjectReport",
    "RecordHit",
    "agency_results",
    "create_project",
    "project_report",
    "review_group",
    "run_linkage",
    "submit_batch",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
GROUP_KEY_SETTING = "group_key_secret"


@dataclass(frozen=True)
class BatchHeaderInfo:
    """What an upload claims about itself before its records arrive."""

    project: str
    schema_fingerprint: str
    key_check: str
    clk_bits: int
    record_count: int


@dataclass(frozen=True)
class RecordHit:
    """One of the calling agency's records that belongs to a group."""

    record: str
    group: str
    agencies: list[str]
    confidence: float
    duplicate_in_own_agency: bool


@dataclass(frozen=True)
class AgencyReport:
    agency: str
    records: int
    batches: int
    records_with_hits: int
    duplicate_records: int


@dataclass(frozen=True)
class GroupReport:
    id: str
    agencies: dict[str, int]
    size: int
    confidence: float
    review: str
    review_note: str


@dataclass(frozen=True)
class ProjectReport:
    project: str
    summary: dict
    agencies: list[AgencyReport]
    agency_pairs: list[tuple[str, str, int]]
    groups: list[GroupReport]
    histogram: list[tuple[float, float, int]]
    estimated_precision: float
    estimated_recall: float


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise InvalidRequestError(f"{kind} name {name!r} is not allowed: use 1-63 lowercase letters, "
                               "digits, '.', '_' or '-', starting with a letter or digit.")


def create_project(store: Store, name: str, schema_json: str, agencies: list[str]):
    """Create a project; returns (project, {agency: token}). Tokens are shown only here."""
    _check_name("Project", name)
    if len(agencies) < 2:
        raise InvalidRequestError("A project needs at least two agencies (--agencies a,b).")
    if len(set(agencies)) != len(agencies):
        raise InvalidRequestError("An agency is listed twice in --agencies.")
    for agency in agencies:
        _check_name("Agency", agency)
    schema = load_schema(schema_json)
    tokens = {agency: new_token() for agency in agencies}
    project = store.create_project(name, schema.text, schema.fingerprint, schema.clk_bits,
                                   [(agency, hash_token(tokens[agency])) for agency in agencies])
    return project, tokens


def _project_for(store: Store, identity: Identity, project_name: str) -> ProjectRow:
    if identity.role == "agency" and identity.project != project_name:
        raise PermissionDeniedError(f"This agency token belongs to project {identity.project!r}, "
                                    f"not {project_name!r}.")
    return store.project(project_name)


def check_header(store: Store, identity: Identity, header: BatchHeaderInfo) -> ProjectRow:
    """Check an upload's header against its project before accepting any record.

    Raises:
        SchemaError: other schema or CLK length. SecretError: other secret.
        EmptyBatchError/BatchFormatError: nonsensical counts.
    """
    project = _project_for(store, identity, header.project)
    if header.schema_fingerprint != project.schema_fingerprint:
        raise SchemaError(
            "This batch was encoded with another linkage schema than the project's "
            f"(batch {header.schema_fingerprint[:12] or 'none'}…, project "
            f"{project.schema_fingerprint[:12]}…). Re-encode with the project's schema.")
    if header.clk_bits != project.clk_bits:
        raise SchemaError(f"The batch's CLKs are {header.clk_bits} bits but the project's schema "
                          f"makes {project.clk_bits}-bit CLKs.")
    if project.key_check is not None and not hmac.compare_digest(header.key_check,
                                                                project.key_check):
        raise SecretError("This batch was encoded with a different secret than the batches "
                          "already in the project. Every agency must use the same secret file.")
    if header.record_count == 0:
        raise EmptyBatchError("The batch holds no records; nothing was stored.")
    return project


def submit_batch(store: Store, identity: Identity, header: BatchHeaderInfo,
                 chunks: Iterable[tuple[list[str], list[bytes]]]):
    """Receive a whole batch, validate it, and store it atomically.

    Returns ``(batch_id, records, already_stored)``. Nothing is stored unless
    every check passes.
    """
    project = check_header(store, identity, header)
    clk_bytes = header.clk_bits // 8
    record_ids: list[str] = []
    clks: list[bytes] = []
    for chunk_ids, chunk_clks in chunks:
        if len(chunk_ids) != len(chunk_clks):
            raise BatchFormatError(f"A chunk has {len(chunk_ids)} record ids but "
                                   f"{len(chunk_clks)} CLKs.")
        for position, clk in enumerate(chunk_clks):
            if len(clk) != clk_bytes:
                raise ClkError(f"CLK #{len(clks) + position} is {len(clk) * 8} bits; the project's "
                               f"schema makes {header.clk_bits}-bit CLKs.")
        record_ids.extend(chunk_ids)
        clks.extend(chunk_clks)
        if len(record_ids) > header.record_count:
            raise BatchFormatError(f"The upload sent more records than its header announced "
                                   f"({header.record_count}).")
    if len(record_ids) != header.record_count:
        raise BatchFormatError(f"The upload is truncated: {len(record_ids)} of "
                               f"{header.record_count} records arrived. Nothing was stored; "
                               "submit the batch again.")
    batch = EncodedBatch(record_ids, clks_from_bytes(clks, header.clk_bits), header.clk_bits,
                         header.schema_fingerprint, header.key_check)
    batch.validate()
    content_hash = _content_hash(record_ids, clks)
    existing = store.batch_by_hash(identity.agency_id, content_hash)
    if existing is not None:
        return existing.id, existing.record_count, True
    clashes = store.existing_record_ids(identity.agency_id, record_ids)
    if clashes:
        raise DuplicateRecordError(f"{len(clashes)} record ids of this batch are already stored "
                                   "for this agency in an earlier batch; record ids must be "
                                   "unique across an agency's batches.")
    agency = next(a for a in store.agencies(project.id) if a.id == identity.agency_id)
    batch_id = "b-" + uuid.uuid4().hex[:16]
    store.add_batch(project, agency, batch_id, content_hash, header.key_check, record_ids, clks)
    return batch_id, len(record_ids), False


def _content_hash(record_ids: list[str], clks: list[bytes]) -> str:
    digest = hashlib.sha256()
    for record_id, clk in zip(record_ids, clks):
        encoded = record_id.encode("utf-8")
        digest.update(len(encoded).to_bytes(2, "little"))
        digest.update(encoded)
        digest.update(clk)
    return digest.hexdigest()


def _group_key_secret(store: Store) -> bytes:
    secret = store.setting(GROUP_KEY_SETTING)
    if secret is None:
        secret = secrets.token_bytes(32)
        store.set_setting(GROUP_KEY_SETTING, secret)
    return secret


def run_linkage(store: Store, project_name: str, threshold_text: str,
                on_progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Link a project incrementally and store the groups; returns the run summary.

    Only records of batches that no earlier run compared are compared (with
    everything stored and with each other); the pairs found are kept, so old
    pairs are never recomputed. With nothing new and the same threshold
    setting, the latest run stands and no work is done.
    """
    requested = parse_threshold(threshold_text)
    setting = "auto" if requested is None else f"{requested:g}"
    project = store.project(project_name)
    records = store.load_records(project.id)
    if not records.record_ids:
        raise RunStateError(f"Project {project_name!r} has no batches yet; agencies submit with "
                            "'linkage submit' first.")
    latest = store.latest_run(project.id)
    if (latest is not None and not records.is_new.any()
            and latest.summary.get("threshold_setting") == setting):
        summary = dict(latest.summary, run=latest.number, new_records=0, reused=True)
        return summary
    report = on_progress or (lambda stage, done, total: None)
    report("loading", len(records.record_ids), len(records.record_ids))
    run_id = store.start_run(project.id)
    started = time.monotonic()
    try:
        clks = clks_from_bytes(records.clks, project.clk_bits)
        floor = store.pair_floor(project.id)
        if floor is None or (requested is not None and requested < floor):
            if floor is not None:
                store.reset_pairs(project.id)
                records = store.load_records(project.id)
            floor = choose_floor(clks) if requested is None else min(choose_floor(clks), requested)
        new_count = int(records.is_new.sum())
        if new_count:
            fresh = compare_new_records(clks, records.is_new, floor, on_progress=report)
            store.add_pairs(project.id, floor, records.row_ids[fresh.left],
                            records.row_ids[fresh.right], fresh.score, records.new_batches)
        stored_left, stored_right, stored_score = store.load_pairs(project.id)
        position = np.searchsorted(records.row_ids, np.concatenate([stored_left, stored_right]))
        half = stored_left.shape[0]
        floor_pairs = CandidatePairs(position[:half], position[half:], stored_score)
        result = decide(floor_pairs, floor, records.agency_ids, threshold=requested,
                        on_progress=report)
        groups, cross = _named_groups(store, result, records)
        edges, counts = score_histogram(result.floor_scores, low=floor)
        choice = result.choice
        summary = {
            "threshold": choice.threshold,
            "threshold_setting": setting,
            "threshold_reason": choice.reason,
            "estimated_precision": choice.estimated_precision or 0.0,
            "estimated_recall": choice.estimated_recall or 0.0,
            "records": len(records.record_ids),
            "new_records": new_count,
            "candidate_pairs": len(result.pairs),
            "groups": len(groups),
            "cross_agency_groups": cross,
            "seconds": round(time.monotonic() - started, 3),
            "histogram": [[float(edges[i]), float(edges[i + 1]), int(counts[i])]
                          for i in range(len(counts))],
        }
        store.finish_run(run_id, summary, groups)
    except BaseException as error:
        store.fail_run(run_id, f"{type(error).__name__}: the run did not finish")
        raise
    summary["run"] = store.latest_run(project.id).number
    summary["reused"] = False
    return summary


def _named_groups(store: Store, result, records):
    """Groups as (key, confidence, members); keys are keyed hashes of the membership."""
    key_secret = _group_key_secret(store)
    groups = []
    cross = 0
    for label, members in enumerate(result.grouping.members()):
        member_list = sorted((int(records.agency_ids[i]), records.record_ids[i])
                             for i in members.tolist())
        material = "\n".join(f"{a}\t{r}" for a, r in member_list).encode("utf-8")
        key = "g-" + hmac.new(key_secret, material, hashlib.sha256).hexdigest()[:16]
        groups.append((key, float(result.confidence[label]), member_list))
        cross += len({a for a, _ in member_list}) > 1
    return groups, cross


def _latest_run(store: Store, project: ProjectRow):
    run = store.latest_run(project.id)
    if run is None:
        raise RunStateError(f"Project {project.name!r} has no finished linkage run yet; a "
                            "coordinator starts one with 'linkage run'.")
    return run


def agency_results(store: Store, identity: Identity, project_name: str) -> Iterator[RecordHit]:
    """Hit/no-hit for the caller's own records: own ids, group ids and other agencies' names."""
    project = _project_for(store, identity, project_name)
    run = _latest_run(store, project)
    names = {a.id: a.name for a in store.agencies(project.id)}
    rows = list(store.agency_results(run.id, identity.agency_id))
    group_keys = sorted({key for _, key in rows})
    composition = store.group_agencies(run.id, group_keys)
    confidence = {g.key: g.confidence for g in store.groups(run.id)}
    for record_id, key in rows:
        members = composition.get(key, {})
        others = sorted(names[a] for a in members if a != identity.agency_id)
        yield RecordHit(record_id, key, others, confidence.get(key, 0.0),
                        members.get(identity.agency_id, 0) > 1)


def project_report(store: Store, project_name: str) -> ProjectReport:
    """The coordinator's report of the latest run (no record ids)."""
    project = store.project(project_name)
    run = _latest_run(store, project)
    agencies = store.agencies(project.id)
    names = {a.id: a.name for a in agencies}
    batches = store.batches(project.id)
    reviews = store.reviews(project.id)
    groups = store.groups(run.id)
    hits = {a.id: 0 for a in agencies}
    duplicates = {a.id: 0 for a in agencies}
    pair_counts: dict[tuple[str, str], int] = {}
    group_reports = []
    for group in groups:
        members = group.members_by_agency
        if len(members) > 1:
            for agency_id, count in members.items():
                hits[agency_id] += count
            present = sorted(names[a] for a in members)
            for i, first in enumerate(present):
                for second in present[i + 1:]:
                    pair_counts[(first, second)] = pair_counts.get((first, second), 0) + 1
        for agency_id, count in members.items():
            if count > 1:
                duplicates[agency_id] += count
        decision, note = reviews.get(group.key, ("", ""))
        group_reports.append(GroupReport(
            group.key, {names[a]: c for a, c in sorted(members.items(), key=lambda x: names[x[0]])},
            group.size, group.confidence, decision, note))
    agency_reports = [
        AgencyReport(a.name,
                     sum(b.record_count for b in batches if b.agency_id == a.id),
                     sum(1 for b in batches if b.agency_id == a.id),
                     hits[a.id], duplicates[a.id])
        for a in agencies
    ]
    summary = dict(run.summary)
    summary["run"] = run.number
    return ProjectReport(
        project=project.name,
        summary=summary,
        agencies=agency_reports,
        agency_pairs=[(a, b, n) for (a, b), n in sorted(pair_counts.items())],
        groups=group_reports,
        histogram=[(low, high, count) for low, high, count in summary.get("histogram", [])],
        estimated_precision=float(summary.get("estimated_precision", 0.0)),
        estimated_recall=float(summary.get("estimated_recall", 0.0)),
    )


def review_group(store: Store, project_name: str, group: str, decision: str, note: str) -> str:
    """Record a decision on a group of the latest run."""
    if decision not in ("accepted", "rejected"):
        raise InvalidRequestError("A review decision is 'accepted' or 'rejected'.")
    project = store.project(project_name)
    run = _latest_run(store, project)
    if not any(g.key == group for g in store.groups(run.id)):
        raise NotFoundError(f"No group {group!r} in the latest run of {project_name!r}; "
                            "'linkage report' lists the groups.")
    store.set_review(project.id, group, decision, note)
    return decision

