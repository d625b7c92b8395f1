"""Two linkage-server replicas on one PostgreSQL database: either takes uploads and
serves results, a run belongs to the replica that started it, and a replica killed
mid-run leaves no run 'running' (the other marks it failed; a rerun links the same)."""

from __future__ import annotations

import threading
import time

import grpc
import psycopg
import pytest
from click.testing import CliRunner

from linkage_service.client.api import LinkageClient
from linkage_service.client.demo import ServerProcess
from linkage_service.client.synthetic import DEFAULT_STAGES
from linkage_service.server.main import main as server_main

pytestmark = pytest.mark.slow


def _memberships(server, tokens, project):
    groups: dict[str, set[tuple[str, str]]] = {}
    for name, token in tokens.items():
        with LinkageClient(server.address, token, timeout=120) as agency:
            for hit in agency.results(project):
                groups.setdefault(hit["group"], set()).add((name, hit["record"]))
    return sorted(sorted(members) for members in groups.values())


def _run_statuses(url, project):
    with psycopg.connect(url) as db:
        return [row[0] for row in db.execute(
            "SELECT r.status FROM runs r JOIN projects p ON p.id = r.project_id "
            "WHERE p.name = %s ORDER BY r.number", (project,))]


def _wait_for(path, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def test_two_replicas_share_uploads_results_and_survive_a_killed_run(postgres, tmp_path,
                                                                     batches, schema_text):
    url = postgres.create_database()
    names = list(batches)
    shared = ("--allow-secret-reuse",)
    with ServerProcess(tmp_path / "a", store=url,
                       extra_args=(*shared, "--pause-at", "run-started")) as replica_a, \
            ServerProcess(tmp_path / "b", store=url, extra_args=shared) as replica_b:
        token = replica_a.coordinator_token  # written by the first replica, valid on both
        assert not (tmp_path / "b" / "coordinator.token").exists()
        with LinkageClient(replica_b.address, token, timeout=120) as coordinator_b:
            tokens = coordinator_b.create_project("shared", schema_text, names,
                                                  list(DEFAULT_STAGES))
            reference = coordinator_b.create_project("reference", schema_text, names,
                                                     list(DEFAULT_STAGES))
            for index, name in enumerate(names):  # uploads through either replica
                replica = (replica_a, replica_b)[index % 2]
                with LinkageClient(replica.address, tokens[name], timeout=120) as agency:
                    agency.submit("shared", batches[name])
                with LinkageClient(replica_b.address, reference[name], timeout=120) as agency:
                    agency.submit("reference", batches[name])
            coordinator_b.run("reference", "0.8")
            expected = _memberships(replica_b, reference, "reference")

            failures: list[BaseException] = []

            def run_on_a():
                try:
                    with LinkageClient(replica_a.address, token, timeout=120) as coordinator_a:
                        coordinator_a.run("shared", "0.8")
                except grpc.RpcError as error:
                    failures.append(error)

            runner = threading.Thread(target=run_on_a)
            runner.start()
            _wait_for(tmp_path / "a" / "paused-run-started")
            assert _run_statuses(url, "shared") == ["running"]
            with pytest.raises(grpc.RpcError) as refused:  # owned by replica A
                coordinator_b.run("shared", "0.8")
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "in progress" in refused.value.details()

            replica_a.kill()  # SIGKILL mid-run: its session, and the run's lock, end
            runner.join(timeout=60)
            assert failures and failures[0].code() == grpc.StatusCode.UNAVAILABLE

            deadline = time.monotonic() + 30
            while _run_statuses(url, "shared") == ["running"]:  # B notices on a request
                assert time.monotonic() < deadline, "the killed replica's run stayed running"
                with pytest.raises(grpc.RpcError):
                    coordinator_b.report("shared")  # no finished run yet
                time.sleep(0.2)
            assert _run_statuses(url, "shared") == ["failed"]

            rerun = coordinator_b.run("shared", "0.8")
            assert rerun["run"] == 2 and _run_statuses(url, "shared") == ["failed", "done"]
            through_b = _memberships(replica_b, tokens, "shared")
            assert through_b == expected

        with ServerProcess(tmp_path / "a", store=url, extra_args=shared) as restarted_a:
            assert _memberships(restarted_a, tokens, "shared") == expected  # results via A
            with LinkageClient(restarted_a.address, token, timeout=120) as coordinator_a:
                assert coordinator_a.report("shared")["run"] == 2

    checked = CliRunner().invoke(server_main, ["--data-dir", str(tmp_path / "a"), "--store", url,
                                               "--check"])
    assert checked.exit_code == 0, checked.output
    assert "audit log intact" in checked.output  # one chain, written by both replicas


def test_replicas_starting_together_apply_each_migration_once(postgres, tmp_path):
    url = postgres.create_database()
    replicas = [ServerProcess(tmp_path / name, store=url) for name in ("a", "b")]
    starters = [threading.Thread(target=replica.start) for replica in replicas]
    try:
        for starter in starters:  # both migrate the empty database at the same moment
            starter.start()
        for starter in starters:
            starter.join()
        assert all(replica.address for replica in replicas)
        with psycopg.connect(url) as db:
            names = [row[0] for row in db.execute("SELECT name FROM schema_migrations")]
    finally:
        for replica in replicas:
            replica.stop()
    assert names == sorted(set(names)) and names
