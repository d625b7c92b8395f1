"""Field-wise scoring on shares through two real servers (issue 12, design C in the service):
a project whose schema has per-field segments is trained on opened sums only and each pair's
link decided on shares; its groups equal the core run's on the same CLKs, and they explain
themselves field by field."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

import linkage.encoding as encoding_package
from linkage.analysis.evaluation import pairwise_quality
from linkage.encoding.schema import load_schema
from linkage.mpc import Plan, run_locally, split_clks
from linkage.mpc.banded_run import MATCHES_PER_SAMPLED_RECORD, SERVICE_EDGES, sample_rows
from linkage.mpc.bands import band_thresholds
from linkage.mpc.field_dealer import FieldDealer, FieldMaterial
from linkage.mpc.field_run import FieldRunShares, LinkShares, field_run_party, own_sample
from linkage.mpc.field_train import SamplePair
from linkage.mpc.fieldwise import LocalDealer, field_columns, name_swap_products
from linkage_service.client import files, pki
from linkage_service.client.shares import create_share_project, run_shares, submit_shares
from linkage_service.client.synthetic import DEFAULT_STAGES, SyntheticConfig, generate

from .test_two_server import _start_pair

SEGMENTS_SCHEMA = Path(encoding_package.__file__).parent / "schemas" / "person_segments.json"
PROJECT = "fields"


@pytest.fixture(scope="module")
def field_servers(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    pki.init_ca(directory)
    pki.issue(directory, "server-0", "server", directory / "peers")
    first, second = _start_pair(tmp_path_factory.mktemp("two"), directory, "sqlite")
    yield first, second
    first.stop()
    second.stop()


def _field_data(directory: Path, agencies: int = 3):
    """Agencies of 120 records, encoded with the segments schema and a fresh secret (a server
    refuses one secret in two projects)."""
    dataset = generate(SyntheticConfig(seed=23, records_per_agency=120))
    names = sorted(dataset.exports)[:agencies]
    files.write_secret(directory / "shared.key")
    secret = files.read_secret(directory / "shared.key")
    text = SEGMENTS_SCHEMA.read_text("utf-8")
    batches = {name: files.encode_export(text, secret, dataset.exports[name].to_csv().encode(),
                                         dataset.exports[name].mapping_toml(),
                                         case_key=name.encode().ljust(32, b"#")).batch
               for name in names}
    truth = {key: entity for key, entity in dataset.truth.items() if key[0] in names}
    return text, batches, truth


@pytest.fixture(scope="module")
def field_data(tmp_path_factory):
    """Three agencies (``_field_data``)."""
    return _field_data(tmp_path_factory.mktemp("secret"))


def _share_project(first, second, project: str, text: str, batches: dict, *,
                   deduplicated: bool) -> dict[str, str]:
    """A two-server project of ``batches``' agencies, each batch submitted as shares to both
    servers; returns the agencies' tokens."""
    agencies = sorted(batches)
    with first.client(first.coordinator_token, timeout=120) as c0, \
            second.client(second.coordinator_token, timeout=120) as c1:
        tokens = create_share_project(c0, c1, project, text, agencies, list(DEFAULT_STAGES))
    for agency in agencies:
        with first.client(tokens[agency], agency, "agency", timeout=120) as a0, \
                second.client(tokens[agency], agency, "agency", timeout=120) as a1:
            submit_shares(a0, a1, project, batches[agency], deduplicated=deduplicated)
    return tokens


def _core_links(plan, batches, layout) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """The core run (``field_run_party``, both servers in this process, fresh shares and a
    local dealer) on the same CLKs and the plan's public coin: its links as record pairs."""
    columns = field_columns(layout.word_starts, layout.word_counts)
    crossed = name_swap_products(layout.fields)
    assert crossed  # the person schema's names are compared crosswise too
    bits = int(plan.clk_bits)
    later = LocalDealer()
    order = [a.agency for a in plan.agencies]
    sides: list[dict] = [{"samples": [], "own": {}, "links": []} for _ in (0, 1)]
    cross = sampled = 0

    def both(left, right, scan_plan):
        dealer = FieldDealer(scan_plan, columns, crossed=crossed)
        l0, l1 = split_clks(left, bits)
        r0, r1 = split_clks(right, bits)
        return ((l0, r0, FieldMaterial(0, scan_plan, columns, dealer.seeds[0],
                                       crossed=crossed), later.for_party(0)),
                (l1, r1, FieldMaterial(1, scan_plan, columns, dealer.seeds[1],
                                       dealer.corrections(), crossed), later.for_party(1)))

    for index, pair in enumerate(plan.pairs):
        left, right = batches[pair.left_agency].clks, batches[pair.right_agency].clks
        within = pair.left_agency == pair.right_agency
        if within:
            drawn = own_sample(left.shape[0], int(plan.sample_seed),
                               order.index(pair.left_agency))
            if drawn is not None:
                sample = (left[drawn[0]], left[drawn[1]])
                for party, side in enumerate(both(*sample, Plan(drawn[0].size, drawn[1].size,
                                                                bits))):
                    sides[party]["own"][pair.left_agency] = SamplePair(*side)
        else:
            rows = sample_rows(left.shape[0], int(plan.sample_seed), index)
            cross += left.shape[0] * right.shape[0]
            sampled += rows.size
            for party, side in enumerate(both(left[rows], right, Plan(rows.size,
                                                                      right.shape[0], bits))):
                sides[party]["samples"].append(SamplePair(*side))
        links_plan = Plan(left.shape[0], right.shape[0], bits, int(pair.block_rows))
        for party, side in enumerate(both(left, right, links_plan)):
            sides[party]["links"].append(LinkShares(*side, pair.left_agency if within
                                                    else None))
    bands = band_thresholds(SERVICE_EDGES, bits)
    runs = [field_run_party(party, FieldRunShares(
        side["samples"], side["own"], side["links"], tuple(layout.fields), cross,
        MATCHES_PER_SAMPLED_RECORD * sampled), bands) for party, side in enumerate(sides)]
    result, _, _ = run_locally(*runs)
    out = []
    for pair, found in zip(plan.pairs, result.links):
        left_ids = batches[pair.left_agency].record_ids
        right_ids = batches[pair.right_agency].record_ids
        out.extend(((pair.left_agency, left_ids[i]), (pair.right_agency, right_ids[j]))
                   for i, j in zip(found.left.tolist(), found.right.tolist()))
    return out


def _components(links, members) -> set[frozenset]:
    parent = {m: m for m in members}

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in links:
        parent[root(a)] = root(b)
    groups: dict = {}
    for m in members:
        groups.setdefault(root(m), set()).add(m)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def test_a_segmented_project_is_linked_field_wise_on_shares(field_servers, field_data):
    first, second = field_servers
    text, batches, truth = field_data
    agencies = sorted(batches)
    # not deduplicated: each agency's own pairs are compared too
    tokens = _share_project(first, second, PROJECT, text, batches, deduplicated=False)
    plans = []
    with first.client(first.coordinator_token, timeout=600) as c0, \
            second.client(second.coordinator_token, timeout=600) as c1:
        summary = run_shares(c0, c1, PROJECT, "auto", on_plan=plans.append)
        report = c0.report(PROJECT)
    plan = plans[0]
    assert plan.fieldwise and list(plan.field_names) == list(
        load_schema(text).segments.fields)
    assert len(plan.pairs) == 6  # three cross pairs, each agency against itself
    assert "field-wise on shares" in summary["threshold_reason"]

    predicted: dict = {}
    members: dict = {}
    for agency in agencies:
        with first.client(tokens[agency], agency, "agency", timeout=120) as client:
            for hit in client.results(PROJECT):
                predicted[(agency, hit["record"])] = hit["group"]
                members.setdefault(hit["group"], set()).add((agency, hit["record"]))
    served = {frozenset(g) for g in members.values() if len(g) > 1}
    everyone = [(a, r) for a in agencies for r in batches[a].record_ids]
    expected = _components(_core_links(plan, batches, load_schema(text).segments), everyone)
    assert served == expected and len(served) >= 20

    quality = pairwise_quality(predicted, truth)
    print("field-wise on shares:", {k: (q.precision, q.recall) for k, q in quality.items()})
    assert quality["all"].f1 >= 0.9 and quality["within"].recall > 0

    waterfalls = report["network"]["waterfalls"]
    assert waterfalls and report["network"]["waterfalls_total"] == len(
        [g for g in served])
    steps = next(iter(waterfalls.values()))["steps"]
    assert [s["field"] for s in steps] == ["prior", *plan.field_names]
    assert all(s["level"] is None or -1 <= s["level"] <= 4 for s in steps)


def test_a_peer_killed_mid_field_wise_run_fails_it_and_stores_nothing(field_data, tmp_path):
    import os
    import signal
    import threading

    directory = tmp_path / "pki"
    pki.init_ca(directory)
    pki.issue(directory, "server-0", "server", directory / "peers")
    first, second = _start_pair(tmp_path, directory, "sqlite")
    text, batches, _ = field_data
    two = {name: batches[name] for name in sorted(batches)[:2]}
    try:
        _share_project(first, second, PROJECT, text, two, deduplicated=True)
        stages: list[str] = []

        def kill_when_linking(stage, done, total):
            stages.append(stage)
            if stage == "deciding links on shares" and second.process.poll() is None:
                threading.Timer(0.05, os.kill, (second.process.pid, signal.SIGKILL)).start()

        with first.client(first.coordinator_token, timeout=120) as c0, \
                second.client(second.coordinator_token, timeout=120) as c1:
            with pytest.raises(grpc.RpcError) as failed:
                run_shares(c0, c1, PROJECT, "auto", on_progress=kill_when_linking)
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value.details()
            assert "Nothing of this run was stored" in failed.value.details()
            assert "training on shares (sums over a sample)" in stages
            with pytest.raises(grpc.RpcError) as no_run:
                c0.report(PROJECT)
            assert no_run.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        first.stop()
        second.kill()


def test_later_material_outside_a_running_field_wise_run_is_refused(field_servers, tmp_path):
    """Mid-run material for a plan that is not running is refused with a clear error."""
    from linkage_service.protos.linkage.v1 import shares_pb2 as spb
    from linkage_service.protos.linkage.v1 import shares_pb2_grpc as spb_grpc

    first, second = field_servers
    text, batches, _ = _field_data(tmp_path, agencies=2)
    _share_project(first, second, "fields-later", text, batches, deduplicated=True)
    with first.client(first.coordinator_token, timeout=120) as c0:
        stub = spb_grpc.ShareServiceStub(c0._channel)
        plan = c0._call(stub.PlanShareRun, spb.PlanShareRunRequest(project="fields-later",
                                                                    threshold="auto"))
        assert plan.fieldwise and len(plan.pairs) == 1  # deduplicated: no within pairs
        request = spb.LaterMaterialRequest(sequence=0, count=10, thresholds=1)
        parts = [spb.MaterialPart(header=spb.MaterialHeader(run=plan.run, party=0,
                                                            later=request)),
                 spb.MaterialPart(chunk=spb.MaterialChunk(pair=0, seed=b"\1" * 32))]
        with pytest.raises(grpc.RpcError) as refused:
            c0._call(stub.DeliverMaterial, iter(parts))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "running field-wise run only" in refused.value.details()


def test_a_numeric_threshold_of_a_field_wise_run_is_a_match_probability(field_servers,
                                                                         tmp_path):
    first, second = field_servers
    text, batches, _ = _field_data(tmp_path, agencies=2)
    _share_project(first, second, "fields-numeric", text, batches, deduplicated=True)
    with first.client(first.coordinator_token, timeout=600) as c0, \
            second.client(second.coordinator_token, timeout=600) as c1:
        summary = run_shares(c0, c1, "fields-numeric", "0.999")
        report = c0.report("fields-numeric")
        with pytest.raises(grpc.RpcError) as refused:
            run_shares(c0, c1, "fields-numeric", "1")
    assert summary["threshold"] == pytest.approx(0.999)
    assert "set by the coordinator" in summary["threshold_reason"]
    confidences = [float(g["confidence"]) for g in report["groups"]]
    assert confidences and min(confidences) >= 0.999 - 1e-9  # every link reached it
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "match probability between 0 and 1" in refused.value.details()
