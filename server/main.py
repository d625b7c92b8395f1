"""``linkage-server``: run the matching server on an embedded store, check it, back it up."""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from pathlib import Path

import click

from linkage.errors import LinkageError

from .config import ServerConfig

__all__ = ["main"]


def _is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.group(invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("linkage-data"), show_default=True, envvar="LINKAGE_DATA_DIR",
              help="Directory of the credentials and, with --store sqlite, of the embedded store.")
@click.option("--listen", default="127.0.0.1:50051", show_default=True, envvar="LINKAGE_LISTEN",
              help="HOST:PORT to listen on (port 0 picks a free one; non-loopback needs TLS).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path),
              envvar="LINKAGE_TLS_CERT",
              help="Server certificate (PEM) for mutual TLS, e.g. server.pem from "
                   "'linkage pki init' (env LINKAGE_TLS_CERT).")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path),
              envvar="LINKAGE_TLS_KEY",
              help="The server certificate's private key (PEM) (env LINKAGE_TLS_KEY).")
@click.option("--client-ca", type=click.Path(dir_okay=False, path_type=Path),
              envvar="LINKAGE_CLIENT_CA",
              help="CA (PEM) whose client certificates are accepted; every caller needs one "
                   "(env LINKAGE_CLIENT_CA).")
@click.option("--workers", default=16, show_default=True, help="RPC worker threads.")
@click.option("--max-uploads", default=4, show_default=True,
              help="Uploads received at once; more get RESOURCE_EXHAUSTED and retry.")
@click.option("--calls-per-second", default=50.0, show_default=True,
              help="Calls each caller may make per second on average; more get "
                   "RESOURCE_EXHAUSTED.")
@click.option("--call-burst", default=200, show_default=True,
              help="Calls a caller may make at once above that average.")
@click.option("--allow-secret-reuse", is_flag=True,
              help="Accept batches whose secret another project uses (for evaluation setups "
                   "that link the same encodings in several projects; not for real data).")
@click.option("--first-message-seconds", default=10.0, show_default=True,
              help="A call that has not sent its request message by then is ended "
                   "(docs/security.md).")
@click.option("--message-gap-seconds", default=60.0, show_default=True,
              help="Longest wait between two chunks of an upload before it is ended.")
@click.option("--calls-per-caller", default=4, show_default=True,
              help="Calls one caller (token) may have in flight at once.")
@click.option("--uploads-per-agency", default=2, show_default=True,
              help="Uploads one agency may send at once (of --max-uploads in all).")
@click.option("--max-streams-per-connection", default=32, show_default=True,
              help="Calls one connection may have open at once (HTTP/2 streams).")
@click.option("--longest-deadline-seconds", default=24 * 3600.0, show_default=True,
              help="Calls with a longer deadline (or none) are refused.")
@click.option("--unfinished-uploads-per-agency", default=4, show_default=True,
              help="Unfinished (resumable) uploads one agency may hold on the server.")
@click.option("--upload-expiry-hours", default=7 * 24.0, show_default=True,
              help="Unfinished uploads begun longer ago are deleted.")
@click.option("--report-page-bytes", default=1024 * 1024, show_default=True,
              help="Size of one page of report groups (GetReport replies are paged).")
@click.option("--store", "store_spec", default="sqlite", show_default=True, envvar="LINKAGE_STORE",
              help="Where the service's state lives: 'sqlite' (files in --data-dir) or "
                   "postgresql://USER@HOST:PORT/DATABASE, which several replicas can share "
                   "(the data dir keeps the credentials; a password goes in PGPASSWORD or "
                   "~/.pgpass, never in the URL) (env LINKAGE_STORE).")
@click.option("--executor", default="in-process", show_default=True, envvar="LINKAGE_EXECUTOR",
              help="Where runs compare CLKs: in-process, or dask://HOST:PORT to send the "
                   "comparisons to a running 'dask scheduler' (docs/scaling.md).")
@click.option("--two-server-role", type=click.IntRange(0, 1), envvar="LINKAGE_TWO_SERVER_ROLE",
              help="Be server 0 or 1 of two-server mode: hold one share of each CLK, never a "
                   "CLK (docs/privacy.md; needs mutual TLS) (env LINKAGE_TWO_SERVER_ROLE).")
@click.option("--peer", envvar="LINKAGE_PEER",
              help="HOST:PORT of the other server of two-server mode (env LINKAGE_PEER).")
@click.option("--peer-cert", type=click.Path(dir_okay=False, path_type=Path),
              envvar="LINKAGE_PEER_CERT",
              help="Server 0: its client certificate for the peer, from 'linkage pki issue "
                   "--name server-0 --role server' (env LINKAGE_PEER_CERT).")
@click.option("--peer-key", type=click.Path(dir_okay=False, path_type=Path),
              envvar="LINKAGE_PEER_KEY",
              help="The peer certificate's private key (env LINKAGE_PEER_KEY).")
@click.option("--check", "check_only", is_flag=True,
              help="Verify the store (the database's integrity and the service's invariants) "
                   "and exit.")
@click.option("-v", "--verbose", is_flag=True, help="Log every refused call.")
@click.option("--pause-at", default="", envvar="LINKAGE_TEST_PAUSE_AT", hidden=True,
              help="Crash tests only: comma-separated pause points (server/failpoints.py).")
@click.pass_context
def main(context, data_dir: Path, listen: str, tls_cert: Path | None, tls_key: Path | None,
         client_ca: Path | None, workers: int, max_uploads: int, calls_per_second: float,
         call_burst: int, allow_secret_reuse: bool, first_message_seconds: float,
         message_gap_seconds: float, calls_per_caller: int, uploads_per_agency: int,
         max_streams_per_connection: int, longest_deadline_seconds: float,
         unfinished_uploads_per_agency: int, upload_expiry_hours: float,
         report_page_bytes: int, store_spec: str, executor: str, two_server_role: int | None,
         peer: str | None, peer_cert: Path | None, peer_key: Path | None, check_only: bool,
         verbose: bool, pause_at: str) -> None:
    """Run the linkage matching server.

    It stores only CLKs and record ids, never raw identifiers. On first start
    it writes two credentials (mode 0600): DATA_DIR/coordinator.token for the
    coordinator (projects, runs, reports) and DATA_DIR/operator.token for the
    operator (metrics and the audit log).

    Example:

        linkage-server --data-dir /srv/linkage --listen 127.0.0.1:50051

        linkage-server --data-dir /srv/linkage --listen 0.0.0.0:50051 --tls-cert pki/server.pem --tls-key pki/server.key --client-ca pki/ca.pem

        linkage-server --data-dir /srv/linkage-a --store postgresql://linkage@db.internal:5432/linkage

        linkage-server --data-dir /srv/linkage --executor dask://10.0.0.5:8786

        linkage-server --data-dir /srv/s0 --listen 0.0.0.0:50051 --tls-cert pki/server.pem --tls-key pki/server.key --client-ca pki/ca.pem --two-server-role 0 --peer s1.internal:50052 --peer-cert pki/peers/server-0.pem --peer-key pki/peers/server-0.key
    """
    os.umask(0o077)  # every file the server (or a backup) creates: its owner only
    from .storage import parse_store_option
    try:
        store_spec = parse_store_option(store_spec)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--store") from None
    context.obj = (data_dir, store_spec)
    if context.invoked_subcommand is not None:
        return
    if check_only:
        _check(data_dir, store_spec)
        return
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host_part, colon, port_part = listen.rpartition(":")
    if not colon or not host_part or not port_part.isdigit() or int(port_part) > 65535:
        hint = f" (e.g. 127.0.0.1:{port_part})" if port_part.isdigit() else ""
        raise click.BadParameter(f"{listen!r}: expected HOST:PORT{hint}",
                                 param_hint="--listen")
    from linkage.matching.dask_executor import parse_executor  # no dask until a run needs it
    try:
        parse_executor(executor)
    except LinkageError as error:
        raise click.BadParameter(str(error), param_hint="--executor") from None
    tls = any(path is not None for path in (tls_cert, tls_key, client_ca))
    if not tls and not _is_loopback(listen):
        raise click.ClickException(
            f"Refusing to listen on {listen} without TLS: plaintext gRPC is served on loopback "
            "only (127.0.0.1, ::1, localhost). Pass --tls-cert, --tls-key and --client-ca "
            "(see 'linkage pki init') to listen elsewhere.")
    config = ServerConfig(data_dir=data_dir, listen=listen, workers=workers,
                          max_concurrent_uploads=max_uploads,
                          pause_at=frozenset(filter(None, pause_at.split(","))),
                          tls_cert=tls_cert, tls_key=tls_key, client_ca=client_ca,
                          calls_per_second=calls_per_second, call_burst=call_burst,
                          allow_secret_reuse=allow_secret_reuse,
                          first_message_seconds=first_message_seconds,
                          message_gap_seconds=message_gap_seconds,
                          calls_per_caller=calls_per_caller,
                          uploads_per_agency=uploads_per_agency,
                          max_streams_per_connection=max_streams_per_connection,
                          longest_deadline_seconds=longest_deadline_seconds,
                          report_page_bytes=report_page_bytes,
                          unfinished_uploads_per_agency=unfinished_uploads_per_agency,
                          upload_expiry_hours=upload_expiry_hours, executor=executor,
                          two_server_role=two_server_role, peer=peer, peer_cert=peer_cert,
                          peer_key=peer_key)
    from .app import COORDINATOR_TOKEN_FILE, create_server, secure_data_dir, serve  # not for --help
    from .storage import open_store
    from .tls import server_credentials
    try:
        server_credentials(tls_cert, tls_key, client_ca)  # refuse bad TLS before creating files
        secure_data_dir(data_dir)
        server, port, store = create_server(config, open_store(store_spec, data_dir))
    except (RuntimeError, LinkageError) as error:
        raise click.ClickException(str(error)) from None
    host = listen.rsplit(":", 1)[0]
    transport = "mutual TLS" if tls else "plaintext, loopback only"
    if two_server_role is not None:
        transport += f"; two-server mode, server {two_server_role}" + (
            f", peer {peer}" if two_server_role == 0 else "")
    credential = data_dir / COORDINATOR_TOKEN_FILE
    where = (f"coordinator credential {credential}" if credential.exists() else
             f"no coordinator credential in {data_dir} (a restored backup: put the kept "
             f"{COORDINATOR_TOKEN_FILE} and operator.token there)")
    click.echo(f"linkage-server listening on {host}:{port} ({transport}); "
               f"store {store.location}; {where}", err=True)
    sys.stderr.flush()
    serve(server, store, preload=parse_executor(executor) is None)


def _check(data_dir: Path, store_spec: str) -> None:
    from .maintenance import check_store
    try:
        problems, notes = check_store(data_dir, store_spec)
    except (RuntimeError, LinkageError) as error:
        raise click.ClickException(str(error)) from None
    for note in notes:
        click.echo(f"note: {note}")
    for problem in problems:
        click.echo(f"PROBLEM: {problem}")
    if problems:
        where = data_dir if store_spec == "sqlite" else store_spec
        raise click.ClickException(f"{len(problems)} problem(s) found in {where}.")
    click.echo(f"{data_dir if store_spec == 'sqlite' else store_spec}: store is consistent.")


@main.command()
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New directory to write the backup to.")
@click.pass_obj
def backup(obj: tuple[Path, str], output: Path) -> None:
    """Back up the store and the audit log with SQLite's online backup API (the server may
    keep running). The backup is a data directory: to restore, start the server on it and
    put the kept coordinator.token and operator.token beside it. A PostgreSQL store
    (--store URL) is backed up with pg_dump instead; the command says so.

    Example:

        linkage-server --data-dir /srv/linkage backup -o /backups/linkage-2026-11-27
    """
    if output.exists():
        raise click.ClickException(f"{output} exists already; choose a new directory.")
    data_dir, store_spec = obj
    from .maintenance import backup_store
    try:
        size = backup_store(data_dir, output, store_spec)
    except (RuntimeError, LinkageError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Backed up {data_dir} to {output} ({size} bytes).", err=True)


if __name__ == "__main__":
    main()
