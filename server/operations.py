"""What the server does, in plain Python: no protobuf here.

Servicers convert requests into calls of these functions and their results
back into messages (``convert.py``). Every function takes the store and the
caller's identity explicitly.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from linkage.batch import (
    MAX_RECORD_ID_BYTES,
    RecordAttributes,
    record_id_problem,
    update_content_hash,
)
from linkage.group_keys import unique_group_keys
from linkage.clks import clks_from_bytes
from linkage.candidates import CandidatePairs
from linkage.engine import (
    HIGHEST_FLOOR,
    choose_floor,
    compare_new_records,
    decide,
    needs_review,
    plan_blocking,
)
from linkage.errors import (
    BatchFormatError,
    ClkError,
    DuplicateRecordError,
    EmptyBatchError,
    InvalidRequestError,
    LinkageError,
    NotFoundError,
    PermissionDeniedError,
    RunStateError,
    SchemaError,
    SecretError,
)
from linkage.schema import load_schema
from linkage.network import Membership, build_network
from linkage.threshold import (
    REVIEW_PROBABILITIES,
    parse_threshold,
    quality_curve,
    score_histogram,
)

from . import failpoints
from .auth import Identity, hash_token, new_token
from .store import EntitySchemaRow, ProjectRow, Store

__all__ = [
    "AgencyReport",
    "BatchHeaderInfo",
    "SubmitOutcome",
    "UploadProgress",
    "GroupReport",
    "ProjectReport",
    "RecordHit",
    "agency_results",
    "create_project",
    "project_report",
    "purge_project",
    "review_group",
    "run_linkage",
    "submit_batch",
    "upload_status",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_BATCH_ID = re.compile(r"^b-[0-9a-f]{16}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ATTRIBUTE = re.compile(r"^[a-z0-9_]{1,32}$")
_CASE_REF = re.compile(r"^c-[0-9a-f]{12}$")
_TOP_BROKERS_TRACKED = 10
GROUP_KEY_SETTING = "group_key_secret"


@dataclass(frozen=True)
class BatchHeaderInfo:
    """What an upload claims about itself before its records arrive."""

    project: str
    schema_fingerprint: str
    key_check: str
    clk_bits: int
    record_count: int
    batch_id: str
    content_hash: str
    entity_type: str = ""
    deduplicated: bool = False

    def as_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


@dataclass(frozen=True)
class SubmitOutcome:
    """The receipt of an upload."""

    batch_id: str
    records: int
    already_stored: bool


@dataclass(frozen=True)
class UploadProgress:
    """What the server holds of an upload."""

    batch_id: str
    records_received: int
    committed: bool


@dataclass(frozen=True)
class FollowUpView:
    """A follow-up request as its parties see it."""

    id: str
    group: str
    requested_by: str
    agency: str
    status: str
    note: str
    answer_note: str


@dataclass(frozen=True)
class RecordHit:
    """One of the calling agency's records that belongs to a group."""

    record: str
    group: str
    agencies: list[str]
    confidence: float
    duplicate_in_own_agency: bool
    follow_ups: list[FollowUpView]


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
    follow_ups: list[FollowUpView]
    needs_review: bool = False


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
    network: dict


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise InvalidRequestError(f"{kind} name {name!r} is not allowed: use 1-63 lowercase letters, "
                               "digits, '.', '_' or '-', starting with a letter or digit.")


def create_project(store: Store, name: str, schema_json: str, agencies: list[str],
                   stages: list[str] | None = None,
                   entity_schemas: dict[str, str] | None = None):
    """Create a project; returns (project, {agency: token}). Tokens are shown only here."""
    stages = list(stages or [])
    for stage in stages:
        if not _ATTRIBUTE.match(stage):
            raise InvalidRequestError(f"Stage {stage!r} is not allowed: use lowercase letters, "
                                      "digits and '_' (at most 32).")
    if len(set(stages)) != len(stages):
        raise InvalidRequestError("A stage is listed twice.")
    _check_name("Project", name)
    if len(agencies) < 2:
        raise InvalidRequestError("A project needs at least two agencies (--agencies a,b).")
    if len(agencies) > MAX_AGENCIES:
        raise InvalidRequestError(f"A project takes at most {MAX_AGENCIES} agencies, not "
                                  f"{len(agencies)}.")
    if len(stages) > MAX_STAGES or len(entity_schemas or {}) > MAX_ENTITY_TYPES:
        raise InvalidRequestError(f"A project takes at most {MAX_STAGES} stages and "
                                  f"{MAX_ENTITY_TYPES} further entity types.")
    if len(set(agencies)) != len(agencies):
        raise InvalidRequestError("An agency is listed twice in --agencies.")
    for agency in agencies:
        _check_name("Agency", agency)
        if agency in RESERVED_NAMES:
            raise InvalidRequestError(f"{agency!r} names a role and cannot name an agency (its "
                                      "follow-ups would read as the role's); choose another.")
    schema = load_schema(schema_json)
    extra = []
    for entity_type, text in (entity_schemas or {}).items():
        if not _ATTRIBUTE.match(entity_type) or entity_type == "person":
            raise InvalidRequestError(f"Entity type {entity_type!r} is not allowed: lowercase "
                                      "letters, digits and '_', and not 'person' (the main "
                                      "schema is the person schema).")
        parsed = load_schema(text)
        extra.append(EntitySchemaRow(entity_type, parsed.text, parsed.fingerprint,
                                     parsed.clk_bits))
    tokens = {agency: new_token() for agency in agencies}
    project = store.create_project(name, schema.text, schema.fingerprint, schema.clk_bits,
                                   [(agency, hash_token(tokens[agency])) for agency in agencies],
                                   stages, extra)
    return project, tokens


def _project_for(store: Store, identity: Identity, project_name: str) -> ProjectRow:
    if identity.role == "agency" and identity.project != project_name:
        raise PermissionDeniedError(f"This agency token belongs to project {identity.project!r}, "
                                    f"not {shortened(project_name)!r}.")
    return store.project(project_name)


def check_header(store: Store, identity: Identity, header: BatchHeaderInfo, *,
                 allow_secret_reuse: bool = False) -> ProjectRow:
    """Check an upload's header against its project before accepting any record.

    Raises:
        SchemaError: other schema or CLK length. SecretError: other secret.
        EmptyBatchError/BatchFormatError: nonsensical counts.
    """
    project = _project_for(store, identity, header.project)
    _check_not_purged(project)
    entity_type = header.entity_type or "person"
    schemas = {e.entity_type: e for e in store.entity_schemas(project.id)}
    schema = schemas.get(entity_type)
    if schema is None:
        raise SchemaError(f"Project {project.name!r} has no schema for entity type "
                          f"{entity_type!r}; it links: {', '.join(sorted(schemas))}.")
    if header.schema_fingerprint != schema.fingerprint:
        raise SchemaError(
            f"This batch was encoded with another linkage schema than the project's {entity_type} "
            f"schema (batch {header.schema_fingerprint[:12] or 'none'}…, project "
            f"{schema.fingerprint[:12]}…). Re-encode with the project's schema.")
    if header.clk_bits != schema.clk_bits:
        raise SchemaError(f"The batch's CLKs are {header.clk_bits} bits but the project's "
                          f"{entity_type} schema makes {schema.clk_bits}-bit CLKs.")
    if project.key_check is not None and not hmac.compare_digest(header.key_check,
                                                                project.key_check):
        raise SecretError("This batch was encoded with a different secret than the batches "
                          "already in the project. Every agency must use the same secret file. "
                          "If instead the project's first batch was encoded with the wrong "
                          "secret, its agency (or the coordinator) withdraws that batch with "
                          "'linkage batch withdraw' before a run uses it, and every agency "
                          "submits again under the right secret.")
    if (project.key_check is None and not allow_secret_reuse
            and store.key_check_elsewhere(project.id, header.key_check)):
        raise SecretError("This batch was encoded with a secret that another project on this "
                          "server already uses. Each project needs a fresh secret (a secret "
                          "shared across projects lets CLKs be linked across them): create one "
                          "with 'linkage keygen' and share it with this project's agencies.")
    if header.record_count == 0:
        raise EmptyBatchError("The batch holds no records; nothing was stored.")
    return project


def _check_not_purged(project: ProjectRow) -> None:
    if project.purged_at is not None:
        raise RunStateError(f"Project {project.name!r} was purged at {project.purged_at}: its "
                            "CLKs are deleted and it takes no more batches or runs. Its reports "
                            "and results stay readable; start a new project to link again.")


def upload_status(store: Store, identity: Identity, project_name: str,
                  batch_id: str) -> UploadProgress:
    """How much of the caller's upload the server holds (0 for an unknown id)."""
    project = _project_for(store, identity, project_name)
    _check_not_purged(project)
    committed = store.batch(batch_id)
    if committed is not None and _owned(committed.agency_id, identity):
        return UploadProgress(batch_id, committed.record_count, True)
    if committed is not None:
        return UploadProgress(batch_id, 0, False)  # absent and foreign look the same
    upload = store.upload(batch_id)
    if upload is None or upload.project_id != project.id or not _owned(upload.agency_id,
                                                                       identity):
        return UploadProgress(batch_id, 0, False)  # absent and foreign look the same
    return UploadProgress(batch_id, upload.records_received, False)


def _owned(agency_id: int, identity: Identity) -> bool:
    return agency_id == identity.agency_id


def _taken_elsewhere(store: Store, identity: Identity, batch_id: str) -> bool:
    """A batch id held by another agency or project (never said which, nor that it exists)."""
    held = store.batch(batch_id) or store.upload(batch_id)
    return held is not None and not _owned(held.agency_id, identity)


#: The most records one batch header may announce (a bound on what an upload may hold).
MAX_RECORDS_PER_BATCH = 50_000_000


def submit_batch(store: Store, identity: Identity, header: BatchHeaderInfo,
                 chunks: Iterable[tuple[int, list[str], list[bytes],
                                        list[tuple[str, str, str]] | None]],
                 *, allow_secret_reuse: bool = False,
                 unfinished_per_agency: int | None = None,
                 upload_expiry_seconds: float | None = None) -> SubmitOutcome:
    """Receive (the rest of) an upload, keep each chunk durably, commit when complete.

    Chunks already held are skipped, so a client resumes by sending from
    ``upload_status``. The batch is committed atomically once every record has
    arrived, the content hash matches and every check passed; until then it is
    invisible to runs. Raises a domain error naming what is wrong otherwise; a secret
    another project uses is refused unless ``allow_secret_reuse``.
    """
    project = check_header(store, identity, header, allow_secret_reuse=allow_secret_reuse)
    if not _BATCH_ID.match(header.batch_id):
        raise InvalidRequestError("The batch id must be 'b-' and 16 lowercase hex digits.")
    if not _HEX64.match(header.content_hash):
        raise InvalidRequestError("The content hash must be 64 lowercase hex digits (SHA-256).")
    progress = upload_status(store, identity, header.project, header.batch_id)
    if progress.committed:
        return SubmitOutcome(header.batch_id, progress.records_received, True)
    duplicate = store.batch_by_hash(identity.agency_id, header.content_hash)
    if duplicate is not None:
        return SubmitOutcome(duplicate.id, duplicate.record_count, True)
    held = store.upload(header.batch_id)
    if held is not None and held.header != header.as_json():
        raise InvalidRequestError("An upload with this batch id but another header is in "
                                  "progress; encode again to get a fresh batch id.")
    if header.record_count > MAX_RECORDS_PER_BATCH:
        raise BatchFormatError(f"The header announces {header.record_count} records; one batch "
                               f"holds at most {MAX_RECORDS_PER_BATCH}. Split the export.")
    if progress.records_received == 0 and _taken_elsewhere(store, identity, header.batch_id):
        raise InvalidRequestError(
            "Another agency of this project submitted a batch with exactly this content (the "
            "batch id is derived from the project and the content): submit the batch encoded "
            "from your own agency's export. If it is yours, encode it again: a fresh encoding "
            "gets a fresh batch id.")
    if upload_expiry_seconds is not None:
        store.expire_uploads(upload_expiry_seconds)
    store.begin_upload(project.id, identity.agency_id, header.batch_id, header.as_json(),
                       most_unfinished=unfinished_per_agency)
    received = progress.records_received
    clk_bytes = header.clk_bits // 8
    stages = set(project.stages)
    entity_type = header.entity_type or "person"
    for first_record, record_ids, clks, attributes in chunks:
        try:
            _check_chunk(record_ids, clks, clk_bytes, first_record)
            _check_attributes(attributes, record_ids, stages, entity_type, project.name,
                              first_record)
        except LinkageError:
            store.discard_upload(header.batch_id)  # refused: nothing to resume
            raise
        if first_record + len(record_ids) <= received:
            continue  # already held: a resumed client may resend its last chunk
        if first_record != received:
            raise BatchFormatError(f"A chunk starts at record {first_record} but the server holds "
                                   f"{received}; resume from record {received}.")
        if received + len(record_ids) > header.record_count:
            raise BatchFormatError(f"The upload sent more records than its header announced "
                                   f"({header.record_count}).")
        received = store.append_chunk(header.batch_id, first_record, record_ids, clks, attributes)
        failpoints.reached("upload-chunk-stored")
    if received < header.record_count:
        raise BatchFormatError(f"The upload is truncated: {received} of {header.record_count} "
                               "records arrived. The server keeps them but stores nothing "
                               "yet: run 'linkage submit' again to resume.")
    _verify_upload(store, identity, header)
    agency = next(a for a in store.agencies(project.id) if a.id == identity.agency_id)
    stored = store.commit_upload(project, agency, header.batch_id, header.content_hash,
                                 header.key_check)
    return SubmitOutcome(stored.id, stored.record_count, False)


def _check_chunk(record_ids: list[str], clks: list[bytes], clk_bytes: int, first: int) -> None:
    if len(record_ids) != len(clks):
        raise BatchFormatError(f"A chunk has {len(record_ids)} record ids but {len(clks)} CLKs.")
    for offset, (record_id, clk) in enumerate(zip(record_ids, clks)):
        if len(clk) != clk_bytes:
            raise ClkError(f"CLK #{first + offset} is {len(clk) * 8} bits; the project's schema "
                           f"makes {clk_bytes * 8}-bit CLKs.")
        if not record_id or len(record_id.encode("utf-8")) > MAX_RECORD_ID_BYTES:
            raise BatchFormatError(f"Record #{first + offset} has an empty record id or one "
                                   f"longer than {MAX_RECORD_ID_BYTES} bytes.")
        if (problem := record_id_problem(record_id)) is not None:
            raise BatchFormatError(f"Record #{first + offset}: its record id {problem}.")


def _check_attributes(attributes, record_ids: list[str], stages: set[str], entity_type: str,
                      project_name: str = "", first_record: int = 0) -> None:
    if attributes is None:
        return
    count = len(record_ids)
    if len(attributes) != count:
        raise BatchFormatError(f"A chunk has {count} records but {len(attributes)} attribute "
                               "sets; send one per record or none.")
    for offset, (record_type, case_ref, stage) in enumerate(attributes):
        if record_type and record_type != entity_type:
            raise BatchFormatError(f"A record of entity type {record_type!r} is in a batch of "
                                   f"{entity_type!r}; one batch holds one entity type.")
        if case_ref and not _CASE_REF.match(case_ref):
            raise BatchFormatError("A case reference must be pseudonymised at the agency "
                                   "('c-' and 12 hex digits); raw case numbers are refused.")
        if stage and stage not in stages:
            allowed = ", ".join(sorted(stages)) or "none are defined for this project"
            raise BatchFormatError(
                f"Record #{first_record + offset} ({record_ids[offset]!r}) has stage {stage!r}, "
                f"which is not in the project's vocabulary ({allowed}). Nothing of this batch "
                "was stored. Either the coordinator adds the stage with 'linkage project "
                f"stages --project {project_name} --add {stage}', or you encode again with "
                "stage_column removed from (or corrected in) your mapping; 'linkage encode "
                "--stages a,b,...' checks the values at your agency first.")


def _verify_upload(store: Store, identity: Identity, header: BatchHeaderInfo) -> None:
    """Hash, duplicate and clash checks over the held chunks; discards the upload on failure."""
    digest = hashlib.sha256()
    seen: set[str] = set()
    try:
        for record_ids, clks, attributes in store.upload_chunks(header.batch_id):
            update_content_hash(digest, record_ids, clks,
                                None if attributes is None else
                                [RecordAttributes(*a) for a in attributes])
            for record_id in record_ids:
                if record_id in seen:
                    raise DuplicateRecordError("A record id appears more than once in the batch; "
                                               "record ids must be unique.")
                seen.add(record_id)
            clashes = store.existing_record_ids(identity.agency_id, record_ids)
            if clashes:
                raise DuplicateRecordError(
                    f"{len(clashes)} record ids of this batch are already stored for this agency "
                    "in an earlier batch; record ids must be unique across an agency's batches.")
        if digest.hexdigest() != header.content_hash:
            raise BatchFormatError("What arrived does not match the batch's content hash: the "
                                   "upload was corrupted. Nothing was stored; submit again.")
    except LinkageError:
        store.discard_upload(header.batch_id)
        raise


def _group_key_secret(store: Store) -> bytes:
    secret = store.setting(GROUP_KEY_SETTING)
    if secret is None:
        secret = secrets.token_bytes(32)
        store.set_setting(GROUP_KEY_SETTING, secret)
    return secret


def run_linkage(store: Store, project_name: str, threshold_text: str,
                on_progress: Callable[[str, int, int], None] | None = None,
                blocking: str = "auto", executor=None) -> dict:
    """Link a project incrementally and store the groups; returns the run summary.

    Only records of batches that no earlier run compared are compared (with
    everything stored and with each other); the pairs found are kept, so old
    pairs are never recomputed. With nothing new and the same threshold
    setting, the latest run stands and no work is done.
    """
    requested = parse_threshold(threshold_text)
    blocking = (blocking or "auto").strip().lower()
    if blocking not in ("auto", "lsh", "exhaustive"):
        raise InvalidRequestError("Blocking is 'auto', 'lsh' or 'exhaustive'.")
    if blocking == "lsh" and requested is None:
        raise InvalidRequestError("LSH blocking needs a numeric threshold (e.g. --threshold "
                                  "0.8): it finds pairs at a threshold, and 'auto' must see "
                                  "the scores below it.")
    setting = "auto" if requested is None else f"{requested:g}"
    project = store.project(project_name)
    _check_not_purged(project)
    records = store.load_records(project.id)
    if not records.record_ids:
        raise RunStateError(f"Project {project_name!r} has no batches yet; agencies submit with "
                            "'linkage submit' first.")
    latest = store.latest_run(project.id)
    reviews = store.reviews(project.id)
    reviews_digest = hashlib.sha256(json.dumps(sorted(
        (key, decision) for key, (decision, _) in reviews.items())).encode()).hexdigest()
    if (latest is not None and not records.is_new.any()
            and latest.summary.get("records") == len(records.record_ids)
            and latest.summary.get("threshold_setting") == setting
            and latest.summary.get("reviews_digest") == reviews_digest
            and latest.summary.get("blocking_setting", "auto") == blocking):
        summary = dict(latest.summary, run=latest.number, new_records=0, reused=True)
        return summary
    report = on_progress or (lambda stage, done, total: None)
    report("loading", len(records.record_ids), len(records.record_ids))
    run_id = store.start_run(project.id)  # refuses while another run of the project is going
    started = time.monotonic()
    try:
        now_latest = store.latest_run(project.id)
        if (now_latest.number if now_latest else 0) != (latest.number if latest else 0):
            records = store.load_records(project.id)  # a run finished meanwhile: use its state
        failpoints.reached("run-started")
        bits = {e.entity_type: e.clk_bits for e in store.entity_schemas(project.id)}
        types = np.asarray(records.entity_types)
        rows_of = {t: np.flatnonzero(types == t) for t in sorted(set(records.entity_types))}
        matrices = {t: clks_from_bytes([records.clks[i] for i in rows], bits[t])
                    for t, rows in rows_of.items()}
        plans = {t: plan_blocking(matrices[t], records.is_new[rows], requested, blocking)
                 if requested is not None else None for t, rows in rows_of.items()}
        if blocking == "lsh" and any(p is None for p in plans.values()):
            raise InvalidRequestError(f"LSH blocking cannot reach 99.5% completeness at "
                                      f"threshold {requested} with these CLKs; use a higher "
                                      "threshold or --blocking exhaustive.")
        floor = store.pair_floor(project.id)
        blocked = any(p is not None for p in plans.values())
        if blocked and floor is not None and floor < requested:
            floor = None  # stored pairs reach lower than blocking will: start afresh at it
            store.reset_pairs(project.id)
            records = store.load_records(project.id)
        if blocked and floor is None:
            floor = requested
        if requested is not None and floor is None:
            floor = requested  # a numeric threshold is scanned at itself, as in link_records
        if requested is None and floor is not None and floor > HIGHEST_FLOOR:
            store.reset_pairs(project.id)  # auto needs the scores below what is stored
            records = store.load_records(project.id)
            floor = None
        if floor is None or (requested is not None and requested < floor):
            if floor is not None:
                store.reset_pairs(project.id)
                records = store.load_records(project.id)
            floor = min(choose_floor(m) for m in matrices.values())
            floor = floor if requested is None else min(floor, requested)
        new_count = int(records.is_new.sum())
        if new_count:
            fresh = []
            for entity_type, rows in rows_of.items():
                found = compare_new_records(matrices[entity_type], records.is_new[rows], floor,
                                            plan=plans[entity_type], on_progress=report,
                                            executor=executor)
                fresh.append(CandidatePairs(rows[found.left], rows[found.right], found.score))
            fresh_pairs = CandidatePairs.concat(fresh)
            store.add_pairs(project.id, floor, records.row_ids[fresh_pairs.left],
                            records.row_ids[fresh_pairs.right], fresh_pairs.score,
                            records.new_batches)
            failpoints.reached("run-pairs-stored")
        stored_left, stored_right, stored_score = store.load_pairs(project.id)
        position = np.searchsorted(records.row_ids, np.concatenate([stored_left, stored_right]))
        half = stored_left.shape[0]
        all_pairs = CandidatePairs(position[:half], position[half:], stored_score)
        rejected_keys = [key for key, (decision, _) in reviews.items() if decision == "rejected"]
        all_pairs, broken_links = _break_rejected_groups(store, project, records, all_pairs,
                                                         rejected_keys)
        groups, by_type = [], {}
        one_per_group = {agency: 1 for agency in store.deduplicated_agencies(project.id)}
        reviews_used: dict[str, tuple[int, int]] = {}
        to_review = 0
        for entity_type, rows in rows_of.items():
            local = np.full(len(records.record_ids), -1, np.int64)
            local[rows] = np.arange(rows.size)
            mine = (local[all_pairs.left] >= 0) & (local[all_pairs.right] >= 0)
            pairs = CandidatePairs(local[all_pairs.left[mine]], local[all_pairs.right[mine]],
                                   all_pairs.score[mine])
            # Each type's model learns from the reviews of that type's groups only.
            accepted, rejected = store.reviewed_scores(project.id, entity_type)
            reviews_used[entity_type] = (int(accepted.size), int(rejected.size))
            labelled = {"known_matches": accepted, "known_non_matches": rejected}
            result = decide(pairs, floor, records.agency_ids[rows], threshold=requested,
                            max_per_owner=one_per_group or None, on_progress=report, **labelled)
            groups.extend(_named_groups(store, result, records, rows))
            to_review += int(needs_review(result.confidence,
                                          result.choice.model is not None).sum())
            by_type[entity_type] = result
        primary_type = "person" if "person" in by_type else next(iter(by_type))
        primary = by_type[primary_type]
        cross = sum(1 for *_, members in groups if len({a for a, _ in members}) > 1)
        edges, counts = score_histogram(primary.floor_scores, low=floor)
        choice = primary.choice
        summary = {
            "threshold": choice.threshold,
            "threshold_setting": setting,
            "reviews_digest": reviews_digest,
            "blocking_setting": blocking,
            "threshold_reason": (choice.reason if len(by_type) == 1 else
                                 f"{primary_type}s: {choice.reason}"),
            "estimated_precision": choice.estimated_precision or 0.0,
            "estimated_recall": choice.estimated_recall or 0.0,
            "entity_types": {
                t: {"records": int(rows_of[t].size), "threshold": r.choice.threshold,
                    "threshold_reason": r.choice.reason, "groups": r.grouping.group_count,
                    "reviews_used_accepted": reviews_used[t][0],
                    "reviews_used_rejected": reviews_used[t][1]}
                for t, r in by_type.items()},
            "records": len(records.record_ids),
            "records_by_agency": {str(a): int(n) for a, n in
                                  zip(*np.unique(records.agency_ids, return_counts=True))},
            "batches_by_agency": _batches_by_agency(store, project.id),
            "new_records": new_count,
            "candidate_pairs": sum(len(r.pairs) for r in by_type.values()),
            "groups": len(groups),
            "cross_agency_groups": cross,
            "groups_to_review": to_review,
            "review_band": list(REVIEW_PROBABILITIES),
            "reviews_used_accepted": sum(a for a, _ in reviews_used.values()),
            "reviews_used_rejected": sum(r for _, r in reviews_used.values()),
            "rejected_links_broken": broken_links,
            "deduplicated_agencies": sorted(str(a) for a in one_per_group),
            "seconds": round(time.monotonic() - started, 3),
            "blocking": "; ".join(
                f"{t}: lsh {p.bits} bits x {p.tables} tables, expected completeness "
                f"{p.expected_completeness:.4f} at {requested}" if p is not None else
                f"{t}: exhaustive" for t, p in plans.items()),
            "histogram": [[float(edges[i]), float(edges[i + 1]), int(counts[i])]
                          for i in range(len(counts))],
            "quality_curve": quality_curve(primary.floor_scores, choice.model, floor),
        }
        store.finish_run(run_id, summary, groups)
    except BaseException as error:
        store.fail_run(run_id, f"{type(error).__name__}: the run did not finish")
        raise
    summary["run"] = store.latest_run(project.id).number
    summary["reused"] = False
    return summary


def _break_rejected_groups(store: Store, project: ProjectRow, records, pairs: CandidatePairs,
                           rejected: list[str]) -> tuple[CandidatePairs, int]:
    """Drop the weakest pair inside each of the ``rejected`` groups, so that the group is not
    formed again (its records may still link elsewhere); returns the pairs and how many
    were dropped."""
    if not rejected or len(pairs) == 0:
        return pairs, 0
    row_of = {(int(a), r): i for i, (a, r) in enumerate(zip(records.agency_ids,
                                                             records.record_ids))}
    group_of_row = np.full(len(records.record_ids), -1, np.int64)
    for number, members in enumerate(store.group_members(project.id, rejected).values()):
        rows = [row_of.get(member) for member in members]
        if None not in rows:
            group_of_row[rows] = number
    inside = (group_of_row[pairs.left] >= 0) & (group_of_row[pairs.left] ==
                                                group_of_row[pairs.right])
    candidates = np.flatnonzero(inside)
    if candidates.size == 0:
        return pairs, 0
    order = candidates[np.lexsort((pairs.score[candidates],
                                   group_of_row[pairs.left[candidates]]))]
    groups = group_of_row[pairs.left[order]]
    weakest = order[np.r_[True, groups[1:] != groups[:-1]]]
    keep = np.ones(len(pairs), bool)
    keep[weakest] = False
    return CandidatePairs(pairs.left[keep], pairs.right[keep], pairs.score[keep]), int(
        weakest.size)


def _batches_by_agency(store: Store, project_id: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for batch in store.batches(project_id):
        counts[str(batch.agency_id)] = counts.get(str(batch.agency_id), 0) + 1
    return counts


def _named_groups(store: Store, result, records, rows: np.ndarray):
    """Groups as (key, confidence, weakest score, members); keys are keyed hashes of the
    membership.

    ``rows`` maps the result's local record indices to rows of ``records``.
    """
    key_secret = _group_key_secret(store)
    memberships = [sorted((int(records.agency_ids[rows[i]]), records.record_ids[rows[i]])
                          for i in members.tolist())
                   for members in result.grouping.members()]
    keys = unique_group_keys(key_secret, memberships)
    return [(key, float(result.confidence[label]), float(result.grouping.weakest_score[label]),
             member_list)
            for label, (key, member_list) in enumerate(zip(keys, memberships))]


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
    mine: dict[str, list[FollowUpView]] = {}
    for follow_up in store.follow_ups(project.id):
        if follow_up.agency_id == identity.agency_id or follow_up.requested_by == identity.name:
            mine.setdefault(follow_up.group_key, []).append(_follow_up_view(follow_up, names))
    for record_id, key in rows:
        members = composition.get(key, {})
        others = sorted(names[a] for a in members if a != identity.agency_id)
        yield RecordHit(record_id, key, others, _coarse(confidence.get(key, 0.0)),
                        members.get(identity.agency_id, 0) > 1, mine.get(key, []))


def _coarse(confidence: float) -> float:
    """Round a confidence down to a tenth for agencies: it derives from similarity scores,
    and precise values would let an agency probe other agencies' records by fingerprinting."""
    return math.floor(confidence * 10 + 1e-9) / 10


def _follow_up_view(row, names: dict[int, str]) -> FollowUpView:
    # notes stored before they were bounded are cut on the way out, so no reply outgrows
    # the message limit
    return FollowUpView(f"f-{row.id}", row.group_key, row.requested_by, names[row.agency_id],
                        row.status, row.note[:MAX_NOTE_CHARS], row.answer_note[:MAX_NOTE_CHARS])


# -- bounds on what one caller may make the server keep and send (docs/security.md) ------------

#: Agencies, stages and further entity types one project may have: the CreateProject reply
#: (one token per agency) must fit in one message, and is checked before anything is stored.
MAX_AGENCIES = 200
MAX_STAGES = 64
MAX_ENTITY_TYPES = 8
#: Role names are not agency names.
RESERVED_NAMES = frozenset({"coordinator", "operator", "agency"})
#: The longest follow-up, answer or review note, in characters.
MAX_NOTE_CHARS = 2000
#: Follow-ups one group may hold for one asked agency (open and answered).
MAX_FOLLOW_UPS_PER_GROUP_AGENCY = 5
#: Follow-ups a report shows per group (the most recent): with up to 200 agencies a group
#: could hold 1,000, more than one reply may carry.
MAX_FOLLOW_UPS_IN_REPORT = 100
_SHORTENED_CHARS = 80


def bounded_note(note: str, what: str) -> str:
    """A free-text note as stored, or InvalidRequestError when it is too long."""
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidRequestError(f"{what} is {len(note)} characters; at most {MAX_NOTE_CHARS} "
                                  "are kept. Shorten it: the details go through the follow-up's "
                                  "legal channel, not through this server.")
    return note


def shortened(text: str) -> str:
    """A caller-supplied name as an error message may quote it."""
    return text if len(text) <= _SHORTENED_CHARS else text[:_SHORTENED_CHARS] + "…"


def open_follow_up(store: Store, identity: Identity, project_name: str, group: str,
                   note: str) -> list[FollowUpView]:
    """Ask every other agency of a group of the latest run for a follow-up.

    An agency may ask only about groups in which it has a record itself.
    """
    note = bounded_note(note, "The follow-up note")
    project = _project_for(store, identity, project_name)
    run = _latest_run(store, project)
    members = store.group_agencies(run.id, [group]).get(group)
    if not members or (identity.role == "agency" and identity.agency_id not in members):
        # the same answer for an absent group and one without the caller: no existence oracle
        raise NotFoundError(f"No group {shortened(group)!r} with a record of yours in the latest "
                            f"run of {shortened(project_name)!r}; 'linkage results' lists your "
                            "hits and their groups.")
    asked = sorted(a for a in members if a != identity.agency_id)
    if not asked:
        raise InvalidRequestError("No other agency holds a record of that group.")
    requested_by = identity.name if identity.role == "agency" else "coordinator"
    names = {a.id: a.name for a in store.agencies(project.id)}
    return [_follow_up_view(row, names)
            for row in store.add_follow_ups(project.id, group, requested_by, asked, note,
                                            most_per_agency=MAX_FOLLOW_UPS_PER_GROUP_AGENCY)]


def answer_follow_up(store: Store, identity: Identity, project_name: str, follow_up: str,
                     decision: str, note: str) -> FollowUpView:
    """The asked agency approves or declines; the answer is recorded."""
    project = _project_for(store, identity, project_name)
    if decision not in ("approved", "declined"):
        raise InvalidRequestError("A follow-up answer is 'approved' or 'declined'.")
    if not re.fullmatch(r"f-\d{1,18}", follow_up):
        raise InvalidRequestError("A follow-up id looks like 'f-12'.")
    note = bounded_note(note, "The answer note")
    row = store.answer_follow_up(project.id, int(follow_up[2:]), identity.agency_id, decision,
                                 note)
    return _follow_up_view(row, {a.id: a.name for a in store.agencies(project.id)})


def project_report(store: Store, project_name: str) -> ProjectReport:
    """The coordinator's report of the latest run (no record ids)."""
    project = store.project(project_name)
    run = _latest_run(store, project)
    agencies = store.agencies(project.id)
    names = {a.id: a.name for a in agencies}
    reviews = store.reviews(project.id)
    groups = store.groups(run.id)
    flagged = needs_review(np.array([g.confidence for g in groups], np.float64),
                           bool(run.summary.get("estimated_precision")),
                           tuple(run.summary.get("review_band", REVIEW_PROBABILITIES)))
    follow_ups: dict[str, list[FollowUpView]] = {}
    for follow_up in store.follow_ups(project.id):
        follow_ups.setdefault(follow_up.group_key, []).append(_follow_up_view(follow_up, names))
    hits = {a.id: 0 for a in agencies}
    duplicates = {a.id: 0 for a in agencies}
    pair_counts: dict[tuple[str, str], int] = {}
    group_reports = []
    for group, uncertain in zip(groups, flagged.tolist()):
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
            group.size, group.confidence, decision, note,
            follow_ups.get(group.key, [])[-MAX_FOLLOW_UPS_IN_REPORT:],
            needs_review=uncertain and not decision))
    records_in_run = run.summary.get("records_by_agency", {})
    batches_in_run = run.summary.get("batches_by_agency", {})
    agency_reports = [
        AgencyReport(a.name, int(records_in_run.get(str(a.id), 0)),
                     int(batches_in_run.get(str(a.id), 0)), hits[a.id], duplicates[a.id])
        for a in agencies
    ]
    summary = dict(run.summary)
    summary["run"] = run.number
    network = _network(store, project, run, names, groups)
    return ProjectReport(
        project=project.name,
        summary=summary,
        agencies=agency_reports,
        agency_pairs=[(a, b, n) for (a, b), n in sorted(pair_counts.items())],
        groups=group_reports,
        histogram=[(low, high, count) for low, high, count in summary.get("histogram", [])],
        estimated_precision=float(summary.get("estimated_precision", 0.0)),
        estimated_recall=float(summary.get("estimated_recall", 0.0)),
        network=network,
    )


def _network(store: Store, project: ProjectRow, run, names: dict[int, str], groups) -> dict:
    """The entity-case network of a run, the broker ranking, and what changed since the last."""
    def network_of(run_id: int):
        memberships = [Membership(group, names[agency], entity_type, case_ref, stage)
                       for group, agency, entity_type, case_ref, stage
                       in store.member_attributes(run_id)]
        return build_network(memberships, stage_order=project.stages)

    summary = network_of(run.id)
    previous = store.previous_run(project.id, run.number)
    changes = None
    if previous is not None:
        before = {g.key for g in store.groups(previous.id)}
        now = {g.key for g in groups}
        cross_now = {g.key for g in groups if len(g.members_by_agency) > 1}
        earlier_rank = {b.group: b.rank for b in network_of(previous.id).brokers}
        top_now = [b for b in summary.brokers if len(b.agencies) > 1][:_TOP_BROKERS_TRACKED]
        changes = {"previous_run": previous.number,
                   "new_groups": sorted(now - before),
                   "new_cross_agency_groups": sorted((now - before) & cross_now),
                   "gone_groups": len(before - now),
                   "top_brokers": [{"group": b.group, "rank": b.rank,
                                    "previous_rank": earlier_rank.get(b.group)}
                                   for b in top_now]}
    return {
        "stages": project.stages,
        "nodes": summary.nodes,
        "edges": summary.edges,
        "brokers": [broker.__dict__ for broker in summary.brokers],
        "clusters": summary.clusters,
        "stage_coverage": summary.stage_coverage,
        "changes": changes,
        "quality_curve": run.summary.get("quality_curve", []),
    }


def purge_project(store: Store, project_name: str) -> tuple[int, int]:
    """Delete a linked project's CLKs and pairs; returns (CLKs deleted, pair blocks deleted).

    Raises:
        RunStateError: the project has no finished run yet (purging first would lose the
            data before anything was learnt from it) or a run is in progress.
    """
    project = store.project(project_name)
    if store.latest_run(project.id) is None:
        raise RunStateError(f"Project {project_name!r} has never been linked, so there is "
                            "nothing to purge after: run it with 'linkage run', or, if it is "
                            "misconfigured, delete it with 'linkage project delete --project "
                            f"{project_name}'.")
    if store.run_in_progress(project.id):
        raise RunStateError(f"A linkage run of {project_name!r} is in progress; purge after it "
                            "ends.")
    return store.purge_project(project.id)


def review_group(store: Store, project_name: str, group: str, decision: str, note: str) -> str:
    """Record a decision on a group of the latest run."""
    if decision not in ("accepted", "rejected"):
        raise InvalidRequestError("A review decision is 'accepted' or 'rejected'.")
    note = bounded_note(note, "The review note")
    project = store.project(project_name)
    run = _latest_run(store, project)
    if not any(g.key == group for g in store.groups(run.id)):
        raise NotFoundError(f"No group {group!r} in the latest run of {project_name!r}; "
                            "'linkage report' lists the groups.")
    store.set_review(project.id, group, decision, note)
    return decision


# -- project maintenance by the coordinator, and follow-up lists (issue 15) ----------------------

def _check_stages(stages: list[str]) -> None:
    for stage in stages:
        if not _ATTRIBUTE.match(stage):
            raise InvalidRequestError(f"Stage {stage!r} is not allowed: use lowercase letters, "
                                      "digits and '_' (at most 32).")
    if len(set(stages)) != len(stages):
        raise InvalidRequestError("A stage is listed twice.")


def set_project_stages(store: Store, project_name: str, stages: list[str]) -> list[str]:
    """Replace a project's stage vocabulary; returns it.

    Raises:
        InvalidRequestError: a malformed or repeated stage, or a stage that stored records
            carry is left out (their network positions would lose their meaning).
        RunStateError: the project was purged.
    """
    _check_stages(stages)
    project = store.project(project_name)
    _check_not_purged(project)
    dropped = sorted(store.stages_in_use(project.id) - set(stages))
    if dropped:
        raise InvalidRequestError(f"Stored records of {project_name!r} carry the stage(s) "
                                  f"{', '.join(dropped)}; keep them in the vocabulary.")
    store.set_stages(project.id, stages)
    return stages


def delete_project(store: Store, project_name: str) -> tuple[int, int]:
    """Delete a project that no run has touched; returns (batches, records) deleted.

    Raises:
        RunStateError: a run of the project started once (its results and reports are
            evidence: purge it instead, which keeps them).
    """
    project = store.project(project_name)
    if store.has_run(project.id):
        raise RunStateError(f"Project {project_name!r} has been linked: its reports, results "
                            "and reviews stay as a record, so it cannot be deleted. Delete its "
                            f"CLKs with 'linkage project purge --project {project_name}'.")
    return store.delete_project(project.id)


def reissue_agency_token(store: Store, project_name: str, agency_name: str) -> str:
    """A new token for one agency; the old one stops working. Returns the new token."""
    project = store.project(project_name)
    agency = next((a for a in store.agencies(project.id) if a.name == agency_name), None)
    if agency is None:
        names = ", ".join(a.name for a in store.agencies(project.id))
        raise NotFoundError(f"Project {project_name!r} has no agency {agency_name!r} "
                            f"(agencies: {names}).")
    token = new_token()
    store.set_agency_token(agency.id, hash_token(token))
    return token


def list_follow_ups(store: Store, identity: Identity, project_name: str) -> list[FollowUpView]:
    """Follow-ups of a project: all of them for a coordinator; for an agency those it asked
    for and those addressed to it."""
    project = _project_for(store, identity, project_name)
    names = {a.id: a.name for a in store.agencies(project.id)}
    return [_follow_up_view(row, names) for row in store.follow_ups(project.id)
            if identity.role != "agency" or row.agency_id == identity.agency_id
            or row.requested_by == identity.name]



# -- withdrawing a batch ----------------------------------------------------------------------


@dataclass(frozen=True)
class Withdrawal:
    """What withdrawing a batch removed."""

    batch_id: str
    records: int
    unfinished_upload: bool


def withdraw_batch(store: Store, identity: Identity, project_name: str,
                   batch_id: str) -> Withdrawal:
    """Remove a batch no run has used yet: an agency its own, the coordinator any.

    Raises:
        InvalidRequestError: a malformed batch id. NotFoundError: no such batch (or not the
            agency's). RunStateError: a run has used it (the message says what to do instead).
    """
    project = _project_for(store, identity, project_name)
    if not re.fullmatch(r"b-[0-9a-f]{16}", batch_id):
        raise InvalidRequestError("A batch id looks like 'b-' and 16 hex digits, as "
                                  "'linkage submit' printed it.")
    agency_id = identity.agency_id if identity.role == "agency" else None
    records, unfinished = store.withdraw_batch(project.id, batch_id, agency_id)
    return Withdrawal(batch_id, records, unfinished)
