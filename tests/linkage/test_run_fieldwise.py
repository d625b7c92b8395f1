"""The pure run on a type with per-field segments: field-wise probabilities decide (issue 12)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import linkage.encoding as encoding_package
from linkage.clks import clks_to_bytes
from linkage.encoding.schema import load_schema
from linkage.matching.candidates import CandidatePairs
from linkage.matching.run import RunRecords, RunReviews, RunSettings, link_incrementally, \
    plan_floor
from linkage_service.client import files
from linkage_service.client.synthetic import SyntheticConfig, generate

SCHEMAS = Path(encoding_package.__file__).parent / "schemas"


@pytest.fixture(scope="module")
def encoded():
    """Three agencies' exports encoded with person_segments.json, as stored CLK bytes."""
    dataset = generate(SyntheticConfig(seed=5, records_per_agency=120))
    text = (SCHEMAS / "person_segments.json").read_text("utf-8")
    agency, ids, clks = [], [], []
    for code, (name, export) in enumerate(sorted(dataset.exports.items())[:3]):
        batch = files.encode_export(text, b"k" * 32, export.to_csv().encode("utf-8"),
                                    export.mapping_toml(), case_key=b"c" * 32).batch
        agency += [code] * len(batch)
        ids += list(batch.record_ids)
        clks += clks_to_bytes(batch.clks)
    return load_schema(text), np.asarray(agency), ids, clks


def _run(encoded, threshold: str, *, field_wise: bool):
    schema, agency, ids, clks = encoded
    records = RunRecords.from_bytes(agency, ids, ["person"] * len(ids), clks,
                                    np.ones(len(ids), bool), {"person": schema.clk_bits},
                                    {"person": schema.segments} if field_wise else None)
    settings = RunSettings.parse(threshold)
    floor = plan_floor(records, settings, None).floor
    nothing = CandidatePairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    return link_incrementally(records, nothing, settings, RunReviews(), floor=floor,
                              group_key_secret=b"g" * 32)


def test_a_segmented_type_groups_on_probabilities_and_explains_each_group(encoded):
    outcome = _run(encoded, "auto", field_wise=True)
    assert outcome.groups
    cutoff = outcome.summary.threshold
    assert 0.0 < cutoff < 1.0 and "best expected F1" in outcome.summary.threshold_reason
    for group in outcome.groups:
        assert group.confidence >= cutoff and group.confidence == group.weakest_score
        assert group.waterfall["probability"] == pytest.approx(group.confidence, abs=1e-4)
    assert set(outcome.summary.waterfalls) == {g.key for g in outcome.groups}
    assert outcome.summary.entity_types["person"].modelled
    strict = _run(encoded, "0.99", field_wise=True)
    assert all(g.confidence >= 0.99 for g in strict.groups)
    assert len(strict.groups) <= len(outcome.groups)


def test_without_a_layout_the_same_clks_link_record_level(encoded):
    outcome = _run(encoded, "auto", field_wise=False)
    assert outcome.groups and all(g.waterfall is None for g in outcome.groups)
    assert outcome.summary.waterfalls == {}
    assert "field-wise" not in outcome.summary.threshold_reason


def test_a_field_wise_run_carries_its_quality_curve_through_the_stored_summary(encoded):
    from linkage.matching.run_summary import RunSummary

    summary = _run(encoded, "auto", field_wise=True).summary
    curve = summary.probability_curve
    assert len(curve) > 20 and summary.quality_curve == ()
    cutoffs = [point[0] for point in curve]
    assert cutoffs == sorted(cutoffs) and 0 < cutoffs[0] and cutoffs[-1] < 1
    # Raising the cut-off never raises the expected recall.
    recalls = [point[2] for point in curve]
    assert all(a >= b - 1e-12 for a, b in zip(recalls, recalls[1:]))
    assert RunSummary.from_json(summary.to_json()).probability_curve == curve
    old = summary.to_json()
    del old["probability_curve"]                       # a summary stored before the curve
    assert RunSummary.from_json(old).probability_curve == ()
