"""Link-and-dedupe with declared-deduplicated agencies, the review band, and review decisions
feeding the score model of later runs, on a real server."""

from __future__ import annotations

import pytest

from linkage_service.client.demo import ServerProcess
from linkage.matching.threshold import REVIEW_PROBABILITIES
from linkage_service.client.synthetic import DEFAULT_STAGES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reuse_server(tmp_path_factory, module_store_spec):
    """Several projects link the same encodings here, hence --allow-secret-reuse."""
    base = tmp_path_factory.mktemp("feedback")
    with ServerProcess(base / "data", extra_args=("--allow-secret-reuse",)) as process:
        yield process


def _duplicated_agency(dataset) -> str:
    """The agency whose export holds the most people twice."""
    counts: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    for (agency, _), entity in dataset.truth.items():
        if (agency, entity) in seen:
            counts[agency] = counts.get(agency, 0) + 1
        seen.add((agency, entity))
    return max(counts, key=counts.get)


def _link(server, name, schema_text, batches, deduplicated=()):
    with server.client(server.coordinator_token) as coordinator:
        tokens = coordinator.create_project(name, schema_text, sorted(batches),
                                            list(DEFAULT_STAGES))
        for agency, batch in batches.items():
            with server.client(tokens[agency]) as client:
                client.submit(name, batch, deduplicated=agency in deduplicated)
        coordinator.run(name)
        return coordinator.report(name)


def test_a_deduplicated_agency_never_has_two_records_in_a_group(reuse_server, dataset, batches,
                                                                 schema_text):
    agency = _duplicated_agency(dataset)
    plain = _link(reuse_server, "dedupe-off", schema_text, batches)
    declared = _link(reuse_server, "dedupe-on", schema_text, batches, deduplicated={agency})
    assert any(g["agencies"].get(agency, 0) > 1 for g in plain["groups"])
    assert all(g["agencies"].get(agency, 0) <= 1 for g in declared["groups"])
    others = [a for a in batches if a != agency]
    # The other agencies' own duplicates are still found in the same run (link-and-dedupe).
    assert any(g["agencies"].get(a, 0) > 1 for g in declared["groups"] for a in others)


def test_uncertain_groups_are_flagged_and_reviews_feed_the_next_run(reuse_server, batches,
                                                                    schema_text):
    report = _link(reuse_server, "feedback", schema_text, batches)
    low, high = REVIEW_PROBABILITIES
    flagged = [g for g in report["groups"] if g["needs_review"]]
    assert all(low <= g["confidence"] < high for g in flagged)
    assert report["summary"]["groups_to_review"] == len(flagged)
    assert not any(g["needs_review"] for g in report["groups"] if g["confidence"] >= high)
    assert flagged, "a run over corrupted data has uncertain groups"
    # The coordinator finds that every uncertain group is two different people and confirms
    # some certain ones: the next run's score model learns from both, and the rejected groups
    # are not formed again.
    rejected = flagged
    accepted = [g for g in report["groups"] if g["confidence"] >= 0.99][:20]
    with reuse_server.client(reuse_server.coordinator_token) as coordinator:
        for group in rejected:
            coordinator.review("feedback", group["id"], "rejected", "different people")
        for group in accepted:
            coordinator.review("feedback", group["id"], "accepted")
        again = coordinator.run("feedback")
        assert not again["reused"], "new review decisions must trigger a new run"
        assert again["reviews_used"] == {"accepted": len(accepted), "rejected": len(rejected)}
        after = coordinator.report("feedback")
    formed_again = {g["id"] for g in after["groups"]} & {g["id"] for g in rejected}
    assert not formed_again, "a rejected group loses its weakest link and is not formed again"
    assert {g["id"] for g in accepted} <= {g["id"] for g in after["groups"]}
    assert not any(g["needs_review"] for g in after["groups"] if g["review"])
