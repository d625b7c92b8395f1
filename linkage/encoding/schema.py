"""The linkage schema: clkhash v3 plus the normalisation each feature gets.

Every agency must encode with the same schema, so the schema is identified by
a fingerprint (SHA-256 of its canonical JSON) that travels with each batch.
The optional top-level ``normalisation`` object names the normaliser of each
feature (``name``, ``date``, ``phone``, ``address``, ``text``, ``none``); it is
part of the shared configuration, not of an agency's mapping, so that every
agency normalises the same way. clkhash ignores unknown top-level keys.

The optional top-level ``hardening`` object (see ``linkage.encoding.hardening`` and
docs/hardening.md) says which hardening every agency applies after clkhash::

    "hardening": {"salting": {"feature": "date_of_birth", "prefixLength": 4},
                  "diffusion": {"t": 5, "outputBits": 1024},
                  "blip": {"epsilon": 8},
                  "balancing": true}

Being part of the document, it is covered by the fingerprint. It can change
the CLK length: ``clk_bits`` is the length of the CLKs that travel (diffusion's
``outputBits``, doubled by balancing), ``clkhash_bits`` the length clkhash makes.

The optional top-level ``fieldSegments`` object makes the CLK a concatenation
of one Bloom filter per field (``linkage.encoding.field_segments``), so that the server
can score each field separately (``linkage.matching.fellegi_sunter``)::

    "fieldSegments": {"segments": [{"feature": "given_name", "bits": 256},
                                   {"feature": "family_name", "bits": 256},
                                   {"feature": "date_of_birth", "bits": 128}]}

Each segment's bits are a multiple of 64; the CLK is their sum (``clk_bits``).
Given and family name share one key, so they need equal bits. Only BLIP may
harden segments (it flips bits in place); salting, diffusion and balancing mix
or move bits across fields and are refused with it. A schema without the
section encodes one record-level CLK, as before.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import jsonschema
from clkhash import schema as clkhash_schema

from linkage.errors import SchemaError
from linkage.encoding.field_segments import SHARED_KEY_FIELDS, FieldLayout, layout_for
from linkage.encoding.hardening import HardeningSpec, parse_hardening
from linkage.encoding.normalise import NORMALISER_KINDS, infer_kind

__all__ = ["FeatureSpec", "LinkageSchema", "default_schema_text", "load_schema"]


@dataclass(frozen=True)
class FeatureSpec:
    """One schema feature: its identifier, normaliser and the maximum length clkhash accepts."""

    identifier: str
    kind: str
    max_length: int | None = None
    ignored: bool = False


@dataclass(frozen=True)
class LinkageSchema:
    """A validated linkage schema.

    ``clk_bits`` is the length of the CLKs agencies submit and the server
    expects (after hardening); ``clkhash_bits`` the length clkhash produces.
    """

    text: str
    clk_bits: int
    features: tuple[FeatureSpec, ...]
    fingerprint: str
    clkhash: Any = field(repr=False, compare=False)
    hardening: HardeningSpec = field(default_factory=HardeningSpec)
    clkhash_bits: int = 0
    segments: FieldLayout | None = None

    def __post_init__(self) -> None:
        if not self.clkhash_bits:
            object.__setattr__(self, "clkhash_bits", self.clk_bits)

    @property
    def feature_names(self) -> list[str]:
        return [f.identifier for f in self.features]


def default_schema_text() -> str:
    """The shipped person schema (names, date of birth, address, city, phone)."""
    return resources.files("linkage.encoding").joinpath("schemas/person.json").read_text("utf-8")


def schema_fingerprint(document: dict) -> str:
    """SHA-256 of the canonical JSON form: key order and whitespace do not matter."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_schema(text: str | bytes) -> LinkageSchema:
    """Parse and validate a linkage schema, collecting every problem before raising.

    Raises:
        SchemaError: listing each problem (JSON syntax, clkhash v3 violations,
            unsupported settings such as ``doubleHash``, unknown normalisers,
            invalid ``hardening`` options).
    """
    if len(text) > MAX_SCHEMA_BYTES:
        raise SchemaError(f"The linkage schema is {len(text)} bytes; at most {MAX_SCHEMA_BYTES} "
                          "are accepted.")
    depth = _nesting_depth(text)
    if depth > MAX_SCHEMA_DEPTH:
        raise SchemaError(f"The linkage schema nests {depth} levels deep; at most "
                          f"{MAX_SCHEMA_DEPTH} are accepted.")
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"The linkage schema is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise SchemaError("The linkage schema must be a JSON object with 'version', "
                          "'clkConfig' and 'features'.")
    problems = _bound_problems(document) or _collect_problems(document)
    if problems:
        raise SchemaError("The linkage schema is invalid:", problems)
    try:
        parsed = clkhash_schema.from_json_dict(document)
    except Exception as exc:  # noqa: BLE001 - clkhash raises several unrelated types
        raise SchemaError("clkhash rejected the linkage schema:", [str(exc)]) from None
    kinds = document.get("normalisation", {})
    features = []
    for raw in document["features"]:
        identifier = raw["identifier"]
        max_length = raw.get("format", {}).get("maxLength")
        features.append(FeatureSpec(identifier, kinds.get(identifier, infer_kind(identifier)),
                                    max_length, bool(raw.get("ignored", False))))
    clkhash_bits = int(document["clkConfig"]["l"])
    hardening, _ = _hardening(document)
    segments, _ = _segments(document)
    return LinkageSchema(
        text=text if isinstance(text, str) else text.decode("utf-8"),
        clk_bits=segments.bits if segments else hardening.output_bits(clkhash_bits),
        features=tuple(features),
        fingerprint=schema_fingerprint(document),
        clkhash=parsed,
        hardening=hardening,
        clkhash_bits=clkhash_bits,
        segments=segments,
    )


#: Bounds on one segment's length, in bits.
MIN_SEGMENT_BITS, MAX_SEGMENT_BITS = 64, 4096


def _segments(document: dict) -> tuple[FieldLayout | None, list[str]]:
    """The ``fieldSegments`` section as a layout (None when absent), and its problems."""
    if "fieldSegments" not in document:
        return None, []
    section = document["fieldSegments"]
    where = "fieldSegments"
    if not isinstance(section, dict) or not isinstance(section.get("segments"), list) \
            or not section["segments"]:
        return None, [f"{where}: must be an object with a non-empty 'segments' list, e.g. "
                      '{"segments": [{"feature": "given_name", "bits": 256}]}']
    problems = [f"{where}/{key}: unknown key; only 'segments' is read"
                for key in section if key != "segments"]
    features = {f.get("identifier"): bool(f.get("ignored", False))
                for f in document.get("features", []) if isinstance(f, dict)}
    names, bits = [], []
    for index, segment in enumerate(section["segments"]):
        here = f"{where}/segments/{index}"
        if not isinstance(segment, dict) or set(segment) - {"feature", "bits"}:
            problems.append(f"{here}: must be an object with 'feature' and 'bits' only")
            continue
        name, size = segment.get("feature"), segment.get("bits")
        if name not in features:
            problems.append(f"{here}: no feature named {name!r}; choose one of "
                            f"{', '.join(str(f) for f in features)}")
        elif features[name]:
            problems.append(f"{here}: feature {name!r} is ignored, so it has no segment")
        elif name in names:
            problems.append(f"{here}: feature {name!r} has a segment already")
        if isinstance(size, bool) or not isinstance(size, int) or size % 64 \
                or not MIN_SEGMENT_BITS <= size <= MAX_SEGMENT_BITS:
            problems.append(f"{here}: 'bits' must be a multiple of 64 from {MIN_SEGMENT_BITS} "
                            f"to {MAX_SEGMENT_BITS}, got {size!r}")
        names.append(name)
        bits.append(size)
    shared = [bits[names.index(n)] for n in SHARED_KEY_FIELDS if n in names]
    if len(shared) == 2 and shared[0] != shared[1]:
        problems.append(f"{where}: {' and '.join(SHARED_KEY_FIELDS)} share one key so that "
                        f"swapped names are recognised; give them equal bits, got {shared}")
    hardening = document.get("hardening")
    if isinstance(hardening, dict):
        for option in ("salting", "diffusion", "balancing"):
            if hardening.get(option):
                problems.append(f"{where}: hardening option {option!r} mixes or moves bits "
                                "across fields, which per-field segments cannot survive; only "
                                "'blip' may be combined with fieldSegments")
    if problems:
        return None, problems
    return layout_for(names, bits), []


def _hardening(document: dict) -> tuple[HardeningSpec, list[str]]:
    """The parsed ``hardening`` section (all off when absent) and its problems."""
    if "hardening" not in document:
        return HardeningSpec(), []
    features = [(f.get("identifier"), bool(f.get("ignored", False)))
                for f in document["features"] if isinstance(f, dict)]
    return parse_hardening(document["hardening"], features, int(document["clkConfig"]["l"]))


def _collect_problems(document: dict) -> list[str]:
    problems: list[str] = []
    version = document.get("version")
    if version != 3:
        problems.append(f"'version' must be 3 (clkhash linkage schema v3), got {version!r}")
        return problems
    master = json.loads(
        resources.files("clkhash").joinpath("schemas/v3.json").read_text("utf-8")
    )
    validator = jsonschema.Draft7Validator(master)
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        problems.append(f"{where}: {error.message}")
    if problems:
        return problems
    for field_name in ("salt", "info"):
        value = document["clkConfig"]["kdf"].get(field_name)
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                problems.append(f"clkConfig/kdf/{field_name}: not valid base64")
    bits = document["clkConfig"]["l"]
    if bits % 64:
        problems.append(f"clkConfig/l: the CLK length must be a multiple of 64 bits, got {bits}")
    identifiers = [f.get("identifier") for f in document["features"]]
    seen: set[str] = set()
    for index, feature in enumerate(document["features"]):
        name = feature.get("identifier")
        if name in seen:
            problems.append(f"features/{index}: identifier {name!r} appears twice")
        seen.add(name)
        hash_type = feature.get("hashing", {}).get("hash", {}).get("type", "blakeHash")
        if hash_type != "blakeHash":
            problems.append(f"features/{index} ({name}): hash type {hash_type!r} is not allowed; "
                            "use blakeHash (doubleHash is vulnerable to known attacks)")
    problems.extend(_hardening(document)[1])
    problems.extend(_segments(document)[1])
    normalisation = document.get("normalisation", {})
    if not isinstance(normalisation, dict):
        problems.append("normalisation: must be an object mapping feature -> normaliser")
        return problems
    for name, kind in normalisation.items():
        if name not in identifiers:
            problems.append(f"normalisation/{name}: no feature of that name")
        if kind not in NORMALISER_KINDS:
            problems.append(f"normalisation/{name}: unknown normaliser {kind!r}; "
                            f"choose one of {', '.join(NORMALISER_KINDS)}")
    if not document["features"]:
        problems.append("features: at least one feature is needed")
    return problems


# -- bounds: a schema comes from a coordinator's file and reaches every agency's encoder --------

#: The largest schema text, in bytes (the shipped ones are a few KiB).
MAX_SCHEMA_BYTES = 256 * 1024
#: The deepest nesting of objects and arrays (the shipped ones nest 5 deep).
MAX_SCHEMA_DEPTH = 16
#: The most features one schema may have (each costs encoding time at every agency).
MAX_FEATURES = 64


def _nesting_depth(text: str | bytes) -> int:
    """How deep ``[``/``{`` nest outside strings, found without parsing (the parser recurses)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    depth = deepest = 0
    in_string = escaped = False
    for character in text:
        if in_string:
            if escaped:
                escaped = False
            elif character == "\\":
                escaped = True
            elif character == '"':
                in_string = False
        elif character == '"':
            in_string = True
        elif character in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif character in "]}":
            depth -= 1
    return deepest


def _bound_problems(document: dict) -> list[str]:
    """Bounds on features and patterns, checked before clkhash sees the schema."""
    features = document.get("features")
    if not isinstance(features, list):
        return []
    problems = []
    if len(features) > MAX_FEATURES:
        problems.append(f"features: {len(features)} features; at most {MAX_FEATURES} are "
                        "accepted")
    for index, feature in enumerate(features):
        if isinstance(feature, dict) and isinstance(feature.get("format"), dict) \
                and "pattern" in feature["format"]:
            problems.append(f"features/{index}: format 'pattern' is not accepted: a regular "
                            "expression can take exponential time on crafted values (ReDoS) and "
                            "its errors would show raw values; check values before the export "
                            "instead")
    return problems
