"""Two-server mode through real processes on loopback: two linkage-server processes with mutual
TLS between them, agencies submitting through the CLI, the coordinator's client dealing, and
runs (numeric and auto) whose groups equal the plaintext kernel's pairs grouped by Dice band,
and a single-server run's where the bands separate a record's hits; no server stores a CLK."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from click.testing import CliRunner

from linkage.batch import write_batch
from linkage.clks import clks_to_bytes
from linkage.matching.grouping import greedy_groups
from linkage.matching.kernel import dice_candidates_native
from linkage.mpc import Dealer, Plan, unpack_bits
from linkage.mpc.banded_run import SERVICE_EDGES, hit_edges
from linkage_service.client import pki
from linkage_service.client.api import LinkageClient
from linkage_service.client.cli import main as linkage_cli
from linkage_service.client.demo import ServerProcess
from linkage_service.client.shares import (
    _material,
    create_share_project,
    run_shares,
    submit_shares,
)
from linkage_service.client.synthetic import DEFAULT_STAGES
from linkage_service.protos.linkage.v1 import linkage_pb2 as pb
from linkage_service.protos.linkage.v1 import shares_pb2 as spb
from linkage_service.protos.linkage.v1 import shares_pb2_grpc as spb_grpc
from tests.plaintext_pairs import servers_pairs

PROJECT = "shared"
THRESHOLD = "0.8"
AGENCY_COUNT = 3


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    pki.init_ca(directory)
    pki.issue(directory, "server-0", "server", directory / "peers")
    return directory


def _start_pair(base: Path, pki_dir: Path, store: str | None):
    second = ServerProcess(base / "s1" / "data", tls_dir=pki_dir, store="sqlite",
                           extra_args=("--two-server-role", "1")).start()
    first = ServerProcess(base / "s0" / "data", tls_dir=pki_dir, store=store, extra_args=(
        "--two-server-role", "0", "--peer", second.address,
        "--peer-cert", str(pki_dir / "peers" / "server-0.pem"),
        "--peer-key", str(pki_dir / "peers" / "server-0.key"))).start()
    return first, second


@pytest.fixture(scope="module")
def servers(tmp_path_factory, pki_dir, module_store_spec):
    """Server 0 (on the module's store) and server 1 (SQLite: a store of its own)."""
    base = tmp_path_factory.mktemp("two")
    first, second = _start_pair(base, pki_dir, None)
    yield first, second
    first.stop()
    second.stop()


def _tls_flags(server: ServerProcess, name: str, role: str) -> list[str]:
    paths = server.client_tls(name, role)
    return ["--ca", str(paths["ca"]), "--cert", str(paths["cert"]), "--key", str(paths["key"])]


def _cli(args: list[str]):
    return CliRunner().invoke(linkage_cli, args, catch_exceptions=False)


def _coordinator_flags(first, second, tmp: Path) -> list[str]:
    (tmp / "c0.token").write_text(first.coordinator_token + "\n")
    (tmp / "c1.token").write_text(second.coordinator_token + "\n")
    return ["--server", first.address, "--token-file", str(tmp / "c0.token"),
            "--server-1", second.address, "--token-file-1", str(tmp / "c1.token"),
            *_tls_flags(first, "coordinator", "coordinator")]


def _share_project(servers, batches, tmp: Path, project: str, agencies: list[str],
                   threshold: str | None, *, deduplicated: bool = True) -> dict:
    """A two-server project created and submitted to through the CLI (declared
    deduplicated unless ``deduplicated`` is false), and run at ``threshold`` (unless
    ``None``)."""
    first, second = servers
    coordinator = _coordinator_flags(first, second, tmp)
    batch_ids: dict[str, str] = {}
    created = _cli(["project", "create", "--name", project, "--agencies", ",".join(agencies),
                    "--stages", ",".join(DEFAULT_STAGES), "--tokens-dir", str(tmp / "tokens"),
                    *coordinator])
    assert created.exit_code == 0, created.output
    assert "One server holds every CLK" not in created.output
    for agency in agencies:
        path = tmp / f"{agency}.clk"
        path.write_bytes(write_batch(batches[agency]))
        submitted = _cli(["submit", "--project", project,
                          *(["--deduplicated"] if deduplicated else []),
                          "--token-file", str(tmp / "tokens" / f"{agency}.token"),
                          "--server", first.address, "--server-1", second.address,
                          *_tls_flags(first, agency, "agency"), str(path)])
        assert submitted.exit_code == 0, submitted.output
        assert f'"records_accepted": {len(batches[agency])}' in submitted.output
        batch_ids[agency] = json.loads(submitted.output.strip().splitlines()[-1])["batch"]
    ran = None
    if threshold is not None:
        ran = _cli(["run", "--project", project, "--threshold", threshold, *coordinator])
        assert ran.exit_code == 0, ran.output
    tokens = {a: (tmp / "tokens" / f"{a}.token").read_text().strip() for a in agencies}
    return {"agencies": agencies, "tmp": tmp, "coordinator": coordinator,
            "run": ran.output if ran else "", "batches": batch_ids, "tokens": tokens,
            "summary": json.loads(ran.output.strip().splitlines()[-1]) if ran else None}


@pytest.fixture(scope="module")
def linked(servers, batches, tmp_path_factory):
    """The two-server project created, submitted to and run through the CLI at 0.8."""
    return _share_project(servers, batches, tmp_path_factory.mktemp("cli"), PROJECT,
                          sorted(batches)[:AGENCY_COUNT], THRESHOLD)


def _groups_by_key(address: str, tokens: dict[str, str], tls: dict,
                   project: str = PROJECT) -> dict[str, frozenset]:
    """Every group's key and the set of its (agency, record id) members, read as agencies
    read."""
    members: dict[str, set] = {}
    for agency, token in tokens.items():
        with LinkageClient(address, token, timeout=120, **tls.get(agency, {})) as client:
            for hit in client.results(project):
                members.setdefault(hit["group"], set()).add((agency, hit["record"]))
    return {key: frozenset(group) for key, group in members.items()}


def _groups(address: str, tokens: dict[str, str], tls: dict,
            project: str = PROJECT) -> set[frozenset]:
    """Every group as the set of its (agency, record id) members, read as agencies read."""
    return set(_groups_by_key(address, tokens, tls, project).values())


def _reference_runs(batches, agencies, tmp_path: Path, *thresholds: str):
    """The same agencies on a normal server, deduplicated, run at each threshold in turn:
    [(groups by key, summary, report)] per run."""
    out = []
    with ServerProcess(tmp_path / "ref" / "data", store="sqlite") as reference:
        with LinkageClient(reference.address, reference.coordinator_token,
                           timeout=120) as coordinator:
            ref_tokens = coordinator.create_project(PROJECT, _schema(), agencies,
                                                    list(DEFAULT_STAGES))
            for agency in agencies:
                with LinkageClient(reference.address, ref_tokens[agency],
                                   timeout=120) as client:
                    client.submit(PROJECT, batches[agency], deduplicated=True)
            for threshold in thresholds:
                summary = coordinator.run(PROJECT, threshold)
                out.append((_groups_by_key(reference.address, ref_tokens, {}), summary,
                            coordinator.report(PROJECT)))
    return out


def _single_server_run(batches, agencies, tmp_path: Path, *thresholds: str):
    """As ``_reference_runs``: [(groups, summary)] per run."""
    return [(set(groups.values()), summary)
            for groups, summary, _ in _reference_runs(batches, agencies, tmp_path, *thresholds)]


def _band_edges(threshold: float, auto: bool) -> np.ndarray:
    """The hit edges a two-server run opens at ``threshold`` (the grid every 0.01 above)."""
    if auto:
        return hit_edges(SERVICE_EDGES, SERVICE_EDGES.index(threshold))
    return hit_edges([threshold], 0)


def _plaintext_groups(batches, agencies, *, scores: str = "exact",
                      threshold: float = float(THRESHOLD), edges=None,
                      within: bool = False) -> set[frozenset]:
    """Groups from the plaintext kernel's cross-agency pairs at the threshold, grouped as a
    run groups deduplicated agencies: by score ("exact", a normal run), by each pair's
    band's lower edge ("bands", what two-server mode opens) or all tied ("tie"). With
    ``within``, as a run groups agencies that did not declare themselves deduplicated:
    each agency's pairs with itself too (after the cross pairs, as server 0 plans them),
    and no one-per-agency rule."""
    edges = _band_edges(threshold, False) if edges is None else np.asarray(edges)
    by = {"exact": lambda found: found,
          "bands": lambda found: edges[np.searchsorted(edges, found, side="right") - 1],
          "tie": lambda found: np.full(found.shape, threshold)}[scores]
    members, owners, pairs = servers_pairs(batches, agencies, threshold, within=within,
                                           score=by)
    grouping = greedy_groups(pairs, len(members), owners,
                             max_per_owner=None if within else {a: 1 for a in
                                                                range(len(agencies))})
    return {frozenset(members[p] for p in group) for group in grouping.members()}


def test_groups_equal_the_plaintext_kernels_and_a_single_server_run(servers, linked, batches,
                                                                    tmp_path):
    """Two-server groups are exactly the plaintext kernel's pairs grouped by band (each hit's
    band's lower edge its score); against a normal run they differ only where a record has
    two hits in one deduplicated agency in the same band (a tie the bands cannot break)."""
    first, _ = servers
    agencies = linked["agencies"]
    tls = {a: first.client_tls(a, "agency") for a in agencies}
    two_server = _groups(first.address, linked["tokens"], tls)
    assert len(two_server) > 20  # the data link: an empty result would prove nothing
    assert two_server == _plaintext_groups(batches, agencies, scores="bands")
    [(single, _)] = _single_server_run(batches, agencies, tmp_path, THRESHOLD)
    assert single == _plaintext_groups(batches, agencies, scores="exact")
    edges = _band_edges(float(THRESHOLD), False)
    tied = _tied_records(batches, agencies, float(THRESHOLD), edges)
    reach = _tie_reach(batches, agencies, float(THRESHOLD), tied)
    assert all(group <= reach for group in two_server ^ single)
    # where no tie reaches, a record's group is the normal run's
    untied = {g for g in single if not g & reach}
    assert untied and untied <= two_server
    ties = _plaintext_groups(batches, agencies, scores="tie")
    print(f"two-server groups: {len(two_server)}, single-server: {len(single)}, "
          f"equal: {len(two_server & single)}; records with tied hits: {len(tied)}, in their "
          f"components: {len(reach)}; "
          f"all hits tied (the earlier mode) would give {len(ties & single)} equal")


@pytest.fixture(scope="module")
def linked_open(pki_dir, batches, tmp_path_factory):
    """On a third pair of servers, a project whose agencies do not declare themselves
    deduplicated, run with --threshold auto; yields (servers, project)."""
    base = tmp_path_factory.mktemp("open")
    pair = _start_pair(base, pki_dir, "sqlite")
    try:
        yield pair, _share_project(pair, batches, base, "shared-open",
                                   sorted(batches)[:AGENCY_COUNT], "auto", deduplicated=False)
    finally:
        pair[0].stop()
        pair[1].stop()


def test_within_agency_duplicates_are_found_on_shares_as_the_kernel_finds_them(
        servers, linked, linked_open, batches, dataset):
    """Agencies that did not declare their files deduplicated have their own pairs compared
    on shares too (auto's threshold still comes from the cross-agency sample): the groups
    are exactly the plaintext kernel's cross and within pairs grouped by band, and hold the
    generator's within-agency duplicates."""
    (first, _), linked_open = linked_open
    agencies = linked_open["agencies"]
    tls = {a: first.client_tls(a, "agency") for a in agencies}
    two_server = _groups(first.address, linked_open["tokens"], tls, "shared-open")
    threshold = linked_open["summary"]["threshold"]
    assert threshold in SERVICE_EDGES, linked_open["summary"]
    assert two_server == _plaintext_groups(batches, agencies, scores="bands", within=True,
                                           threshold=threshold,
                                           edges=_band_edges(threshold, True))
    from itertools import combinations
    within = [(a, b) for g in two_server for a, b in combinations(sorted(g), 2)
              if a[0] == b[0]]
    true_within = [(a, b) for a, b in within if dataset.truth[a] == dataset.truth[b]]
    members = sorted((a, r) for a in agencies for r in batches[a].record_ids)
    duplicates = [(a, b) for a, b in combinations(members, 2)
                  if a[0] == b[0] and dataset.truth[a] == dataset.truth[b]]
    print(f"within-agency pairs in groups: {len(within)}, true duplicates {len(true_within)} "
          f"of {len(duplicates)}; threshold {threshold}")
    # the data link: most planted duplicates are found (precision depends on the threshold
    # auto draws from its sample, and on the session's fresh secret)
    assert len(duplicates) >= 5 and len(true_within) >= 0.5 * len(duplicates)
    # the deduplicated project compares no pair inside an agency
    dedup_first, _ = servers
    assert all(len({a for a, _ in g}) == len(g) for g in _groups(
        dedup_first.address, linked["tokens"],
        {a: dedup_first.client_tls(a, "agency") for a in agencies}))


def _network_by_members(report: dict, groups: dict[str, frozenset]):
    """A report's network with each entity named by its members (the group keys of two
    servers differ): ({members: broker facts}, {(members, case, agency, stages)} edges)."""
    network = report["network"]
    brokers = {groups[b["group"]]: (b["entity_type"], tuple(b["agencies"]), tuple(b["stages"]),
                                    b["cases"]) for b in network["brokers"]}
    edges = set()
    for edge in network["edges"]:
        entity, case = ((edge["source"], edge["target"]) if edge["source"] in groups
                        else (edge["target"], edge["source"]))
        edges.add((groups[entity], case, edge["agency"], tuple(edge["stages"])))
    return brokers, edges


def test_the_report_network_and_brokers_equal_a_single_server_runs(servers, linked, batches,
                                                                   tmp_path):
    """Share batches carry their records' attributes to server 0, so a two-server report has
    the network and broker ranking of a normal run on the same data: every entity-case edge
    and every broker's facts (type, agencies, stages, cases) are the normal run's, except
    for the groups that differ (a record's hits tied in one band), which are checked to be
    exactly the differing ones."""
    first, _ = servers
    agencies = linked["agencies"]
    tls = {a: first.client_tls(a, "agency") for a in agencies}
    two_groups = _groups_by_key(first.address, linked["tokens"], tls)
    with first.client(first.coordinator_token, timeout=60) as coordinator:
        two_report = coordinator.report(PROJECT)
    [(one_groups, _, one_report)] = _reference_runs(batches, agencies, tmp_path, THRESHOLD)
    two_brokers, two_edges = _network_by_members(two_report, two_groups)
    one_brokers, one_edges = _network_by_members(one_report, one_groups)
    ranked = [b for b in two_report["network"]["brokers"] if len(b["agencies"]) > 1]
    assert len(ranked) > 20 and len(two_edges) > 50, (len(ranked), len(two_edges))
    assert any(b["stages"] for b in ranked) and all(b["cases"] for b in ranked)
    differing = set(two_brokers) ^ set(one_brokers)
    assert differing == set(two_groups.values()) ^ set(one_groups.values())
    assert len(differing) < 0.1 * len(one_brokers)
    assert {m: two_brokers[m] for m in two_brokers if m not in differing} == \
        {m: one_brokers[m] for m in one_brokers if m not in differing}
    assert {e for e in two_edges if e[0] not in differing} == \
        {e for e in one_edges if e[0] not in differing}
    cases = [{n["id"] for n in report["network"]["nodes"] if n["kind"] == "case"}
             for report in (two_report, one_report)]
    assert cases[0] and cases[0] ^ cases[1] <= {e[1] for e in two_edges | one_edges
                                                 if e[0] in differing}
    assert two_report["network"]["stage_coverage"] == one_report["network"]["stage_coverage"] \
        or differing
    # the ranking's order: equal on the facts it sorts by first (agencies, stages, cases)
    def order(report, groups):
        return [groups[b["group"]] for b in report["network"]["brokers"]
                if groups[b["group"]] not in differing]
    two_order, one_order = order(two_report, two_groups), order(one_report, one_groups)
    facts = [(-len(one_brokers[m][1]), -len(one_brokers[m][2]), -one_brokers[m][3])
             for m in one_order]
    assert [(-len(two_brokers[m][1]), -len(two_brokers[m][2]), -two_brokers[m][3])
            for m in two_order] == facts
    top = 20
    print(f"network: {len(two_edges)} edges, {len(ranked)} cross-agency brokers; groups that "
          f"differ: {len(differing)}; top {top} brokers shared: "
          f"{len(set(two_order[:top]) & set(one_order[:top]))}")


def _tied_records(batches, agencies, threshold: float, edges) -> set:
    """Records whose hits in one other agency share the band of their best hit there."""
    tied: set = set()
    for left in agencies:
        for right in agencies:
            if right == left:
                continue
            found = dice_candidates_native(batches[left].clks, batches[right].clks, threshold)
            band = np.searchsorted(edges, found.score, side="right") - 1
            for row in np.unique(found.left):
                bands = band[found.left == row]
                if (bands == bands.max()).sum() > 1:
                    tied.add((left, batches[left].record_ids[row]))
    return tied


def _tie_reach(batches, agencies, threshold: float, tied: set) -> set:
    """The records a tie can move: those of every connected component of the cross-agency
    hits at the threshold that holds a tied record. Greedy grouping takes pairs in score
    order, so a tie broken the other way can change which pair a neighbour's record gets,
    and that one's neighbour's, but never a group outside the component."""
    parent: dict = {}

    def root(record):
        parent.setdefault(record, record)
        while parent[record] != record:
            parent[record] = parent[parent[record]]
            record = parent[record]
        return record

    for i, left in enumerate(agencies):
        for right in agencies[i + 1:]:
            found = dice_candidates_native(batches[left].clks, batches[right].clks, threshold)
            for a, b in zip(found.left.tolist(), found.right.tolist()):
                parent[root((left, batches[left].record_ids[a]))] = root(
                    (right, batches[right].record_ids[b]))
    touched = {root(record) for record in tied}
    return {record for record in parent if root(record) in touched}


@pytest.fixture(scope="module")
def auto_linked(pki_dir, batches, tmp_path_factory):
    """The same agencies on a second pair of servers (a secret serves one project per
    server), run with --threshold auto; yields (servers, project)."""
    base = tmp_path_factory.mktemp("auto")
    pair = _start_pair(base, pki_dir, "sqlite")
    try:
        yield pair, _share_project(pair, batches, base, "shared-auto",
                                   sorted(batches)[:AGENCY_COUNT], "auto")
    finally:
        pair[0].stop()
        pair[1].stop()


def test_auto_chooses_on_the_opened_histogram_like_a_single_server_auto_run(
        auto_linked, batches, dataset, tmp_path):
    """``auto`` on shares: the threshold is a band edge near a normal auto run's, the model's
    estimates are in the summary and the report, and the groups are the kernel's pairs at
    that threshold grouped by band; a normal run at that threshold differs only where a
    record's hits tie in one band, and against the truth it is no worse than a normal auto
    run."""
    (first, _), auto_linked = auto_linked
    agencies = auto_linked["agencies"]
    summary = auto_linked["summary"]
    threshold = summary["threshold"]
    assert threshold in SERVICE_EDGES
    assert "banded histogram" in summary["threshold_reason"], summary["threshold_reason"]
    with first.client(first.coordinator_token, timeout=60) as coordinator:
        report = coordinator.report("shared-auto")
    assert report["threshold"] == threshold
    assert 0.5 < report["estimated_precision"] <= 1.0
    assert 0.5 < report["estimated_recall"] <= 1.0
    confidences = [g["confidence"] for g in report["groups"] if g["size"] > 1]
    assert confidences and all(0 <= c <= 1 for c in confidences)
    # band shares of the model, not one constant: several values or, where the run's sample
    # puts every linked band above the model's non-match tail (CI saw one such run), 1 for
    # every group and an estimated precision to match
    distinct = set(confidences)
    assert len(distinct) > 1 or (distinct == {1.0} and report["estimated_precision"] >= 0.99), \
        (sorted(distinct), report["estimated_precision"], threshold)
    tls = {a: first.client_tls(a, "agency") for a in agencies}
    two_server = _groups(first.address, auto_linked["tokens"], tls, "shared-auto")
    edges = _band_edges(threshold, True)
    assert two_server == _plaintext_groups(batches, agencies, scores="bands",
                                           threshold=threshold, edges=edges)
    (single_auto, single_summary), (single, _) = _single_server_run(
        batches, agencies, tmp_path, "auto", f"{threshold:g}")
    # at the same threshold, a normal run's groups differ only where bands tie
    tied = _tied_records(batches, agencies, threshold, edges)
    reach = _tie_reach(batches, agencies, threshold, tied)
    assert all(group <= reach for group in two_server ^ single)
    untied = {g for g in single if not g & reach}
    assert untied and untied <= two_server
    assert len(two_server & single) >= 0.9 * len(single), (len(two_server & single),
                                                           len(single))
    # against the truth, no worse than a normal auto run (whose threshold may differ: its
    # model has exact scores and the 1-to-1 solver's links, the banded one a sample's bands)
    f1_two, f1_auto = _f1(two_server, dataset), _f1(single_auto, dataset)
    assert f1_two >= f1_auto - 0.05, (f1_two, f1_auto, threshold, single_summary)
    assert f1_two > 0.8
    print(f"auto: two-server {threshold} ({summary['threshold_reason']}), F1 {f1_two:.4f}; "
          f"single-server auto {single_summary['threshold']}, F1 {f1_auto:.4f}; groups "
          f"{len(two_server)}, a normal run at {threshold}: {len(single)}, equal "
          f"{len(two_server & single)}, records with tied hits {len(tied)}")


def _f1(groups: set[frozenset], dataset) -> float:
    """Pairwise F1 of the groups' cross-agency pairs against the generator's truth."""
    from itertools import combinations
    agencies = {a for g in groups for a, _ in g}
    found = {frozenset(p) for g in groups for p in combinations(sorted(g), 2) if p[0][0] != p[1][0]}
    by_entity: dict = {}
    for key, entity in dataset.truth.items():
        if key[0] in agencies:
            by_entity.setdefault(entity, []).append(key)
    truth = {frozenset(p) for members in by_entity.values()
             for p in combinations(sorted(members), 2) if p[0][0] != p[1][0]}
    correct = len(found & truth)
    return 2 * correct / max(len(found) + len(truth), 1)


def _schema() -> str:
    from linkage.encoding.schema import default_schema_text
    return default_schema_text()


def _stored_bytes(server: ServerProcess, module_store: str = "sqlite") -> bytes:
    """Everything the server's store holds, as bytes (SQLite files, or every row)."""
    url = module_store if server.store is None else server.store
    if url.startswith("postgresql"):
        import psycopg
        out = bytearray()
        with psycopg.connect(url) as connection:
            tables = [r[0] for r in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            for table in tables:
                for row in connection.execute(f"SELECT * FROM {table}"):
                    for value in row:
                        out += bytes(value) if isinstance(value, (bytes, memoryview)) \
                            else str(value).encode()
        return bytes(out)
    return b"".join(path.read_bytes() for path in server.data_dir.glob("linkage.sqlite3*"))


def test_neither_server_stores_a_clk(servers, linked, batches, module_store_spec):
    for server in servers:
        stored = _stored_bytes(server, module_store_spec)
        assert len(stored) > 100_000  # the shares are there
        for agency in linked["agencies"]:
            batch = batches[agency]
            clks = clks_to_bytes(batch.clks)
            bits = unpack_bits(batch.clks, batch.clk_bits).astype("<u4")
            found = [i for i, clk in enumerate(clks[:60]) if clk in stored]
            assert not found, f"{agency}'s CLKs {found} are stored on a server"
            assert not any(row.tobytes() in stored for row in bits[:60])


def test_the_stored_bytes_check_finds_clks_on_a_single_server(batches, tmp_path):
    """The control of the test above: a normal project's store does hold the CLKs."""
    agency = sorted(batches)[0]
    with ServerProcess(tmp_path / "data", store="sqlite") as server:
        with LinkageClient(server.address, server.coordinator_token, timeout=60) as coordinator:
            tokens = coordinator.create_project("plain", _schema(), sorted(batches)[:2],
                                                list(DEFAULT_STAGES))
        with LinkageClient(server.address, tokens[agency], timeout=60) as client:
            client.submit("plain", batches[agency])
        time.sleep(0.2)
        stored = _stored_bytes(server)
    assert all(clk in stored for clk in clks_to_bytes(batches[agency].clks)[:20])


def test_clk_uploads_and_runs_are_refused_on_a_two_server_project(servers, linked, batches):
    first, _ = servers
    agency = linked["agencies"][0]
    token = (linked["tmp"] / "tokens" / f"{agency}.token").read_text().strip()
    with LinkageClient(first.address, token, timeout=60,
                       **first.client_tls(agency, "agency")) as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.submit(PROJECT, batches[agency])
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "two-server mode" in refused.value.details()
    with first.client(first.coordinator_token, timeout=60) as coordinator:
        with pytest.raises(grpc.RpcError) as refused:
            coordinator.run(PROJECT, THRESHOLD)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "--server-1" in refused.value.details()
        with pytest.raises(grpc.RpcError) as refused:  # a run used it: its groups name it
            coordinator.withdraw_batch(PROJECT, linked["batches"][agency], role="coordinator")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "was compared in a linkage run" in refused.value.details()


def test_auto_with_too_few_pairs_is_refused_clearly(servers, dataset, tmp_path):
    """Four records per agency, under a secret of their own (one project per secret)."""
    from linkage_service.client import files
    files.write_secret(tmp_path / "tiny.key")
    secret = files.read_secret(tmp_path / "tiny.key")
    small = {}
    for name in sorted(dataset.exports)[:2]:
        export = dataset.exports[name]
        csv = "".join(export.to_csv().splitlines(keepends=True)[:5]).encode("utf-8")
        small[name] = files.encode_export(_schema(), secret, csv, export.mapping_toml(),
                                          case_key=name.encode("utf-8").ljust(32, b"#")).batch
    project = _share_project(servers, small, tmp_path, "tiny", sorted(small), None)
    auto = _cli(["run", "--project", "tiny", "--threshold", "auto", *project["coordinator"]])
    assert auto.exit_code == 1
    assert "'auto' needs at least 30 cross-agency pairs" in auto.output, auto.output
    assert "numeric threshold" in auto.output


def test_a_peer_with_the_wrong_certificate_is_refused(servers, pki_dir, tmp_path):
    _, second = servers
    # the same CA, but a coordinator's certificate, and a server certificate of another name
    for name, role in (("coordinator", "coordinator"), ("server-1", "server")):
        paths = second.client_tls(name, role)
        channel = grpc.secure_channel(second.address, grpc.ssl_channel_credentials(
            paths["ca"].read_bytes(), paths["key"].read_bytes(), paths["cert"].read_bytes()))
        with channel:
            stub = spb_grpc.PeerServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.AgreePlan(spb.ShareRunPlan(project=PROJECT, run="x"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "server-0" in refused.value.details()
    # a certificate of another CA does not get through the handshake
    foreign = tmp_path / "foreign"
    pki.init_ca(foreign)
    pki.issue(foreign, "server-0", "server", foreign)
    channel = grpc.secure_channel(second.address, grpc.ssl_channel_credentials(
        (pki_dir / "ca.pem").read_bytes(), (foreign / "server-0.key").read_bytes(),
        (foreign / "server-0.pem").read_bytes()))
    with channel:
        with pytest.raises(grpc.RpcError) as refused:
            spb_grpc.PeerServiceStub(channel).AgreePlan(spb.ShareRunPlan(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_peer_killed_mid_run_fails_the_run_and_stores_nothing(pki_dir, batches, tmp_path):
    first, second = _start_pair(tmp_path, pki_dir, "sqlite")
    try:
        agencies = sorted(batches)[:2]
        coordinator = _coordinator_flags(first, second, tmp_path)
        assert _cli(["project", "create", "--name", PROJECT, "--agencies", ",".join(agencies),
                     "--stages", ",".join(DEFAULT_STAGES), "--tokens-dir",
                     str(tmp_path / "tokens"), *coordinator]).exit_code == 0
        for agency in agencies:
            path = tmp_path / f"{agency}.clk"
            path.write_bytes(write_batch(batches[agency]))
            assert _cli(["submit", "--project", PROJECT,
                         "--token-file", str(tmp_path / "tokens" / f"{agency}.token"),
                         "--server", first.address, "--server-1", second.address,
                         *_tls_flags(first, agency, "agency"), str(path)]).exit_code == 0
        client0 = first.client(first.coordinator_token, timeout=120)
        client1 = second.client(second.coordinator_token, timeout=120)
        stages: list[str] = []

        def kill_when_comparing(stage, done, total):
            stages.append(stage)
            if stage == "comparing on shares" and second.process.poll() is None:
                threading.Timer(0.05, os.kill, (second.process.pid, signal.SIGKILL)).start()

        with client0, client1:
            with pytest.raises(grpc.RpcError) as failed:
                run_shares(client0, client1, PROJECT, THRESHOLD, on_progress=kill_when_comparing)
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value.details()
            assert "Server 1" in failed.value.details()
            assert "Nothing of this run was stored" in failed.value.details()
            assert "comparing on shares" in stages
            with pytest.raises(grpc.RpcError) as no_run:
                client0.report(PROJECT)
            assert no_run.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "no finished linkage run" in no_run.value.details()
    finally:
        first.stop()
        second.kill()




def test_a_dealer_killed_mid_delivery_fails_the_run_and_stores_nothing(servers, linked):
    """The dealer (the coordinator's client) dies while streaming server 1's corrections:
    server 1 holds incomplete material, and the run fails clearly with nothing stored."""
    first, second = servers
    with first.client(first.coordinator_token, timeout=120) as client0, \
            second.client(second.coordinator_token, timeout=120) as client1:
        before = client0.report(PROJECT)["run"]
        stub0 = spb_grpc.ShareServiceStub(client0._channel)
        stub1 = spb_grpc.ShareServiceStub(client1._channel)
        plan = client0._call(stub0.PlanShareRun, spb.PlanShareRunRequest(
            project=PROJECT, threshold=THRESHOLD))
        dealers = [Dealer(Plan(p.left_rows, p.right_rows, plan.clk_bits, p.block_rows))
                   for p in plan.pairs]
        client0._call(stub0.DeliverMaterial, _material(plan, 0, dealers))

        sent, gone = threading.Semaphore(0), threading.Event()

        def dies_midway():
            for count, part in enumerate(_material(plan, 1, dealers)):
                if count == 4:
                    sent.release()
                    gone.wait(30)  # the dealer hangs here until its call is gone
                    return
                yield part

        delivery = stub1.DeliverMaterial.future(dies_midway(), metadata=client1._metadata,
                                                timeout=60)
        assert sent.acquire(timeout=30)
        delivery.cancel()  # what the server sees of a killed dealer: the stream is cut
        gone.set()
        with pytest.raises(grpc.FutureCancelledError):
            delivery.result()
        with pytest.raises(grpc.RpcError) as failed:
            for _ in client0._call(stub0.RunShares, spb.RunSharesRequest(run=plan.run)):
                pass
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "no complete dealer material" in failed.value.details()
        assert "Nothing of this run was stored" in failed.value.details()
        assert client0.report(PROJECT)["run"] == before


def test_share_uploads_are_refused_on_a_normal_project(servers, batches):
    first, second = servers
    agencies = sorted(batches)[:2]
    with first.client(first.coordinator_token, timeout=60) as coordinator:
        tokens = coordinator.create_project("plain-here", _schema(), agencies,
                                            list(DEFAULT_STAGES))
    agency = agencies[0]
    with first.client(tokens[agency], agency, "agency", timeout=60) as client0, \
            second.client(tokens[agency], agency, "agency", timeout=60) as client1:
        with pytest.raises(grpc.RpcError) as refused:
            submit_shares(client0, client1, "plain-here", batches[agency])
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "normal (single-server) project" in refused.value.details()


def test_record_attributes_go_to_server_0_only_and_are_checked_there(servers, batches):
    """Server 1 compares shares and stores nothing of a run, so it refuses attributes; server
    0 checks them as for a CLK batch (here: a raw case number is refused)."""
    from linkage.batch import content_hash
    first, second = servers
    agencies = sorted(batches)[:2]
    with first.client(first.coordinator_token, timeout=60) as c0, \
            second.client(second.coordinator_token, timeout=60) as c1:
        tokens = create_share_project(c0, c1, "attributes", _schema(), agencies,
                                      list(DEFAULT_STAGES))
    agency, batch = agencies[0], batches[agencies[0]]
    ids, share = batch.record_ids[:2], [b"\0" * (4 * batch.clk_bits)] * 2

    def upload(client, role: int, attributes: list) -> grpc.RpcError:
        records = [pb.RecordAttributes(entity_type="person", case_ref=c, stage="")
                   for c in attributes]
        header = pb.BatchHeader(
            project="attributes", schema_fingerprint=batch.schema_fingerprint,
            key_check="ab" * 32,  # a secret of its own: the module's projects share one
            clk_bits=batch.clk_bits, record_count=2, batch_id="b-00000000000000a7",
            content_hash=content_hash(ids, share, None), entity_type="person")
        messages = [spb.SubmitSharesRequest(header=spb.ShareHeader(batch=header, share=role)),
                    spb.SubmitSharesRequest(chunk=spb.ShareChunk(
                        first_record=0, record_ids=ids, shares=share, attributes=records))]
        with pytest.raises(grpc.RpcError) as refused:
            client._call(spb_grpc.ShareServiceStub(client._channel).SubmitShares,
                         iter(messages))
        return refused.value

    with first.client(tokens[agency], agency, "agency", timeout=60) as client0, \
            second.client(tokens[agency], agency, "agency", timeout=60) as client1:
        refused = upload(client1, 1, ["c-00000000000a", "c-00000000000b"])
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION, refused.details()
        assert "Server 1 takes no record attributes" in refused.details()
        refused = upload(client0, 0, ["CASE-2024-117", "c-00000000000b"])
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.details()
        assert "pseudonymised" in refused.details()
