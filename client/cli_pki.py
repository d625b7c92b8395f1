"""``linkage pki``: a private CA for mutual TLS between the server and its callers.

A thin layer over ``client.pki``; its errors reach ``LinkageGroup`` in ``client.cli``, which
turns them into one-line messages and exit code 1.
"""

from __future__ import annotations

from pathlib import Path

import click

from . import pki_defaults as defaults

__all__ = ["pki"]


@click.group()
def pki() -> None:
    """Create the CA and certificates for mutual TLS (operator side).

    The server accepts only callers whose client certificate this CA issued,
    and checks that the certificate's name and role (CN and OU) match the
    caller's token. Keys are written with mode 0600; keep ca.key offline.

    Example:

        linkage pki init --out pki --name linkage.example.org
    """


@pki.command("init")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for ca.pem, ca.key, server.pem and server.key.")
@click.option("--name", "names", multiple=True,
              help="Another host name or IP address the server is reached by (repeatable); "
                   "localhost, 127.0.0.1 and ::1 are always included.")
@click.option("--days", default=defaults.CA_DAYS, show_default=True,
              help="How long the CA is valid (the server certificate: "
                   f"{defaults.CLIENT_DAYS} days).")
@click.option("--force", is_flag=True,
              help="Replace an existing CA (every certificate it issued stops working).")
def init(out_dir: Path, names: tuple[str, ...], days: int, force: bool) -> None:
    """Create a CA and a server certificate signed by it.

    Start the server with --tls-cert OUT/server.pem --tls-key OUT/server.key
    --client-ca OUT/ca.pem; give OUT/ca.pem (never ca.key) to every caller.

    Example:

        linkage pki init --out pki --name linkage.example.org --name 10.0.0.5
    """
    from . import pki as pki_lib
    pki_lib.init_ca(out_dir, server_names=names, days=days, force=force)
    server_names = ", ".join(dict.fromkeys((*defaults.DEFAULT_SERVER_NAMES, *names)))
    click.echo(f"Wrote ca.pem, ca.key, server.pem and server.key to {out_dir}/ (keys mode 0600); "
               f"the server certificate names {server_names}.", err=True)


@pki.command("issue")
@click.option("--ca-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory holding ca.pem and ca.key (from 'linkage pki init').")
@click.option("--name", required=True,
              help="The agency's name in the project, or 'coordinator' (the certificate's CN).")
@click.option("--role", required=True, type=click.Choice(defaults.ROLES),
              help="The caller's role (the certificate's OU).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for NAME.pem and NAME.key.")
@click.option("--days", default=defaults.CLIENT_DAYS, show_default=True,
              help="How long the certificate is valid.")
@click.option("--force", is_flag=True, help="Replace an existing NAME.pem/NAME.key.")
def issue(ca_dir: Path, name: str, role: str, out_dir: Path, days: int, force: bool) -> None:
    """Issue a client certificate for an agency, the coordinator or an operator.

    Hand NAME.pem, NAME.key and the CA's ca.pem to the caller with its token;
    it passes them as --cert, --key and --ca (or LINKAGE_CERT, LINKAGE_KEY,
    LINKAGE_CA).

    Example:

        linkage pki issue --ca-dir pki --name be-police --role agency --out pki/clients
    """
    from . import pki as pki_lib
    cert_path, key_path = pki_lib.issue(ca_dir, name, role, out_dir, days=days, force=force)
    click.echo(f"Wrote {cert_path} and {key_path} (mode 0600) for {role} {name!r}.", err=True)
