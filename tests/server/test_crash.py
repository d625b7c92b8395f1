"""Kill the server with SIGKILL at the worst moments; nothing accepted is lost, nothing half
written is visible, and every interrupted operation can be redone."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from click.testing import CliRunner

from linkage_service.client.api import LinkageClient
from linkage_service.client.demo import ServerProcess
from linkage_service.client.synthetic import DEFAULT_STAGES
from linkage_service.server.main import main as server_main

PROJECT = "crash"
pytestmark = pytest.mark.slow


def _wait_for(path, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} never appeared")
        time.sleep(0.05)


def _in_background(function):
    """Run a client call that will be cut off by the kill; its error is expected."""
    outcome = {}

    def call():
        try:
            outcome["value"] = function()
        except grpc.RpcError as error:
            outcome["error"] = error.code()
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, outcome


def _check(data_dir):
    result = CliRunner().invoke(server_main, ["--data-dir", str(data_dir), "--check"])
    assert result.exit_code == 0, result.output
    return result.output


def _setup(server, batches, schema_text, names):
    with LinkageClient(server.address, server.coordinator_token) as coordinator:
        tokens = coordinator.create_project(PROJECT, schema_text, names, list(DEFAULT_STAGES))
    return tokens


def _records(server):
    with LinkageClient(server.address, server.coordinator_token) as coordinator:
        return {p["name"]: p["records"] for p in coordinator.list_projects()}[PROJECT]


def _memberships(server, tokens):
    groups: dict[str, set] = {}
    for name, token in tokens.items():
        with LinkageClient(server.address, token) as agency:
            for hit in agency.results(PROJECT):
                groups.setdefault(hit["group"], set()).add((name, hit["record"]))
    return sorted(map(sorted, groups.values()))


def test_killed_during_upload_keeps_what_arrived_and_resumes(tmp_path, batches, schema_text):
    data_dir = tmp_path / "data"
    batch = batches["be-police"]
    with ServerProcess(data_dir, extra_args=("--pause-at", "upload-chunk-stored")) as server:
        tokens = _setup(server, batches, schema_text, ["be-police", "se-police"])
        agency = LinkageClient(server.address, tokens["be-police"], timeout=60)
        _in_background(lambda: agency.submit(PROJECT, batch, chunk_records=100, retries=0))
        _wait_for(data_dir / "paused-upload-chunk-stored")
        server.kill()
        agency.close()
    assert "upload" in _check(data_dir)  # the partial upload is noted, nothing is damaged
    with ServerProcess(data_dir) as server:
        assert _records(server) == 0, "a partial batch must not be visible"
        with LinkageClient(server.address, tokens["be-police"]) as agency:
            receipt = agency.submit(PROJECT, batch, chunk_records=100)
        assert receipt.resumed_from == 100 and receipt.records_accepted == len(batch)
        assert _records(server) == len(batch)
    _check(data_dir)


@pytest.mark.parametrize("point", ["run-started", "run-pairs-stored"])
def test_killed_during_a_run_marks_it_failed_and_a_rerun_completes(tmp_path, batches,
                                                                   schema_text, point):
    data_dir = tmp_path / "data"
    names = ["be-police", "be-customs", "port-antwerp"]
    with ServerProcess(data_dir, extra_args=("--pause-at", point)) as server:
        tokens = _setup(server, batches, schema_text, names)
        for name in names:
            with LinkageClient(server.address, tokens[name]) as agency:
                agency.submit(PROJECT, batches[name])
        coordinator = LinkageClient(server.address, server.coordinator_token, timeout=60)
        _in_background(lambda: coordinator.run(PROJECT, "0.8"))
        _wait_for(data_dir / f"paused-{point}")
        server.kill()
        coordinator.close()
    assert "interrupted" in _check(data_dir)
    with ServerProcess(data_dir) as server:
        assert _records(server) == sum(len(batches[n]) for n in names)
        with LinkageClient(server.address, server.coordinator_token) as coordinator:
            with pytest.raises(grpc.RpcError) as error:
                coordinator.report(PROJECT)
            assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            summary = coordinator.run(PROJECT, "0.8")
            assert summary["run"] == 2  # run 1 was interrupted and stays failed
        recovered = _memberships(server, tokens)
    with ServerProcess(tmp_path / "clean") as clean:
        clean_tokens = _setup(clean, batches, schema_text, names)
        for name in names:
            with LinkageClient(clean.address, clean_tokens[name]) as agency:
                agency.submit(PROJECT, batches[name])
        with LinkageClient(clean.address, clean.coordinator_token) as coordinator:
            coordinator.run(PROJECT, "0.8")
        assert recovered == _memberships(clean, clean_tokens)
    _check(data_dir)


def test_killed_while_writing_results_leaves_the_previous_report(tmp_path, batches,
                                                                 schema_text):
    data_dir = tmp_path / "data"
    names = ["be-police", "se-police", "se-customs"]
    with ServerProcess(data_dir) as server:
        tokens = _setup(server, batches, schema_text, names)
        for name in names[:2]:
            with LinkageClient(server.address, tokens[name]) as agency:
                agency.submit(PROJECT, batches[name])
        with LinkageClient(server.address, server.coordinator_token) as coordinator:
            coordinator.run(PROJECT, "0.8")
            before = coordinator.report(PROJECT)
    with ServerProcess(data_dir, extra_args=("--pause-at", "run-writing-results")) as server:
        with LinkageClient(server.address, tokens[names[2]]) as agency:
            agency.submit(PROJECT, batches[names[2]])
        coordinator = LinkageClient(server.address, server.coordinator_token, timeout=60)
        _in_background(lambda: coordinator.run(PROJECT, "0.8"))
        _wait_for(data_dir / "paused-run-writing-results")
        server.kill()
        coordinator.close()
    _check(data_dir)
    with ServerProcess(data_dir) as server:
        with LinkageClient(server.address, server.coordinator_token) as coordinator:
            assert coordinator.report(PROJECT) == before, "no half-written run is visible"
            after = coordinator.run(PROJECT, "0.8")
            assert after["run"] == 3 and after["records"] == sum(len(batches[n]) for n in names)
    _check(data_dir)


def test_sigterm_stops_cleanly_and_backup_is_usable(tmp_path, batches, schema_text):
    data_dir = tmp_path / "data"
    with ServerProcess(data_dir) as server:
        tokens = _setup(server, batches, schema_text, ["be-police", "se-police"])
        with LinkageClient(server.address, tokens["be-police"]) as agency:
            agency.submit(PROJECT, batches["be-police"])
        backup = tmp_path / "backup"
        result = CliRunner().invoke(server_main, ["--data-dir", str(data_dir), "backup", "-o",
                                                  str(backup)])
        assert result.exit_code == 0, result.output
        server.stop()
        log = tmp_path / "server.log"
        assert server.process.returncode == 0, \
            "the server did not stop on SIGTERM; its log:\n" + (
                log.read_text("utf-8")[-4000:] if log.exists() else "(none)")
    restored = tmp_path / "restored"
    backup.rename(restored)
    assert (restored / "audit.sqlite3").exists()
    (restored / "coordinator.token").write_text((data_dir / "coordinator.token").read_text())
    _check(restored)
    with ServerProcess(restored) as server:
        assert _records(server) == len(batches["be-police"])
