"""The synthetic multi-agency generator behind the demo and the tests."""

from __future__ import annotations

import csv
import io
import tomllib
from datetime import datetime

from linkage.synthetic import DEFAULT_AGENCIES, SyntheticConfig, generate, true_pairs

CONFIG = SyntheticConfig(seed=5, records_per_agency=300)


def test_same_seed_same_data_other_seed_other_data():
    first, again = generate(CONFIG), generate(CONFIG)
    assert first.truth == again.truth
    assert all(first.exports[n].rows == again.exports[n].rows for n in first.exports)
    other = generate(SyntheticConfig(seed=6, records_per_agency=300))
    assert other.exports["be-police"].rows != first.exports["be-police"].rows


def test_agencies_records_ids_and_truth():
    dataset = generate(CONFIG)
    assert len(DEFAULT_AGENCIES) >= 5 and {p.country for p in DEFAULT_AGENCIES} == {"BE", "SE"}
    for profile in DEFAULT_AGENCIES:
        export = dataset.exports[profile.name]
        expected = CONFIG.records_per_agency + int(CONFIG.records_per_agency
                                                   * profile.duplicate_rate)
        assert len(export.rows) == expected
        ids = [row[profile.id_column] for row in export.rows]
        assert len(set(ids)) == len(ids)
        assert all((profile.name, rid) in dataset.truth for rid in ids)
    assert len(dataset.truth) == sum(len(e.rows) for e in dataset.exports.values())


def test_brokers_duplicates_and_cross_border_overlap_exist():
    dataset = generate(CONFIG)
    agencies_of: dict[str, set[str]] = {}
    for (agency, _), entity in dataset.truth.items():
        agencies_of.setdefault(entity, set()).add(agency)
    assert max(len(a) for a in agencies_of.values()) >= 3
    countries = {p.name: p.country for p in DEFAULT_AGENCIES}
    assert any(len({countries[a] for a in agencies}) == 2 for agencies in agencies_of.values())
    pairs = true_pairs(dataset)
    within = [p for p in pairs if len({agency for agency, _ in p}) == 1]
    cross = [p for p in pairs if len({agency for agency, _ in p}) == 2]
    assert within and cross
    assert 0.1 < len(cross) / sum(len(e.rows) for e in dataset.exports.values()) < 1.0


def test_mapping_and_csv_round_trip():
    dataset = generate(CONFIG)
    for export in dataset.exports.values():
        mapping = tomllib.loads(export.mapping_toml())
        assert mapping["record_id"] == export.profile.id_column
        for feature, spec in mapping["fields"].items():
            assert spec["column"] in export.columns
        assert mapping["fields"]["date_of_birth"]["date_format"] == export.profile.date_format
        assert mapping["fields"]["phone"]["phone_region"] in ("BE", "SE")
        parsed = list(csv.DictReader(io.StringIO(export.to_csv())))
        assert parsed == export.rows


def test_dates_follow_each_agencys_format_with_rare_errors():
    dataset = generate(CONFIG)
    for export in dataset.exports.values():
        column = export.profile.columns["date_of_birth"]
        values = [row[column] for row in export.rows if row[column]]
        bad = 0
        for value in values:
            try:
                datetime.strptime(value, export.profile.date_format)
            except ValueError:
                bad += 1
        assert bad <= 0.02 * len(values)
