"""``linkage-server``: run the matching server on an embedded store."""

from __future__ import annotations

import ipaddress
import logging
import sys
from pathlib import Path

import click

from .app import COORDINATOR_TOKEN_FILE, create_server, serve
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


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("linkage-data"), show_default=True, envvar="LINKAGE_DATA_DIR",
              help="Directory of the embedded SQLite store and the coordinator credential.")
@click.option("--listen", default="127.0.0.1:50051", show_default=True, envvar="LINKAGE_LISTEN",
              help="HOST:PORT to listen on (port 0 picks a free one).")
@click.option("--workers", default=8, show_default=True, help="RPC worker threads.")
@click.option("-v", "--verbose", is_flag=True, help="Log every refused call.")
def main(data_dir: Path, listen: str, workers: int, verbose: bool) -> None:
    """Run the linkage matching server.

    It stores only CLKs and record ids, never raw identifiers. On first start
    it writes the coordinator credential into DATA_DIR/coordinator.token.

    Example:

        linkage-server --data-dir /srv/linkage --listen 127.0.0.1:50051
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not _is_loopback(listen):
        raise click.ClickException(
            f"Refusing to listen on {listen} without TLS: this version serves plaintext gRPC "
            "and only on loopback (127.0.0.1, ::1, localhost).")
    config = ServerConfig(data_dir=data_dir, listen=listen, workers=workers)
    try:
        server, port, store = create_server(config)
    except RuntimeError as error:
        raise click.ClickException(str(error)) from None
    host = listen.rsplit(":", 1)[0]
    click.echo(f"linkage-server listening on {host}:{port} (plaintext, loopback only); "
               f"store {store.path}; coordinator credential {data_dir / COORDINATOR_TOKEN_FILE}",
               err=True)
    sys.stderr.flush()
    serve(server, store)


if __name__ == "__main__":
    main()
