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

An optional ``[attributes]`` table adds what is not identifying: the entity
type (a constant ``entity_type = "person"`` or ``entity_type_column``), the
column with the agency's case reference (pseudonymised at the agency before
encoding) and the column with the crime-script stage.

Without a mapping, columns are matched by feature name and dates must be ISO.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import MappingError
from .schema import LinkageSchema

__all__ = ["AgencyMapping", "AttributeMapping", "FieldMapping", "mapping_by_name", "parse_mapping"]

DEFAULT_RECORD_ID = "record_id"
_FIELD_KEYS = {"column", "date_format", "phone_region"}
_ATTRIBUTE_KEYS = {"entity_type", "entity_type_column", "case_column", "stage_column"}


@dataclass(frozen=True)
class FieldMapping:
    """Source column and input format of one schema feature."""

    column: str
    date_format: str | None = None
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
                                f"[fields.{feature.identifier}] column = \"...\" to the mapping")
            elif mapped.column not in available:
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
        column = spec.get("column")
        if not isinstance(column, str) or not column:
            problems.append(f"fields.{name}: column must be a non-empty string")
            continue
        values = {k: spec.get(k) for k in ("date_format", "phone_region")}
        for key, value in values.items():
            if value is not None and not isinstance(value, str):
                problems.append(f"fields.{name}: {key} must be a string")
        fields[name] = FieldMapping(column, values["date_format"], values["phone_region"])
    if problems:
        raise MappingError("The mapping is invalid:", problems)
    return AgencyMapping(record_id=record_id, fields=fields, attributes=attributes)


def mapping_by_name(schema: LinkageSchema) -> AgencyMapping:
    """The default mapping: each feature read from the column of the same name."""
    return AgencyMapping(fields={f.identifier: FieldMapping(f.identifier)
                                 for f in schema.features if not f.ignored})
