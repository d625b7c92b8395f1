"""What one caller may make the server keep: unfinished uploads, files other local users could
read, foreign batch ids. Each against a real server."""

from __future__ import annotations

import os
import stat
import threading
import time

import grpc
import pytest
from click.testing import CliRunner

from linkage_service.client.api import LinkageClient
from linkage_service.client.demo import ServerProcess
from linkage.batch import content_hash, upload_batch_id
from linkage.clks import clks_to_bytes
from linkage_service.client.synthetic import DEFAULT_STAGES
from linkage_service.protos.linkage.v1 import linkage_pb2 as pb
from linkage_service.protos.linkage.v1 import linkage_pb2_grpc as pb_grpc
from linkage_service.server.main import main as server_main

PROJECT = "resources"


@pytest.fixture(autouse=True)
def _keep_umask():
    """``linkage-server`` sets umask 077 for its process; CliRunner runs it in this one."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


def _header(batch, record_count=None, salt=""):
    ids = [record_id + salt for record_id in batch.record_ids]
    digest = content_hash(ids, clks_to_bytes(batch.clks), batch.attributes)
    return ids, pb.BatchHeader(
        project=PROJECT, schema_fingerprint=batch.schema_fingerprint, key_check=batch.key_check,
        clk_bits=batch.clk_bits, record_count=record_count or len(batch),
        batch_id=upload_batch_id(PROJECT, digest), content_hash=digest,
        entity_type=batch.entity_type)


def _partial_upload(server, token, batch, salt, records=5, record_count=None):
    """An upload that sends its header and a few records, then hangs up."""
    ids, header = _header(batch, record_count, salt)
    chunk = pb.RecordChunk(record_ids=ids[:records], clks=clks_to_bytes(batch.clks[:records]),
                           attributes=[pb.RecordAttributes(entity_type=a.entity_type,
                                                           case_ref=a.case_ref, stage=a.stage)
                                       for a in (batch.attributes or [])[:records]])
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.AgencyServiceStub(channel)
        try:
            stub.SubmitBatch(iter([pb.SubmitBatchRequest(header=header),
                                   pb.SubmitBatchRequest(chunk=chunk)]),
                             metadata=(("authorization", f"Bearer {token}"),), timeout=30)
        except grpc.RpcError as error:
            return error.code(), error.details(), header.batch_id
    return grpc.StatusCode.OK, "", header.batch_id


def _operator(server):
    return LinkageClient(server.address, (server.data_dir / "operator.token").read_text().strip())


def test_unfinished_uploads_are_bounded_per_agency_and_shown_in_metrics(server, coordinator,
                                                                       batches, schema_text):
    tokens = coordinator.create_project(PROJECT, schema_text, ["a", "b"], list(DEFAULT_STAGES))
    batch = batches["be-police"]
    held = []
    for number in range(4):
        code, _, batch_id = _partial_upload(server, tokens["a"], batch, f"-{number}")
        assert code == grpc.StatusCode.INVALID_ARGUMENT  # incomplete: kept for resuming
        held.append(batch_id)
    code, details, _ = _partial_upload(server, tokens["a"], batch, "-4")
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "withdraw" in details
    code, _, _ = _partial_upload(server, tokens["b"], batch, "-b")  # other agencies unaffected
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    with _operator(server) as operator:
        metrics = operator.metrics()
    assert metrics["unfinished_uploads"] == 5 and metrics["unfinished_upload_bytes"] > 0
    with LinkageClient(server.address, tokens["a"]) as agency:
        agency.withdraw_batch(PROJECT, held[0])
    code, _, _ = _partial_upload(server, tokens["a"], batch, "-5")
    assert code == grpc.StatusCode.INVALID_ARGUMENT  # a slot was freed


def test_a_header_announcing_absurd_counts_is_refused(server, coordinator, batches,
                                                      schema_text):
    tokens = coordinator.create_project(PROJECT, schema_text, ["a", "b"], list(DEFAULT_STAGES))
    code, details, _ = _partial_upload(server, tokens["a"], batches["be-police"], "",
                                       record_count=10**12)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "at most" in details
    with _operator(server) as operator:
        assert operator.metrics()["unfinished_uploads"] == 0


@pytest.mark.slow
def test_stale_uploads_expire_at_start(tmp_path, batches, schema_text):
    data_dir = tmp_path / "data"
    with ServerProcess(data_dir) as server:
        with server.client(server.coordinator_token) as coordinator:
            tokens = coordinator.create_project(PROJECT, schema_text, ["a", "b"],
                                                list(DEFAULT_STAGES))
        _partial_upload(server, tokens["a"], batches["be-police"], "")
    time.sleep(1.1)
    with ServerProcess(data_dir, extra_args=("--upload-expiry-hours", "0.0001")) as server:
        with _operator(server) as operator:
            assert operator.metrics()["unfinished_uploads"] == 0


def test_upload_status_answers_the_same_for_absent_and_foreign_batches(server, coordinator,
                                                                      batches, schema_text):
    tokens = coordinator.create_project(PROJECT, schema_text, ["a", "b"], list(DEFAULT_STAGES))
    other = coordinator.create_project("other", schema_text, ["x", "y"], list(DEFAULT_STAGES))
    with LinkageClient(server.address, tokens["a"]) as agency:
        receipt = agency.submit(PROJECT, batches["be-police"])
    metadata = (("authorization", f"Bearer {other['x']}"),)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.AgencyServiceStub(channel)
        foreign = stub.GetUploadStatus(pb.GetUploadStatusRequest(
            project="other", batch_id=receipt.batch_id), metadata=metadata, timeout=10)
        absent = stub.GetUploadStatus(pb.GetUploadStatusRequest(
            project="other", batch_id="b-" + "0" * 16), metadata=metadata, timeout=10)
    assert (foreign.records_received, foreign.committed) == (absent.records_received,
                                                             absent.committed) == (0, False)


def test_files_are_private_to_the_servers_user(tmp_path, batches, schema_text):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    with ServerProcess(data_dir) as server:
        with server.client(server.coordinator_token) as coordinator:
            tokens = coordinator.create_project(PROJECT, schema_text, ["a", "b"],
                                                list(DEFAULT_STAGES))
        with LinkageClient(server.address, tokens["a"]) as agency:
            agency.submit(PROJECT, batches["be-police"])
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        written = [p for p in data_dir.iterdir()]
        assert any(p.name.endswith("-wal") for p in written)
        for path in written:
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
        backup = tmp_path / "backup"
        result = CliRunner().invoke(server_main, ["--data-dir", str(data_dir), "backup", "-o",
                                                  str(backup)])
        assert result.exit_code == 0, result.output
        assert stat.S_IMODE(backup.stat().st_mode) == 0o700
        for path in backup.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_the_token_writer_does_not_follow_a_planted_symlink(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    target = tmp_path / "elsewhere.txt"
    target.write_text("untouched\n")
    os.symlink(target, data_dir / "coordinator.token")
    with ServerProcess(data_dir) as server:
        assert not (data_dir / "coordinator.token").is_symlink()
        assert len(server.coordinator_token) > 20
    assert target.read_text() == "untouched\n"


def test_a_data_directory_that_is_a_symlink_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    os.symlink(real, tmp_path / "link")
    result = CliRunner().invoke(server_main, ["--data-dir", str(tmp_path / "link"),
                                              "--listen", "127.0.0.1:0"])
    assert result.exit_code != 0 and "symlink" in result.output


def test_one_agency_cannot_hold_every_upload_slot(tmp_path, batches, schema_text):
    with ServerProcess(tmp_path / "data") as server:
        with server.client(server.coordinator_token) as coordinator:
            tokens = coordinator.create_project(PROJECT, schema_text, ["a", "b"],
                                                list(DEFAULT_STAGES))
        release = threading.Event()
        ids, header = _header(batches["be-police"])

        def header_then_wait():
            yield pb.SubmitBatchRequest(header=header)
            release.wait(20)

        channels = [grpc.insecure_channel(server.address) for _ in range(4)]
        calls = [channel.stream_unary("/linkage.v1.AgencyService/SubmitBatch",
                                      request_serializer=pb.SubmitBatchRequest.SerializeToString,
                                      response_deserializer=pb.SubmitBatchResponse.FromString
                                      ).future(header_then_wait(),
                                               metadata=(("authorization",
                                                          f"Bearer {tokens['a']}"),),
                                               timeout=365 * 86400)
                 for channel in channels]
        time.sleep(1.0)
        with LinkageClient(server.address, tokens["b"], timeout=30) as other:
            receipt = other.submit(PROJECT, batches["be-customs"], retries=0)
        assert receipt.records_accepted == len(batches["be-customs"])
        release.set()
        codes = []
        for call in calls:
            try:
                call.result(timeout=30)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                codes.append(error.code())
        for channel in channels:
            channel.close()
        # a 365-day deadline is refused outright; nothing held a slot
        assert set(codes) == {grpc.StatusCode.INVALID_ARGUMENT}, codes


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory away")
def test_a_data_directory_of_another_user_is_refused(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 12345, 12345)
    result = CliRunner().invoke(server_main, ["--data-dir", str(foreign),
                                              "--listen", "127.0.0.1:0"])
    assert result.exit_code != 0 and "belongs to user id 12345" in result.output
