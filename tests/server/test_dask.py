"""Comparisons on a real Dask cluster: a ``dask scheduler`` and two ``dask worker`` processes
on free loopback ports, the same pairs, scores and groups as in this process, and a worker
SIGKILLed in the middle of a run that still completes with the same result; the same for
``linkage-server --executor`` and ``linkage match --executor``.

Without Dask installed (or if the cluster does not come up) these skip, except under CI,
where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.distributed import LocalCluster, _free_port
from bench.match_speed import bench_schema_text, make_clks, write_batches
from linkage_service.client.api import LinkageClient
from linkage_service.client.demo import ServerProcess
from linkage.batch import read_batch
from linkage.matching.blocking import plan_lsh
from linkage.matching.engine import link_records
from linkage.matching.executor import IN_PROCESS, plan_new_record_tasks, plan_owner_tasks

distributed = pytest.importorskip("distributed") if not os.environ.get("CI") else None
if distributed is None:
    import distributed  # noqa: F811 - under CI a missing Dask is a failure, not a skip

from linkage.matching.dask_executor import DaskExecutor, parse_executor  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("dask", path=str(Path(sys.executable).parent)) is None:
        message = "the dask CLI is not installed (pip install 'dask[distributed]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    cluster = LocalCluster(tmp_path_factory.mktemp("dask"))
    try:
        cluster.wait(2)
    except Exception as error:
        cluster.stop()
        if os.environ.get("CI"):
            pytest.fail(f"the Dask cluster did not start: {error!r}")
        pytest.skip(f"the Dask cluster did not start: {error!r}")
    yield cluster
    cluster.stop()


@pytest.fixture
def two_workers(cluster):
    """Two live workers before the test (one killed by an earlier test is replaced)."""
    while len(cluster.alive()) < 2:
        cluster.add_worker()
    cluster.wait(2)
    return cluster


def _same(a, b) -> bool:
    return (np.array_equal(a.left, b.left) and np.array_equal(a.right, b.right)
            and np.array_equal(a.score, b.score))


def test_executor_addresses_are_parsed_or_refused_clearly():
    assert parse_executor("dask://10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    assert parse_executor("in-process") is None and parse_executor(None) is None
    from linkage.errors import InvalidRequestError
    with pytest.raises(InvalidRequestError, match="dask://HOST:PORT"):
        parse_executor("tcp://10.0.0.5")


def test_scans_on_dask_equal_the_in_process_scans(two_workers):
    left, right = make_clks(3000, seed=1)
    clks = np.concatenate([left, right])
    is_new = np.zeros(clks.shape[0], bool)
    is_new[2000:] = True
    executor = DaskExecutor(two_workers.address)
    try:
        for tasks in (plan_new_record_tasks(is_new), plan_owner_tasks(np.zeros(6000), False)):
            for floor in (0.5, 0.8):
                here = IN_PROCESS.scan(clks, tasks, floor)
                there = executor.scan(clks, tasks, floor)
                assert len(here) >= 1000
                assert _same(here, there)
                assert executor.stats.units >= len(tasks) and executor.stats.scattered_bytes > 0
        plan = plan_lsh(1024, 2 * 460.0, 0.8, records=3000)
        tasks = plan_new_record_tasks(is_new)
        here = IN_PROCESS.scan(clks, tasks, 0.8, plan=plan)
        assert len(here) > 1000
        assert _same(here, executor.scan(clks, tasks, 0.8, plan=plan))
    finally:
        executor.close()


@pytest.mark.slow
def test_a_whole_auto_run_on_dask_equals_the_in_process_run(two_workers):
    left, right = make_clks(4000, seed=2)
    clks = np.concatenate([left, right])
    owners = np.repeat(np.arange(2), 4000)
    executor = DaskExecutor(two_workers.address)
    try:
        limits = {"max_per_owner": 1, "cross_owner_only": True, "tail_sample": True}
        here = link_records(clks, owners, **limits)
        there = link_records(clks, owners, executor=executor, **limits)
    finally:
        executor.close()
    assert here.choice.threshold == there.choice.threshold
    assert _same(here.pairs, there.pairs)
    assert np.array_equal(here.floor_scores, there.floor_scores)
    assert np.array_equal(here.grouping.labels, there.grouping.labels)
    assert np.array_equal(here.confidence, there.confidence)


@pytest.mark.slow
def test_a_worker_killed_mid_scan_costs_only_its_units(two_workers):
    left, right = make_clks(16000, seed=3)
    clks = np.concatenate([left, right])
    tasks = plan_owner_tasks(np.repeat(np.arange(2), 16000), True)
    here = IN_PROCESS.scan(clks, tasks, 0.5)
    executor = DaskExecutor(two_workers.address, units_per_worker=8)
    killed = []

    def kill_after_the_first_unit(stage, done, total):
        if 0 < done < total and not killed:
            two_workers.kill_one()
            killed.append(done / total)

    try:
        there = executor.scan(clks, tasks, 0.5, on_progress=kill_after_the_first_unit)
    finally:
        executor.close()
    assert killed and killed[0] < 0.5, "the worker was killed early in the scan"
    assert len(two_workers.alive()) == 1
    assert _same(here, there)



@pytest.mark.slow
def test_the_only_copy_of_a_side_lost_with_its_worker_is_scattered_again(two_workers):
    """One worker holds the only copy of both sides; it is SIGKILLed after the first unit and a
    fresh worker joins: the sides are scattered again and the lost units rerun."""
    two_workers.kill_one()
    two_workers.wait(1)
    left, right = make_clks(12000, seed=7)
    clks = np.concatenate([left, right])
    tasks = plan_owner_tasks(np.repeat(np.arange(2), 12000), True)
    here = IN_PROCESS.scan(clks, tasks, 0.5)
    executor = DaskExecutor(two_workers.address, units_per_worker=8)
    replaced = []

    def replace_the_worker(stage, done, total):
        if 0 < done < total and not replaced:
            two_workers.kill_one()
            two_workers.add_worker()
            replaced.append(done / total)

    try:
        there = executor.scan(clks, tasks, 0.5, on_progress=replace_the_worker)
    finally:
        executor.close()
    assert replaced and replaced[0] < 0.5, "the worker was replaced early in the scan"
    assert executor.stats.workers == 1
    assert executor.stats.rescattered == 2, "both sides went with the worker and came back"
    assert executor.stats.resubmitted >= 1
    assert _same(here, there)

def _server_run(server: ServerProcess, paths, threshold: str, on_progress=None):
    """Submit both files to a new project and run it; (summary, {members: confidence})."""
    with LinkageClient(server.address, server.coordinator_token, timeout=600) as coordinator:
        tokens = coordinator.create_project("p", bench_schema_text(), ["left", "right"])
        for name, path in zip(("left", "right"), paths):
            with LinkageClient(server.address, tokens[name], timeout=600) as agency:
                agency.submit("p", read_batch(path.read_bytes()), deduplicated=True)
        summary = coordinator.run("p", threshold, on_progress=on_progress)
        report = coordinator.report("p")
    members: dict[str, set] = {}
    for name in ("left", "right"):
        with LinkageClient(server.address, tokens[name], timeout=600) as agency:
            for hit in agency.results("p"):
                members.setdefault(hit["group"], set()).add((name, hit["record"]))
    confidence = {g["id"]: g["confidence"] for g in report["groups"]}
    return summary, {frozenset(m): confidence.get(g) for g, m in members.items()}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_server_run_on_dask_equals_the_in_process_run_even_when_a_worker_dies(
        two_workers, tmp_path):
    left, right = make_clks(6000, seed=4)
    paths = write_batches(tmp_path, left, right)
    with ServerProcess(tmp_path / "here") as server:
        here, here_groups = _server_run(server, paths, "0.6")
    killed = []

    def kill_mid_run(stage, done, total):
        if stage == "comparing" and 0 < done < total and not killed:
            two_workers.kill_one()
            killed.append(done / total)

    with ServerProcess(tmp_path / "there",
                       extra_args=("--executor", f"dask://127.0.0.1:{two_workers.port}")
                       ) as server:
        there, there_groups = _server_run(server, paths, "0.6", on_progress=kill_mid_run)
    assert killed, "the worker was killed while the run compared"
    for key in ("threshold", "candidate_pairs", "groups", "cross_agency_groups"):
        assert here[key] == there[key], key
    assert here["groups"] > 1500
    assert here_groups == there_groups


def _match(left: Path, right: Path, output: Path, *options: str, env=None):
    """``linkage match`` as a real process."""
    command = [str(Path(sys.executable).parent / "linkage"), "match", str(left), str(right),
               "-o", str(output), *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **(env or {})), check=False)


@pytest.mark.slow
def test_linkage_match_on_dask_writes_the_in_process_file(two_workers, tmp_path):
    left, right = make_clks(5000, seed=5)
    paths = write_batches(tmp_path, left, right)
    address = f"dask://127.0.0.1:{two_workers.port}"
    for threshold, how in (("0.8", {"options": ("--executor", address)}),
                           ("auto", {"env": {"LINKAGE_EXECUTOR": address}})):
        here = _match(*paths, tmp_path / "here.csv", "--threshold", threshold,
                      env={"LINKAGE_EXECUTOR": "in-process"})
        assert here.returncode == 0, here.stderr
        there = _match(*paths, tmp_path / "there.csv", "--threshold", threshold,
                       *how.get("options", ()), env=how.get("env"))
        assert there.returncode == 0, there.stderr
        written = (tmp_path / "here.csv").read_bytes()
        assert written.count(b"\n") > 2000, threshold
        assert (tmp_path / "there.csv").read_bytes() == written, threshold
        assert there.stderr.strip().splitlines()[-1] == here.stderr.strip().splitlines()[-1]


def test_linkage_match_says_clearly_when_the_scheduler_is_unreachable(tmp_path):
    left, right = make_clks(300, seed=6)
    paths = write_batches(tmp_path, left, right)
    started = time.monotonic()
    done = _match(*paths, tmp_path / "m.csv", "--executor", f"dask://127.0.0.1:{_free_port()}")
    assert done.returncode == 1
    assert "Cannot reach the Dask scheduler at tcp://127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 30, "it failed at once, without Dask's long retries"
    assert not (tmp_path / "m.csv").exists()
    refused = _match(*paths, tmp_path / "m.csv", "--executor", "tcp://127.0.0.1:8786")
    assert refused.returncode == 2 and "dask://HOST:PORT" in refused.stderr
