"""Normalising and encoding an agency's rows, and linking the result with the engine."""

from __future__ import annotations

import numpy as np
import pytest

from linkage.encoding.encoder import encode_values, key_check_value, prepare_records
from linkage.matching.engine import link_records
from linkage.errors import InputDataError, NormalisationError
from linkage.encoding.mapping import AgencyMapping, FieldMapping, mapping_by_name
from linkage.encoding.schema import default_schema_text, load_schema

SCHEMA = load_schema(default_schema_text())
SECRET = bytes(range(32))

BELGIAN = AgencyMapping(record_id="ID", fields={
    "given_name": FieldMapping("VOORNAAM"), "family_name": FieldMapping("NAAM"),
    "date_of_birth": FieldMapping("GEBDAT", date_format="%d/%m/%Y"),
    "address": FieldMapping("ADRES"), "city": FieldMapping("GEMEENTE"),
    "phone": FieldMapping("TEL", phone_region="BE"),
})


def _row(record_id, given="Jan", family="Van den Berg", born="04/03/1980",
         address="Kerkstraat 12", city="Antwerpen", phone="0470 12 34 56"):
    return {"ID": record_id, "VOORNAAM": given, "NAAM": family, "GEBDAT": born, "ADRES": address,
            "GEMEENTE": city, "TEL": phone}


def test_rows_are_normalised_in_schema_order():
    prepared = prepare_records([_row("1")], SCHEMA, BELGIAN)
    assert prepared.record_ids == ["1"]
    values = dict(zip(SCHEMA.feature_names, prepared.values[0]))
    assert values["date_of_birth"] == "1980-03-04"
    assert values["phone"] == "+32470123456"
    assert values["family_name"] == "vandenberg"
    assert prepared.problems == []


def test_unparseable_values_become_missing_or_errors_without_the_value():
    rows = [_row("1", born="31/02/1980"), _row("2", phone="12")]
    prepared = prepare_records(rows, SCHEMA, BELGIAN)
    assert [(p.row, p.column) for p in prepared.problems] == [(2, "GEBDAT"), (3, "TEL")]
    assert prepared.values[0][SCHEMA.feature_names.index("date_of_birth")] == ""
    assert all("31/02/1980" not in str(p) for p in prepared.problems)
    with pytest.raises(NormalisationError) as error:
        prepare_records(rows, SCHEMA, BELGIAN, strict=True)
    assert "row 2, column GEBDAT" in str(error.value) and "31/02" not in str(error.value)


def test_record_ids_must_be_present_and_unique():
    with pytest.raises(InputDataError, match="unique"):
        prepare_records([_row("1"), _row("1")], SCHEMA, BELGIAN)
    with pytest.raises(InputDataError, match="empty"):
        prepare_records([_row("")], SCHEMA, BELGIAN)
    with pytest.raises(InputDataError, match="no records"):
        prepare_records([], SCHEMA, BELGIAN)


def test_spelling_variants_encode_to_similar_clks_and_strangers_do_not():
    rows = [
        _row("a"),
        _row("b", family="VANDENBERG", given="JAN", born="04/03/1980", phone="+32 470 12 34 56"),
        _row("c", family="Vandenberg", given="Jan", address="Kerkstr. 12"),
        _row("d", given="Sofia", family="Lindqvist", born="17/11/1975", address="Storgatan 5",
             city="Malmö", phone="+46 70 123 45 67"),
    ]
    prepared = prepare_records(rows, SCHEMA, BELGIAN)
    clks = encode_values(prepared.values, SCHEMA, SECRET)
    assert clks.shape == (4, SCHEMA.clk_bits // 64)
    result = link_records(clks, np.arange(4), threshold=0.8)
    members = result.grouping.members()
    assert len(members) == 1 and sorted(members[0].tolist()) == [0, 1, 2]


def test_another_secret_gives_unrelated_clks():
    prepared = prepare_records([_row("a")], SCHEMA, BELGIAN)
    first = encode_values(prepared.values, SCHEMA, SECRET)
    second = encode_values(prepared.values, SCHEMA, bytes(32))
    both = np.concatenate([first, second])
    # Balanced CLKs of unrelated encodings score about 0.5 (Dice = 1 - Hamming / length).
    assert link_records(both, np.arange(2), threshold=0.7).grouping.group_count == 0
    assert key_check_value(SECRET) != key_check_value(bytes(32))


def test_default_mapping_uses_feature_names():
    mapping = mapping_by_name(SCHEMA)
    assert mapping.record_id == "record_id"
    assert set(mapping.fields) == set(SCHEMA.feature_names)
    row = {"record_id": "x", "given_name": "Åsa", "family_name": "Öberg",
           "date_of_birth": "1990-01-02", "address": "", "city": "", "phone": ""}
    prepared = prepare_records([row], SCHEMA, mapping)
    assert prepared.values[0][2] == "1990-01-02" and prepared.problems == []
