"""The server as a new operator or a third-party gRPC client meets it (issue 15)."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest
from click.testing import CliRunner
from grpc_reflection.v1alpha import reflection_pb2

from linkage_service.client.api import LinkageClient
from linkage_service.client.demo import ServerProcess
from linkage.batch import EncodedBatch, RecordAttributes
from linkage_service.protos.linkage.v1 import linkage_pb2 as pb
from linkage_service.server.main import main as server_main


def test_listen_without_a_host_says_host_port(tmp_path):
    result = CliRunner().invoke(server_main, ["--data-dir", str(tmp_path / "d"), "--listen",
                                              "50064"])
    assert result.exit_code == 2
    assert "expected HOST:PORT (e.g. 127.0.0.1:50064)" in result.output
    assert "TLS" not in result.output


def test_server_help_names_both_credentials():
    result = CliRunner().invoke(server_main, ["--help"])
    assert "coordinator.token" in result.output and "operator.token" in result.output


def _one_stage_batch(batches) -> EncodedBatch:
    batch = batches["be-police"]
    attributes = [RecordAttributes("person", "", "port_extraction")] * len(batch)
    return EncodedBatch(batch.record_ids, batch.clks, batch.clk_bits, batch.schema_fingerprint,
                        batch.key_check, attributes)


def test_a_refused_upload_is_not_left_in_progress(tmp_path, batches, schema_text):
    data_dir = tmp_path / "data"
    with ServerProcess(data_dir) as server:
        with LinkageClient(server.address, server.coordinator_token, timeout=60) as coordinator:
            tokens = coordinator.create_project("p", schema_text, ["be-police", "se-police"])
        with LinkageClient(server.address, tokens["be-police"], timeout=60) as agency:
            with pytest.raises(grpc.RpcError) as refused:
                agency.submit("p", _one_stage_batch(batches), chunk_records=50)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "linkage project stages --project p --add port_extraction" in \
        refused.value.details()
    checked = subprocess.run([sys.executable, "-m", "linkage_service.server.main", "--data-dir", str(data_dir),
                              "--check"], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "in progress" not in checked.stdout
    assert "store is consistent" in checked.stdout


def test_a_restored_backup_says_where_the_credentials_must_go(tmp_path):
    data_dir, backup = tmp_path / "data", tmp_path / "backup"
    with ServerProcess(data_dir):
        pass
    made = CliRunner().invoke(server_main, ["--data-dir", str(data_dir), "backup", "-o",
                                            str(backup)])
    assert made.exit_code == 0, made.output
    process = subprocess.Popen([sys.executable, "-m", "linkage_service.server.main", "--data-dir", str(backup),
                                "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True)
    try:
        line = ""
        for line in process.stderr:
            if "listening on" in line:
                break
    finally:
        process.terminate()
        process.wait(timeout=15)
        process.stderr.close()
    assert "listening on" in line
    assert f"no coordinator credential in {backup}" in line
    assert "put the kept coordinator.token and operator.token there" in line


def _reflection_services(address: str, method: str) -> list[str]:
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(
            method, request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        responses = call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                         timeout=10)
        return [s.name for r in responses for s in r.list_services_response.service]


def test_reflection_is_served_as_v1_and_v1alpha(server):
    for version in ("v1", "v1alpha"):
        names = _reflection_services(
            server.address, f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo")
        assert "linkage.v1.AgencyService" in names, version
        assert "grpc.reflection.v1.ServerReflection" in names


def test_a_call_without_a_token_is_told_the_metadata(server):
    with grpc.insecure_channel(server.address) as channel:
        stub = channel.unary_unary("/linkage.v1.CoordinatorService/ListProjects",
                                   request_serializer=pb.ListProjectsRequest.SerializeToString,
                                   response_deserializer=pb.ListProjectsResponse.FromString)
        with pytest.raises(grpc.RpcError) as error:
            stub(pb.ListProjectsRequest(), timeout=10)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "'authorization: Bearer <token>'" in error.value.details()
    assert "--token-file" in error.value.details()


def test_a_batch_under_another_secret_says_how_to_withdraw_the_first(server, batches,
                                                                     schema_text):
    from linkage_service.client import files

    with LinkageClient(server.address, server.coordinator_token, timeout=60) as coordinator:
        tokens = coordinator.create_project("w", schema_text, ["be-police", "se-police"],
                                            ["port_extraction", "logistics", "recruitment",
                                             "transport", "distribution", "money_flows"])
    with LinkageClient(server.address, tokens["be-police"], timeout=60) as agency:
        agency.submit("w", batches["be-police"])
    other_secret = bytes(range(32))
    export = "record_id,given_name,family_name,date_of_birth,address,city,phone\n" \
             "r1,Anna,Berg,1980-01-02,Storgatan 1,Malmo,+46701234567\n"
    batch = files.encode_export(schema_text, other_secret, export.encode(), None).batch
    with LinkageClient(server.address, tokens["se-police"], timeout=60) as agency:
        with pytest.raises(grpc.RpcError) as refused:
            agency.submit("w", batch)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "'linkage batch withdraw'" in refused.value.details()


def test_a_second_server_on_a_port_in_use_refuses_to_start(server, tmp_path):
    """gRPC's SO_REUSEPORT is off: the second server says the address is in use and exits."""
    done = subprocess.run([sys.executable, "-m", "linkage_service.server.main", "--data-dir",
                           str(tmp_path / "second"), "--listen", server.address],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "in use" in done.stderr, done.stderr


def test_a_second_server_on_the_same_data_directory_refuses_to_start(server):
    done = subprocess.run([sys.executable, "-m", "linkage_service.server.main", "--data-dir",
                           str(server.data_dir), "--listen", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Another linkage-server is using" in done.stderr, done.stderr
    with LinkageClient(server.address, server.coordinator_token) as client:
        assert client.list_projects() == []  # the first one serves on, untouched
