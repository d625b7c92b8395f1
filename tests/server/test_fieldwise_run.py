"""A project whose schema has per-field segments is linked field-wise through the real server
(issue 12): same synthetic agencies, same secret, once with person.json and once with
person_segments.json; the field-wise run is at least as good and explains its groups."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import linkage.encoding as encoding_package
from linkage.analysis.evaluation import pairwise_quality
from linkage_service.client import files
from linkage_service.client.api import LinkageClient
from linkage_service.client.demo import ServerProcess
from linkage_service.client.render import render_report
from linkage_service.client.report_html import render_html
from linkage_service.client.synthetic import DEFAULT_STAGES
from linkage_service.server.operations.reports import WATERFALL_PAGE
from linkage_service.server.storage import DATABASE_NAME

from ..conftest import agency_client

SEGMENTS_SCHEMA = Path(encoding_package.__file__).parent / "schemas" / "person_segments.json"


def _encode(dataset, secret, schema_text):
    return {name: files.encode_export(schema_text, secret, export.to_csv().encode("utf-8"),
                                      export.mapping_toml(),
                                      case_key=name.encode("utf-8").ljust(32, b"#")).batch
            for name, export in dataset.exports.items()}


def _link(server, coordinator, project, schema_text, batches, threshold="auto"):
    """Create, submit every agency's batch, run; returns (summary, report, predicted)."""
    tokens = coordinator.create_project(project, schema_text, sorted(batches),
                                        list(DEFAULT_STAGES))
    for name, batch in batches.items():
        with agency_client(server, tokens[name]) as agency:
            agency.submit(project, batch)
    summary = coordinator.run(project, threshold)
    report = coordinator.report(project)
    predicted = {}
    for name in batches:
        with agency_client(server, tokens[name]) as agency:
            predicted.update({(name, hit["record"]): hit["group"]
                              for hit in agency.results(project)})
    return summary, report, predicted


@pytest.mark.slow
def test_a_segmented_schema_links_field_wise_at_least_as_well(server, coordinator, dataset,
                                                              secret, schema_text, tmp_path,
                                                              store_kind, request):
    segments_text = SEGMENTS_SCHEMA.read_text("utf-8")
    record_level = _link(server, coordinator, "record-level", schema_text,
                         _encode(dataset, secret, schema_text))
    # The same secret on a second server (one server refuses a secret two projects share).
    # A store of its own: on PostgreSQL a fresh database (sharing the first server's would
    # make it a replica, with the first server's credentials).
    store = (request.getfixturevalue("postgres").create_migrated_database()
             if store_kind == "postgresql" else "sqlite")
    with ServerProcess(tmp_path / "second-server", store=store) as second:
        with LinkageClient(second.address, second.coordinator_token, timeout=120) as other:
            field_wise = _link(second, other, "field-wise", segments_text,
                               _encode(dataset, secret, segments_text))
    record_f1 = pairwise_quality(record_level[2], dataset.truth)["all"].f1
    field_f1 = pairwise_quality(field_wise[2], dataset.truth)["all"].f1
    assert field_f1 >= record_f1, (field_f1, record_f1)

    summary, report, _ = field_wise
    cutoff = summary["threshold"]
    assert 0.0 < cutoff < 1.0
    assert (f"field-wise match probability >= {cutoff:g} (auto: the best expected F1"
            in summary["threshold_reason"])
    # The expected quality by cut-off rides in the report, drawn in text and HTML.
    curve = report["network"]["probability_curve"]
    assert len(curve) > 20 and all(0 <= p <= 1 and 0 <= r <= 1 for _, p, r in curve)
    assert "<svg id='probability-curve'" in render_html(report)
    assert "Expected quality by match-probability cut-off" in render_report(report)
    waterfalls = report["network"]["waterfalls"]
    linked = [g for g in report["groups"] if g["size"] > 1]
    # Stored in their own table; the report carries the least certain page of them.
    assert report["network"]["waterfalls_total"] == len(linked)
    assert len(waterfalls) == min(len(linked), WATERFALL_PAGE)
    assert linked and set(waterfalls) <= {g["id"] for g in linked}
    least = sorted(linked, key=lambda g: g["confidence"])[len(waterfalls) - 1]["confidence"]
    assert max(w["probability"] for w in waterfalls.values()) == pytest.approx(least, abs=1e-4)
    probabilities = [w["probability"] for w in waterfalls.values()]
    assert probabilities == sorted(probabilities)  # the least certain first
    for group in linked:  # the confidence is the weakest link's probability, which it explains
        assert group["confidence"] >= cutoff - 1e-9
        if group["id"] in waterfalls:
            assert waterfalls[group["id"]]["probability"] == pytest.approx(group["confidence"],
                                                                           abs=1e-4)
    # Field names, levels and weights only: no record id and no value of any record.
    text = json.dumps(waterfalls)
    assert not any(record_id in text for name, record_id in dataset.truth)
    for person in list(dataset.people.values())[:50]:
        assert person.family_name not in text
    assert "<h2>Why groups were linked</h2>" in render_html(report)
    assert f"linked field-wise at match probability >= {cutoff:g}" in render_report(report)
    # The record-level project is as before: no waterfalls.
    assert record_level[1]["network"]["waterfalls"] == {}
    assert "field-wise" not in record_level[0]["threshold_reason"]


def test_a_numeric_threshold_on_a_segmented_type_is_a_probability(server, coordinator,
                                                                  dataset, secret, store_kind):
    segments_text = SEGMENTS_SCHEMA.read_text("utf-8")
    batches = _encode(dataset, secret, segments_text)
    summary, report, _ = _link(server, coordinator, "strict", segments_text, batches, "0.99")
    assert "field-wise match probability >= 0.99 (set by the coordinator)" in \
        summary["threshold_reason"]
    assert all(g["confidence"] >= 0.99 for g in report["groups"] if g["size"] > 1)
    if store_kind != "sqlite":
        return
    # A run stored before the waterfalls had a table of their own (inside the summary)
    # still shows them.
    server.stop()  # one process owns a data directory
    with sqlite3.connect(server.data_dir / DATABASE_NAME) as db:
        (run_id, text), = db.execute(
            "SELECT runs.id, summary FROM runs JOIN projects ON projects.id = project_id "
            "WHERE projects.name = 'strict' AND status = 'done'").fetchall()
        stored = json.loads(text)
        assert "waterfalls" not in stored
        stored["waterfalls"] = {key: json.loads(value) for key, value in db.execute(
            "SELECT group_key, waterfall FROM group_waterfalls WHERE run_id = ?", (run_id,))}
        assert stored["waterfalls"]
        db.execute("DELETE FROM group_waterfalls WHERE run_id = ?", (run_id,))
        db.execute("UPDATE runs SET summary = ? WHERE id = ?", (json.dumps(stored), run_id))
    db.close()
    server.start()
    with server.client(server.coordinator_token) as again:
        old = again.report("strict")
    assert old["network"]["waterfalls"] == report["network"]["waterfalls"]
    assert old["network"]["waterfalls_total"] == report["network"]["waterfalls_total"]


def test_reviews_of_a_segmented_type_train_its_model(server, coordinator, dataset, secret):
    segments_text = SEGMENTS_SCHEMA.read_text("utf-8")
    batches = _encode(dataset, secret, segments_text)
    _, report, _ = _link(server, coordinator, "reviewed", segments_text, batches)
    pairs = sorted((g for g in report["groups"] if g["size"] == 2),
                   key=lambda g: g["confidence"])
    coordinator.review("reviewed", pairs[0]["id"], "rejected")
    coordinator.review("reviewed", pairs[-1]["id"], "accepted")
    again = coordinator.run("reviewed", "auto")
    assert not again["reused"]
    assert "2 reviewed pairs" in again["threshold_reason"]
    assert again["reviews_used"] == {"accepted": 1, "rejected": 1}
    after = coordinator.report("reviewed")
    # The rejected pair is not formed again; the accepted one stands.
    assert pairs[0]["id"] not in {g["id"] for g in after["groups"]}
    assert pairs[-1]["id"] in {g["id"] for g in after["groups"]}
