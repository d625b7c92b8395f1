"""Linkage quality of two-server mode through the service, beside a normal server, same run.

    python -m bench.two_server_quality --datasets febrl4 heldout --threshold auto

Each data set's owners are encoded as an agency would (``linkage encode``'s path, the
shipped schema unless ``--schema``), submitted to a normal ``linkage-server`` and, as
shares, to two servers in two-server mode (mutual TLS), and run at the same threshold on
both. The groups agencies read back (``GetResults``) are scored against the truth:
pairwise precision, recall and F1 over all, cross- and within-owner pairs
(``bench.quality.measure``). FEBRL4's two files are deduplicated (declared so on submit);
other data sets are submitted as they are. Every process is stopped at the end.
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


def _labels(deployment, project: str, data, batches, tokens: dict[str, str]) -> np.ndarray:
    """Group label per record (-1: no group), read back as each agency reads its results."""
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
    return labels


def _run_one(deployment_type, workdir: Path, data, batches, schema_text: str,
             threshold: str) -> tuple[dict, float, np.ndarray]:
    """Create, submit, run and read back on one deployment: (summary, run seconds, labels)."""
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
        labels = _labels(deployment, "bench", data, batches, tokens)
    return summary, seconds, labels


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
    args = parser.parse_args(argv)

    from bench.quality import links_from_labels, measure, true_links
    from linkage.encoding.schema import default_schema_text
    from linkage_service.client import files
    from linkage_service.client.demo_deploy import OneServer, TwoServers

    schema_text = args.schema.read_text("utf-8") if args.schema else default_schema_text()
    base = Path(tempfile.mkdtemp(prefix="two-server-quality-"))
    files.write_secret(base / "secret.key")
    secret = files.read_secret(base / "secret.key")
    rows = []
    for name in args.datasets:
        data = _load(name, args.records, args.seed, args.corruption)
        batches = _batches(data, schema_text, secret)
        truth = true_links(data)
        for label, deployment in (("one server", lambda d: OneServer(d, tls=True)),
                                  ("two servers (shares)", TwoServers)):
            print(f"{data.name}: {label} ...", flush=True)
            summary, seconds, labels = _run_one(deployment, base / f"{name}-{len(rows)}", data,
                                                batches, schema_text, args.threshold)
            quality = measure(truth, links_from_labels(labels), data.owners)
            rows.append((data.name, len(data), label, summary.get("threshold"), quality,
                         seconds))
    print(f"\nthreshold {args.threshold}; shipped schema unless --schema; F1 of the groups "
          "agencies read back\n")
    print("| data set | records | deployment | threshold | P all | R all | F1 all | F1 cross "
          "| F1 within | run s |")
    print("|---|---|---|---|---|---|---|---|---|---|")

    def fmt(quality, field="f1"):
        return "-" if quality is None else f"{getattr(quality, field):.4f}"

    for name, count, label, threshold, quality, seconds in rows:
        print(f"| {name} | {count} | {label} | {threshold} | {fmt(quality['all'], 'precision')} "
              f"| {fmt(quality['all'], 'recall')} | {fmt(quality['all'])} "
              f"| {fmt(quality['cross'])} | {fmt(quality['within'])} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
