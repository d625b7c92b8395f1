"""``linkage demo``: several agencies link their records through a real server.

Plays every role in turn, the way they would work for real: the agencies
share a secret among themselves, the coordinator creates the project, each
agency encodes its own export and submits over gRPC, the coordinator runs
linkage and reads the report, each agency reads its hit/no-hit results. Only
the demo knows the generator's truth, and uses it to score the result.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import click
import numpy as np

from linkage.audit import verify_chain
from linkage.batch import write_batch
from linkage.analysis.evaluation import pairwise_quality
from linkage.encoding.schema import default_schema_text
from linkage_service.client.synthetic import DEFAULT_STAGES, SyntheticConfig, generate

from . import files, pki
from .api import LinkageClient
from .render import render_report
from .report_html import render_html

__all__ = ["ServerProcess", "end_process", "run_demo", "write_synthetic"]

PROJECT = "antwerp-demo"


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


def end_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ServerProcess:
    """A real ``linkage-server`` in a child process on a free loopback port.

    With ``tls_dir`` it serves mutual TLS: a CA and server certificate are created there on
    first start, and ``client`` connects with a client certificate issued on first use.
    """

    def __init__(self, data_dir: Path, *, extra_args: tuple[str, ...] = (),
                 tls_dir: Path | None = None, store: str | None = None):
        self.data_dir = data_dir
        self.tls_dir = tls_dir
        # 'sqlite' or a PostgreSQL URL, passed on as --store; None: the server's default
        # (LINKAGE_STORE from the environment, else sqlite)
        self.store = store
        self._extra_args = extra_args
        self._log = data_dir.parent / "server.log"
        self.process: subprocess.Popen | None = None
        self.address = ""
        self._drainer: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tls_args: tuple[str, ...] = ()
        if self.tls_dir is not None:
            if not (self.tls_dir / "ca.pem").exists():
                pki.init_ca(self.tls_dir)
            tls_args = ("--tls-cert", str(self.tls_dir / "server.pem"),
                        "--tls-key", str(self.tls_dir / "server.key"),
                        "--client-ca", str(self.tls_dir / "ca.pem"))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "linkage_service.server.main", "--data-dir", str(self.data_dir),
             "--listen", "127.0.0.1:0", *(("--store", self.store) if self.store else ()),
             *tls_args, *self._extra_args],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + timeout
        lines = []
        assert self.process.stderr is not None
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"listening on (\S+):(\d+)", line)
            if found:
                self.address = f"127.0.0.1:{found.group(2)}"
                self._drainer = threading.Thread(target=self._drain, daemon=True)
                self._drainer.start()
                return self
        self.stop()
        raise click.ClickException("linkage-server did not start:\n" + "".join(lines))

    def _drain(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        with open(self._log, "a", encoding="utf-8") as log:
            for line in self.process.stderr:
                log.write(line)

    @property
    def coordinator_token(self) -> str:
        return (self.data_dir / "coordinator.token").read_text("utf-8").strip()

    def client_tls(self, name: str, role: str) -> dict[str, Path]:
        """``LinkageClient`` keyword arguments (ca, cert, key) for a caller, issuing its
        certificate on first use; empty without TLS."""
        if self.tls_dir is None:
            return {}
        out_dir = self.tls_dir / "clients" / role
        cert, key = out_dir / f"{name}.pem", out_dir / f"{name}.key"
        if not cert.exists():
            pki.issue(self.tls_dir, name, role, out_dir)
        return {"ca": self.tls_dir / "ca.pem", "cert": cert, "key": key}

    def client(self, token: str, name: str = "coordinator", role: str = "coordinator",
               **options) -> LinkageClient:
        """A client for this server as ``name`` in ``role`` (the coordinator by default)."""
        return LinkageClient(self.address, token, **self.client_tls(name, role), **options)

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to clean up (crash tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self.stop()

    def stop(self) -> None:
        """Ask the server to stop (SIGTERM), kill it if it does not, and close its pipe."""
        if self.process is None:
            return
        end_process(self.process)
        if self._drainer is not None:
            self._drainer.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


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
             console: bool = False) -> dict:
    """Run the whole scenario; returns the quality figures.

    With ``tls`` (the default, as a deployment should run) the server requires mutual TLS and
    every caller connects with its own client certificate. With ``console`` the server is
    started again on the demo's data at the end and a coordinator console is left running
    until Ctrl-C.
    """
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
               "seed gives the same scores and threshold. Never do this with real data: "
               "'linkage keygen' makes random secrets, and BLIP flips coins from the OS.",
               err=True)

    server = ServerProcess(workdir / "server-data", tls_dir=workdir / "pki" if tls else None)
    if tls:
        _step("Operator sets up mutual TLS: a CA, a server certificate, and a client "
              "certificate for the coordinator and each agency (linkage pki init/issue)")
        pki.init_ca(workdir / "pki")
        for name, role in (("coordinator", "coordinator"), *((a, "agency") for a in agencies)):
            click.echo(f"  {role:<12} {name:<14} {server.client_tls(name, role)['cert']}",
                       err=True)

    _step("Starting linkage-server on loopback with the embedded store, "
          + ("mutual TLS" if tls else "plaintext"))
    with server:
        click.echo(f"  listening on {server.address}; store {server.data_dir}", err=True)
        schema_text = default_schema_text()
        with server.client(server.coordinator_token) as coordinator:
            _step(f"Coordinator creates project {PROJECT!r} for {len(agencies)} agencies")
            tokens = coordinator.create_project(PROJECT, schema_text, agencies,
                                                list(DEFAULT_STAGES))

            for index, (name, export) in enumerate(dataset.exports.items()):
                _step(f"{name}: encode locally, then submit over gRPC")
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
                with server.client(tokens[name], name, "agency") as agency:
                    receipt = agency.submit(PROJECT, outcome.batch)
                click.echo(f"  encoded {len(outcome.batch)} records "
                           f"({len(outcome.prepared.problems)} unparseable values encoded as "
                           f"missing); server stored batch {receipt.batch_id} "
                           f"({receipt.records_accepted} records)", err=True)

            _step("Coordinator runs linkage (threshold: auto)")
            summary = coordinator.run(PROJECT, "auto")
            click.echo(f"  {summary['records']} records, {summary['groups']} groups in "
                       f"{summary['seconds']:.1f} s", err=True)
            _step("Coordinator report")
            report = coordinator.report(PROJECT)
            click.echo(render_report(report))
            report_path = workdir / "report.html"
            report_path.write_text(render_html(report), encoding="utf-8")
            click.echo(f"\n  The HTML report (network, brokers, charts) is in {report_path}",
                       err=True)

        _step("Each agency reads its own hit/no-hit results")
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

        _step("Operator checks the audit log (every call, hash-chained, no record ids)")
        operator_token = (server.data_dir / "operator.token").read_text("utf-8").strip()
        with server.client(operator_token, "operator", "operator") as operator:
            problems, last = verify_chain(operator.audit_log())
            calls = operator.metrics()["calls"]
        click.echo(f"  {last.sequence if last else 0} entries, chain "
                   f"{'intact' if not problems else 'BROKEN'}; "
                   + ", ".join(f"{name} {count}" for name, count in calls.items()), err=True)

    quality = pairwise_quality(predicted, dataset.truth)
    _planted_brokers(report, predicted, dataset)
    _step("Quality against the generator's truth (pairs of records)")
    click.echo(f"  {'pairs':<16}{'precision':>10}{'recall':>10}{'F1':>10}"
               f"{'true':>8}{'false +':>9}{'missed':>8}")
    for name, label in (("all", "all"), ("cross", "cross-agency"), ("within", "within-agency")):
        q = quality[name]
        click.echo(f"  {label:<16}{q.precision:>10.4f}{q.recall:>10.4f}{q.f1:>10.4f}"
                   f"{q.true_positives:>8}{q.false_positives:>9}{q.false_negatives:>8}")
    click.echo(f"\nDemo finished in {time.monotonic() - started:.1f} s; files in {workdir}/",
               err=True)
    if console:
        _leave_console_running(server, workdir, tokens)
    return quality


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
