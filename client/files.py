"""Agency-side file handling: secrets, schemas, mappings, CSV exports, batch files.

Everything here runs at the agency. Values from the CSV are never printed or
logged; problems are reported by row and column only.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from linkage.batch import EncodedBatch
from linkage.encoding import (
    PreparedRecords,
    encode_values,
    generate_secret,
    key_check_value,
    parse_secret,
    prepare_records,
)
from linkage.errors import InputDataError, SchemaError, SecretError
from linkage.hardening import apply_hardening
from linkage.mapping import AgencyMapping, mapping_by_name, parse_mapping
from linkage.schema import LinkageSchema, load_schema

__all__ = [
    "EncodeOutcome",
    "encode_export",
    "label_clkhash_batch",
    "read_csv_export",
    "read_secret",
    "write_private",
    "write_secret",
]

SECRET_ENV = "LINKAGE_SECRET"


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (mode 0600), replacing it atomically."""
    temporary = path.with_name(path.name + ".partial")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_secret(path: Path, *, overwrite: bool = False) -> None:
    """Create a new 256-bit secret file (hex, mode 0600)."""
    if path.exists() and not overwrite:
        raise SecretError(f"{path} exists already; refusing to overwrite a secret "
                          "(use --force if you really mean to replace it).")
    write_private(path, generate_secret().hex().encode("ascii") + b"\n")


def read_secret(path: Path | None) -> bytes:
    """Read the secret from a file, or from $LINKAGE_SECRET (hex) when no file is given.

    Raises:
        SecretError: neither is set, or the content is not a valid secret.
    """
    if path is not None:
        try:
            return parse_secret(path.read_bytes())
        except OSError as error:
            raise SecretError(f"Cannot read the secret file {path}: {error.strerror}") from None
    if os.environ.get(SECRET_ENV):
        return parse_secret(os.environ[SECRET_ENV].encode("ascii", "replace"))
    raise SecretError("No secret: pass --secret FILE (made by 'linkage keygen') or set "
                      f"{SECRET_ENV}.")


def read_csv_export(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    """Parse a CSV export (UTF-8, optional BOM): (header, rows).

    Raises:
        InputDataError: not UTF-8, no header, or a row with more fields than the header.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputDataError(f"The export is not UTF-8 (byte {error.start} is invalid); "
                             "save it as UTF-8 CSV.") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey="\x00extra")
    try:
        header = reader.fieldnames
    except csv.Error as error:
        raise InputDataError(f"The export's header is not valid CSV: {error}.") from None
    if not header:
        raise InputDataError("The export is empty: a header line is needed.")
    if len(set(header)) != len(header):
        raise InputDataError("The export's header names a column twice.")
    rows = []
    try:
        for index, row in enumerate(reader):
            if "\x00extra" in row:
                raise InputDataError(f"row {index + 2} has more fields than the header "
                                     f"({len(header)}); check quoting and separators.")
            rows.append({key: (value or "") for key, value in row.items()})
    except csv.Error as error:
        raise InputDataError(f"The export is not valid CSV near line {reader.line_num}: "
                             f"{error}.") from None
    return list(header), rows


@dataclass(frozen=True)
class EncodeOutcome:
    """The batch and what went wrong on the way (row/column only)."""

    batch: EncodedBatch
    prepared: PreparedRecords


def encode_export(
    schema_text: str,
    secret: bytes,
    csv_data: bytes,
    mapping_text: str | None,
    *,
    strict: bool = False,
    case_key: bytes | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> EncodeOutcome:
    """Normalise and encode a CSV export into a batch."""
    schema: LinkageSchema = load_schema(schema_text)
    header, rows = read_csv_export(csv_data)
    mapping: AgencyMapping = (parse_mapping(mapping_text) if mapping_text is not None
                              else mapping_by_name(schema))
    mapping.check(schema, header)
    prepared = prepare_records(rows, schema, mapping, strict=strict, case_key=case_key)
    if on_total:
        on_total(len(prepared.record_ids))
    clks = encode_values(prepared.values, schema, secret, on_progress=on_progress)
    batch = EncodedBatch(prepared.record_ids, clks, schema.clk_bits, schema.fingerprint,
                         key_check_value(secret), prepared.attributes)
    return EncodeOutcome(batch, prepared)


def label_clkhash_batch(batch: EncodedBatch, schema_text: str, secret: bytes) -> EncodedBatch:
    """Attach the fingerprint and key check to clkhash JSON input, which carries neither, and
    apply the schema's hardening, which clkhash does not know.

    Raises:
        SchemaError: the schema salts records (clkhash cannot have used the salted keys),
            or the CLKs are not as long as the schema's clkhash part makes them.
    """
    schema = load_schema(schema_text)
    if schema.hardening.salting is not None:
        raise SchemaError("The schema salts records by an attribute, which clkhash's own "
                          "encoder cannot do; encode with 'linkage encode' instead.")
    if batch.clk_bits != schema.clkhash_bits:
        raise SchemaError(f"The clkhash CLKs are {batch.clk_bits} bits but the schema makes "
                          f"{schema.clkhash_bits}-bit CLKs: they were encoded with another "
                          "schema.")
    clks = apply_hardening(batch.clks, schema.hardening, secret)
    return EncodedBatch(batch.record_ids, clks, schema.clk_bits, schema.fingerprint,
                        key_check_value(secret))

