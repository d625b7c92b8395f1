"""The real server on loopback, driven through the client library and raw stubs."""

from __future__ import annotations

import json
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from linkage_service.client.api import LinkageClient
from linkage_service.client.demo import ServerProcess
from linkage.batch import EncodedBatch, content_hash, upload_batch_id
from linkage.clks import clks_to_bytes
from linkage.encoding.encoder import key_check_value
from linkage_service.client.synthetic import DEFAULT_STAGES
from linkage_service.protos.linkage.v1 import linkage_pb2 as pb
from linkage_service.protos.linkage.v1 import linkage_pb2_grpc as pb_grpc

PROJECT = "test-project"


def _create(coordinator, schema_text, agencies, name=PROJECT):
    return coordinator.create_project(name, schema_text, agencies, list(DEFAULT_STAGES))


def _raw_submit(server, token, messages):
    channel = grpc.insecure_channel(server.address)
    try:
        stub = pb_grpc.AgencyServiceStub(channel)
        return stub.SubmitBatch(iter(messages), metadata=(("authorization", f"Bearer {token}"),),
                                timeout=60)
    finally:
        channel.close()


def _header(batch, **overrides):
    digest = content_hash(batch.record_ids, clks_to_bytes(batch.clks), batch.attributes)
    fields = dict(project=PROJECT, schema_fingerprint=batch.schema_fingerprint,
                  key_check=batch.key_check, clk_bits=batch.clk_bits, record_count=len(batch),
                  batch_id=upload_batch_id(PROJECT, digest), content_hash=digest,
                  entity_type=batch.entity_type)
    fields.update(overrides)
    return pb.SubmitBatchRequest(header=pb.BatchHeader(**fields))


def _chunk(batch, start=0, stop=None, clk_override=None, first_record=None):
    stop = len(batch) if stop is None else stop
    clks = clks_to_bytes(batch.clks[start:stop])
    if clk_override is not None:
        clks[0] = clk_override
    attributes = [pb.RecordAttributes(entity_type=a.entity_type, case_ref=a.case_ref,
                                      stage=a.stage)
                  for a in (batch.attributes or [])[start:stop]]
    return pb.SubmitBatchRequest(chunk=pb.RecordChunk(
        record_ids=batch.record_ids[start:stop], clks=clks,
        first_record=start if first_record is None else first_record, attributes=attributes))


def _upload_status(server, token, batch_id):
    channel = grpc.insecure_channel(server.address)
    try:
        return pb_grpc.AgencyServiceStub(channel).GetUploadStatus(
            pb.GetUploadStatusRequest(project=PROJECT, batch_id=batch_id),
            metadata=(("authorization", f"Bearer {token}"),), timeout=30)
    finally:
        channel.close()


def _stored_records(coordinator):
    return {p["name"]: p["records"] for p in coordinator.list_projects()}


def test_end_to_end_groups_cross_agency_records(server, coordinator, batches, schema_text,
                                                dataset):
    tokens = _create(coordinator, schema_text, list(batches))
    for name, batch in batches.items():
        with LinkageClient(server.address, tokens[name]) as agency:
            receipt = agency.submit(PROJECT, batch)
        assert receipt.records_accepted == len(batch)
        assert receipt.agency == name
    summary = coordinator.run(PROJECT, "auto")
    assert summary["records"] == sum(len(b) for b in batches.values())
    assert summary["cross_agency_groups"] > 0
    report = coordinator.report(PROJECT)
    assert 0.5 <= report["threshold"] <= 1.0
    assert report["threshold_reason"].startswith("auto")
    assert set(report["agencies"]) == set(batches)
    assert all(0.0 <= g["confidence"] <= 1.0 for g in report["groups"])
    # The coordinator's report never carries record ids.
    text = json.dumps(report)
    for batch in batches.values():
        assert not any(f'"{rid}"' in text for rid in batch.record_ids)


def test_agency_sees_only_its_own_record_ids(server, coordinator, batches, schema_text):
    tokens = _create(coordinator, schema_text, list(batches))
    for name, batch in batches.items():
        with LinkageClient(server.address, tokens[name]) as agency:
            agency.submit(PROJECT, batch)
    coordinator.run(PROJECT, "0.8")
    for name, batch in batches.items():
        own = set(batch.record_ids)
        with LinkageClient(server.address, tokens[name]) as agency:
            hits = list(agency.results(PROJECT))
        assert hits, f"{name} should have some hits"
        assert {h["record"] for h in hits} <= own
        others = {rid for other, b in batches.items() if other != name for rid in b.record_ids}
        leaked = json.dumps(hits)
        assert not any(f'"{rid}"' in leaked for rid in others - own)
        assert all(name not in h["agencies"] for h in hits)
        assert set().union(*(h["agencies"] for h in hits)) <= set(batches) - {name}


def test_review_is_recorded_and_reported(server, coordinator, batches, schema_text):
    tokens = _create(coordinator, schema_text, list(batches)[:2])
    for name in list(batches)[:2]:
        with LinkageClient(server.address, tokens[name]) as agency:
            agency.submit(PROJECT, batches[name])
    coordinator.run(PROJECT, "0.75")
    group = coordinator.report(PROJECT)["groups"][0]["id"]
    coordinator.review(PROJECT, group, "rejected", "different people")
    reviewed = {g["id"]: g for g in coordinator.report(PROJECT)["groups"]}[group]
    assert reviewed["review"] == "rejected"
    assert reviewed["review_note"] == "different people"
    with pytest.raises(grpc.RpcError) as error:
        coordinator.review(PROJECT, "g-doesnotexist", "accepted")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_wrong_schema_is_refused_and_nothing_stored(server, coordinator, batches, schema_text):
    tokens = _create(coordinator, schema_text, ["be-police", "se-police"])
    batch = batches["be-police"]
    with pytest.raises(grpc.RpcError) as error:
        _raw_submit(server, tokens["be-police"], [_header(batch, schema_fingerprint="ab" * 32),
                                                  _chunk(batch)])
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "another linkage schema" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        _raw_submit(server, tokens["be-police"], [_header(batch, clk_bits=batch.clk_bits * 2), _chunk(batch)])
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _stored_records(coordinator)[PROJECT] == 0


def test_wrong_secret_is_refused(server, coordinator, batches, schema_text):
    tokens = _create(coordinator, schema_text, ["be-police", "se-police"])
    with LinkageClient(server.address, tokens["be-police"]) as agency:
        agency.submit(PROJECT, batches["be-police"])
    other = batches["se-police"]
    foreign = EncodedBatch(other.record_ids, other.clks, other.clk_bits, other.schema_fingerprint,
                           key_check_value(b"another secret entirely, 32 bytes!!"))
    with LinkageClient(server.address, tokens["se-police"]) as agency:
        with pytest.raises(grpc.RpcError) as error:
            agency.submit(PROJECT, foreign)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "different secret" in error.value.details()
    assert _stored_records(coordinator)[PROJECT] == len(batches["be-police"])


@pytest.mark.parametrize("case, code, words", [
    ("short_clk", grpc.StatusCode.INVALID_ARGUMENT, "bits"),
    ("truncated", grpc.StatusCode.INVALID_ARGUMENT, "truncated"),
    ("too_many", grpc.StatusCode.INVALID_ARGUMENT, "more records"),
    ("duplicate_ids", grpc.StatusCode.INVALID_ARGUMENT, "more than once"),
    ("empty", grpc.StatusCode.INVALID_ARGUMENT, "no records"),
    ("no_header", grpc.StatusCode.INVALID_ARGUMENT, "header"),
    ("mismatched_chunk", grpc.StatusCode.INVALID_ARGUMENT, "record ids but"),
    ("unknown_project", grpc.StatusCode.PERMISSION_DENIED, "belongs to project"),
    ("wrong_hash", grpc.StatusCode.INVALID_ARGUMENT, "corrupted"),
    ("out_of_order", grpc.StatusCode.INVALID_ARGUMENT, "resume from record 0"),
    ("bad_batch_id", grpc.StatusCode.INVALID_ARGUMENT, "batch id"),
    ("raw_case_number", grpc.StatusCode.INVALID_ARGUMENT, "pseudonymised"),
    ("unknown_stage", grpc.StatusCode.INVALID_ARGUMENT, "vocabulary"),
])
def test_malformed_uploads_get_clear_errors_and_store_nothing(server, coordinator, batches,
                                                              schema_text, case, code, words):
    tokens = _create(coordinator, schema_text, ["be-police", "se-police"])
    batch = batches["be-police"]
    messages = {
        "short_clk": [_header(batch), _chunk(batch, clk_override=b"\x00" * 64)],
        "truncated": [_header(batch), _chunk(batch, 0, len(batch) - 3)],
        "too_many": [_header(batch, record_count=5), _chunk(batch)],
        "duplicate_ids": [_header(batch, record_count=2), pb.SubmitBatchRequest(
            chunk=pb.RecordChunk(record_ids=["x", "x"],
                                 clks=[bytes(batch.clk_bits // 8), bytes(batch.clk_bits // 8)]))],
        "empty": [_header(batch, record_count=0)],
        "no_header": [_chunk(batch)],
        "mismatched_chunk": [_header(batch), pb.SubmitBatchRequest(
            chunk=pb.RecordChunk(record_ids=["a", "b"], clks=[bytes(batch.clk_bits // 8)]))],
        "unknown_project": [_header(batch, project="nope"), _chunk(batch)],
        "wrong_hash": [_header(batch, content_hash="0" * 64), _chunk(batch)],
        "out_of_order": [_header(batch), _chunk(batch, 10, 20)],
        "bad_batch_id": [_header(batch, batch_id="../etc"), _chunk(batch)],
        "raw_case_number": [_header(batch, record_count=1), pb.SubmitBatchRequest(
            chunk=pb.RecordChunk(record_ids=["x"], clks=[bytes(batch.clk_bits // 8)], attributes=[
                pb.RecordAttributes(entity_type="person", case_ref="PV/2024/123")]))],
        "unknown_stage": [_header(batch, record_count=1), pb.SubmitBatchRequest(
            chunk=pb.RecordChunk(record_ids=["x"], clks=[bytes(batch.clk_bits // 8)], attributes=[
                pb.RecordAttributes(entity_type="person", stage="smuggling")]))],
    }[case]
    with pytest.raises(grpc.RpcError) as error:
        _raw_submit(server, tokens["be-police"], messages)
    assert error.value.code() == code
    assert words in error.value.details()
    assert _stored_records(coordinator)[PROJECT] == 0


def test_resubmitting_the_same_batch_stores_it_once(server, coordinator, batches, schema_text):
    tokens = _create(coordinator, schema_text, ["be-police", "se-police"])
    with LinkageClient(server.address, tokens["be-police"]) as agency:
        first = agency.submit(PROJECT, batches["be-police"])
        second = agency.submit(PROJECT, batches["be-police"])
    assert first.batch_id == second.batch_id
    assert not first.already_stored and second.already_stored
    assert _stored_records(coordinator)[PROJECT] == len(batches["be-police"])


def test_an_interrupted_upload_resumes_where_the_server_left_off(server, coordinator, batches,
                                                                 schema_text):
    tokens = _create(coordinator, schema_text, ["be-police", "se-police"])
    batch = batches["be-police"]
    header = _header(batch)
    with pytest.raises(grpc.RpcError) as error:
        _raw_submit(server, tokens["be-police"], [header, _chunk(batch, 0, 100)])
    assert "truncated" in error.value.details() and "resume" in error.value.details()
    assert _stored_records(coordinator)[PROJECT] == 0
    status = _upload_status(server, tokens["be-police"], header.header.batch_id)
    assert status.records_received == 100 and not status.committed
    with LinkageClient(server.address, tokens["be-police"]) as agency:
        receipt = agency.submit(PROJECT, batch)
    assert receipt.records_accepted == len(batch) and not receipt.already_stored
    assert _stored_records(coordinator)[PROJECT] == len(batch)
    status = _upload_status(server, tokens["be-police"], header.header.batch_id)
    assert status.committed


def test_authentication_and_roles(server, coordinator, batches, schema_text):
    tokens = _create(coordinator, schema_text, ["be-police", "se-police"])
    with LinkageClient(server.address, "not-a-token") as stranger:
        with pytest.raises(grpc.RpcError) as error:
            stranger.list_projects()
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with LinkageClient(server.address, tokens["be-police"]) as agency:
        with pytest.raises(grpc.RpcError) as error:
            agency.report(PROJECT)
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as error:
        coordinator.submit(PROJECT, batches["be-police"])
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    channel = grpc.insecure_channel(server.address)
    with pytest.raises(grpc.RpcError) as error:
        pb_grpc.CoordinatorServiceStub(channel).ListProjects(pb.ListProjectsRequest(), timeout=10)
    channel.close()
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_unknown_project_and_missing_run(server, coordinator, schema_text):
    with pytest.raises(grpc.RpcError) as error:
        coordinator.report("no-such-project")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    _create(coordinator, schema_text, ["a", "b"])
    with pytest.raises(grpc.RpcError) as error:
        coordinator.report(PROJECT)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as error:
        coordinator.run(PROJECT)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as error:
        _create(coordinator, schema_text, ["a", "b"])
    assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as error:
        coordinator.create_project("bad", '{"version": 3}', ["a", "b"])
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as error:
        coordinator.run(PROJECT, "1.7")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_restart_keeps_data_and_credentials(tmp_path, batches, schema_text):
    data_dir = tmp_path / "data"
    with ServerProcess(data_dir) as server:
        token = server.coordinator_token
        with LinkageClient(server.address, token) as coordinator:
            tokens = _create(coordinator, schema_text, ["be-police", "se-police"])
            for name in tokens:
                with LinkageClient(server.address, tokens[name]) as agency:
                    agency.submit(PROJECT, batches[name])
            coordinator.run(PROJECT, "0.8")
            before = coordinator.report(PROJECT)
    with ServerProcess(data_dir) as server:
        assert server.coordinator_token == token
        with LinkageClient(server.address, token) as coordinator:
            assert coordinator.report(PROJECT) == before
        with LinkageClient(server.address, tokens["se-police"]) as agency:
            assert list(agency.results(PROJECT))


def test_health_and_reflection(server):
    channel = grpc.insecure_channel(server.address)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "linkage.v1.AgencyService", "linkage.v1.CoordinatorService"):
            response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
        names = {s.name for r in responses for s in r.list_services_response.service}
        assert {"linkage.v1.AgencyService", "linkage.v1.CoordinatorService"} <= names
    finally:
        channel.close()


def test_server_store_holds_no_raw_identifiers_or_secret(server, coordinator, batches,
                                                         schema_text, dataset, secret):
    tokens = _create(coordinator, schema_text, list(batches))
    for name, batch in batches.items():
        with LinkageClient(server.address, tokens[name]) as agency:
            agency.submit(PROJECT, batch)
    coordinator.run(PROJECT, "auto")
    stored = b"".join(p.read_bytes() for p in server.data_dir.rglob("*") if p.is_file())
    assert secret not in stored and secret.hex().encode() not in stored
    export = dataset.exports["be-police"]
    surname_column = export.profile.columns["family_name"]
    surnames = {row[surname_column] for row in export.rows if len(row[surname_column]) >= 6}
    assert surnames
    assert not any(name.encode("utf-8") in stored for name in surnames)


def test_offline_match_finds_the_same_pairs_as_the_server(server, coordinator, batches,
                                                          schema_text):
    from linkage.matching.offline import match_batches
    left, right = batches["port-antwerp"], batches["se-customs"]
    offline, _ = match_batches(left, right, 0.8)
    tokens = _create(coordinator, schema_text, ["port-antwerp", "se-customs"])
    for name in tokens:
        with LinkageClient(server.address, tokens[name]) as agency:
            agency.submit(PROJECT, batches[name])
    coordinator.run(PROJECT, "0.8")
    groups: dict[str, dict[str, list[str]]] = {}
    for name in tokens:
        with LinkageClient(server.address, tokens[name]) as agency:
            for hit in agency.results(PROJECT):
                groups.setdefault(hit["group"], {}).setdefault(name, []).append(hit["record"])
    online = sorted((g["port-antwerp"][0], g["se-customs"][0]) for g in groups.values()
                    if len(g) == 2 and all(len(v) == 1 for v in g.values()))
    assert online
    assert online == sorted((a, b) for a, b, _ in offline)
    assert np.isfinite([c for _, _, c in offline]).all()


def test_a_saturated_server_says_retry_and_the_client_does(tmp_path, batches, schema_text):
    import threading

    with ServerProcess(tmp_path / "data", extra_args=("--max-uploads", "1")) as server:
        with LinkageClient(server.address, server.coordinator_token) as coordinator:
            tokens = _create(coordinator, schema_text, ["be-police", "se-police"])
        held, release = threading.Event(), threading.Event()
        batch = batches["be-police"]

        def slow_upload():
            yield _header(batch)
            held.set()
            release.wait(30)
            yield _chunk(batch)

        first = threading.Thread(target=lambda: _raw_submit(server, tokens["be-police"],
                                                            slow_upload()))
        first.start()
        assert held.wait(10)
        time.sleep(0.3)  # the server is now inside the first upload
        with LinkageClient(server.address, tokens["se-police"]) as agency:
            with pytest.raises(grpc.RpcError) as error:
                agency.submit(PROJECT, batches["se-police"], retries=0)
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "retry" in error.value.details()
            threading.Timer(1.0, release.set).start()
            receipt = agency.submit(PROJECT, batches["se-police"], retries=10, backoff=0.2)
        first.join(30)
        assert receipt.records_accepted == len(batches["se-police"])
        with LinkageClient(server.address, server.coordinator_token) as coordinator:
            assert _stored_records(coordinator)[PROJECT] == len(batch) + len(batches["se-police"])


def test_follow_ups_reach_the_asked_agency_and_answers_are_recorded(server, coordinator,
                                                                   batches, schema_text):
    names = ["be-police", "be-customs", "se-police"]
    tokens = _create(coordinator, schema_text, names)
    for name in names:
        with LinkageClient(server.address, tokens[name]) as agency:
            agency.submit(PROJECT, batches[name])
    coordinator.run(PROJECT, "0.8")
    with LinkageClient(server.address, tokens["be-police"]) as police:
        hit = next(h for h in police.results(PROJECT) if "be-customs" in h["agencies"])
        opened = police.open_follow_up(PROJECT, hit["group"], "case AN.12")
        assert [f["agency"] for f in opened] == sorted(hit["agencies"])
        foreign = next(h for h in police.results(PROJECT))  # sanity: still readable
        assert foreign
    with LinkageClient(server.address, tokens["be-customs"]) as customs:
        mine = [f for h in customs.results(PROJECT) for f in h["follow_ups"]]
        asked = next(f for f in mine if f["group"] == hit["group"])
        assert asked["requested_by"] == "be-police" and asked["status"] == "open"
        answered = customs.answer_follow_up(PROJECT, asked["id"], "approved", "send request")
        assert answered["status"] == "approved"
        with pytest.raises(grpc.RpcError) as error:
            customs.answer_follow_up(PROJECT, asked["id"], "declined")
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
    group = {g["id"]: g for g in coordinator.report(PROJECT)["groups"]}[hit["group"]]
    assert any(f["status"] == "approved" and f["answer_note"] == "send request"
               for f in group["follow_ups"])
    report_text = json.dumps(coordinator.report(PROJECT))
    assert not any(f'"{rid}"' in report_text for rid in batches["be-police"].record_ids)
    with LinkageClient(server.address, tokens["se-police"]) as swedes:
        not_mine = next((g for g in coordinator.report(PROJECT)["groups"]
                         if "se-police" not in g["agencies"]), None)
        assert not_mine is not None
        with pytest.raises(grpc.RpcError) as error:
            swedes.open_follow_up(PROJECT, not_mine["id"])
        # the same answer as for a group that does not exist (no existence oracle)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
    opened_by_coordinator = coordinator.open_follow_up(PROJECT, hit["group"], "coordinator asks",
                                                       role="coordinator")
    assert {f["requested_by"] for f in opened_by_coordinator} == {"coordinator"}
