"""Turn an agency's rows into CLKs: normalise, encode with clkhash, then harden.

This runs only at the agency. The secret never leaves this module's callers;
what travels is the CLK matrix, the schema fingerprint and a key check value
(an HMAC of a fixed label under the secret) that lets the server tell two
secrets apart without learning either. The schema's hardening (salting,
diffusion, BLIP, balancing; ``linkage.encoding.hardening``) is applied here, so CLKs
leave the agency hardened.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from clkhash.clk import generate_clks

from linkage.clks import clks_from_bytes
from linkage.errors import InputDataError, NormalisationError, SecretError
from linkage.encoding.field_segments import encode_field_segments
from linkage.encoding.hardening import apply_hardening, salt_groups, salt_key, salt_value
from linkage.encoding.mapping import AgencyMapping
from linkage.batch import RecordAttributes, record_id_problem
from linkage.encoding.normalise import normalise_text, normalise_value
from linkage.encoding.schema import LinkageSchema

__all__ = [
    "MIN_SECRET_BYTES",
    "PreparedRecords",
    "ValueProblem",
    "encode_values",
    "generate_secret",
    "key_check_value",
    "parse_secret",
    "prepare_records",
    "pseudonymise_case",
]

MIN_SECRET_BYTES = 32
KEY_CHECK_LABEL = b"linkage.v1 key check value"
PARALLEL_MIN_RECORDS = 20_000


def generate_secret() -> bytes:
    """A fresh 256-bit secret from the OS's CSPRNG."""
    return secrets.token_bytes(MIN_SECRET_BYTES)


def parse_secret(content: bytes) -> bytes:
    """Decode a secret file's content (hex text, as ``linkage keygen`` writes it).

    Raises:
        SecretError: the content is not hex or shorter than 256 bits.
    """
    text = content.strip()
    try:
        secret = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise SecretError("The secret file must hold the hex text written by "
                          "'linkage keygen'.") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise SecretError(f"The secret is {len(secret) * 8} bits; at least "
                          f"{MIN_SECRET_BYTES * 8} are needed. Make one with 'linkage keygen'.")
    return secret


def key_check_value(secret: bytes) -> str:
    """HMAC-SHA256 of a fixed label under the secret, hex: equal secrets give equal values."""
    return hmac.new(secret, KEY_CHECK_LABEL, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ValueProblem:
    """A value that could not be normalised; the value itself is deliberately not kept."""

    row: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column}: {self.reason}"


@dataclass(frozen=True)
class PreparedRecords:
    """Normalised values ready for clkhash: one list of strings per record, in schema order.

    ``attributes`` holds each record's entity type, pseudonymised case reference
    and stage when the mapping declares them, else ``None``.
    """

    record_ids: list[str]
    values: list[list[str]]
    problems: list[ValueProblem]
    attributes: list[RecordAttributes] | None = None


def pseudonymise_case(case_key: bytes, case: str) -> str:
    """A case reference only its agency can resolve: keyed hash under the agency's own key."""
    text = normalise_text(case)
    if not text:
        return ""
    return "c-" + hmac.new(case_key, text.encode("utf-8"), hashlib.sha256).hexdigest()[:12]


def _attributes(row, mapping: AgencyMapping, case_key: bytes | None) -> RecordAttributes:
    spec = mapping.attributes
    entity = spec.entity_type or (row.get(spec.entity_type_column) or "" if
                                  spec.entity_type_column else "")
    case = row.get(spec.case_column) or "" if spec.case_column else ""
    stage = row.get(spec.stage_column) or "" if spec.stage_column else ""
    return RecordAttributes(normalise_text(entity).replace(" ", "_"),
                            pseudonymise_case(case_key, case) if case_key else "",
                            normalise_text(stage).replace(" ", "_"))


def prepare_records(
    rows: Iterable[Mapping[str, str]],
    schema: LinkageSchema,
    mapping: AgencyMapping,
    *,
    strict: bool = False,
    case_key: bytes | None = None,
) -> PreparedRecords:
    """Normalise every row the way every agency does.

    Rows are numbered from 2 in problems, as a spreadsheet shows a CSV with a
    header. A value that cannot be parsed is recorded in ``problems`` and
    encoded as missing, unless ``strict``.

    Raises:
        InputDataError: a record id is empty or repeated, or there are no rows.
        NormalisationError: with ``strict``, the first value that cannot be parsed.
        SecretError: the mapping names a case column but no ``case_key`` was given.
    """
    if mapping.attributes and mapping.attributes.case_column and not case_key:
        raise SecretError("The mapping names a case column: pass --case-key FILE (your agency's "
                          "own key from 'linkage keygen', never shared) so case references are "
                          "pseudonymised before they leave the agency.")
    attributes: list[RecordAttributes] | None = [] if mapping.attributes else None
    record_ids: list[str] = []
    values: list[list[str]] = []
    problems: list[ValueProblem] = []
    first_row_of: dict[str, int] = {}
    for index, row in enumerate(rows):
        line = index + 2
        record_id = (row.get(mapping.record_id) or "").strip()
        if not record_id:
            raise InputDataError(f"row {line}: the record id column {mapping.record_id!r} is empty")
        if (problem := record_id_problem(record_id)) is not None:
            raise InputDataError(f"row {line}: the record id {problem}")
        if record_id in first_row_of:
            raise InputDataError(f"row {line}: record id repeats the one on row "
                                 f"{first_row_of[record_id]}; record ids must be unique")
        first_row_of[record_id] = line
        record_values = []
        for feature in schema.features:
            spec = mapping.fields.get(feature.identifier)
            raw = row.get(spec.column) if spec else None
            try:
                value = normalise_value(
                    feature.kind, raw,
                    date_format=spec.date_format if spec else None,
                    phone_region=spec.phone_region if spec else None,
                )
                if feature.max_length is not None and len(value) > feature.max_length:
                    raise NormalisationError(
                        f"longer than the schema's maxLength of {feature.max_length}")
            except NormalisationError as exc:
                problem = ValueProblem(line, spec.column if spec else feature.identifier, str(exc))
                if strict:
                    raise NormalisationError(str(problem)) from None
                problems.append(problem)
                value = ""
            record_values.append(value)
        record_ids.append(record_id)
        values.append(record_values)
        if attributes is not None:
            attributes.append(_attributes(row, mapping, case_key))
    if not record_ids:
        raise InputDataError("the export has no records")
    return PreparedRecords(record_ids, values, problems, attributes)


def encode_values(
    values: list[list[str]],
    schema: LinkageSchema,
    secret: bytes,
    *,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Encode normalised values into a packed CLK matrix with clkhash, then harden them.

    With salting, records are grouped by salt value and each group is encoded
    under its own key derived from the secret; the rows keep their input order.
    Diffusion, BLIP and balancing follow as the schema says, so the result is
    ``schema.clk_bits`` wide. A schema with ``fieldSegments`` encodes each field
    into its own segment instead (``linkage.encoding.field_segments``), BLIP per segment.

    Args:
        values: normalised values, one list per record in schema order
            (``PreparedRecords.values``).
        workers: clkhash processes; by default one for inputs (or salt groups)
            under ``PARALLEL_MIN_RECORDS`` records, every core above.
        on_progress: called with n as n more records are done.
        rng: seeds BLIP's coin flips, for reproducible tests only; by default
            they come from the OS.
    Raises:
        SecretError: the secret is shorter than ``MIN_SECRET_BYTES``.
    """
    if len(secret) < MIN_SECRET_BYTES:
        raise SecretError("The secret is too short; make one with 'linkage keygen'.")
    spec = schema.hardening
    if schema.segments is not None:
        clks = encode_field_segments(values, schema.text, secret, schema.segments,
                                     blip_epsilon=spec.blip.epsilon if spec.blip else None,
                                     rng=rng)
        if on_progress:
            on_progress(len(values))
        return clks
    groups = {None: np.arange(len(values))}
    if spec.salting is not None:
        column = schema.feature_names.index(spec.salting.feature)
        salts = [salt_value(record[column], spec.salting.prefix_length) for record in values]
        groups = salt_groups(salts)
    callback = (lambda count, _stats: on_progress(count)) if on_progress else None
    raw: list[bytes] = [b""] * len(values)
    for salt, rows in groups.items():
        key = salt_key(secret, spec.salting.feature, salt) if spec.salting else secret
        group_workers = workers
        if group_workers is None:
            group_workers = 1 if len(rows) < PARALLEL_MIN_RECORDS else None
        bloom_filters = generate_clks([values[i] for i in rows], schema.clkhash, key,
                                      validate=True, callback=callback,
                                      max_workers=group_workers)
        for row, bloom_filter in zip(rows.tolist(), bloom_filters):
            raw[row] = bloom_filter.tobytes()
    clks = clks_from_bytes(raw, schema.clkhash_bits)
    if spec.transforms_bits:
        clks = apply_hardening(clks, spec, secret, rng=rng)
    return clks
