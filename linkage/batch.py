"""Encoded batch files: what an agency hands to ``linkage submit``.

A batch file holds record ids and CLKs only, plus the schema fingerprint and
the key check value so a mismatch is caught instead of silently finding no
matches. Layout (all integers little-endian)::

    8 bytes   magic b"LKBATCH\\x01"
    4 bytes   header length H
    H bytes   header, UTF-8 JSON: {"format": "linkage-batch", "version": 1,
              "schema_fingerprint": hex, "key_check": hex, "clk_bits": int,
              "record_count": N}
    N times   2-byte length + UTF-8 record id
    N times   clk_bits / 8 bytes of CLK (clkhash's byte order)
    [version 2, when the header says "attributes": true]
    N times   entity type, case reference, stage: each 2-byte length + UTF-8
    32 bytes  SHA-256 of everything above (detects truncation and corruption)

Version 3 adds ``"field_layout": {"fields": [...], "words": [...]}`` to the
header when the CLKs are per-field segments (a schema's ``fieldSegments``):
field names and each segment's length in 64-bit words, in order. A batch
without segments is still written as version 2; versions 1 and 2 are read.

Attributes are not identifying: an entity type ("person", "company", ...), a
case reference already pseudonymised at the agency, and a crime-script stage.

clkhash's own JSON output (``{"clks": ["<base64>", ...]}``) is read too; its
record ids are the row numbers 0..N-1 and it carries no fingerprint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
import unicodedata
from dataclasses import dataclass

import numpy as np

from linkage.clks import clks_from_base64, clks_from_buffer, clks_to_bytes
from linkage.errors import BatchFormatError, ClkError, DuplicateRecordError, EmptyBatchError
from linkage.encoding.field_segments import FieldLayout, layout_for

__all__ = [
    "EncodedBatch",
    "RecordAttributes",
    "content_hash",
    "read_batch",
    "record_id_problem",
    "upload_batch_id",
    "write_batch",
]

MAGIC = b"LKBATCH\x01"
FORMAT_NAME = "linkage-batch"
FORMAT_VERSION = 2
#: The version of batches whose CLKs are per-field segments.
SEGMENTS_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
MAX_RECORD_ID_BYTES = 255
#: Unicode categories a record id may not contain: controls (tab, newline, ...), format
#: characters (bidirectional overrides, zero-width joiners), surrogates, line separators.
REFUSED_ID_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def record_id_problem(record_id: str) -> str | None:
    """Why a record id is unusable (a control or invisible character), or None.

    Such ids print misleadingly in reports and once let crafted ids collide; the message names
    the character's code point and position, never the id itself.
    """
    for position, character in enumerate(record_id):
        if unicodedata.category(character) in REFUSED_ID_CATEGORIES:
            return (f"contains the control or invisible character U+{ord(character):04X} at "
                    f"position {position + 1}; record ids must be printable text")
    return None
_DIGEST_BYTES = 32


@dataclass(frozen=True)
class RecordAttributes:
    """What a record says besides its CLK: nothing that identifies anyone."""

    entity_type: str = ""
    case_ref: str = ""
    stage: str = ""

    def fields(self) -> tuple[str, str, str]:
        return (self.entity_type, self.case_ref, self.stage)


@dataclass(frozen=True)
class EncodedBatch:
    """Record ids and their CLKs (a packed matrix), with what they were encoded under.

    ``schema_fingerprint`` and ``key_check`` are ``None`` for clkhash JSON input.
    """

    record_ids: list[str]
    clks: np.ndarray
    clk_bits: int
    schema_fingerprint: str | None
    key_check: str | None
    attributes: list[RecordAttributes] | None = None
    field_layout: FieldLayout | None = None

    def __len__(self) -> int:
        return len(self.record_ids)

    @property
    def entity_type(self) -> str:
        """The batch's entity type ("" when it carries no attributes)."""
        return self.attributes[0].entity_type if self.attributes else ""

    def validate(self) -> None:
        """Check ids are unique, non-empty and short, and the batch is not empty.

        Raises:
            EmptyBatchError, DuplicateRecordError, BatchFormatError.
        """
        if not self.record_ids:
            raise EmptyBatchError("The batch holds no records.")
        if self.attributes is not None and len(self.attributes) != len(self.record_ids):
            raise BatchFormatError("The batch has attributes for some records only.")
        if self.attributes and len({a.entity_type for a in self.attributes}) > 1:
            raise BatchFormatError("A batch holds records of one entity type; encode each type "
                                   "with its own schema into its own batch.")
        if self.field_layout is not None and self.field_layout.bits != self.clk_bits:
            raise BatchFormatError(f"The batch's field segments hold {self.field_layout.bits} "
                                   f"bits but its CLKs {self.clk_bits}.")
        if self.clks.shape[0] != len(self.record_ids):
            raise BatchFormatError(f"The batch has {len(self.record_ids)} record ids but "
                                   f"{self.clks.shape[0]} CLKs.")
        if _plainly_valid(self.record_ids):
            return
        seen: set[str] = set()
        for position, record_id in enumerate(self.record_ids):
            if not record_id:
                raise BatchFormatError(f"Record #{position} has an empty record id.")
            if len(record_id.encode("utf-8")) > MAX_RECORD_ID_BYTES:
                raise BatchFormatError(f"Record #{position}: record ids are limited to "
                                       f"{MAX_RECORD_ID_BYTES} bytes.")
            if (problem := record_id_problem(record_id)) is not None:
                raise BatchFormatError(f"Record #{position}: its record id {problem}.")
            if record_id in seen:
                raise DuplicateRecordError(f"Record id at position {position} appears more than "
                                           "once in the batch; record ids must be unique.")
            seen.add(record_id)


#: The refused characters (``REFUSED_ID_CATEGORIES``) that ASCII has: its control characters.
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _plainly_valid(record_ids: list[str]) -> bool:
    """Whether every id is non-empty, short, unique and printable ASCII, checked at C speed.

    The usual case, and a per-character Unicode check costs about half a second on two
    files of 60,000 ids; when this says no, ``validate`` looks at each id for its message.
    """
    joined = " ".join(record_ids)
    return (joined.isascii() and _ASCII_CONTROL.search(joined) is None
            and min(map(len, record_ids)) > 0
            and max(map(len, record_ids)) <= MAX_RECORD_ID_BYTES
            and len(set(record_ids)) == len(record_ids))


def content_hash(record_ids: list[str], clks: list[bytes],
                 attributes: list[RecordAttributes] | None = None) -> str:
    """SHA-256 (hex) of a batch's content: per record, 2-byte id length, id bytes, CLK bytes.

    Client and server compute it the same way, so an upload is committed only
    if exactly what the agency encoded arrived.
    """
    digest = hashlib.sha256()
    update_content_hash(digest, record_ids, clks, attributes)
    return digest.hexdigest()


def upload_batch_id(project: str, digest: str) -> str:
    """The client-chosen id of a batch's upload: the same batch to the same project, the same id."""
    scoped = hashlib.sha256(f"{project}\n{digest}".encode("utf-8")).hexdigest()
    return "b-" + scoped[:16]


def update_content_hash(digest, record_ids: list[str], clks: list[bytes],
                        attributes: list[RecordAttributes] | None = None) -> None:
    """Feed more records into a running content hash (for chunked uploads).

    Records without attributes hash as before; with attributes, each record's
    three attribute strings follow its CLK, length-prefixed like its id.
    """
    for index, (record_id, clk) in enumerate(zip(record_ids, clks)):
        _hash_text(digest, record_id)
        digest.update(clk)
        if attributes is not None:
            for text in attributes[index].fields():
                _hash_text(digest, text)


def _hash_text(digest, text: str) -> None:
    encoded = text.encode("utf-8")
    digest.update(len(encoded).to_bytes(2, "little"))
    digest.update(encoded)


def write_batch(batch: EncodedBatch) -> bytes:
    """Serialise a batch to the documented binary layout."""
    batch.validate()
    fields = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "schema_fingerprint": batch.schema_fingerprint,
        "key_check": batch.key_check,
        "clk_bits": batch.clk_bits,
        "record_count": len(batch),
        "attributes": batch.attributes is not None,
    }
    if batch.field_layout is not None:
        fields["version"] = SEGMENTS_VERSION
        fields["field_layout"] = {"fields": list(batch.field_layout.fields),
                                  "words": list(batch.field_layout.word_counts)}
    header = json.dumps(fields, sort_keys=True).encode("utf-8")
    parts = [MAGIC, struct.pack("<I", len(header)), header]
    for record_id in batch.record_ids:
        encoded = record_id.encode("utf-8")
        parts.append(struct.pack("<H", len(encoded)))
        parts.append(encoded)
    parts.extend(clks_to_bytes(batch.clks))
    for attributes in batch.attributes or ():
        for text in attributes.fields():
            encoded = text.encode("utf-8")
            parts.append(struct.pack("<H", len(encoded)))
            parts.append(encoded)
    body = b"".join(parts)
    return body + hashlib.sha256(body).digest()


def read_batch(data: bytes) -> EncodedBatch:
    """Read a batch file or clkhash JSON output, whichever ``data`` is.

    Raises:
        BatchFormatError: unknown format, truncated or corrupted file.
        ClkError: a CLK of the wrong length or bad base64.
        EmptyBatchError, DuplicateRecordError: as ``EncodedBatch.validate``.
    """
    if data.startswith(MAGIC):
        batch = _read_binary(data)
    elif data.lstrip()[:1] == b"{":
        batch = _read_clkhash_json(data)
    else:
        raise BatchFormatError("Not a batch file: expected a file written by 'linkage encode' "
                               "or clkhash JSON output ({\"clks\": [...]}).")
    batch.validate()
    return batch


def _read_binary(data: bytes) -> EncodedBatch:
    if len(data) < len(MAGIC) + 4 + _DIGEST_BYTES:
        raise BatchFormatError("The batch file is truncated (shorter than its header).")
    body, digest = data[:-_DIGEST_BYTES], data[-_DIGEST_BYTES:]
    if hashlib.sha256(body).digest() != digest:
        raise BatchFormatError("The batch file is truncated or corrupted (checksum mismatch); "
                               "copy it again or re-run 'linkage encode'.")
    (header_length,) = struct.unpack_from("<I", body, len(MAGIC))
    offset = len(MAGIC) + 4
    try:
        header = json.loads(body[offset:offset + header_length])
        clk_bits = int(header["clk_bits"])
        count = int(header["record_count"])
        fingerprint, key_check = header["schema_fingerprint"], header["key_check"]
    except (ValueError, KeyError, TypeError):
        raise BatchFormatError("The batch file header is unreadable.") from None
    if header.get("format") != FORMAT_NAME or header.get("version") not in READABLE_VERSIONS:
        raise BatchFormatError("Unsupported batch format version; upgrade linkage.")
    field_layout = _field_layout(header.get("field_layout"))
    offset += header_length
    record_ids = []
    try:
        for _ in range(count):
            (length,) = struct.unpack_from("<H", body, offset)
            offset += 2
            record_ids.append(body[offset:offset + length].decode("utf-8"))
            offset += length
    except (struct.error, UnicodeDecodeError):
        raise BatchFormatError("The batch file's record ids are unreadable.") from None
    clk_bytes = clk_bits // 8
    with_attributes = bool(header.get("attributes", False))
    end = offset + count * clk_bytes
    if clk_bits <= 0 or clk_bits % 64 or len(body) < end or (
            not with_attributes and len(body) != end):
        raise BatchFormatError("The batch file's CLK section does not match its header.")
    clks = clks_from_buffer(body, offset, count, clk_bits)
    attributes = None
    if with_attributes:
        attributes, offset = [], end
        try:
            for _ in range(count):
                texts = []
                for _field in range(3):
                    (length,) = struct.unpack_from("<H", body, offset)
                    texts.append(body[offset + 2:offset + 2 + length].decode("utf-8"))
                    offset += 2 + length
                attributes.append(RecordAttributes(*texts))
        except (struct.error, UnicodeDecodeError):
            raise BatchFormatError("The batch file's attributes are unreadable.") from None
        if offset != len(body):
            raise BatchFormatError("The batch file's attribute section does not match its header.")
    return EncodedBatch(record_ids, clks, clk_bits, fingerprint, key_check, attributes,
                        field_layout)


def _field_layout(raw) -> FieldLayout | None:
    """The header's per-field segment layout, or None; unreadable -> BatchFormatError."""
    if raw is None:
        return None
    try:
        fields = [str(f) for f in raw["fields"]]
        words = [int(w) for w in raw["words"]]
    except (KeyError, TypeError, ValueError):
        raise BatchFormatError("The batch file's field layout is unreadable.") from None
    if not fields or len(fields) != len(words) or min(words) < 1 or len(set(fields)) < len(fields):
        raise BatchFormatError("The batch file's field layout is unreadable.")
    return layout_for(fields, [64 * w for w in words])


def _read_clkhash_json(data: bytes) -> EncodedBatch:
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BatchFormatError(f"The clkhash JSON file is not valid JSON: {exc}") from None
    encoded = document.get("clks") if isinstance(document, dict) else None
    if not isinstance(encoded, list):
        raise BatchFormatError("The clkhash JSON file has no \"clks\" list.")
    if not encoded:
        raise EmptyBatchError("The clkhash JSON file holds no CLKs.")
    if not isinstance(encoded[0], str):
        raise ClkError("CLK #0 is not a base64 string.")
    try:
        clk_bits = len(base64.b64decode(encoded[0], validate=True)) * 8
    except (binascii.Error, ValueError):
        raise ClkError("CLK #0 is not valid base64.") from None
    clks = clks_from_base64(encoded, clk_bits)
    return EncodedBatch([str(i) for i in range(len(encoded))], clks, clk_bits, None, None)
