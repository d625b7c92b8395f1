"""The synthetic agency generator (``client.synthetic``) behind the demo, tests and benchmarks."""

from __future__ import annotations

import csv
import io
import re
import tomllib
from collections import Counter
from datetime import date, datetime
from math import comb

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage_service.client import synthetic
from linkage.encoding.mapping import parse_mapping
from linkage.encoding.normalise import normalise_phone
from linkage.encoding.schema import default_schema_text, load_schema
from linkage_service.client.synthetic import (
    DEFAULT_AGENCIES,
    ERROR_RATES,
    FEATURES,
    AgencyProfile,
    SyntheticConfig,
    SyntheticDataset,
    generate,
    true_pairs,
)

CONFIG = SyntheticConfig(seed=5, records_per_agency=300)
PROFILES = {p.name: p for p in DEFAULT_AGENCIES}
ID_STYLES = {
    "be-police": r"PV-2024-\d{6}",
    "be-customs": r"DOU-\d{5}",
    "port-antwerp": r"POA\d{7}",
    "se-police": r"SE-POL-\d{6}",
    "se-customs": r"TULL-\d{6}",
}


@pytest.fixture(scope="module")
def dataset() -> SyntheticDataset:
    return generate(CONFIG)


def _agencies_of(dataset: SyntheticDataset) -> dict[str, set[str]]:
    agencies: dict[str, set[str]] = {}
    for (agency, _), entity in dataset.truth.items():
        agencies.setdefault(entity, set()).add(agency)
    return agencies


def _entity_rows(dataset: SyntheticDataset):
    """(agency profile, row, person) for every row."""
    for name, export in dataset.exports.items():
        profile = export.profile
        for row in export.rows:
            entity = dataset.truth[(name, row[profile.id_column])]
            yield profile, row, dataset.people[entity]


# -- shape ----------------------------------------------------------------------------------

def test_public_names_are_sorted_and_exist():
    assert synthetic.__all__ == sorted(synthetic.__all__)
    assert all(hasattr(synthetic, name) for name in synthetic.__all__)
    assert synthetic.__doc__ and "broker" in synthetic.__doc__


def test_default_agencies_have_their_own_columns_and_formats():
    assert len(DEFAULT_AGENCIES) >= 5
    assert {p.country for p in DEFAULT_AGENCIES} == {"BE", "SE"}
    assert len({p.date_format for p in DEFAULT_AGENCIES}) >= 4
    assert len({p.columns["given_name"] for p in DEFAULT_AGENCIES}) >= 4
    police = PROFILES["be-police"]
    assert (police.id_column, [police.columns[f] for f in FEATURES], police.date_format,
            police.phone_region) == ("ID", ["VOORNAAM", "NAAM", "GEBDAT", "ADRES", "GEMEENTE",
                                            "TEL"], "%d/%m/%Y", "BE")
    assert 0.0 < police.duplicate_rate < 0.1
    assert PROFILES["se-police"].date_format == "%Y%m%d"
    assert PROFILES["se-customs"].columns["phone"] == "MOBIL"
    for profile in DEFAULT_AGENCIES:
        assert profile.phone_region == profile.country
        assert profile.locales and all(loc.endswith(profile.country) for loc in profile.locales)
        hash(profile)  # usable as a dict key despite the columns dict


def test_invalid_profiles_and_configs_are_refused():
    police = PROFILES["be-police"]
    with pytest.raises(ValueError, match="columns"):
        AgencyProfile(**{**police.__dict__, "columns": {"given_name": "X"}})
    with pytest.raises(ValueError, match="distinct"):
        AgencyProfile(**{**police.__dict__, "id_column": "TEL"})
    with pytest.raises(ValueError, match="country"):
        AgencyProfile(**{**police.__dict__, "country": "XX"})
    for bad in ({"shared_fraction": 1.5}, {"corruption": -0.1}, {"records_per_agency": -1},
                {"agencies": DEFAULT_AGENCIES[:1] * 2}, {"agencies": ()}):
        with pytest.raises(ValueError):
            SyntheticConfig(**bad)


# -- determinism, counts, ids, truth ----------------------------------------------------------

def test_same_seed_same_data_other_seed_other_data(dataset):
    again = generate(CONFIG)
    assert again.truth == dataset.truth
    assert again.people == dataset.people and again.brokers == dataset.brokers
    assert all(again.exports[n].rows == dataset.exports[n].rows for n in dataset.exports)
    other = generate(SyntheticConfig(seed=6, records_per_agency=300))
    for name in dataset.exports:
        assert other.exports[name].rows != dataset.exports[name].rows


def test_each_agency_has_its_records_plus_its_duplicates(dataset):
    """An agency writes ``records_per_agency`` people plus ``int(n * duplicate_rate)`` repeats."""
    for profile in DEFAULT_AGENCIES:
        export = dataset.exports[profile.name]
        duplicates = int(CONFIG.records_per_agency * profile.duplicate_rate)
        assert len(export.rows) == CONFIG.records_per_agency + duplicates
        entities = Counter(dataset.truth[(profile.name, row[profile.id_column])]
                           for row in export.rows)
        assert len(entities) == CONFIG.records_per_agency
        assert sorted(entities.values(), reverse=True)[:duplicates + 1] == (
            [2] * duplicates + [1])


def test_record_ids_are_unique_agency_styled_and_all_in_the_truth(dataset):
    for name, export in dataset.exports.items():
        ids = [row[export.profile.id_column] for row in export.rows]
        assert len(set(ids)) == len(ids)
        assert all(re.fullmatch(ID_STYLES[name], rid) for rid in ids), name
        assert all((name, rid) in dataset.truth for rid in ids)
    assert len(dataset.truth) == sum(len(e.rows) for e in dataset.exports.values())
    assert set(dataset.truth.values()) <= set(dataset.people)


def test_columns_and_rows(dataset):
    for export in dataset.exports.values():
        profile = export.profile
        assert export.columns == profile.export_columns
        assert export.columns[0] == profile.id_column
        assert [profile.columns[f] for f in FEATURES] == export.columns[1:1 + len(FEATURES)]
        assert all(list(row) == export.columns for row in export.rows)
        assert all(isinstance(v, str) for row in export.rows for v in row.values())
        assert all(row[profile.case_column] and row[profile.stage_column] in CONFIG.stages
                   for row in export.rows)


# -- overlap ------------------------------------------------------------------------------------

def test_brokers_duplicates_and_cross_border_people_exist(dataset):
    agencies_of = _agencies_of(dataset)
    sizes = Counter(len(a) for a in agencies_of.values())
    assert max(sizes) >= 3 and max(sizes) <= 5
    assert sizes[2] > sizes[3] + sizes[4] + sizes[5]  # most shared people are at two agencies
    assert sizes[1] > sizes[2]
    assert dataset.brokers == {e for e, a in agencies_of.items() if len(a) >= 3}
    countries = {p.name: p.country for p in DEFAULT_AGENCIES}
    assert any({countries[a] for a in agencies} == {"BE", "SE"}
               for agencies in agencies_of.values())
    pairs = true_pairs(dataset)
    assert any(len({agency for agency, _ in pair}) == 1 for pair in pairs)


def test_shared_fraction_is_met_for_every_agency(dataset):
    agencies_of = _agencies_of(dataset)
    for name, export in dataset.exports.items():
        entities = {dataset.truth[(name, row[export.profile.id_column])] for row in export.rows}
        shared = sum(1 for e in entities if len(agencies_of[e]) > 1) / len(entities)
        assert abs(shared - CONFIG.shared_fraction) <= 0.02, (name, shared)


def test_agencies_see_mostly_their_own_country(dataset):
    for name, export in dataset.exports.items():
        entities = {dataset.truth[(name, row[export.profile.id_column])] for row in export.rows}
        home = sum(dataset.people[e].country == export.profile.country for e in entities)
        assert 0.7 < home / len(entities) < 0.97, name
    locales = Counter(p.locale for p in dataset.people.values())
    assert {"nl_BE", "fr_BE", "sv_SE"} <= set(locales)
    assert set(locales) - {"nl_BE", "fr_BE", "sv_SE"}  # and some others


def test_true_pairs_counts_every_pair_once(dataset):
    pairs = true_pairs(dataset)
    per_entity = Counter(dataset.truth.values())
    assert len(pairs) == sum(comb(k, 2) for k in per_entity.values())
    assert all(len(pair) == 2 and dataset.truth[min(pair)] == dataset.truth[max(pair)]
               for pair in pairs)
    within = [p for p in pairs if len({agency for agency, _ in p}) == 1]
    cross = [p for p in pairs if len({agency for agency, _ in p}) == 2]
    assert len(within) == sum(int(CONFIG.records_per_agency * p.duplicate_rate)
                              for p in DEFAULT_AGENCIES)
    rows = sum(len(e.rows) for e in dataset.exports.values())
    assert 0.1 < len(cross) / rows < 0.5


# -- what the exports look like -----------------------------------------------------------------

def test_mapping_toml_has_the_exact_shape(dataset):
    export = dataset.exports["be-police"]
    assert export.mapping_toml(attributes=False) == (
        'record_id = "ID"\n\n'
        '[fields.given_name]\ncolumn = "VOORNAAM"\n\n'
        '[fields.family_name]\ncolumn = "NAAM"\n\n'
        '[fields.date_of_birth]\ncolumn = "GEBDAT"\ndate_format = "%d/%m/%Y"\n\n'
        '[fields.address]\ncolumn = "ADRES"\n\n'
        '[fields.city]\ncolumn = "GEMEENTE"\n\n'
        '[fields.phone]\ncolumn = "TEL"\nphone_region = "BE"\n')
    for export in dataset.exports.values():
        profile = export.profile
        plain = tomllib.loads(export.mapping_toml(attributes=False))
        expected_fields = {f: {"column": profile.columns[f]} for f in FEATURES}
        expected_fields["date_of_birth"]["date_format"] = profile.date_format
        expected_fields["phone"]["phone_region"] = profile.phone_region
        assert plain == {"record_id": profile.id_column, "fields": expected_fields}
        assert list(plain["fields"]) == list(FEATURES)
        full = tomllib.loads(export.mapping_toml())
        assert {k: v for k, v in full.items() if k != "attributes"} == plain
        assert full["attributes"] == {"entity_type": "person",
                                      "case_column": profile.case_column,
                                      "stage_column": profile.stage_column}
        mapped = [spec["column"] for spec in full["fields"].values()]
        mapped += [full["record_id"], full["attributes"]["case_column"],
                   full["attributes"]["stage_column"]]
        assert all(column in export.columns for column in mapped)


def test_mapping_fits_the_shared_schema(dataset):
    schema = load_schema(default_schema_text())
    assert tuple(schema.feature_names) == FEATURES
    for export in dataset.exports.values():
        parse_mapping(export.mapping_toml()).check(schema, export.columns)


def test_csv_parses_back_into_the_same_rows(dataset):
    for export in dataset.exports.values():
        text = export.to_csv()
        assert text.splitlines()[0] == ",".join(export.columns)
        assert list(csv.DictReader(io.StringIO(text))) == export.rows
        text.encode("utf-8")


def test_dates_follow_each_agencys_format_with_rare_errors(dataset):
    for export in dataset.exports.values():
        column = export.profile.columns["date_of_birth"]
        values = [row[column] for row in export.rows if row[column]]
        assert len(values) > 0.9 * len(export.rows)
        parsed, bad = [], 0
        for value in values:
            try:
                parsed.append(datetime.strptime(value, export.profile.date_format).date())
            except ValueError:
                bad += 1
        assert bad <= 0.02 * len(values), export.name
        in_range = sum(date(1950, 1, 1) <= d <= date(2005, 12, 31) for d in parsed)
        assert in_range >= 0.97 * len(parsed)


def test_phones_are_valid_national_at_home_and_international_abroad(dataset):
    styles = Counter()
    for profile, row, person in _entity_rows(dataset):
        phone = row[profile.columns["phone"]]
        if not phone:
            continue
        normalise_phone(phone, profile.phone_region)  # raises when not a valid number
        foreign = person.country != profile.country
        assert phone.startswith(("+", "00")) == foreign, (profile.name, phone)
        styles[(profile.name, foreign)] += 1
    assert all(styles[(p.name, False)] for p in DEFAULT_AGENCIES)
    assert all(styles[(p.name, True)] for p in DEFAULT_AGENCIES)
    police = [row["TEL"] for row in dataset.exports["be-police"].rows]
    assert any(re.fullmatch(r"04\d\d \d\d \d\d \d\d", p) for p in police)
    assert any(re.fullmatch(r"\+46 7\d \d{3} \d\d \d\d", p) for p in police)
    swedish = [row["TELEFON"] for row in dataset.exports["se-police"].rows]
    assert any(re.fullmatch(r"07\d-\d{3} \d\d \d\d", p) for p in swedish)
    assert any(re.fullmatch(r"\+32 4\d\d \d\d \d\d \d\d", p) for p in swedish)


def test_people_look_belgian_and_swedish(dataset):
    people = list(dataset.people.values())
    assert any(p.family_name.startswith(("Van ", "De ", "Vanden ")) for p in people
               if p.country == "BE")
    assert any(re.search(r"(straat|steenweg|laan|lei) \d", p.address) for p in people)
    assert any(re.search(r"^(Rue|Avenue|Chaussée)", p.address) for p in people)
    assert any(re.search(r"(gatan|vägen|gränd|stigen|torget) \d", p.address) for p in people)
    assert any(re.search(r"[åäö]", p.family_name + p.city) for p in people if p.country == "SE")
    assert all(re.search(r"\d", p.address) for p in people)
    assert all(date(1950, 1, 1) <= p.date_of_birth <= date(2005, 12, 31) for p in people)


# -- corruption ---------------------------------------------------------------------------------

def _clean(profile, person, field_name):
    if field_name == "date_of_birth":
        return person.date_of_birth.strftime(profile.date_format)
    if field_name == "phone":
        return None  # styled per agency; checked separately
    return getattr(person, field_name)


def test_without_corruption_every_record_is_exact():
    clean = generate(SyntheticConfig(seed=3, records_per_agency=150, corruption=0.0))
    for profile, row, person in _entity_rows(clean):
        for feature in FEATURES:
            expected = _clean(profile, person, feature)
            if expected is not None:
                assert row[profile.columns[feature]] == expected
        assert row[profile.columns["phone"]]
        assert re.sub(r"\D", "", row[profile.columns["phone"]]).endswith(person.phone_digits)


def test_corruption_scales_the_errors(dataset):
    def error_rate(data: SyntheticDataset) -> float:
        wrong = total = 0
        for profile, row, person in _entity_rows(data):
            for feature in ("given_name", "family_name", "date_of_birth", "address", "city"):
                total += 1
                wrong += row[profile.columns[feature]] != _clean(profile, person, feature)
        return wrong / total

    moderate = error_rate(dataset)
    heavy = error_rate(generate(SyntheticConfig(seed=5, records_per_agency=300,
                                                corruption=0.6)))
    assert 0.03 < moderate < 0.25
    assert heavy > 2 * moderate


def test_every_kind_of_error_happens_under_heavy_corruption():
    data = generate(SyntheticConfig(seed=9, records_per_agency=400, corruption=1.0))
    seen = Counter()
    for profile, row, person in _entity_rows(data):
        given, family = row[profile.columns["given_name"]], row[profile.columns["family_name"]]
        seen["swapped"] += (given, family) == (person.family_name, person.given_name)
        seen["upper"] += bool(given) and given == given.upper() != person.given_name
        seen["dropped second name"] += (" " in person.given_name
                                        and given == person.given_name.split(" ")[0])
        seen["joined particle"] += (" " in person.family_name
                                    and family.lower() == person.family_name.replace(" ", "")
                                    .lower())
        seen["missing"] += any(row[profile.columns[f]] == "" for f in FEATURES)
        seen["moved"] += (row[profile.columns["city"]] not in ("", person.city)
                          and row[profile.columns["address"]] not in ("", person.address))
        dob = row[profile.columns["date_of_birth"]]
        d = person.date_of_birth
        if d.day <= 12 and d.day != d.month:
            seen["day/month"] += dob == d.replace(day=d.month, month=d.day).strftime(
                profile.date_format)
        phone = re.sub(r"\D", "", row[profile.columns["phone"]])
        seen["other phone"] += bool(phone) and not phone.endswith(person.phone_digits)
    assert all(seen[kind] for kind in ("swapped", "upper", "dropped second name",
                                       "joined particle", "missing", "moved", "day/month",
                                       "other phone")), seen
    assert set(ERROR_RATES) >= {f"missing_{f}" for f in FEATURES}


# -- robustness and speed -----------------------------------------------------------------------

@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2 ** 32), records=st.integers(0, 40),
       shared=st.floats(0.0, 1.0), corruption=st.floats(0.0, 1.0),
       agencies=st.integers(1, len(DEFAULT_AGENCIES)))
def test_invariants_hold_for_any_config(seed, records, shared, corruption, agencies):
    config = SyntheticConfig(seed=seed, records_per_agency=records, shared_fraction=shared,
                             corruption=corruption, agencies=DEFAULT_AGENCIES[:agencies])
    data = generate(config)
    assert list(data.exports) == [p.name for p in config.agencies]
    for profile in config.agencies:
        export = data.exports[profile.name]
        assert len(export.rows) == records + int(records * profile.duplicate_rate)
        ids = [row[profile.id_column] for row in export.rows]
        assert len(set(ids)) == len(ids)
        assert list(csv.DictReader(io.StringIO(export.to_csv()))) == export.rows
    assert len(data.truth) == sum(len(e.rows) for e in data.exports.values())
    if agencies == 1:
        assert all(len({a for a, _ in p}) == 1 for p in true_pairs(data))


def test_five_agencies_of_two_thousand_records():
    data = generate(SyntheticConfig(seed=1, records_per_agency=2000))
    assert sum(len(e.rows) for e in data.exports.values()) >= 10_000
