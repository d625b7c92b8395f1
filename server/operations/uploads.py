"""Receiving batches: header checks, resumable chunked uploads, commits, withdrawals."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from linkage.batch import (
    MAX_RECORD_ID_BYTES,
    RecordAttributes,
    record_id_problem,
    update_content_hash,
)
from linkage.errors import (
    BatchFormatError,
    ClkError,
    DuplicateRecordError,
    EmptyBatchError,
    InvalidRequestError,
    LinkageError,
    SchemaError,
    SecretError,
    ShareModeError,
)

from .. import failpoints
from ..auth import Identity
from ..storage import ProjectRow, Store
from .common import _check_not_purged, _owned, _project_for

__all__ = ["BatchHeaderInfo", "MAX_RECORDS_PER_BATCH", "SubmitOutcome", "UploadProgress",
           "Withdrawal", "check_attributes", "check_header", "submit_batch", "upload_status",
           "withdraw_batch"]


_BATCH_ID = re.compile(r"^b-[0-9a-f]{16}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


_CASE_REF = re.compile(r"^c-[0-9a-f]{12}$")


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
    if store.share_role(project.id) is not None:
        raise ShareModeError(f"Project {project.name!r} is in two-server mode: its servers take "
                             "shares of CLKs, never CLKs. Submit with 'linkage submit "
                             "--server-1 HOST:PORT', which splits the CLKs at your agency.")
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
            check_attributes(attributes, record_ids, stages, entity_type, project.name,
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


def check_attributes(attributes, record_ids: list[str], stages: set[str], entity_type: str,
                     project_name: str = "", first_record: int = 0) -> None:
    """One chunk's (entity type, case ref, stage) attributes, for CLK and share uploads alike.

    Raises:
        BatchFormatError: a count that differs from the records', another entity type than
            the batch's, a raw (not pseudonymised) case reference or a stage outside the
            project's vocabulary.
    """
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
