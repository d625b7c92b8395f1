"""The smaller hostile findings of issue 17, each against a real server: refused calls and the
rate limit, malformed and oversized messages, reserved names, schema and project bounds,
what operators learn, and private output files."""

from __future__ import annotations

import json
import stat

import grpc
import pytest
from click.testing import CliRunner

from linkage_service.client.api import LinkageClient
from linkage_service.client.cli import main as cli
from linkage_service.client.demo import ServerProcess
from linkage.batch import write_batch
from linkage.encoding.schema import default_schema_text
from linkage_service.client.synthetic import DEFAULT_STAGES

MiB = 1024 * 1024


def _refused(call):
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value.code(), refused.value.details()


def _operator(server):
    return LinkageClient(server.address, (server.data_dir / "operator.token").read_text().strip())


def test_refused_calls_count_toward_the_rate_limit(tmp_path):
    with ServerProcess(tmp_path / "data", extra_args=("--calls-per-second", "0.5",
                                                      "--call-burst", "5")) as server:
        with server.client(server.coordinator_token) as coordinator:
            tokens = coordinator.create_project("rate", default_schema_text(), ["a", "b"])
        codes = []
        with LinkageClient(server.address, tokens["a"]) as agency:
            for _ in range(8):
                codes.append(_refused(agency.list_projects)[0])  # a coordinator RPC
        assert codes[:4] == [grpc.StatusCode.PERMISSION_DENIED] * 4
        assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_malformed_and_oversized_messages_leave_an_audit_entry(server):
    metadata = (("authorization", f"Bearer {server.coordinator_token}"),)
    with grpc.insecure_channel(server.address) as channel:
        report = channel.unary_unary("/linkage.v1.CoordinatorService/GetReport")
        code, _ = _refused(lambda: report(b"\xff\xff\xff\xff", metadata=metadata, timeout=10))
        assert code != grpc.StatusCode.OK
        review = channel.unary_unary("/linkage.v1.CoordinatorService/ReviewGroup")
        code, _ = _refused(lambda: review(b"\x22" + b"\x80\x80\x80\x03" + b"x" * (5 * MiB),
                                          metadata=metadata, timeout=30))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    with _operator(server) as operator:
        entries = list(operator.audit_log())
    assert any(e.method == "GetReport" and e.outcome != "OK" for e in entries)
    # gRPC drops the oversized message; the guard sees a broken or an empty request stream
    # (which of the two depends on timing) and records the call either way
    assert any(e.method == "ReviewGroup" and e.outcome != "OK" for e in entries)


@pytest.mark.parametrize("name", ["coordinator", "operator"])
def test_role_names_cannot_name_an_agency(coordinator, name):
    code, details = _refused(lambda: coordinator.create_project(
        "roles", default_schema_text(), [name, "b"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "role" in details


def test_too_many_agencies_are_refused_before_anything_is_stored(coordinator):
    agencies = [f"a{number}" for number in range(80_000)]
    code, _ = _refused(lambda: coordinator.create_project("crowd", default_schema_text(),
                                                          agencies))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    tokens = coordinator.create_project("crowd", default_schema_text(), ["a", "b"])
    assert set(tokens) == {"a", "b"}  # the name was not taken by the refused call


def _schema_with(change) -> str:
    document = json.loads(default_schema_text())
    change(document)
    return json.dumps(document)


@pytest.mark.parametrize("schema_text,expected", [
    (_schema_with(lambda d: d["features"][0].setdefault("format", {}).update(
        pattern="^(a+)+$")), "pattern"),
    ("[" * 100_000 + "]" * 100_000, "nests"),
    (_schema_with(lambda d: d.__setitem__("features", [
        dict(d["features"][0], identifier=f"f{n}") for n in range(100)])), "features"),
    (_schema_with(lambda d: d.__setitem__("features", [
        dict(d["features"][0], identifier=f"f{n}") for n in range(12_000)])), "bytes"),
], ids=["redos-pattern", "deep-nesting", "many-features", "huge-schema"])
def test_hostile_schemas_get_a_clear_refusal(coordinator, schema_text, expected):
    code, details = _refused(lambda: coordinator.create_project("schemas", schema_text,
                                                                ["a", "b"]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and expected in details
    assert "aaaa" not in details


@pytest.mark.slow
def test_operators_do_not_learn_hit_counts(server, coordinator, batches, schema_text):
    names = ["be-police", "be-customs"]
    tokens = coordinator.create_project("hits", schema_text, names, list(DEFAULT_STAGES))
    for name in names:
        with LinkageClient(server.address, tokens[name]) as agency:
            agency.submit("hits", batches[name])
    coordinator.run("hits", "0.8")
    with LinkageClient(server.address, tokens["be-police"]) as police:
        assert list(police.results("hits"))
    with _operator(server) as operator:
        results = [e for e in operator.audit_log() if e.method == "GetResults"]
    assert results and all("messages_sent" not in json.loads(e.counts_json) for e in results)


def test_a_deeply_nested_mapping_is_a_clear_error():
    from linkage.errors import MappingError
    from linkage.encoding.mapping import parse_mapping
    with pytest.raises(MappingError, match="not valid TOML"):
        parse_mapping("record_id = " + "[" * 100_000 + "]" * 100_000)


@pytest.mark.slow
def test_match_writes_its_output_readable_by_the_owner_only(tmp_path, batches):
    left, right = tmp_path / "left.clk", tmp_path / "right.clk"
    left.write_bytes(write_batch(batches["be-police"]))
    right.write_bytes(write_batch(batches["be-customs"]))
    output = tmp_path / "matches.csv"
    result = CliRunner().invoke(cli, ["match", str(left), str(right), "--threshold", "0.8",
                                      "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert output.read_text().startswith("left_record,right_record,confidence")


def test_a_flood_does_not_bury_the_audit_log(tmp_path):
    with ServerProcess(tmp_path / "data", extra_args=("--calls-per-second", "1",
                                                      "--call-burst", "2")) as server:
        with server.client(server.coordinator_token, timeout=10) as coordinator:
            codes = [_refused(coordinator.list_projects)[0] if index >= 2
                     else (coordinator.list_projects() and grpc.StatusCode.OK)
                     for index in range(30)]
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 25
        with LinkageClient(server.address, "not-a-token", timeout=10) as stranger:
            strangers = [_refused(stranger.list_projects)[0] for _ in range(150)]
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in strangers  # 5/s, bursts of 100
        with _operator(server) as operator:
            entries = list(operator.audit_log())
    busy = [e for e in entries if e.outcome == "RESOURCE_EXHAUSTED"]
    assert len([e for e in busy if e.caller == "coordinator"]) <= 3
    assert len([e for e in entries if e.caller == ""]) <= 110
