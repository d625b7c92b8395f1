"""How one agency's export maps onto the shared linkage schema.

An agency's CSV has its own column names and formats. The mapping (TOML) says
which column feeds each schema feature, how dates are written and which
country national phone numbers belong to::

    record_id = "ID"

    [fields.date_of_birth]
    column = "GEBDAT"
    date_format = "%d/%m/%Y"

    [fields.phone]
    column = "TEL"
    phone_region = "BE"

    [fields.address]
    absent = true            # this agency does not hold addresses: encoded as missing

``date_format`` may also be a list, tried in order (``["%d/%m/%Y", "%Y-%m-%d"]``).
A feature the mapping leaves out is read from the column of the same name when
the export has one.

An optional ``[attributes]`` table adds what is not identifying: the entity
type (a constant ``entity_type = "person"`` or ``entity_type_column``), the
column with the agency's case reference (pseudonymised at the agency before
encoding) and the column with the crime-script stage.

Without a mapping, columns are matched by feature name and dates must be ISO.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import phonenumbers

from linkage.errors import MappingError
from linkage.encoding.normalise import date_format_problem
from linkage.encoding.schema import LinkageSchema

__all__ = ["AgencyMapping", "AttributeMapping", "FieldMapping", "mapping_by_name", "parse_mapping"]

DEFAULT_RECORD_ID = "record_id"
_FIELD_KEYS = {"absent", "column", "date_format", "phone_region"}
_ATTRIBUTE_KEYS = {"entity_type", "entity_type_column", "case_column", "stage_column"}


@dataclass(frozen=True)
class FieldMapping:
    """Source column and input format of one schema feature; ``column`` is ``None`` for a
    feature the agency does not hold (``absent = true``), encoded as missing.
    ``date_format`` is one format or several tried in order."""

    column: str | None
    date_format: str | tuple[str, ...] | None = None
    phone_region: str | None = None


@dataclass(frozen=True)
class AttributeMapping:
    """Where the non-identifying attributes come from (each optional)."""

    entity_type: str | None = None
    entity_type_column: str | None = None
    case_column: str | None = None
    stage_column: str | None = None

    def columns(self) -> list[str]:
        return [c for c in (self.entity_type_column, self.case_column, self.stage_column) if c]


@dataclass(frozen=True)
class AgencyMapping:
    """The record id column, one ``FieldMapping`` per schema feature, optional attributes."""

    record_id: str = DEFAULT_RECORD_ID
    fields: dict[str, FieldMapping] = field(default_factory=dict)
    attributes: AttributeMapping | None = None

    def with_same_name_columns(self, schema: LinkageSchema,
                               columns: Sequence[str]) -> "AgencyMapping":
        """This mapping with each feature it leaves out read from the export's column of the
        same name, where there is one (so a mapping names only what differs)."""
        available = set(columns)
        fallback = {f.identifier: FieldMapping(f.identifier) for f in schema.features
                    if not f.ignored and f.identifier not in self.fields
                    and f.identifier in available}
        return replace(self, fields={**self.fields, **fallback}) if fallback else self

    def check(self, schema: LinkageSchema, columns: Sequence[str]) -> None:
        """Check the mapping against the schema and the export's header, listing every problem.

        Raises:
            MappingError: a feature is unmapped, a mapped column is missing, or
                the mapping names a feature the schema does not have.
        """
        problems = []
        available = set(columns)
        if self.record_id not in available:
            problems.append(f"record id column {self.record_id!r} is not in the file "
                            f"(columns: {', '.join(columns)}); set record_id in the mapping")
        known = set(schema.feature_names)
        for name in self.fields:
            if name not in known:
                problems.append(f"fields.{name}: the schema has no feature {name!r} "
                                f"(features: {', '.join(schema.feature_names)})")
        for feature in schema.features:
            if feature.ignored:
                continue
            mapped = self.fields.get(feature.identifier)
            if mapped is None:
                problems.append(f"feature {feature.identifier!r} has no column: add "
                                f"[fields.{feature.identifier}] column = \"...\" to the "
                                "mapping, or, if your agency does not hold it, "
                                f"[fields.{feature.identifier}] absent = true")
            elif mapped.column is not None and mapped.column not in available:
                problems.append(f"fields.{feature.identifier}: column {mapped.column!r} is not "
                                f"in the file (columns: {', '.join(columns)})")
        for column in self.attributes.columns() if self.attributes else ():
            if column not in available:
                problems.append(f"attributes: column {column!r} is not in the file "
                                f"(columns: {', '.join(columns)})")
        if problems:
            raise MappingError("The mapping does not fit this export:", problems)


def parse_mapping(text: str) -> AgencyMapping:
    """Parse a mapping TOML document.

    Raises:
        MappingError: invalid TOML or an unexpected shape, with every problem listed.
    """
    try:
        document = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise MappingError(f"The mapping is not valid TOML: {exc}") from None
    problems = []
    record_id = document.get("record_id", DEFAULT_RECORD_ID)
    if not isinstance(record_id, str) or not record_id:
        problems.append("record_id must be a column name (a non-empty string)")
    for key in document:
        if key not in {"record_id", "fields", "attributes"}:
            problems.append(f"unknown key {key!r}: expected record_id, [fields.<feature>] "
                            "tables and an optional [attributes] table")
    attributes = None
    raw_attributes = document.get("attributes")
    if raw_attributes is not None:
        if not isinstance(raw_attributes, dict):
            problems.append("attributes must be a table: [attributes]")
        else:
            for key, value in raw_attributes.items():
                if key not in _ATTRIBUTE_KEYS:
                    problems.append(f"attributes: unknown key {key!r} "
                                    f"(allowed: {', '.join(sorted(_ATTRIBUTE_KEYS))})")
                elif not isinstance(value, str) or not value:
                    problems.append(f"attributes.{key} must be a non-empty string")
            attributes = AttributeMapping(**{k: v for k, v in raw_attributes.items()
                                             if k in _ATTRIBUTE_KEYS and isinstance(v, str)})
    fields: dict[str, FieldMapping] = {}
    raw_fields = document.get("fields", {})
    if not isinstance(raw_fields, dict):
        problems.append("fields must be tables: [fields.<feature>]")
        raw_fields = {}
    for name, spec in raw_fields.items():
        if not isinstance(spec, dict):
            problems.append(f"fields.{name} must be a table with column = \"...\"")
            continue
        for key in spec:
            if key not in _FIELD_KEYS:
                problems.append(f"fields.{name}: unknown key {key!r} "
                                f"(allowed: {', '.join(sorted(_FIELD_KEYS))})")
        absent = spec.get("absent", False)
        if not isinstance(absent, bool):
            problems.append(f"fields.{name}: absent must be true or false")
            continue
        column = spec.get("column")
        if absent:
            if column is not None:
                problems.append(f"fields.{name}: give either column or absent = true, not both")
            fields[name] = FieldMapping(None)
            continue
        if not isinstance(column, str) or not column:
            problems.append(f"fields.{name}: column must be a non-empty string (or write "
                            "absent = true for a feature your agency does not hold)")
            continue
        date_format = _date_formats(name, spec.get("date_format"), problems)
        region = spec.get("phone_region")
        if region is not None:
            if not isinstance(region, str):
                problems.append(f"fields.{name}: phone_region must be a string")
                region = None
            elif region.upper() not in phonenumbers.SUPPORTED_REGIONS:
                problems.append(f"fields.{name}: phone_region {region!r} is not a region "
                                "phone numbers know; use a two-letter ISO 3166 code such as "
                                "BE, NL, SE or DE")
        fields[name] = FieldMapping(column, date_format, region)
    if problems:
        raise MappingError("The mapping is invalid:", problems)
    return AgencyMapping(record_id=record_id, fields=fields, attributes=attributes)


def _date_formats(name: str, value, problems: list[str]) -> str | tuple[str, ...] | None:
    """A date_format value checked: one format or a non-empty list of formats."""
    if value is None:
        return None
    formats = [value] if isinstance(value, str) else value
    if not isinstance(formats, list) or not formats or not all(
            isinstance(f, str) for f in formats):
        problems.append(f"fields.{name}: date_format must be a format string or a list of "
                        "them, e.g. \"%d/%m/%Y\" or [\"%d/%m/%Y\", \"%Y-%m-%d\"]")
        return None
    for text in formats:
        problem = date_format_problem(text)
        if problem:
            problems.append(f"fields.{name}: date_format {text!r} {problem}")
    return value if isinstance(value, str) else tuple(formats)


def mapping_by_name(schema: LinkageSchema) -> AgencyMapping:
    """The default mapping: each feature read from the column of the same name."""
    return AgencyMapping(fields={f.identifier: FieldMapping(f.identifier)
                                 for f in schema.features if not f.ignored})
