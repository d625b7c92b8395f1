"""The storage contract: every backend behaves the same through the ``Store`` protocol.

Each test runs on SQLite and on a real PostgreSQL server (tests/postgres.py); the
``store_kind`` parametrisation comes from tests/conftest.py.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace

import numpy as np
import pytest

from linkage.audit import AuditEntry
from linkage.batch import content_hash
from linkage.errors import (
    AlreadyExistsError,
    BatchFormatError,
    InvalidRequestError,
    NotFoundError,
    RunStateError,
    ServerBusyError,
)
from linkage_service.server.storage import EntitySchemaRow, SqliteStore, open_store

HEADER = json.dumps({"clk_bits": 16, "record_count": 4})


@pytest.fixture
def store(store_spec, tmp_path):
    opened = open_store(store_spec, tmp_path / "data")
    yield opened
    opened.close()


@pytest.fixture
def project(store):
    return store.create_project("p", "{}", "fp", 16, [("a", "hash-a"), ("b", "hash-b")],
                                stages=["open"],
                                entity_schemas=[EntitySchemaRow("company", "{}", "fc", 16)])


def _commit(store, project, agency, batch_id, ids, clks):
    store.begin_upload(project.id, agency.id, batch_id,
                       json.dumps({"clk_bits": 16, "record_count": len(ids)}))
    store.append_chunk(batch_id, 0, ids, clks)
    return store.commit_upload(project, agency, batch_id, content_hash(ids, clks, None), "kc")


def test_projects_agencies_and_settings(store, project):
    assert store.project("p") == project and store.projects() == [project]
    assert [a.name for a in store.agencies(project.id)] == ["a", "b"]
    assert [e.entity_type for e in store.entity_schemas(project.id)] == ["person", "company"]
    found, agency, stored_hash = store.agency_by_token("hash-b")
    assert (found.name, agency.name, stored_hash) == ("p", "b", "hash-b")
    assert store.agency_by_token("nope") is None
    with pytest.raises(AlreadyExistsError):
        store.create_project("p", "{}", "fp", 16, [("c", "hash-c")])
    with pytest.raises(NotFoundError):
        store.project("absent")
    assert store.setting("k") is None
    store.set_setting("k", b"one")
    store.set_setting("k", b"two")
    assert store.setting("k") == b"two"
    store.add_staff("coordinator", "coordinator", "staff-hash")
    name, role, token_hash = store.staff_by_token("staff-hash")
    assert (name, role, token_hash) == ("coordinator", "coordinator", "staff-hash")
    store.set_stages(project.id, ["open", "closed"])
    assert store.project("p").stages == ["open", "closed"]
    store.set_agency_token(agency.id, "new-hash")
    assert store.agency_by_token("hash-b") is None and store.agency_by_token("new-hash")


def test_an_upload_is_held_then_committed_once(store, project):
    agency = store.agencies(project.id)[0]
    store.begin_upload(project.id, agency.id, "b-1", HEADER)
    store.begin_upload(project.id, agency.id, "b-1", HEADER)  # a no-op for one held
    assert store.append_chunk("b-1", 0, ["r1", "r2"], [b"aa", b"bb"]) == 2
    assert store.append_chunk("b-1", 0, ["r1", "r2"], [b"aa", b"bb"]) == 2  # resent: kept once
    with pytest.raises(BatchFormatError, match="resume from record 2"):
        store.append_chunk("b-1", 3, ["r4"], [b"dd"])
    assert store.append_chunk("b-1", 2, ["r3", "r4"], [b"cc", b"dd"],
                              [("", "", "open"), ("", "", "")]) == 4
    assert [ids for ids, _, _ in store.upload_chunks("b-1")] == [["r1", "r2"], ["r3", "r4"]]
    assert store.metrics()["unfinished_uploads"] == 1
    assert store.batch("b-1") is None
    ids, clks = ["r1", "r2", "r3", "r4"], [b"aa", b"bb", b"cc", b"dd"]
    digest = content_hash(ids, clks, None)
    stored = store.commit_upload(project, agency, "b-1", digest, "kc")
    assert store.commit_upload(project, agency, "b-1", digest, "kc") == stored  # a racing retry
    assert store.batch("b-1") == stored and stored.record_count == 4
    assert store.upload("b-1") is None and store.project("p").key_check == "kc"
    records = store.load_records(project.id)
    assert records.record_ids == ids and records.clks == clks and records.is_new.all()
    assert records.new_batches == ["b-1"] and store.stages_in_use(project.id) == {"open"}
    assert store.existing_record_ids(agency.id, ["r2", "x"]) == ["r2"]
    assert store.batch_by_hash(agency.id, digest) == stored
    with pytest.raises(NotFoundError):
        store.append_chunk("b-1", 4, ["r5"], [b"ee"])


def test_record_ids_stay_unique_per_agency(store, project):
    agency = store.agencies(project.id)[0]
    _commit(store, project, agency, "b-1", ["r1"], [b"aa"])
    with pytest.raises(AlreadyExistsError):
        _commit(store, project, agency, "b-2", ["r1"], [b"bb"])
    assert store.batch("b-2") is None and store.upload("b-2") is not None  # nothing half-stored


def test_unfinished_uploads_are_bounded_discarded_and_expire(store, project):
    agency = store.agencies(project.id)[0]
    store.begin_upload(project.id, agency.id, "b-1", HEADER, most_unfinished=1)
    with pytest.raises(ServerBusyError):
        store.begin_upload(project.id, agency.id, "b-2", HEADER, most_unfinished=1)
    store.discard_upload("b-1")
    store.begin_upload(project.id, agency.id, "b-2", HEADER, most_unfinished=1)
    assert store.expire_uploads(3600) == 0
    assert store.expire_uploads(-1) == 1 and store.upload("b-2") is None


def test_pairs_runs_groups_and_results(store, project):
    a, b = store.agencies(project.id)
    _commit(store, project, a, "b-1", ["r1", "r2"], [b"aa", b"bb"])
    _commit(store, project, b, "b-2", ["s1"], [b"aa"])
    records = store.load_records(project.id)
    store.add_pairs(project.id, 0.5, records.row_ids[[0]], records.row_ids[[2]],
                    np.array([0.9]), records.new_batches)
    assert store.pair_floor(project.id) == 0.5
    lefts, rights, scores = store.load_pairs(project.id)
    assert lefts.tolist() == [records.row_ids[0]] and scores.tolist() == [0.9]
    assert not store.load_records(project.id).is_new.any()
    run_id = store.start_run(project.id)
    assert store.run_in_progress(project.id) and store.has_run(project.id)
    with pytest.raises(RunStateError):
        store.start_run(project.id)
    store.finish_run(run_id, {"records": 3}, [
        ("g-1", 0.9, 0.9, [(a.id, "r1"), (b.id, "s1")]), ("g-2", 0.2, None, [(a.id, "r2")])])
    assert not store.run_in_progress(project.id)
    latest = store.latest_run(project.id)
    assert (latest.number, latest.status, latest.summary) == (1, "done", {"records": 3})
    assert [(g.key, g.size, g.members_by_agency) for g in store.groups(run_id)] == [
        ("g-1", 2, {a.id: 1, b.id: 1}), ("g-2", 1, {a.id: 1})]
    assert list(store.agency_results(run_id, a.id)) == [("r1", "g-1"), ("r2", "g-2")]
    assert store.group_agencies(run_id, ["g-1"]) == {"g-1": {a.id: 1, b.id: 1}}
    assert store.group_members(project.id, ["g-1"]) == {"g-1": [(a.id, "r1"), (b.id, "s1")]}
    assert sorted(store.member_attributes(run_id)) == [
        ("g-1", a.id, "", "", ""), ("g-1", b.id, "", "", ""), ("g-2", a.id, "", "", "")]
    second = store.start_run(project.id)
    store.fail_run(second, "broken")
    assert store.latest_run(project.id).number == 1
    third = store.start_run(project.id)
    store.finish_run(third, {"records": 3}, [])
    assert store.previous_run(project.id, 3).number == 1
    store.reset_pairs(project.id)
    assert store.pair_floor(project.id) is None and store.load_records(project.id).is_new.all()


def test_group_explanations_live_in_their_own_table_read_a_page_at_a_time(store, project):
    a, _ = store.agencies(project.id)
    run_id = store.start_run(project.id)
    waterfalls = {f"g-{i}": {"probability": p, "steps": [{"field": "prior", "weight": -9.5}]}
                  for i, p in enumerate([0.99, 0.6, 0.999, 0.6, 0.8])}
    store.finish_run(run_id, {"records": 5, "waterfalls": waterfalls},
                     [(key, w["probability"], 0.8, [(a.id, key)]) for key, w in waterfalls.items()])
    # The summary is stored without them.
    assert store.latest_run(project.id).summary == {"records": 5}
    assert store.waterfall_count(run_id) == 5
    ordered = ["g-1", "g-3", "g-4", "g-0", "g-2"]  # least certain first, ties by key
    assert [key for key, _ in store.waterfalls(run_id)] == ordered
    page = store.waterfalls(run_id, offset=1, limit=2)
    assert page == [("g-3", waterfalls["g-3"]), ("g-4", waterfalls["g-4"])]
    assert store.waterfalls(run_id, offset=5, limit=10) == []
    other = store.start_run(project.id)
    store.finish_run(other, {"records": 5}, [])
    assert store.waterfall_count(other) == 0 and store.waterfall_count(run_id) == 5


def test_a_run_left_running_is_marked_failed_at_start(store, project):
    store.start_run(project.id)
    if isinstance(store, SqliteStore):
        assert store.interrupt_running_runs() == 1
    else:  # on PostgreSQL this process owns the run: only a dead owner's runs are failed
        assert store.interrupt_running_runs() == 0
        store._release(next(iter(store._owners)))  # as if this replica had died
        deadline = time.monotonic() + 10  # the server ends the closed session soon after
        while not store.interrupt_running_runs() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not store.run_in_progress(project.id)


def test_reviews_and_follow_ups(store, project):
    a, b = store.agencies(project.id)
    _commit(store, project, a, "b-1", ["r1"], [b"aa"])
    run_id = store.start_run(project.id)
    store.finish_run(run_id, {}, [("g-1", 0.9, 0.7, [(a.id, "r1")])])
    store.set_review(project.id, "g-1", "accepted", "first")
    store.set_review(project.id, "g-1", "rejected", "second")
    assert store.reviews(project.id) == {"g-1": ("rejected", "second")}
    accepted, rejected = store.reviewed_scores(project.id)
    assert accepted.tolist() == [] and rejected.tolist() == [0.7]
    assert store.reviewed_scores(project.id, "company")[1].tolist() == []
    opened = store.add_follow_ups(project.id, "g-1", "coordinator", [a.id, b.id], "why",
                                  most_per_agency=1)
    assert [f.status for f in opened] == ["open", "open"]
    with pytest.raises(InvalidRequestError):
        store.add_follow_ups(project.id, "g-1", "coordinator", [a.id], "again",
                             most_per_agency=1)
    answered = store.answer_follow_up(project.id, opened[0].id, a.id, "confirmed", "yes")
    assert (answered.status, answered.answer_note) == ("confirmed", "yes")
    with pytest.raises(NotFoundError):
        store.answer_follow_up(project.id, opened[1].id, a.id, "confirmed", "not mine")


def test_withdraw_purge_and_delete(store, project):
    a, _ = store.agencies(project.id)
    _commit(store, project, a, "b-1", ["r1"], [b"aa"])
    store.begin_upload(project.id, a.id, "b-2", HEADER)
    store.append_chunk("b-2", 0, ["r2"], [b"bb"])
    assert store.withdraw_batch(project.id, "b-2", a.id) == (1, True)
    _commit(store, project, a, "b-3", ["r3"], [b"cc"])
    assert store.withdraw_batch(project.id, "b-3") == (1, False)
    with pytest.raises(NotFoundError):
        store.withdraw_batch(project.id, "b-3")
    records = store.load_records(project.id)
    store.add_pairs(project.id, 0.5, records.row_ids[:1], records.row_ids[:1], np.array([1.0]),
                    records.new_batches)
    with pytest.raises(RunStateError, match="compared"):
        store.withdraw_batch(project.id, "b-1")
    assert store.purge_project(project.id) == (1, 1)
    assert store.load_records(project.id).clks == [b""]
    assert store.project("p").purged_at is not None
    assert store.check() == ([], [])
    other = store.create_project("q", "{}", "fp", 16, [("c", "hash-c")])
    _commit(store, other, store.agencies(other.id)[0], "b-4", ["r4"], [b"dd"])
    assert store.delete_project(other.id) == (1, 1)
    assert [p.name for p in store.projects()] == ["p"]


def test_the_audit_chain_and_check(store, project, store_spec, tmp_path):
    entry = AuditEntry(0, "2026-01-01T00:00:00+00:00", "coordinator", "coordinator", "p",
                       "RunLinkage", "OK", "{}", "", "")
    stored = [store.append_audit(replace(entry, method=f"M{i}")) for i in range(5)]
    assert [e.sequence for e in stored] == [1, 2, 3, 4, 5]
    assert stored[1].previous_hash == stored[0].entry_hash
    assert [e.method for e in store.audit_entries(method="M3")] == ["M3"]
    assert [e.sequence for e in store.audit_entries(from_sequence=4)] == [4, 5]
    assert store.metrics()["audit_entries"] == 5
    problems, notes = store.check()
    assert problems == [] and any("audit log intact: 5 entries" in n for n in notes)
    tamper = "UPDATE audit_log SET outcome = 'DENIED' WHERE sequence = 2"
    if store_spec == "sqlite":
        with sqlite3.connect(tmp_path / "data" / "audit.sqlite3") as raw:
            raw.execute(tamper)
    else:
        import psycopg
        with psycopg.connect(store_spec, autocommit=True) as raw:
            raw.execute(tamper)
    problems, _ = store.check()
    assert any(p.startswith("audit log entry 2") for p in problems)


def test_reopening_applies_no_migration_twice(store_spec, tmp_path):
    first = open_store(store_spec, tmp_path / "data")
    first.create_project("kept", "{}", "fp", 16, [("a", "h")])
    first.close()
    again = open_store(store_spec, tmp_path / "data")
    try:
        assert [p.name for p in again.projects()] == ["kept"]
        names = [row[0] for row in again._query("SELECT name FROM schema_migrations")]
        assert len(names) == len(set(names)) and names
    finally:
        again.close()


def test_check_reads_beside_a_running_store(store, project, store_spec, tmp_path):
    reader = open_store(store_spec, tmp_path / "data", read_only=True)
    try:
        assert reader.check() == ([], [])
        with pytest.raises(RuntimeError, match="read-only"):
            reader.set_setting("k", b"v")
    finally:
        reader.close()


def test_backup_copies_sqlite_and_names_pg_dump_for_postgresql(store, project, store_spec,
                                                               tmp_path):
    if store_spec == "sqlite":
        assert store.backup(tmp_path / "copy") > 0
        copy = open_store("sqlite", tmp_path / "copy")
        try:
            assert [p.name for p in copy.projects()] == ["p"]
        finally:
            copy.close()
    else:
        with pytest.raises(InvalidRequestError, match="pg_dump"):
            store.backup(tmp_path / "copy")
        assert not (tmp_path / "copy").exists()


def test_the_store_option_takes_sqlite_or_a_url_without_password(tmp_path):
    from click.testing import CliRunner

    from linkage_service.server.main import main as server_main

    for value, message in (("mysql://x", "expected 'sqlite' or postgresql://"),
                           ("postgresql://u:secret@127.0.0.1:1/db", "PGPASSWORD")):
        result = CliRunner().invoke(server_main, ["--data-dir", str(tmp_path / "d"),
                                                  "--store", value, "--check"])
        assert result.exit_code != 0 and message in result.output, result.output
        assert "secret" not in result.output


def test_the_storage_package_exports_a_sorted_public_surface():
    import server.storage as storage

    assert storage.__all__ == sorted(storage.__all__)
    assert all(hasattr(storage, name) for name in storage.__all__)


def test_share_batches_of_a_two_server_project(store):
    """Two-server mode: shares in their own table, in (agency, record id) order, checked
    against the batch hash, removed by a purge."""
    project = store.create_project("shared", "{}", "f" * 64, 64, [("a", "1" * 64),
                                                                  ("b", "2" * 64)])
    assert store.share_role(project.id) is None
    store.set_share_role(project.id, 1)
    assert store.share_role(project.id) == 1
    a, b = store.agencies(project.id)
    ids, shares = ["r2", "r1"], [b"\x01" * 256, b"\x02" * 256]
    store.add_share_batch(project.id, a.id, "b-00000000000000a1", content_hash(ids, shares),
                          "k", True, ids, shares)
    other = [b"\x03" * 256]
    store.add_share_batch(project.id, b.id, "b-00000000000000b1", content_hash(["q"], other),
                          "k", False, ["q"], other)
    loaded = store.load_shares(project.id)
    assert loaded.record_ids == ["r1", "r2", "q"] and loaded.shares[0] == b"\x02" * 256
    assert store.deduplicated_agencies(project.id) == {a.id}
    assert store.check()[0] == []
    with pytest.raises(AlreadyExistsError):
        store.add_share_batch(project.id, a.id, "b-00000000000000a2", "0" * 64, "k", False,
                              ["r1"], [b"\x04" * 256])
    store.purge_project(project.id)
    assert all(share == b"" for share in store.load_shares(project.id).shares)
    assert store.check()[0] == []


def test_share_batches_keep_their_attributes_for_the_report(store):
    """Server 0 stores a share batch's attributes beside the shares: the batch hash covers
    them (check notices a changed stage), the report's member attributes and the stages in
    use read them, and a purge blanks the shares but keeps them, as for CLK batches."""
    from linkage.batch import RecordAttributes
    project = store.create_project("shared", "{}", "f" * 64, 64, [("a", "1" * 64),
                                                                  ("b", "2" * 64)],
                                   stages=["recruit", "logistics"])
    store.set_share_role(project.id, 0)
    assert store.attribute_table(project.id) == "share_records"
    a, b = store.agencies(project.id)
    ids, shares = ["r1", "r2"], [b"\x01" * 256, b"\x02" * 256]
    attributes = [("person", "c-00000000000a", "recruit"), ("person", "c-00000000000b", "")]
    digest = content_hash(ids, shares, [RecordAttributes(*t) for t in attributes])
    store.add_share_batch(project.id, a.id, "b-00000000000000a1", digest, "k", True, ids,
                          shares, attributes, "person")
    store.add_share_batch(project.id, b.id, "b-00000000000000b1",
                          content_hash(["q"], [b"\x03" * 256]), "k", False, ["q"],
                          [b"\x03" * 256], None, "person")
    assert store.check()[0] == []
    assert store.stages_in_use(project.id) == {"recruit"}
    run_id = store.start_run(project.id)
    store.finish_run(run_id, {"records": 3}, [
        ("g-1", 0.9, 0.9, [(a.id, "r1"), (b.id, "q")]), ("g-2", 0.2, None, [(a.id, "r2")])])
    expected = [("g-1", a.id, "person", "c-00000000000a", "recruit"),
                ("g-1", b.id, "person", "", ""),
                ("g-2", a.id, "person", "c-00000000000b", "")]
    assert [tuple(row) for row in store.member_attributes(run_id)] == expected
    with store._transaction() as db:  # a stage changed behind the service's back
        db.execute("UPDATE share_records SET stage = 'logistics' WHERE record_id = 'r2'")
    assert any("do not match the batch's hash" in p for p in store.check()[0])
    with store._transaction() as db:
        db.execute("UPDATE share_records SET stage = '' WHERE record_id = 'r2'")
    store.purge_project(project.id)
    assert store.check()[0] == []
    assert all(share == b"" for share in store.load_shares(project.id).shares)
    assert [tuple(row) for row in store.member_attributes(run_id)] == expected
