"""Roles, the audit log, input limits, per-project secrets and purging, against a real
mutual-TLS server on loopback."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
import subprocess
import sys

import grpc
import pytest
from click.testing import CliRunner

from linkage_service.client.api import LinkageClient
from linkage_service.client.cli import main as cli
from linkage_service.client.demo import ServerProcess
from linkage_service.client.synthetic import DEFAULT_STAGES
from linkage_service.protos.linkage.v1 import linkage_pb2 as pb
from linkage_service.protos.linkage.v1 import linkage_pb2_grpc as pb_grpc
from linkage_service.protos.linkage.v1 import shares_pb2 as spb
from linkage_service.protos.linkage.v1 import shares_pb2_grpc as spb_grpc
from linkage_service.server.auth import POLICY

from ..conftest import write_token

P1, P2 = "harbour-1", "harbour-2"
DENIED = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, module_store_spec):
    base = tmp_path_factory.mktemp("security")
    with ServerProcess(base / "data", tls_dir=base / "pki",
                       extra_args=("--allow-secret-reuse",)) as process:
        yield process


@pytest.fixture(scope="module")
def setup(tls_server, batches, schema_text):
    """Two projects; P1 linked once. Returns the callers' (token, name, role)."""
    names = sorted(batches)[:2]
    coordinator = tls_server.client(tls_server.coordinator_token)
    tokens_1 = coordinator.create_project(P1, schema_text, names, list(DEFAULT_STAGES))
    tokens_2 = coordinator.create_project(P2, schema_text, names, list(DEFAULT_STAGES))
    for name in names:
        with tls_server.client(tokens_1[name], name, "agency") as agency:
            agency.submit(P1, batches[name])
    coordinator.run(P1)
    coordinator.close()
    return {
        "agency": (tokens_1[names[0]], names[0], "agency"),
        "agency of another project": (tokens_2[names[1]], names[1], "agency"),
        "coordinator": (tls_server.coordinator_token, "coordinator", "coordinator"),
        "operator": ((tls_server.data_dir / "operator.token").read_text().strip(), "operator",
                     "operator"),
    }


def _channel(server: ServerProcess, name: str, role: str) -> grpc.Channel:
    files = server.client_tls(name, role)
    credentials = grpc.ssl_channel_credentials(
        files["ca"].read_bytes(), files["key"].read_bytes(), files["cert"].read_bytes())
    return grpc.secure_channel(server.address, credentials)


def _every_method():
    """(full name, service, method) of every RPC in the contract (both of its files)."""
    for module in (pb, spb):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                yield f"/{service.full_name}/{method.name}", service, method


def _call(channel, service, method, token: str | None, project: str):
    module = spb if service.file.name.endswith("shares.proto") else pb
    request_class = getattr(module, method.input_type.name)
    request = request_class()
    project_field = request_class.DESCRIPTOR.fields_by_name.get("project")
    if project_field is not None and project_field.type == project_field.TYPE_STRING:
        # Allowed callers must not purge the shared project; the role check comes first.
        request.project = "no-such-project" if method.name == "PurgeProject" else project
    if method.input_type.name == "SubmitBatchRequest":
        request = iter([pb.SubmitBatchRequest(header=pb.BatchHeader(project=project))])
    elif method.input_type.name == "SubmitSharesRequest":
        request = iter([spb.SubmitSharesRequest(header=spb.ShareHeader(
            batch=pb.BatchHeader(project=project)))])
    elif method.client_streaming:
        request = iter([request])
    stub = getattr(spb_grpc if module is spb else pb_grpc, f"{service.name}Stub")(channel)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    call = getattr(stub, method.name)
    try:
        response = call(request, metadata=metadata, timeout=30)
        if method.server_streaming:
            list(response)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_the_policy_covers_every_rpc_of_the_contract():
    assert {name for name, _, _ in _every_method()} == set(POLICY)


@pytest.mark.parametrize("caller", ["agency", "agency of another project", "coordinator",
                                    "operator", "nobody"])
def test_every_rpc_is_allowed_exactly_where_the_policy_says(tls_server, setup, caller):
    token, name, role = setup.get(caller, (None, "coordinator", "coordinator"))
    channel = _channel(tls_server, name, role)
    try:
        for full_name, service, method in _every_method():
            code = _call(channel, service, method, token, P1)
            if service.name == "PeerService":  # the peer server's certificate, never a token
                assert code == grpc.StatusCode.PERMISSION_DENIED, (full_name, caller, code)
            elif token is None:
                assert code == grpc.StatusCode.UNAUTHENTICATED, full_name
            elif role in POLICY[full_name] and caller != "agency of another project":
                assert code not in DENIED, (full_name, caller, code)
            else:
                assert code == grpc.StatusCode.PERMISSION_DENIED, (full_name, caller, code)
    finally:
        channel.close()


def test_the_agency_of_another_project_may_call_its_own_project(tls_server, setup):
    token, name, role = setup["agency of another project"]
    channel = _channel(tls_server, name, role)
    try:
        service = pb.DESCRIPTOR.services_by_name["AgencyService"]
        code = _call(channel, service, service.methods_by_name["GetUploadStatus"], token, P2)
        assert code == grpc.StatusCode.OK
    finally:
        channel.close()


def test_a_token_presented_with_another_partys_certificate_is_refused(tls_server, setup):
    token, name, _ = setup["agency"]
    with tls_server.client(token, "coordinator", "coordinator") as client:
        with pytest.raises(grpc.RpcError) as refused:
            list(client.results(P1))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "certificate" in refused.value.details()


def test_calls_without_a_deadline_are_refused(tls_server, setup):
    channel = _channel(tls_server, "coordinator", "coordinator")
    try:
        stub = pb_grpc.CoordinatorServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListProjects(pb.ListProjectsRequest(), metadata=(
                ("authorization", f"Bearer {tls_server.coordinator_token}"),))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "deadline" in refused.value.details()
    finally:
        channel.close()


def test_agencies_see_only_their_own_ids_and_coordinators_none(tls_server, setup, batches):
    token, name, _ = setup["agency"]
    with tls_server.client(token, name, "agency") as agency:
        results = list(agency.results(P1))
    assert results, "the two agencies share people, so there are hits"
    own = set(batches[name].record_ids)
    assert all(result["record"] in own for result in results)
    assert not any(key in result for result in results for key in ("score", "clk"))
    with tls_server.client(tls_server.coordinator_token) as coordinator:
        text = json.dumps(coordinator.report(P1))
    every_id = {record for batch in batches.values() for record in batch.record_ids}
    assert not any(f'"{record}"' in text for record in every_id)


def test_operators_read_counts_only(tls_server, setup, batches):
    token, name, role = setup["operator"]
    with tls_server.client(token, name, role) as operator:
        metrics = operator.metrics()
    assert metrics["projects"] == 2
    assert metrics["runs"] == 1
    assert metrics["records"] == sum(len(batches[n]) for n in sorted(batches)[:2])
    assert metrics["calls"]["SubmitBatch OK"] == 2


def _cli(server: ServerProcess, tmp_path, caller, *arguments):
    token, name, role = caller
    files = server.client_tls(name, role)
    token_file = write_token(tmp_path, token, f"{name}.token")
    tls = [argument for flag in ("ca", "cert", "key") if flag in files
           for argument in (f"--{flag}", str(files[flag]))]
    return CliRunner().invoke(cli, [*arguments, "--server", server.address,
                                    "--token-file", str(token_file), *tls])


def test_every_call_is_in_the_audit_log_without_ids(tls_server, setup, batches, tmp_path):
    refused = _cli(tls_server, tmp_path, setup["agency"], "run", "--project", P1)
    assert refused.exit_code != 0 and "PERMISSION_DENIED" in refused.output
    shown = _cli(tls_server, tmp_path, setup["operator"], "audit", "show", "--format", "json")
    assert shown.exit_code == 0, shown.output
    entries = [json.loads(line) for line in shown.output.splitlines()]
    submits = [e for e in entries if e["method"] == "SubmitBatch" and e["outcome"] == "OK"]
    assert {e["caller"] for e in submits} >= {setup["agency"][1]}
    assert all(e["project"] == P1 and json.loads(e["counts_json"])["records"] > 0
               for e in submits)
    every_id = {record for batch in batches.values() for record in batch.record_ids}
    assert not any(record in shown.output for record in every_id)
    runs = _cli(tls_server, tmp_path, setup["coordinator"], "audit", "show", "--method",
                "RunLinkage", "--format", "json")
    assert runs.exit_code == 0, runs.output
    runs = [json.loads(line) for line in runs.output.splitlines()]
    assert {e["method"] for e in runs} == {"RunLinkage"}
    assert any(e["caller"] == "coordinator" and e["outcome"] == "OK" for e in runs)
    assert any(e["role"] == "agency" and e["outcome"] == "PERMISSION_DENIED" for e in runs)


def test_audit_verify_detects_edits_removals_and_reordering(tmp_path, batches, schema_text):
    with ServerProcess(tmp_path / "data") as server:
        operator = ("".join((server.data_dir / "operator.token").read_text().split()),
                    "operator", "operator")
        coordinator = server.client(server.coordinator_token)
        for _ in range(4):
            coordinator.list_projects()
        coordinator.close()
        intact = _cli(server, tmp_path, operator, "audit", "verify")
        assert intact.exit_code == 0, intact.output
        head = intact.output.strip().splitlines()[-1].removeprefix("head: ")
        database = server.data_dir / "audit.sqlite3"
        tampering = [
            "UPDATE audit_log SET caller = 'somebody-else' WHERE sequence = 2",
            "DELETE FROM audit_log WHERE sequence = 3",
            "UPDATE audit_log SET sequence = -sequence WHERE sequence IN (2, 4); "
            "UPDATE audit_log SET sequence = 4 WHERE sequence = -2; "
            "UPDATE audit_log SET sequence = 2 WHERE sequence = -4",
        ]
        for statement in tampering:
            with sqlite3.connect(database) as db:
                saved = db.execute("SELECT * FROM audit_log ORDER BY sequence").fetchall()
                db.executescript(statement)
            broken = _cli(server, tmp_path, operator, "audit", "verify")
            assert broken.exit_code != 0, statement
            assert "not intact" in broken.output
            with sqlite3.connect(database) as db:
                db.execute("DELETE FROM audit_log")
                db.executemany("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               saved)
        # A rewrite of the tail is caught by the head kept from an earlier verification.
        with sqlite3.connect(database) as db:
            db.execute("DELETE FROM audit_log WHERE sequence >= ?", (int(head.split(":")[0]),))
        cut_short = _cli(server, tmp_path, operator, "audit", "verify", "--expect-head", head)
        assert cut_short.exit_code != 0
        assert "head kept" in cut_short.output
        # The operator's offline check sees an edit too.
        with sqlite3.connect(database) as db:
            db.execute("UPDATE audit_log SET outcome = 'NOT_FOUND' WHERE sequence = 1")
        checked = subprocess.run([sys.executable, "-m", "linkage_service.server.main", "--data-dir",
                                  str(server.data_dir), "--check"], capture_output=True,
                                 text=True)
        assert checked.returncode != 0
        assert "audit log entry 1" in checked.stdout


def test_over_the_rate_limit_calls_get_resource_exhausted(tmp_path):
    with ServerProcess(tmp_path / "data", extra_args=("--calls-per-second", "1",
                                                      "--call-burst", "3")) as server:
        with LinkageClient(server.address, server.coordinator_token, timeout=30) as client:
            codes = []
            for _ in range(6):
                try:
                    client.list_projects()
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as error:
                    codes.append(error.code())
                    message = error.details()
        assert codes[:3] == [grpc.StatusCode.OK] * 3
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes[3:]
        assert "Too many calls" in message and "retry" in message


def test_an_oversized_message_gets_resource_exhausted(tls_server, setup):
    token, name, role = setup["agency"]
    channel = _channel(tls_server, name, role)
    try:
        stub = pb_grpc.AgencyServiceStub(channel)
        huge = pb.GetUploadStatusRequest(project=P1, batch_id="b" * (5 * 1024 * 1024))
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetUploadStatus(huge, timeout=30,
                                 metadata=(("authorization", f"Bearer {token}"),))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        channel.close()


def test_a_secret_used_by_another_project_is_refused(tmp_path, batches, schema_text):
    names = sorted(batches)[:2]
    with ServerProcess(tmp_path / "data") as server:
        with server.client(server.coordinator_token) as coordinator:
            first = coordinator.create_project("first", schema_text, names, list(DEFAULT_STAGES))
            second = coordinator.create_project("second", schema_text, names, list(DEFAULT_STAGES))
        with server.client(first[names[0]]) as agency:
            agency.submit("first", batches[names[0]])
        with server.client(second[names[0]]) as agency:
            with pytest.raises(grpc.RpcError) as refused:
                agency.submit("second", batches[names[0]])
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "fresh secret" in refused.value.details()


def test_purge_deletes_clks_and_keeps_reports_results_and_audit(tmp_path, batches, schema_text):
    names = sorted(batches)[:2]
    with ServerProcess(tmp_path / "data") as server:
        coordinator = server.client(server.coordinator_token)
        tokens = coordinator.create_project("closing", schema_text, names,
                                             list(DEFAULT_STAGES))
        with pytest.raises(grpc.RpcError) as early:
            coordinator.purge("closing")
        assert early.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        for name in names:
            with server.client(tokens[name]) as agency:
                agency.submit("closing", batches[name])
        coordinator.run("closing")
        report_before = coordinator.report("closing")
        with server.client(tokens[names[0]]) as agency:
            results_before = list(agency.results("closing"))
        with server.client(tokens[names[0]]) as agency:
            with pytest.raises(grpc.RpcError) as not_allowed:
                agency.purge("closing")
        assert not_allowed.value.code() == grpc.StatusCode.PERMISSION_DENIED
        outcome = coordinator.purge("closing")
        assert outcome["records_deleted"] == sum(len(batches[n]) for n in names)
        database = server.data_dir / "linkage.sqlite3"
        with sqlite3.connect(database) as db:
            kept = db.execute("SELECT COUNT(*) FROM records WHERE length(clk) > 0").fetchone()[0]
            pairs = db.execute("SELECT COUNT(*) FROM pair_blocks").fetchone()[0]
        assert (kept, pairs) == (0, 0)
        assert coordinator.report("closing")["groups"] == report_before["groups"]
        with server.client(tokens[names[0]]) as agency:
            assert list(agency.results("closing")) == results_before
            batch = batches[names[0]]
            later = replace(batch, record_ids=[f"later-{i}" for i in range(10)],
                            clks=batch.clks[:10], attributes=batch.attributes[:10])
            with pytest.raises(grpc.RpcError) as closed:
                agency.submit("closing", later)
        assert closed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "purged" in closed.value.details()
        with pytest.raises(grpc.RpcError) as no_run:
            coordinator.run("closing")
        assert no_run.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        coordinator.close()
    checked = subprocess.run([sys.executable, "-m", "linkage_service.server.main", "--data-dir",
                              str(tmp_path / "data"), "--check"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
