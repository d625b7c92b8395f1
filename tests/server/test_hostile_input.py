"""Arbitrary upload streams against a real server: a status code that is not INTERNAL,
and a store that stays consistent."""

from __future__ import annotations

import grpc
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkage_service.client.api import LinkageClient
from linkage_service.client.demo import ServerProcess
from linkage.encoding.schema import default_schema_text, load_schema
from linkage_service.protos.linkage.v1 import linkage_pb2 as pb
from linkage_service.protos.linkage.v1 import linkage_pb2_grpc as pb_grpc
from linkage_service.server.main import main as server_main

PROJECT = "hostile"
SCHEMA = load_schema(default_schema_text())


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory, module_store_spec):
    data_dir = tmp_path_factory.mktemp("hostile") / "data"
    with ServerProcess(data_dir) as server:
        with LinkageClient(server.address, server.coordinator_token) as coordinator:
            tokens = coordinator.create_project(PROJECT, default_schema_text(), ["a", "b"])
        yield server, tokens["a"]


headers = st.builds(
    pb.BatchHeader,
    project=st.sampled_from([PROJECT, "", "other", "x" * 300]),
    schema_fingerprint=st.sampled_from([SCHEMA.fingerprint, "", "0" * 64]),
    key_check=st.text(max_size=70),
    clk_bits=st.sampled_from([1024, 0, 64, 1023, 2**32 - 1]),
    record_count=st.sampled_from([0, 1, 2, 3, 2**64 - 1]),
    batch_id=st.sampled_from(["b-0123456789abcdef", "", "b-../../etc", "b-" + "f" * 16]),
    content_hash=st.sampled_from(["0" * 64, "", "zz"]),
)
chunks = st.builds(
    pb.RecordChunk,
    record_ids=st.lists(st.text(max_size=300), max_size=4),
    clks=st.lists(st.sampled_from([bytes(128), b"", bytes(127), b"\xff" * 128]), max_size=4),
    first_record=st.sampled_from([0, 1, 2, 2**64 - 1]),
)
messages = st.lists(st.one_of(headers.map(lambda h: pb.SubmitBatchRequest(header=h)),
                              chunks.map(lambda c: pb.SubmitBatchRequest(chunk=c))),
                    max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=messages)
def test_any_upload_stream_gets_a_clear_answer(hostile_server, sequence):
    server, token = hostile_server
    channel = grpc.insecure_channel(server.address)
    try:
        stub = pb_grpc.AgencyServiceStub(channel)
        stub.SubmitBatch(iter(sequence), metadata=(("authorization", f"Bearer {token}"),),
                         timeout=30)
    except grpc.RpcError as error:
        assert error.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), \
            error.details()
        assert error.details()
    finally:
        channel.close()


def test_store_is_consistent_after_the_onslaught(hostile_server, module_store_spec):
    server, _ = hostile_server
    result = CliRunner().invoke(server_main, ["--data-dir", str(server.data_dir), "--store",
                                              module_store_spec, "--check"])
    assert result.exit_code == 0, result.output
