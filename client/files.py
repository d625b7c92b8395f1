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
from linkage.encoding.encoder import (
    PreparedRecords,
    encode_values,
    generate_secret,
    key_check_value,
    parse_secret,
    prepare_records,
)
from linkage.errors import InputDataError, SecretError
from linkage.encoding.mapping import AgencyMapping, mapping_by_name, parse_mapping
from linkage.encoding.normalise import normalise_text
from linkage.encoding.schema import LinkageSchema, load_schema

from .private_files import write_private

__all__ = [
    "EncodeOutcome",
    "check_stages",
    "detect_delimiter",
    "encode_export",
    "read_csv_export",
    "read_secret",
    "write_private",
    "write_secret",
]

SECRET_ENV = "LINKAGE_SECRET"


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


DELIMITERS = (",", ";", "\t", "|")


def detect_delimiter(text: str) -> str:
    """The field separator of a CSV text, read from its header line: the most frequent of
    comma, semicolon, tab and '|' outside quotes (comma when none occurs). European
    spreadsheet exports separate with semicolons because the comma is their decimal mark."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for character in text:
        if character == '"':
            quoted = not quoted
        elif character in "\r\n" and not quoted:
            break
        elif not quoted and character in counts:
            counts[character] += 1
    best = max(DELIMITERS, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def _decode(data: bytes, encoding: str) -> str:
    """The export's text; a decoding problem names the byte, where it is and the fix."""
    try:
        return data.decode("utf-8-sig" if encoding.lower().replace("_", "-") in
                           ("utf-8", "utf8") else encoding)
    except LookupError:
        raise InputDataError(f"Unknown text encoding {encoding!r}; use e.g. utf-8, cp1252 or "
                             "latin-1.") from None
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        byte = data[error.start]
        hint = (" It looks like a Latin-1 / Windows-1252 export (common from older "
                "spreadsheets and databases): pass --encoding cp1252 (or latin-1), or save "
                "the file as UTF-8." if byte >= 0x80 else " Save the file as UTF-8.")
        raise InputDataError(f"The export is not valid {encoding}: byte 0x{byte:02X} at "
                             f"offset {error.start} (line {line}) cannot be decoded.{hint}"
                             ) from None


def read_csv_export(data: bytes, *, delimiter: str | None = None,
                    encoding: str = "utf-8") -> tuple[list[str], list[dict[str, str]]]:
    """Parse a CSV export: (header, rows).

    Args:
        data: the file's bytes (UTF-8 with optional BOM unless ``encoding`` says otherwise).
        delimiter: the field separator; by default detected from the header line.
        encoding: the text encoding, e.g. "cp1252" for older Windows exports.
    Raises:
        InputDataError: undecodable bytes (named by value and line), no header, or a row
            with more fields than the header.
    """
    text = _decode(data, encoding)
    separator = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter) if delimiter else \
        detect_delimiter(text)
    if len(separator) != 1 or separator in "\r\n\"":
        raise InputDataError(f"--delimiter {delimiter!r}: give the one separator character, "
                             "e.g. ';' or 'tab'.")
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey="\x00extra",
                            delimiter=separator)
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
                shown = {",": "comma", ";": "semicolon", "\t": "tab", "|": "'|'"}.get(
                    separator, repr(separator))
                raise InputDataError(f"row {index + 2} has more fields than the header "
                                     f"({len(header)}, separated by {shown}); check quoting, "
                                     "or pass --delimiter with the file's separator.")
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
    delimiter: str | None = None,
    encoding: str = "utf-8",
    stages: list[str] | None = None,
    rng=None,
) -> EncodeOutcome:
    """Normalise and encode a CSV export into a batch.

    ``delimiter`` and ``encoding`` are passed to ``read_csv_export``. With ``stages`` (the
    project's vocabulary) every record's stage is checked here, so a wrong value is named
    by row and record id before anything reaches the server. ``rng`` (a numpy Generator)
    seeds BLIP's coin flips for reproducible demos and tests only.

    Raises:
        InputDataError: an unreadable export, or a stage outside ``stages``.
        MappingError: the mapping does not fit the schema or the export.
    """
    schema: LinkageSchema = load_schema(schema_text)
    header, rows = read_csv_export(csv_data, delimiter=delimiter, encoding=encoding)
    mapping: AgencyMapping = (parse_mapping(mapping_text) if mapping_text is not None
                              else mapping_by_name(schema))
    mapping = mapping.with_same_name_columns(schema, header)
    mapping.check(schema, header)
    prepared = prepare_records(rows, schema, mapping, strict=strict, case_key=case_key)
    if stages is not None:
        check_stages(prepared, stages, mapping)
    if on_total:
        on_total(len(prepared.record_ids))
    clks = encode_values(prepared.values, schema, secret, on_progress=on_progress, rng=rng)
    batch = EncodedBatch(prepared.record_ids, clks, schema.clk_bits, schema.fingerprint,
                         key_check_value(secret), prepared.attributes, schema.segments)
    return EncodeOutcome(batch, prepared)


def check_stages(prepared: PreparedRecords, stages: list[str], mapping: AgencyMapping) -> None:
    """Every record's stage is empty or in ``stages``; else name the rows and record ids.

    Raises:
        InputDataError: some records carry a stage outside the vocabulary.
    """
    if prepared.attributes is None:
        return
    allowed = {normalise_text(s).replace(" ", "_") for s in stages}
    wrong = [(row, record_id, attributes.stage) for row, (record_id, attributes)
             in enumerate(zip(prepared.record_ids, prepared.attributes), start=2)
             if attributes.stage and attributes.stage not in allowed]
    if not wrong:
        return
    column = mapping.attributes.stage_column if mapping.attributes else "stage"
    listed = "; ".join(f"row {row} (record {record_id}): {stage!r}"
                       for row, record_id, stage in wrong[:10])
    more = f"; and {len(wrong) - 10} more" if len(wrong) > 10 else ""
    raise InputDataError(
        f"{len(wrong)} records have a stage (column {column!r}) outside the project's "
        f"vocabulary ({', '.join(sorted(allowed)) or 'none'}): {listed}{more}. Correct the "
        "values, or ask the coordinator to add the stages ('linkage project stages --add').")
