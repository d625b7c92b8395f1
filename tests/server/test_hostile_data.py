"""Crafted record ids, notes and repeated calls against a real server: none may break a
project, outgrow a reply or be kept without bound."""

from __future__ import annotations

import csv
import io
import json
import threading

import grpc
import pytest

from linkage_service.client import files
from linkage_service.client.api import LinkageClient
from linkage_service.client.demo import ServerProcess
from linkage.batch import content_hash, upload_batch_id
from linkage.clks import clks_to_bytes
from linkage.errors import InputDataError
from linkage_service.client.synthetic import DEFAULT_STAGES
from linkage.matching.group_keys import group_key, group_key_material, unique_group_keys
from linkage_service.protos.linkage.v1 import linkage_pb2 as pb
from linkage_service.protos.linkage.v1 import linkage_pb2_grpc as pb_grpc
from linkage_service.server.operations import MAX_FOLLOW_UPS_PER_GROUP_AGENCY, MAX_NOTE_CHARS

PROJECT = "hostile-data"
AGENCIES = ["be-police", "be-customs", "se-police"]
MiB = 1024 * 1024


def _create(coordinator, schema_text, names=AGENCIES, project=PROJECT):
    return coordinator.create_project(project, schema_text, names, list(DEFAULT_STAGES))


def _linked(server, coordinator, batches, schema_text, names=AGENCIES):
    tokens = _create(coordinator, schema_text, names)
    for name in names:
        with LinkageClient(server.address, tokens[name]) as agency:
            agency.submit(PROJECT, batches[name])
    coordinator.run(PROJECT, "0.8")
    return tokens


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value.code(), refused.value.details()


# -- group-key collisions -----------------------------------------------------------------------

def test_crafted_ids_no_longer_forge_a_group_key():
    # the old key hashed "\n".join(f"{agency}\t{id}"): these two memberships hashed the same text
    one_record = [(1, "x\n2\ty")]
    two_records = [(1, "x"), (2, "y")]
    assert "\n".join(f"{a}\t{r}" for a, r in one_record) == \
        "\n".join(f"{a}\t{r}" for a, r in two_records)
    assert group_key_material(one_record) != group_key_material(two_records)
    assert group_key(b"k" * 32, one_record) != group_key(b"k" * 32, two_records)


def test_keys_of_ordinary_groups_stay_as_they_were():
    import hashlib
    import hmac
    members = [(1, "PV-1"), (3, "SE 22")]
    old = "g-" + hmac.new(b"k" * 32, b"1\tPV-1\n3\tSE 22", hashlib.sha256).hexdigest()[:16]
    assert group_key(b"k" * 32, members) == old  # reviews and follow-ups keep applying


def test_a_clash_of_keys_takes_another_key_instead_of_failing():
    same = [(1, "a"), (2, "b")]
    keys = unique_group_keys(b"k" * 32, [same, same, same])
    assert len(set(keys)) == 3 and keys[0] == group_key(b"k" * 32, same)


@pytest.mark.parametrize("record_id", ["a\nb", "a\tb", "a\x00b", "a\u202eb", "a\u2028b"])
def test_encode_refuses_control_characters_in_record_ids(record_id, dataset, secret,
                                                         schema_text):
    export = dataset.exports["be-police"]
    rows = list(csv.reader(io.StringIO(export.to_csv())))
    rows[1][rows[0].index(export.profile.id_column)] = record_id
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    with pytest.raises(InputDataError) as refused:
        files.encode_export(schema_text, secret, buffer.getvalue().encode(),
                            export.mapping_toml(), case_key=b"#" * 32)
    assert "U+" in str(refused.value) and record_id not in str(refused.value)


def test_the_server_refuses_control_characters_in_record_ids(server, coordinator, batches,
                                                             schema_text):
    tokens = _create(coordinator, schema_text)
    batch = batches["be-police"]
    ids = ["x\n2\ty", "plain"]
    clks = clks_to_bytes(batch.clks[:2])
    digest = content_hash(ids, clks, None)
    header = pb.BatchHeader(project=PROJECT, schema_fingerprint=batch.schema_fingerprint,
                            key_check=batch.key_check, clk_bits=batch.clk_bits, record_count=2,
                            batch_id=upload_batch_id(PROJECT, digest), content_hash=digest)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.AgencyServiceStub(channel)
        code, details = _code(lambda: stub.SubmitBatch(
            iter([pb.SubmitBatchRequest(header=header),
                  pb.SubmitBatchRequest(chunk=pb.RecordChunk(record_ids=ids, clks=clks))]),
            metadata=(("authorization", f"Bearer {tokens['be-police']}"),), timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "U+000A" in details


# -- withdrawing batches ------------------------------------------------------------------------

def test_an_agency_withdraws_its_own_batch_before_a_run(server, coordinator, batches,
                                                        schema_text):
    tokens = _create(coordinator, schema_text)
    with LinkageClient(server.address, tokens["be-police"]) as police:
        receipt = police.submit(PROJECT, batches["be-police"])
    with LinkageClient(server.address, tokens["be-customs"]) as customs:
        code, _ = _code(lambda: customs.withdraw_batch(PROJECT, receipt.batch_id))
    assert code == grpc.StatusCode.NOT_FOUND  # another agency's batch: as if absent
    with LinkageClient(server.address, tokens["be-police"]) as police:
        withdrawn = police.withdraw_batch(PROJECT, receipt.batch_id)
        assert withdrawn == {"batch_id": receipt.batch_id,
                             "records_withdrawn": len(batches["be-police"]),
                             "unfinished_upload": False}
        again = police.submit(PROJECT, batches["be-police"])  # the same ids may come back
    assert again.records_accepted == len(batches["be-police"])
    project = next(p for p in coordinator.list_projects() if p["name"] == PROJECT)
    assert project["batches"] == 1 and project["records"] == len(batches["be-police"])


def test_the_coordinator_withdraws_any_batch_but_not_one_a_run_used(server, coordinator,
                                                                    batches, schema_text):
    tokens = _create(coordinator, schema_text)
    for name in AGENCIES[:2]:
        with LinkageClient(server.address, tokens[name]) as agency:
            agency.submit(PROJECT, batches[name])
    coordinator.run(PROJECT, "0.8")
    with LinkageClient(server.address, tokens["se-police"]) as swedes:
        fresh = swedes.submit(PROJECT, batches["se-police"])  # new, not yet linked
    withdrawn = coordinator.withdraw_batch(PROJECT, fresh.batch_id, role="coordinator")
    assert withdrawn["records_withdrawn"] == len(batches["se-police"])
    linked_batch = upload_batch_id(PROJECT, content_hash(
        batches["be-police"].record_ids, clks_to_bytes(batches["be-police"].clks),
        batches["be-police"].attributes))
    code, details = _code(lambda: coordinator.withdraw_batch(PROJECT, linked_batch,
                                                             role="coordinator"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "purge" in details
    coordinator.run(PROJECT, "0.8")  # the project still links


def test_an_unfinished_upload_can_be_withdrawn(server, coordinator, batches, schema_text):
    tokens = _create(coordinator, schema_text)
    batch = batches["be-police"]
    digest = content_hash(batch.record_ids, clks_to_bytes(batch.clks), batch.attributes)
    batch_id = upload_batch_id(PROJECT, digest)
    header = pb.BatchHeader(project=PROJECT, schema_fingerprint=batch.schema_fingerprint,
                            key_check=batch.key_check, clk_bits=batch.clk_bits,
                            record_count=len(batch), batch_id=batch_id, content_hash=digest,
                            entity_type=batch.entity_type)
    first = pb.RecordChunk(record_ids=batch.record_ids[:10],
                           clks=clks_to_bytes(batch.clks[:10]),
                           attributes=[pb.RecordAttributes(entity_type=a.entity_type,
                                                           case_ref=a.case_ref, stage=a.stage)
                                       for a in (batch.attributes or [])[:10]])
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.AgencyServiceStub(channel)
        _code(lambda: stub.SubmitBatch(
            iter([pb.SubmitBatchRequest(header=header), pb.SubmitBatchRequest(chunk=first)]),
            metadata=(("authorization", f"Bearer {tokens['be-police']}"),), timeout=30))
    with LinkageClient(server.address, tokens["be-police"]) as police:
        withdrawn = police.withdraw_batch(PROJECT, batch_id)
    assert withdrawn == {"batch_id": batch_id, "records_withdrawn": 10, "unfinished_upload": True}


# -- note bombs ---------------------------------------------------------------------------------

def test_a_note_bomb_is_refused_and_reports_and_results_stay_readable(server, coordinator,
                                                                      batches, schema_text):
    tokens = _linked(server, coordinator, batches, schema_text)
    with LinkageClient(server.address, tokens["be-police"]) as police:
        hit = next(h for h in police.results(PROJECT) if "be-customs" in h["agencies"])
        for _ in range(2):
            code, details = _code(lambda: police.open_follow_up(PROJECT, hit["group"],
                                                                "x" * (3 * MiB)))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and str(MAX_NOTE_CHARS) in details
        for _ in range(MAX_FOLLOW_UPS_PER_GROUP_AGENCY):
            police.open_follow_up(PROJECT, hit["group"], "y" * MAX_NOTE_CHARS)
        code, _ = _code(lambda: police.open_follow_up(PROJECT, hit["group"], "one more"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = _code(lambda: coordinator.review(PROJECT, hit["group"], "accepted", "z" * 3 * MiB))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    with LinkageClient(server.address, tokens["be-customs"]) as customs:
        asked = [f for h in customs.results(PROJECT) for f in h["follow_ups"]]
        code, _ = _code(lambda: customs.answer_follow_up(PROJECT, asked[0]["id"], "approved",
                                                         "w" * 3 * MiB))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    group = {g["id"]: g for g in coordinator.report(PROJECT)["groups"]}[hit["group"]]
    assert len([f for f in group["follow_ups"] if f["agency"] == "be-customs"]) == \
        MAX_FOLLOW_UPS_PER_GROUP_AGENCY


@pytest.mark.slow
def test_report_groups_come_in_pages_that_fit_the_limit(tmp_path, batches, schema_text):
    with ServerProcess(tmp_path / "data", extra_args=("--report-page-bytes", "4096")) as server:
        with server.client(server.coordinator_token, timeout=120) as coordinator:
            _linked(server, coordinator, batches, schema_text)
            first = coordinator.coordinator.GetReport(
                pb.GetReportRequest(project=PROJECT),
                metadata=(("authorization", f"Bearer {server.coordinator_token}"),), timeout=30)
            assert first.next_page_token and first.ByteSize() <= 4096
            pages, token = 1, first.next_page_token
            while token:
                page = coordinator.coordinator.GetReport(
                    pb.GetReportRequest(project=PROJECT, page_token=token),
                    metadata=(("authorization", f"Bearer {server.coordinator_token}"),),
                    timeout=30)
                assert page.ByteSize() <= 4096 + 1024
                pages, token = pages + 1, page.next_page_token
            report = coordinator.report(PROJECT)
            assert len(report["groups"]) == first.groups_total > len(first.groups)
            assert len({g["id"] for g in report["groups"]}) == first.groups_total
            assert isinstance(report["network"], dict)  # the pieces join into one document
            assert pages > 2
            code, _ = _code(lambda: coordinator.coordinator.GetReport(
                pb.GetReportRequest(project=PROJECT, page_token="nonsense"),
                metadata=(("authorization", f"Bearer {server.coordinator_token}"),),
                timeout=30))
            assert code == grpc.StatusCode.INVALID_ARGUMENT


# -- concurrent runs ----------------------------------------------------------------------------

def test_concurrent_runs_of_one_project_do_not_store_the_pairs_twice(server, coordinator,
                                                                     batches, schema_text):
    tokens = _create(coordinator, schema_text)
    for name in AGENCIES:
        with LinkageClient(server.address, tokens[name]) as agency:
            agency.submit(PROJECT, batches[name])
    outcomes: list = []

    def run():
        with LinkageClient(server.address, server.coordinator_token) as client:
            try:
                outcomes.append(client.run(PROJECT, "0.8"))
            except grpc.RpcError as error:
                outcomes.append(error.code())

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    summaries = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if not isinstance(o, dict)]
    assert summaries and set(refused) <= {grpc.StatusCode.FAILED_PRECONDITION}
    numbers = [s["run"] for s in summaries]
    assert len(set(numbers)) == len(numbers)  # never two runs claiming the same number
    fresh = coordinator.run(PROJECT, "0.8")
    assert fresh["candidate_pairs"] == summaries[0]["candidate_pairs"]


# -- audit log ------------------------------------------------------------------------------------

def test_audit_entries_name_the_tokens_project_and_bound_what_they_log(server, coordinator,
                                                                       schema_text):
    tokens = _create(coordinator, schema_text)
    _create(coordinator, schema_text, ["other", "another"], project="victim")
    with LinkageClient(server.address, tokens["be-police"]) as police:
        code, _ = _code(lambda: list(police.results("victim")))
        assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = _code(lambda: coordinator.report("p" * (3 * MiB)))
    assert code == grpc.StatusCode.NOT_FOUND
    operator_token = (server.data_dir / "operator.token").read_text().strip()
    with LinkageClient(server.address, operator_token) as operator:
        entries = list(operator.audit_log())
        planted = [e for e in entries if e.caller == "be-police" and e.method == "GetResults"]
        assert planted and all(e.project == PROJECT for e in planted)
        assert not [e for e in entries if e.project == "victim" and e.caller == "be-police"]
        assert max(len(e.project) for e in entries) <= 201
        assert json.loads(entries[-1].counts_json) is not None
