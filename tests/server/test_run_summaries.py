"""One review rule for the run and the report on a real server, and run summaries stored by
earlier versions still serving reports and reuse checks."""

from __future__ import annotations

import json
import sqlite3

from linkage.matching.review import REVIEW_DICE_MARGIN, REVIEW_PROBABILITIES
from linkage_service.client.synthetic import DEFAULT_STAGES
from linkage_service.server.storage import DATABASE_NAME


def _project(server, coordinator, batches, schema_text, name: str) -> None:
    names = sorted(batches)[:3]
    tokens = coordinator.create_project(name, schema_text, names, list(DEFAULT_STAGES))
    for agency in names:
        with server.client(tokens[agency], name=agency, role="agency") as client:
            client.submit(name, batches[agency])


def test_a_numeric_run_flags_groups_by_the_dice_band_in_run_and_report(server, coordinator,
                                                                      batches, schema_text):
    """Without a score model, confidences are weakest Dice scores, not probabilities: the
    report flags the groups whose weakest link is just above the threshold, and the run's
    count says the same."""
    _project(server, coordinator, batches, schema_text, "dice-band")
    summary = coordinator.run("dice-band", "0.7")
    report = coordinator.report("dice-band")
    assert report["estimated_precision"] == 0.0  # no model was fitted
    confidences = [g["confidence"] for g in report["groups"]]
    near = [c < 0.7 + REVIEW_DICE_MARGIN for c in confidences]
    assert any(near) and not all(near)
    assert [g["needs_review"] for g in report["groups"]] == near
    assert summary["groups_to_review"] == report["summary"]["groups_to_review"] == sum(near)
    # asked for estimates, the same threshold fits the model: probabilities, probability band
    estimated = coordinator.run("dice-band", "0.7", estimates=True)
    assert not estimated["reused"] and estimated["threshold"] == 0.7
    report = coordinator.report("dice-band")
    assert 0.0 < report["estimated_precision"] <= 1.0
    low, high = REVIEW_PROBABILITIES
    assert [g["needs_review"] for g in report["groups"]] == [
        low <= g["confidence"] < high for g in report["groups"]]


def test_summaries_stored_by_an_earlier_version_still_serve(server, coordinator, batches,
                                                            schema_text):
    """A run stored as the old ~35-key dictionary: its report loads, and a rerun with the
    same settings reuses it."""
    _project(server, coordinator, batches, schema_text, "old-summary")
    first = coordinator.run("old-summary", "0.8")
    before = coordinator.report("old-summary")
    server.stop()  # one process owns a data directory
    database = server.data_dir / DATABASE_NAME
    with sqlite3.connect(database) as db:
        (text,) = db.execute("SELECT summary FROM runs WHERE status = 'done'").fetchone()
        stored = json.loads(text)
        stored.pop("estimates_setting")
        for entry in stored["entity_types"].values():
            entry.pop("modelled")
            entry.pop("groups_to_review")
        stored["review_band"] = [0.2, 0.8]
        db.execute("UPDATE runs SET summary = ? WHERE status = 'done'", (json.dumps(stored),))
    db.close()
    server.start()
    with server.client(server.coordinator_token) as again:
        report = again.report("old-summary")
        assert report["summary"] == before["summary"]
        assert report["agencies"] == before["agencies"]
        assert [g["id"] for g in report["groups"]] == [g["id"] for g in before["groups"]]
        rerun = again.run("old-summary", "0.8")
    assert rerun["reused"] and rerun["run"] == first["run"]
