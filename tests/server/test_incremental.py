"""Incremental linkage: new batches are compared once, old pairs are kept, ids stay stable."""

from __future__ import annotations

import grpc
import pytest

from linkage_service.client.api import LinkageClient
from linkage_service.client.demo import ServerProcess
from linkage_service.client.synthetic import DEFAULT_STAGES


@pytest.fixture
def server(tmp_path):
    """Projects here link the same encodings to compare runs, so secret reuse is allowed."""
    with ServerProcess(tmp_path / "server-data", extra_args=("--allow-secret-reuse",)) as process:
        yield process


def _submit(server, tokens, batches, names, project):
    for name in names:
        with LinkageClient(server.address, tokens[name]) as agency:
            agency.submit(project, batches[name])


def _memberships(server, tokens, project):
    groups: dict[str, set[tuple[str, str]]] = {}
    for name, token in tokens.items():
        with LinkageClient(server.address, token) as agency:
            for hit in agency.results(project):
                groups.setdefault(hit["group"], set()).add((name, hit["record"]))
    return groups


def test_incremental_run_equals_a_full_run(server, coordinator, batches, schema_text):
    names = list(batches)
    first, later = names[:3], names[3:]
    tokens = coordinator.create_project("stepwise", schema_text, names, list(DEFAULT_STAGES))
    _submit(server, tokens, batches, first, "stepwise")
    run_one = coordinator.run("stepwise", "0.8")
    assert run_one["new_records"] == sum(len(batches[n]) for n in first)
    before = _memberships(server, tokens, "stepwise")

    _submit(server, tokens, batches, later, "stepwise")
    run_two = coordinator.run("stepwise", "0.8")
    assert run_two["run"] == run_one["run"] + 1
    assert run_two["new_records"] == sum(len(batches[n]) for n in later)
    after = _memberships(server, tokens, "stepwise")

    all_tokens = coordinator.create_project("at-once", schema_text, names, list(DEFAULT_STAGES))
    _submit(server, all_tokens, batches, names, "at-once")
    coordinator.run("at-once", "0.8")
    full = _memberships(server, all_tokens, "at-once")
    assert sorted(map(sorted, after.values())) == sorted(map(sorted, full.values()))

    unchanged = {gid for gid, members in before.items() if members in after.values()}
    assert unchanged, "some groups should be untouched by the new agencies"
    for gid in unchanged:
        assert after.get(gid) == before[gid], "an unchanged group keeps its id"


def test_rerun_with_nothing_new_does_no_work(server, coordinator, batches, schema_text):
    names = list(batches)[:2]
    tokens = coordinator.create_project("steady", schema_text, names, list(DEFAULT_STAGES))
    _submit(server, tokens, batches, names, "steady")
    first = coordinator.run("steady", "auto")
    again = coordinator.run("steady", "auto")
    assert again["reused"] and again["run"] == first["run"] and again["new_records"] == 0
    changed = coordinator.run("steady", "0.9")
    assert not changed["reused"] and changed["run"] == first["run"] + 1
    assert changed["new_records"] == 0 and changed["threshold"] == 0.9
    assert coordinator.report("steady")["threshold"] == 0.9


def test_report_says_what_changed_since_the_previous_run(server, coordinator, batches,
                                                         schema_text):
    names = list(batches)
    tokens = coordinator.create_project("changes", schema_text, names, list(DEFAULT_STAGES))
    _submit(server, tokens, batches, names[:3], "changes")
    coordinator.run("changes", "0.8")
    assert coordinator.report("changes")["network"]["changes"] is None
    _submit(server, tokens, batches, names[3:], "changes")
    coordinator.run("changes", "0.8")
    changes = coordinator.report("changes")["network"]["changes"]
    assert changes["previous_run"] == 1
    assert changes["new_cross_agency_groups"], "the new agencies bring new links"
    assert changes["top_brokers"] and all("previous_rank" in b for b in changes["top_brokers"])


def test_lsh_blocking_finds_nearly_every_pair_and_says_so(server, coordinator, batches,
                                                          schema_text):
    names = list(batches)
    pair_sets = {}
    for blocking in ("exhaustive", "lsh"):
        project = f"blocking-{blocking}"
        tokens = coordinator.create_project(project, schema_text, names, list(DEFAULT_STAGES))
        _submit(server, tokens, batches, names, project)
        summary = coordinator.run(project, "0.8", blocking=blocking)
        assert summary["blocking"].startswith(f"person: {blocking}")
        pairs = set()
        for members in _memberships(server, tokens, project).values():
            ordered = sorted(members)
            pairs |= {(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1:]}
        pair_sets[blocking] = pairs
    exhaustive, blocked = pair_sets["exhaustive"], pair_sets["lsh"]
    assert exhaustive and len(blocked & exhaustive) / len(exhaustive) >= 0.97
    with pytest.raises(grpc.RpcError) as error:
        coordinator.run("blocking-lsh", "auto", blocking="lsh")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
