"""``linkage demo``: several agencies link their records through a real server.

Plays every role in turn, the way they would work for real: the agencies
share a secret among themselves, the coordinator creates the project, each
agency encodes its own export and submits over gRPC, the coordinator runs
linkage and reads the report, each agency reads its hit/no-hit results. Only
the demo knows the generator's truth, and uses it to score the result.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import shutil
import sys
import time
from pathlib import Path

import click
import numpy as np

from linkage.audit import verify_chain
from linkage.batch import write_batch
from linkage.analysis.evaluation import pairwise_quality
from linkage.encoding.schema import default_schema_text, load_schema
from linkage_service.client.synthetic import DEFAULT_STAGES, SyntheticConfig, generate

from . import files
from .demo_deploy import OneServer, TwoServers, stored_clks
from .render import render_report
from .report_html import render_html
from .server_process import ServerProcess, end_process

__all__ = ["DEFAULT_RECORDS", "TWO_SERVER_RECORDS", "ServerProcess", "end_process", "run_demo",
           "write_synthetic"]

PROJECT = "antwerp-demo"
#: Records per agency by default.
DEFAULT_RECORDS = 2000
#: ... and in two-server mode, where every pair is compared on shares (about
#: 200x a normal comparison) and server 1 holds the run's dealer material in memory: 5 x 2000
#: records with 'auto' took 524 s with 7.3 GB on server 1 (297 s, 4.6 GB at 0.8), 5 x 1000
#: 159 s with 2.8 GB (a loaded 2-core machine; docs/privacy.md, "The demo at its default
#: size").
TWO_SERVER_RECORDS = 1000


def write_synthetic(out_dir: Path, records: int, seed: int):
    """Write each agency's export and mapping, plus truth.csv; returns the dataset."""
    dataset = generate(SyntheticConfig(seed=seed, records_per_agency=records))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, export in dataset.exports.items():
        folder = out_dir / name
        folder.mkdir(exist_ok=True)
        (folder / "records.csv").write_text(export.to_csv(), encoding="utf-8")
        (folder / "mapping.toml").write_text(export.mapping_toml(), encoding="utf-8")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["agency", "record_id", "entity"])
    for (agency, record_id), entity in sorted(dataset.truth.items()):
        writer.writerow([agency, record_id, entity])
    (out_dir / "truth.csv").write_text(buffer.getvalue(), encoding="utf-8")
    return dataset


def _planted_brokers(report: dict, predicted: dict, dataset) -> None:
    """Do the planted brokers (people at three or more agencies) rank at the top?"""
    entity_of_group: dict[str, str] = {}
    votes: dict[str, dict[str, int]] = {}
    for record, group in predicted.items():
        entity = dataset.truth[record]
        votes.setdefault(group, {}).setdefault(entity, 0)
        votes[group][entity] += 1
    for group, counts in votes.items():
        entity_of_group[group] = max(counts, key=counts.get)
    ranking = [b for b in (report.get("network") or {}).get("brokers", [])
               if len(b["agencies"]) > 1]
    found = {entity_of_group[b["group"]] for b in ranking
             if entity_of_group.get(b["group"]) in dataset.brokers}
    top = ranking[:len(dataset.brokers)]
    hits = sum(1 for b in top if entity_of_group.get(b["group"]) in dataset.brokers)
    _step("Do the planted brokers rank at the top?")
    click.echo(f"  {len(dataset.brokers)} people were planted at three or more agencies; "
               f"{len(found)} of them were linked across agencies.", err=True)
    if top:
        click.echo(f"  Of the top {len(top)} entities in the broker ranking, {hits} "
                   f"({hits / len(top):.0%}) are planted brokers.", err=True)


def _demo_key(purpose: str, seed: int) -> bytes:
    """A 256-bit key derived from the demo's seed: synthetic data only, so that one seed
    gives one run (real keys come from 'linkage keygen')."""
    return hashlib.sha256(f"linkage demo {purpose} {seed}".encode("utf-8")).digest()


def _step(text: str) -> None:
    click.secho(f"\n== {text}", bold=True, err=True)


def run_demo(workdir: Path, records: int, seed: int, *, tls: bool = True,
             console: bool = False, two_server: bool = False, threshold: str = "auto",
             schema_text: str | None = None) -> dict:
    """Run the whole scenario; returns the quality figures.

    With ``tls`` (the default, as a deployment should run) the server requires mutual TLS and
    every caller connects with its own client certificate. With ``console`` the server is
    started again on the demo's data at the end and a coordinator console is left running
    until Ctrl-C. With ``two_server`` two servers each hold one share of every CLK and neither
    holds a CLK (docs/privacy.md, "In the service"); it always runs over mutual TLS. Both
    servers are stopped when the demo ends, fails or is interrupted. ``schema_text``: the
    person schema (default: the shipped one); a segmented one is scored field-wise (on
    shares with ``two_server``).

    Raises:
        click.UsageError: ``console`` with ``two_server`` (the console cannot deal a run).
        grpc.RpcError: a server refused, e.g. ``threshold`` 'auto' where two-server mode
            cannot choose one yet.
    """
    if two_server and console:
        raise click.UsageError("--console needs a normal server for now: its 'run' button "
                               "cannot deal a two-server run. Leave out one of the two.")
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    started = time.monotonic()
    _step(f"Generating synthetic exports ({records} records per agency, seed {seed})")
    dataset = write_synthetic(workdir / "agencies", records, seed)
    agencies = list(dataset.exports)
    for name, export in dataset.exports.items():
        click.echo(f"  {name:<14} {len(export.rows):>6} rows, columns "
                   f"{', '.join(export.columns)}", err=True)

    _step("The agencies agree on a shared secret (never given to the server)")
    secret_path = workdir / "agencies" / "shared-secret.key"
    files.write_private(secret_path, _demo_key("shared secret", seed).hex().encode() + b"\n")
    secret = files.read_secret(secret_path)
    click.echo("  Derived from the seed, like the case keys and BLIP's coin flips, so the same "
               "seed gives the same scores (and, with a numeric threshold, the same links; "
               "two servers fit 'auto' on a fresh sample). Never do this with real data: "
               "'linkage keygen' makes random secrets, and BLIP flips coins from the OS.",
               err=True)

    deployment = TwoServers(workdir) if two_server else OneServer(workdir, tls=tls)
    callers = [("coordinator", "coordinator"), *((a, "agency") for a in agencies)]
    if two_server:
        _step("Operator sets up mutual TLS for two-server mode: one CA, a server certificate "
              f"naming both servers ({', '.join(TwoServers.server_names)} and loopback), server "
              "0's client certificate for the peer channel, and a client certificate for the "
              "coordinator and each agency, valid on both servers (linkage pki init/issue)")
        certificates = deployment.set_up_pki(callers)
        click.echo(f"  {'server':<12} {'server-0':<14} {certificates[0]} (peer channel)",
                   err=True)
        certificates = certificates[1:]
    elif tls:
        _step("Operator sets up mutual TLS: a CA, a server certificate, and a client "
              "certificate for the coordinator and each agency (linkage pki init/issue)")
        certificates = deployment.set_up_pki(callers)
    if deployment.tls:
        for (name, role), certificate in zip(callers, certificates):
            click.echo(f"  {role:<12} {name:<14} {certificate}", err=True)

    if two_server:
        _step("Starting two linkage-servers on loopback, each with its own embedded store: "
              "server 1 (--two-server-role 1), then server 0 (--two-server-role 0 --peer), "
              "mutual TLS between them and towards every caller")
    else:
        _step("Starting linkage-server on loopback with the embedded store, "
              + ("mutual TLS" if tls else "plaintext"))
    batches: dict = {}
    with deployment:
        for index, server in enumerate(deployment.servers):
            label = f"server {index}: " if two_server else ""
            click.echo(f"  {label}listening on {server.address}; store {server.data_dir}",
                       err=True)
        server = deployment.primary
        schema_text = schema_text or default_schema_text()
        fieldwise = load_schema(schema_text).segments is not None
        with deployment.coordinator() as coordinator:
            _step(f"Coordinator creates project {PROJECT!r} for {len(agencies)} agencies"
                  + (" on both servers" if two_server else ""))
            tokens = coordinator.create_project(PROJECT, schema_text, agencies,
                                                list(DEFAULT_STAGES))

            for index, (name, export) in enumerate(dataset.exports.items()):
                _step(f"{name}: encode locally, then "
                      + ("split each CLK into two shares and submit one to each server"
                         if two_server else "submit over gRPC"))
                case_key_path = workdir / "agencies" / name / "case.key"
                # The agency's own key, never shared (seeded here for reproducibility only).
                files.write_private(case_key_path,
                                    _demo_key(f"case key {name}", seed).hex().encode() + b"\n")
                outcome = files.encode_export(schema_text, secret,
                                              export.to_csv().encode("utf-8"),
                                              export.mapping_toml(),
                                              case_key=files.read_secret(case_key_path),
                                              rng=np.random.default_rng([seed, index]))
                batch_path = workdir / "agencies" / name / "batch.clk"
                files.write_private(batch_path, write_batch(outcome.batch))
                batches[name] = outcome.batch
                receipt = deployment.submit(PROJECT, name, tokens[name], outcome.batch)
                click.echo(f"  encoded {len(outcome.batch)} records "
                           f"({len(outcome.prepared.problems)} unparseable values encoded as "
                           f"missing); {'each server' if two_server else 'server'} stored "
                           f"batch {receipt.batch_id} ({receipt.records_accepted} records"
                           f"{', one share each' if two_server else ''})", err=True)

            if two_server:
                _step(f"Coordinator runs linkage on shares (threshold: {threshold}): its "
                      "client deals the run's randomness, server 0 and server 1 decide "
                      "Dice >= threshold for every pair together")
            else:
                _step(f"Coordinator runs linkage (threshold: {threshold})")
            with _stage_progress() as show:
                summary = coordinator.run(PROJECT, threshold, show)
            click.echo(f"  {summary['records']} records, {summary['groups']} groups in "
                       f"{summary['seconds']:.1f} s", err=True)
            if two_server:
                _what_the_servers_held(deployment, batches)
            _step("Coordinator report")
            report = coordinator.report(PROJECT)
            click.echo(render_report(report))
            report_path = workdir / "report.html"
            report_path.write_text(render_html(report), encoding="utf-8")
            click.echo(f"\n  The HTML report (network, brokers, charts) is in {report_path}",
                       err=True)

        _step("Each agency reads its own hit/no-hit results"
              + (" (from server 0)" if two_server else ""))
        predicted = {}
        for name in agencies:
            with server.client(tokens[name], name, "agency") as agency:
                hits = list(agency.results(PROJECT))
            cross = sum(1 for h in hits if h["agencies"])
            click.echo(f"  {name:<14} {cross:>5} records with hits at other agencies", err=True)
            for hit in hits:
                predicted[(name, hit["record"])] = hit["group"]
        example = next((h for h in hits if h["agencies"]), None)
        if example:
            click.echo(f"  e.g. {agencies[-1]} sees: {example}", err=True)

        _step("Operator checks the audit log (every call, hash-chained, no record ids)"
              + (" of each server" if two_server else ""))
        for index, each in enumerate(deployment.servers):
            operator_token = (each.data_dir / "operator.token").read_text("utf-8").strip()
            with each.client(operator_token, "operator", "operator") as operator:
                problems, last = verify_chain(operator.audit_log())
                calls = operator.metrics()["calls"]
            click.echo(f"  {f'server {index}: ' if two_server else ''}"
                       f"{last.sequence if last else 0} entries, chain "
                       f"{'intact' if not problems else 'BROKEN'}; "
                       + ", ".join(f"{name} {count}" for name, count in calls.items()),
                       err=True)

    quality = pairwise_quality(predicted, dataset.truth)
    _planted_brokers(report, predicted, dataset)
    _step("Quality against the generator's truth (pairs of records)")
    click.echo(f"  {'pairs':<16}{'precision':>10}{'recall':>10}{'F1':>10}"
               f"{'true':>8}{'false +':>9}{'missed':>8}")
    for name, label in (("all", "all"), ("cross", "cross-agency"), ("within", "within-agency")):
        q = quality[name]
        click.echo(f"  {label:<16}{q.precision:>10.4f}{q.recall:>10.4f}{q.f1:>10.4f}"
                   f"{q.true_positives:>8}{q.false_positives:>9}{q.false_negatives:>8}")
    if two_server and fieldwise:
        click.echo("  In two-server mode the servers compared every pair on shares (each agency's "
                   "own pairs too: its file was not declared deduplicated) and learned only "
                   "sums over a public sample (to train the field-wise model), whether each "
                   "pair is a link, and the field levels of the links.")
    elif two_server:
        click.echo("  In two-server mode the servers compared every pair on shares (each agency's "
                   "own pairs too: its file was not declared deduplicated) and learned only "
                   "whether each reached the threshold, and the Dice band of those that did.")
    click.echo(f"\nDemo finished in {time.monotonic() - started:.1f} s; files in {workdir}/",
               err=True)
    if console:
        _leave_console_running(server, workdir, tokens)
    return quality


@contextlib.contextmanager
def _stage_progress():
    """A progress bar per stage of the run on a terminal (as ``linkage run`` shows)."""
    from tqdm import tqdm

    bars: dict = {}

    def show(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=total or None, desc=f"  {stage}", file=sys.stderr,
                                     disable=None, leave=False, unit_scale=True)
        bar.total = total or bar.total
        bar.n = done
        bar.refresh()

    try:
        yield show
    finally:
        for bar in bars.values():
            bar.close()


def _what_the_servers_held(deployment: TwoServers, batches: dict) -> None:
    """One line on what each server held, and a check of it in their SQLite files.

    Raises:
        click.ClickException: a server's store holds a sampled CLK (a privacy failure).
    """
    records = sum(len(b) for b in batches.values())
    sizes = [len(b) for b in batches.values()]
    cross_pairs = sum(a * b for i, a in enumerate(sizes) for b in sizes[i + 1:])
    sample = sum(min(len(b), 20) for b in batches.values())
    found = [stored_clks(each, batches) for each in deployment.servers]
    click.echo(f"  What each server held: server 0 share 0 and server 1 share 1 of each of the "
               f"{records:,} CLKs (each share alone uniformly random), never a CLK or a score; "
               f"both learnt only the hit bit of each of the {cross_pairs:,} cross-agency "
               f"pairs. Their SQLite files hold {found[0]} and {found[1]} of {sample} sampled "
               "CLKs.", err=True)
    if any(found):
        raise click.ClickException("A server's store holds a CLK in two-server mode: this is "
                                   "a bug; do not use two-server mode until it is fixed.")


def _leave_console_running(server: ServerProcess, workdir: Path, tokens: dict[str, str]) -> None:
    """Start the server again on the demo's data and serve a coordinator console until Ctrl-C;
    print how each agency opens its own console."""
    from .console import serve_console

    tokens_dir = workdir / "tokens"
    tokens_dir.mkdir(exist_ok=True)
    for name, token in tokens.items():
        files.write_private(tokens_dir / f"{name}.token", (token + "\n").encode("ascii"))
    _step("Leaving linkage-server and a coordinator console running (Ctrl-C stops both)")
    with server:
        example = next(iter(tokens))
        tls = server.client_tls(example, "agency")
        tls_flags = "".join(f" --{flag} {path}" for flag, path in tls.items())
        click.echo(f"  server on {server.address}. An agency opens its own console in another "
                   f"terminal, e.g.:\n    linkage console --server {server.address} --project "
                   f"{PROJECT} --token-file {tokens_dir / example}.token{tls_flags}", err=True)

        def announce(url: str, role: str) -> None:
            click.echo(f"  The {role} console: open {url}", err=True)
            click.echo(url)

        with server.client(server.coordinator_token) as coordinator:
            serve_console(coordinator, project=PROJECT, announce=announce)
