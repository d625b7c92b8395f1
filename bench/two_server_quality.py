"""Linkage quality of two-server mode through the service, beside a normal server, same run.

    python -m bench.two_server_quality --datasets febrl4 heldout --threshold auto

Each data set's owners are encoded as an agency would (``linkage encode``'s path, the
shipped schema unless ``--schema``), submitted to a normal ``linkage-server`` and, as
shares, to two servers in two-server mode (mutual TLS), and run at the same threshold on
both. The groups agencies read back (``GetResults``) are scored against the truth:
pairwise precision, recall and F1 over all, cross- and within-owner pairs
(``bench.quality.measure``). FEBRL4's two files are deduplicated (declared so on submit);
other data sets are submitted as they are. Every process is stopped at the end.

``--attack K ...``: in the same run, on the same records and encodings, the graph attack
(``bench.attacks.learned``) on what server 0 learned from the two-server run: between the
two agencies with the most true cross links, the hit graph at the threshold the run used,
each edge weighted by its opened band (``linkage.mpc.banded_run.hit_edges``), with each
agency's own pairs too unless its file is declared deduplicated. The service opens exactly
the plaintext kernel's pairs at the threshold (``tests/server/test_two_server.py``), so
the kernel draws the view here. The attacker is given each record's own row in plaintext
(more than a real one has), encodes them with the public schema under her own secret,
draws her graph the same way and aligns the two, unseeded and with K known pairs.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np


def _batches(data, schema_text: str, secret: bytes) -> list:
    """Each owner's export encoded with the shared secret, as ``linkage encode`` does."""
    import pandas as pd

    from linkage_service.client import files

    out = []
    for export in data.exports:
        buffer = io.StringIO()
        pd.DataFrame(export.rows).to_csv(buffer, index=False)
        out.append(files.encode_export(schema_text, secret, buffer.getvalue().encode("utf-8"),
                                       export.mapping_toml,
                                       case_key=export.name.encode("utf-8").ljust(32, b"#")
                                       ).batch)
    return out


def _labels(deployment, project: str, data, batches, tokens: dict[str, str]
            ) -> tuple[np.ndarray, dict[str, int]]:
    """Group label per record (-1: no group), read back as each agency reads its results,
    and each group key's label."""
    index = {}
    start = 0
    for export, batch in zip(data.exports, batches):
        for offset, record in enumerate(batch.record_ids):
            index[(export.name, record)] = start + offset
        start += len(batch)
    labels = np.full(start, -1, np.int64)
    groups: dict[str, int] = {}
    for export in data.exports:
        with deployment.primary.client(tokens[export.name], export.name, "agency") as client:
            for hit in client.results(project):
                labels[index[(export.name, hit["record"])]] = groups.setdefault(
                    hit["group"], len(groups))
    return labels, groups


#: Confidence bins of the calibration table (as docs/quality.md "Calibration").
CALIBRATION_BINS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0 + 1e-9)


def calibration(labels: np.ndarray, confidence: dict[int, float], entities: np.ndarray,
                owners: np.ndarray | None = None
                ) -> list[tuple[float, float, int, float, float]]:
    """Per confidence bin: (low, high, groups, mean confidence, share of pure groups: all
    its records one entity). With ``owners``, only the groups with at most one record per
    owner (no within-agency link)."""
    pure = {label: len(set(entities[labels == label].tolist())) == 1 for label in confidence}
    if owners is not None:
        confidence = {label: value for label, value in confidence.items()
                      if len(set(owners[labels == label].tolist()))
                      == int((labels == label).sum())}
    out = []
    for low, high in zip(CALIBRATION_BINS[:-1], CALIBRATION_BINS[1:]):
        inside = [label for label, value in confidence.items() if low <= value < high]
        if inside:
            out.append((low, min(high, 1.0), len(inside),
                        float(np.mean([confidence[label] for label in inside])),
                        float(np.mean([pure[label] for label in inside]))))
    return out


def _run_one(deployment_type, workdir: Path, data, batches, schema_text: str,
             threshold: str) -> tuple[dict, float, np.ndarray, dict[int, float]]:
    """Create, submit, run and read back on one deployment: (summary, run seconds, labels,
    group confidences)."""
    from linkage_service.client.shares import submit_shares
    from linkage_service.client.synthetic import DEFAULT_STAGES

    names = data.owner_names
    deployment = deployment_type(workdir)
    deployment.set_up_pki([(name, "agency") for name in names])
    with deployment:
        with deployment.coordinator() as coordinator:
            tokens = coordinator.create_project("bench", schema_text, names,
                                                list(DEFAULT_STAGES))
        for name, batch in zip(names, batches):
            if deployment.two_server:
                with deployment.primary.client(tokens[name], name, "agency") as first, \
                        deployment.second.client(tokens[name], name, "agency") as second:
                    submit_shares(first, second, "bench", batch, deduplicated=data.one_to_one)
            else:
                with deployment.primary.client(tokens[name], name, "agency") as client:
                    client.submit("bench", batch, deduplicated=data.one_to_one)
        started = time.perf_counter()
        with deployment.coordinator() as coordinator:
            summary = coordinator.run("bench", threshold, lambda *_: None)
        seconds = time.perf_counter() - started
        labels, groups = _labels(deployment, "bench", data, batches, tokens)
        with deployment.coordinator() as coordinator:  # agencies see confidences in tenths
            report = coordinator.report("bench")
        confidence = {groups[group["id"]]: float(group["confidence"])
                      for group in report["groups"] if group["id"] in groups}
    return summary, seconds, labels, confidence


def _view(left: np.ndarray, right: np.ndarray, threshold: float, within: bool) -> np.ndarray:
    """A server's graph of two agencies' records (left, then right) at ``threshold``, each
    edge weighted by its band's lower edge, as two-server mode opens it."""
    from bench.attacks.learned import add_within_edges
    from linkage.matching.kernel import dice_candidates_native
    from linkage.mpc.banded_run import SERVICE_EDGES, hit_edges

    edges = [edge for edge in SERVICE_EDGES if edge < threshold - 1e-9] + [threshold]
    bands = hit_edges(edges, len(edges) - 1)
    n = left.shape[0]
    graph = np.zeros((n + right.shape[0],) * 2, np.float32)
    pairs = dice_candidates_native(left, right, threshold)
    weight = bands[np.searchsorted(bands, pairs.score, side="right") - 1]
    graph[pairs.left, n + pairs.right] = weight
    graph[n + pairs.right, pairs.left] = weight
    return add_within_edges(graph, left, right, threshold, bands) if within else graph


def _attack(data, batches, schema_text: str, threshold: float, seeds: list[int],
            run: int = 0) -> dict:
    """The learned-graph attack on server 0's view of two agencies of ``data`` (module)."""
    import pandas as pd

    from bench.attacks.learned import learned_graph_attack
    from linkage_service.client import files

    truth_links = [(int(((data.entities[data.owners == a][:, None]
                          == data.entities[data.owners == b][None, :])).sum()), a, b)
                   for a in range(len(batches)) for b in range(a + 1, len(batches))]
    _, a, b = max(truth_links)
    rng = np.random.default_rng(run)
    theirs_secret = rng.bytes(32)
    mine, hers = [], []
    for owner in (a, b):
        export = data.exports[owner]
        order = rng.permutation(len(export.rows))
        buffer = io.StringIO()
        pd.DataFrame([export.rows[i] for i in order]).to_csv(buffer, index=False)
        encoded = files.encode_export(schema_text, theirs_secret,
                                      buffer.getvalue().encode("utf-8"), export.mapping_toml,
                                      case_key=b"attacker".ljust(32, b"#")).batch
        mine.append(batches[owner].clks)
        hers.append((encoded.clks, np.argsort(order)))
    within = not data.one_to_one
    server = _view(mine[0], mine[1], threshold, within)
    attacker = _view(hers[0][0], hers[1][0], threshold, within)
    n = mine[0].shape[0]
    truth = np.concatenate([hers[0][1], n + hers[1][1]])
    out = {"agencies": f"{data.exports[a].name} x {data.exports[b].name}",
           "records": int(truth.size), "edges": int((server > 0).sum() // 2)}
    for k in seeds:
        result = learned_graph_attack(server, attacker, truth, seeds=k, seed_rng=run)
        out[f"k={k}"] = result.success
        out[f"partners k={k}"] = result.partner_share
    return out


def _load(name: str, records: int, seed: int, corruption: float | None):
    """A data set of ``bench.quality`` at its generator's default corruption unless given
    (held-out 0.25, the others 0.2)."""
    from bench.quality import _load as load

    if corruption is None:
        corruption = 0.25 if name == "heldout" else 0.2
    return load(name, corruption, seed, records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.two_server_quality")
    parser.add_argument("--datasets", nargs="+", default=["febrl4", "heldout"],
                        help="febrl4, febrl3, synthetic, heldout, companies")
    parser.add_argument("--records", type=int, default=500,
                        help="records per agency of the generated data sets")
    parser.add_argument("--seed", type=int, default=101, help="generator seed")
    parser.add_argument("--corruption", type=float, default=None,
                        help="generator corruption (default: the data set's own)")
    parser.add_argument("--threshold", default="auto")
    parser.add_argument("--schema", type=Path, default=None,
                        help="schema JSON file (default: the shipped person schema)")
    parser.add_argument("--splink", action="store_true",
                        help="also plaintext Splink 5 (EM) on the same records, same run")
    parser.add_argument("--deployments", nargs="+", default=["one", "two"],
                        choices=["one", "two"], help="which deployments to run")
    parser.add_argument("--attack", type=int, nargs="*", default=None, metavar="K",
                        help="also attack server 0's view on the same records, with these "
                             "numbers of known pairs (e.g. --attack 0 50)")
    args = parser.parse_args(argv)

    from bench.quality import links_from_labels, measure, true_links
    from linkage.encoding.schema import default_schema_text
    from linkage_service.client import files
    from linkage_service.client.demo_deploy import OneServer, TwoServers

    schema_text = args.schema.read_text("utf-8") if args.schema else default_schema_text()
    base = Path(tempfile.mkdtemp(prefix="two-server-quality-"))
    files.write_secret(base / "secret.key")
    secret = files.read_secret(base / "secret.key")
    rows, attacks, calibrations = [], [], []
    for name in args.datasets:
        data = _load(name, args.records, args.seed, args.corruption)
        batches = _batches(data, schema_text, secret)
        truth = true_links(data)
        chosen = {"one": ("one server", lambda d: OneServer(d, tls=True)),
                  "two": ("two servers (shares)", TwoServers)}
        for label, deployment in (chosen[d] for d in args.deployments):
            print(f"{data.name}: {label} ...", flush=True)
            summary, seconds, labels, confidence = _run_one(
                deployment, base / f"{name}-{len(rows)}", data, batches, schema_text,
                args.threshold)
            calibrations.append((data.name, label, calibration(labels, confidence,
                                                               data.entities)))
            if not data.one_to_one:
                calibrations.append((data.name, f"{label}, groups of one record per agency",
                                     calibration(labels, confidence, data.entities,
                                                 data.owners)))
            quality = measure(truth, links_from_labels(labels), data.owners)
            rows.append((data.name, len(data), label, summary.get("threshold"), quality,
                         seconds))
            if args.attack is not None and label.startswith("two") and \
                    summary.get("threshold") is not None:
                print(f"{data.name}: attacking server 0's view ...", flush=True)
                attacks.append((data.name, float(summary["threshold"]),
                                _attack(data, batches, schema_text,
                                        float(summary["threshold"]), args.attack)))
        if args.splink:
            from bench.quality import encode_ours
            from bench.quality_splink import run_splink
            from linkage.encoding.schema import load_schema

            print(f"{data.name}: plaintext Splink 5 ...", flush=True)
            schema = load_schema(schema_text)
            values, _ = encode_ours(data, schema)
            started = time.perf_counter()
            found = run_splink(values, schema.feature_names, data.owners,
                               one_to_one=data.one_to_one)
            rows.append((data.name, len(data), "plaintext Splink 5 (EM)", "-",
                         measure(truth, found, data.owners), time.perf_counter() - started))
    print(f"\nthreshold {args.threshold}; {args.schema or 'the shipped schema'}; F1 of the "
          "groups agencies read back (Splink: of its links)\n")
    print("| data set | records | deployment | threshold | P all | R all | F1 all | F1 cross "
          "| F1 within | run s |")
    print("|---|---|---|---|---|---|---|---|---|---|")

    def fmt(quality, field="f1"):
        return "-" if quality is None else f"{getattr(quality, field):.4f}"

    for name, count, label, threshold, quality, seconds in rows:
        print(f"| {name} | {count} | {label} | {threshold} | {fmt(quality['all'], 'precision')} "
              f"| {fmt(quality['all'], 'recall')} | {fmt(quality['all'])} "
              f"| {fmt(quality['cross'])} | {fmt(quality['within'])} | {seconds:.1f} |")
    print("\nCalibration of the groups' confidences (groups: mean confidence / share of pure "
          "groups; 'off' where that share lies more than 0.05 outside the bin)\n")
    print("| data set | deployment | " + " | ".join(
        f"[{low:g}, {min(high, 1.0):g})" for low, high in
        zip(CALIBRATION_BINS[:-1], CALIBRATION_BINS[1:])) + " |")
    print("|---|---|" + "---|" * (len(CALIBRATION_BINS) - 1))
    for name, label, table in calibrations:
        cells = {low: (count, mean, share, high) for low, high, count, mean, share in table}
        shown = []
        for low in CALIBRATION_BINS[:-1]:
            if low not in cells:
                shown.append("-")
                continue
            count, mean, share, high = cells[low]
            off = " off" if share < low - 0.05 or share > high + 0.05 else ""
            shown.append(f"{count}: {mean:.2f} / {share:.2f}{off}")
        print(f"| {name} | {label} | " + " | ".join(shown) + " |")
    if attacks:
        print("\nThe graph attack on server 0's view of the same two-server runs (two agencies, "
              "their hits and own pairs with opened bands; share of records re-identified, "
              "known pairs excluded)\n")
        ks = args.attack
        print("| data set | agencies | records | threshold | edges | "
              + " | ".join(f"re-identified k={k} | partners k={k}" for k in ks) + " |")
        print("|---|---|---|---|---|" + "---|---|" * len(ks))
        for name, threshold, out in attacks:
            print(f"| {name} | {out['agencies']} | {out['records']} | {threshold} | "
                  f"{out['edges']} | " + " | ".join(
                      f"{100 * out[f'k={k}']:.2f}% | {100 * out[f'partners k={k}']:.2f}%"
                      for k in ks) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
