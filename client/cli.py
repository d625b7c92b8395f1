"""``linkage``: the command line for agencies and coordinators.

A thin layer over the library: domain errors and server errors are turned
into one-line messages and a non-zero exit in ``LinkageGroup.invoke``.
Secrets are read from files or the environment, never from arguments.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from linkage.errors import LinkageError

from .cli_pki import pki

if TYPE_CHECKING:  # imported where used, so that --help does not load grpc, numpy or clkhash
    from tqdm import tqdm

    from .api import LinkageClient

__all__ = ["main"]

DEFAULT_SERVER = "127.0.0.1:50051"


class LinkageGroup(click.Group):
    """Turns library and server errors into clear messages and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LinkageError as error:
            raise click.ClickException(str(error)) from None
        except Exception as error:
            grpc = sys.modules.get("grpc")  # only a loaded grpc can have raised an RpcError
            if grpc is None or not isinstance(error, grpc.RpcError):
                raise
            code = error.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                raise click.ClickException(
                    "Cannot reach the linkage server: is it running, and is --server "
                    "(or LINKAGE_SERVER) right? With mutual TLS: are --ca, --cert and --key "
                    "the files issued for you, and is --server one of the names on the "
                    f"server's certificate? ({error.details()})") from None
            raise click.ClickException(f"The server refused ({code.name}): "
                                       f"{error.details()}") from None


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise click.ClickException(f"Cannot read {path}: {error.strerror}") from None


def _progress(total: int | None, description: str, unit: str = "rec"):
    from tqdm import tqdm
    return tqdm(total=total, desc=description, unit=unit, unit_scale=True, file=sys.stderr,
                disable=None, leave=False)


def server_options(function):
    """--server, --token-file and the TLS files, shared by every command that talks to the
    server."""
    @click.option("--server", envvar="LINKAGE_SERVER", default=DEFAULT_SERVER, show_default=True,
                  help="HOST:PORT of the linkage server (env LINKAGE_SERVER).")
    @click.option("--token-file", envvar="LINKAGE_TOKEN_FILE", required=True,
                  type=click.Path(dir_okay=False, path_type=Path),
                  help="File holding your bearer token (env LINKAGE_TOKEN_FILE).")
    @click.option("--ca", envvar="LINKAGE_CA", type=click.Path(exists=True, dir_okay=False,
                                                                path_type=Path),
                  help="CA certificate (PEM) the server's certificate must chain to; with "
                       "--cert and --key for a mutual-TLS server (env LINKAGE_CA).")
    @click.option("--cert", envvar="LINKAGE_CERT", type=click.Path(exists=True, dir_okay=False,
                                                                    path_type=Path),
                  help="Your client certificate (PEM), from 'linkage pki issue' "
                       "(env LINKAGE_CERT).")
    @click.option("--key", envvar="LINKAGE_KEY", type=click.Path(exists=True, dir_okay=False,
                                                                  path_type=Path),
                  help="Your client certificate's private key (PEM) (env LINKAGE_KEY).")
    @functools.wraps(function)
    def wrapper(*args, server: str, token_file: Path, ca: Path | None, cert: Path | None,
                key: Path | None, **kwargs):
        tls = {"--ca": ca, "--cert": cert, "--key": key}
        missing = [flag for flag, path in tls.items() if path is None]
        if 0 < len(missing) < len(tls):
            raise click.ClickException(
                f"Mutual TLS needs --ca, --cert and --key together (or LINKAGE_CA, LINKAGE_CERT, "
                f"LINKAGE_KEY); {', '.join(missing)} missing.")
        try:
            token = token_file.read_text("utf-8").strip()
        except OSError as error:
            raise click.ClickException(f"Cannot read the token file {token_file}: "
                                       f"{error.strerror}") from None
        if not token:
            raise click.ClickException(f"The token file {token_file} is empty.")
        from .api import LinkageClient
        with LinkageClient(server, token, ca=ca, cert=cert, key=key) as client:
            client.tls_files = {"ca": ca, "cert": cert, "key": key}  # for --server-1
            client.token = token
            return function(*args, client=client, **kwargs)
    return wrapper


def second_server(*, own_token: bool):
    """--server-1 (and, for the coordinator, --token-file-1): two-server mode's server 1.

    The command gets ``second``: a client of server 1 (same TLS files as for server 0), or
    None for a normal project. An agency's token is the same on both servers; the
    coordinator has one credential per server.
    """
    def decorate(function):
        @click.option("--server-1", "server_1", envvar="LINKAGE_SERVER_1",
                      help="HOST:PORT of server 1 of a two-server project (docs/privacy.md); "
                           "--server is then server 0 (env LINKAGE_SERVER_1).")
        @functools.wraps(function)
        def wrapper(*args, server_1: str | None, client, token_file_1: Path | None = None,
                    **kwargs):
            if not server_1:
                if token_file_1 is not None:
                    raise click.UsageError("--token-file-1 goes with --server-1.")
                return function(*args, client=client, second=None, **kwargs)
            token = client.token
            if own_token:
                if token_file_1 is None:
                    raise click.UsageError("--server-1 needs --token-file-1: the coordinator "
                                           "credential of server 1 (its data dir's "
                                           "coordinator.token).")
                try:
                    token = token_file_1.read_text("utf-8").strip()
                except OSError as error:
                    raise click.ClickException(f"Cannot read {token_file_1}: "
                                               f"{error.strerror}") from None
            from .api import LinkageClient
            with LinkageClient(server_1, token, **client.tls_files) as second:
                return function(*args, client=client, second=second, **kwargs)
        if own_token:
            wrapper = click.option(
                "--token-file-1", "token_file_1", envvar="LINKAGE_TOKEN_FILE_1",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Server 1's coordinator credential (env LINKAGE_TOKEN_FILE_1).")(wrapper)
        return wrapper
    return decorate


@click.group(cls=LinkageGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="linkage-service")
def main() -> None:
    """Privacy-preserving record linkage between agencies.

    Agencies encode records locally into CLKs and submit them; a coordinator
    runs linkage on the server and reads the report; agencies read hit/no-hit
    results for their own records.

    Example:

        linkage demo
    """


# -- agency side ------------------------------------------------------------------------------

@main.command()
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the secret (mode 0600).")
@click.option("--force", is_flag=True, help="Replace an existing secret file.")
def keygen(output: Path, force: bool) -> None:
    """Create a 256-bit random key: a project's shared secret, or an agency's own case key.

    The project secret is shared between the project's agencies by your usual
    secure channel; never give it to the server operator. Make a fresh secret
    for every project: the server refuses a batch whose secret another project
    already uses, because a shared secret would let CLKs be linked across
    projects. A case key (for 'linkage encode --case-key') is your agency's
    alone: never share it.

    Example:

        linkage keygen -o antwerp-q4.key
    """
    from . import files
    files.write_secret(output, overwrite=force)
    click.echo(f"Wrote a new 256-bit secret to {output} (mode 0600).", err=True)


def _schema_text(path: Path | None) -> str:
    """A schema file's text, or a shipped schema's by name (``person``, ``person-segments``:
    per-field segments, scored field-wise; ``company``) when no such file exists; ``None``:
    the shipped person schema."""
    if path is None:
        from linkage.encoding.schema import default_schema_text
        return default_schema_text()
    if not path.exists() and path.suffix == "" and path.name in _SHIPPED_SCHEMAS:
        from importlib import resources
        return resources.files("linkage.encoding").joinpath(
            f"schemas/{_SHIPPED_SCHEMAS[path.name]}").read_text("utf-8")
    try:
        return path.read_text("utf-8")
    except OSError as error:
        raise click.BadParameter(f"cannot read the schema {path}: {error.strerror}; give a "
                                 "schema JSON file, or a shipped schema by name: "
                                 f"{', '.join(_SHIPPED_SCHEMAS)}", param_hint="--schema")


_SHIPPED_SCHEMAS = {"person": "person.json", "person-segments": "person_segments.json",
                    "company": "company.json"}


@main.command()
@click.option("--schema", "schema_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Linkage schema JSON, or a shipped one by name: person (the default), "
                   "person-segments (per-field segments: scored field-wise), company.")
@click.option("--secret", "secret_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Secret file from 'linkage keygen' (or env LINKAGE_SECRET).")
@click.option("--mapping", "mapping_path", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML mapping of your columns onto the schema features.")
@click.option("--case-key", "case_key_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Your agency's own key (from 'linkage keygen', never shared) to pseudonymise "
                   "case references; needed when the mapping names a case column.")
@click.option("--strict", is_flag=True, help="Fail on the first value that cannot be parsed.")
@click.option("--delimiter", default="auto", show_default=True,
              help="Field separator of the CSV: 'auto' (comma, semicolon, tab or '|', read "
                   "from the header line), or the character itself, e.g. ';'.")
@click.option("--encoding", "text_encoding", default="utf-8", show_default=True,
              help="Text encoding of the CSV, e.g. cp1252 or latin-1 for older exports.")
@click.option("--stages", default="",
              help="The project's stage vocabulary (comma-separated, as the coordinator gave "
                   "it): every stage value is checked here, before anything is sent.")
@click.option("-o", "--output", required=True, help="Batch file to write ('-' for stdout).")
@click.argument("records")
def encode(schema_path, secret_path, mapping_path, case_key_path, strict, delimiter,
           text_encoding, stages, output, records) -> None:
    """Normalise and encode a CSV export into a batch of CLKs (runs at the agency).

    Unparseable values (bad dates, phone numbers) are reported by row and
    column and encoded as missing; --strict makes them an error. Semicolon-
    and tab-separated exports are recognised; --encoding reads non-UTF-8 files.

    Example:

        linkage encode --schema schema.json --secret secret.key --mapping agency.toml records.csv -o batch.clk
    """
    from linkage.batch import write_batch

    from . import files
    schema_text = _schema_text(schema_path)
    secret = files.read_secret(secret_path)
    mapping_text = mapping_path.read_text("utf-8") if mapping_path else None
    case_key = files.read_secret(case_key_path) if case_key_path else None
    bar = _progress(None, "encoding")
    try:
        outcome = files.encode_export(
            schema_text, secret, _read_input(records), mapping_text, strict=strict,
            case_key=case_key, delimiter=None if delimiter == "auto" else delimiter,
            encoding=text_encoding,
            stages=[s.strip() for s in stages.split(",") if s.strip()] or None,
            on_progress=bar.update, on_total=lambda total: setattr(bar, "total", total))
    finally:
        bar.close()
    data = write_batch(outcome.batch)
    if output == "-":
        sys.stdout.buffer.write(data)
    else:
        files.write_private(Path(output), data)
    found_stages = sorted({a.stage for a in outcome.batch.attributes or () if a.stage})
    if found_stages and not stages:
        click.echo(f"Stages in this batch: {', '.join(found_stages)}. The project must list "
                   "each ('linkage project stages' shows and extends it); pass --stages to "
                   "check them here.", err=True)
    problems = outcome.prepared.problems
    click.echo(f"Encoded {len(outcome.batch)} records into {output} "
               f"({outcome.batch.clk_bits}-bit CLKs, schema {outcome.batch.schema_fingerprint[:12]}).",
               err=True)
    if problems:
        click.echo(f"{len(problems)} values could not be parsed and were encoded as missing:",
                   err=True)
        for problem in problems[:20]:
            click.echo(f"  {problem}", err=True)
        if len(problems) > 20:
            click.echo(f"  ... and {len(problems) - 20} more", err=True)


CLKHASH_REFUSED = (
    "{path} is clkhash JSON. It is not accepted: CLKs from clkhash's own client do not match "
    "those of 'linkage encode' (that client uses the secret's hex text as key material where "
    "'linkage encode' uses the decoded bytes, and it skips the normalisation every agency "
    "applies), and nothing in the file lets the server check the key or schema it was made "
    "under, so such a batch would be accepted and then match nothing. Encode the export with "
    "'linkage encode' instead.")


def _load_batch(path: str):
    from linkage.batch import read_batch

    batch = read_batch(_read_input(path))
    if batch.schema_fingerprint is None:
        raise click.ClickException(CLKHASH_REFUSED.format(path=path))
    return batch


@main.command()
@click.option("--project", required=True, help="Project name.")
@click.option("--deduplicated", is_flag=True,
              help="Your file holds each person at most once: never group two of your records "
                   "together (1-to-1 with the other agencies).")
@click.argument("batch_file")
@server_options
@second_server(own_token=False)
def submit(client: LinkageClient, second, project, deduplicated, batch_file) -> None:
    """Stream an encoded batch to the server and print the receipt.

    Accepts batch files from 'linkage encode' (clkhash JSON is refused: its
    CLKs cannot be checked against the project's key and schema).

    Example:

        linkage submit --project antwerp-q4 --token-file be-police.token batch.clk

        linkage submit --project antwerp-q4 --token-file be-police.token --server s0:50051 --server-1 s1:50052 batch.clk
    """
    batch = _load_batch(batch_file)
    if second is not None:  # two-server mode: the CLKs are split here, only shares leave
        from .shares import submit_shares
        first_receipt, second_receipt = submit_shares(client, second, project, batch,
                                                      deduplicated=deduplicated)
        click.echo(json.dumps({"batch": first_receipt.batch_id, "agency": first_receipt.agency,
                               "records_accepted": first_receipt.records_accepted,
                               "already_stored": first_receipt.already_stored,
                               "shares": [first_receipt.records_accepted,
                                          second_receipt.records_accepted]}))
        return
    with _progress(len(batch), "uploading") as bar:
        receipt = client.submit(project, batch, on_progress=bar.update,
                                deduplicated=deduplicated)
    if receipt.already_stored:
        click.echo(f"The server already holds this batch ({receipt.batch_id}); it was not "
                   "stored again.", err=True)
    elif receipt.resumed_from:
        click.echo(f"Resumed an interrupted upload from record {receipt.resumed_from}.", err=True)
    click.echo(json.dumps({"batch": receipt.batch_id, "agency": receipt.agency,
                           "records_accepted": receipt.records_accepted,
                           "already_stored": receipt.already_stored}))


@main.command()
@click.option("--project", required=True, help="Project name.")
@click.option("--format", "output_format", type=click.Choice(["json", "text"]), default="json",
              show_default=True, help="JSON lines, or a readable table.")
@server_options
def results(client: LinkageClient, project, output_format) -> None:
    """Hit/no-hit results for your own agency's records.

    Only your own record ids come back, with the names of the other agencies
    that hold the same entity; never their ids, CLKs or scores.

    Example:

        linkage results --project antwerp-q4 --token-file be-police.token --format json
    """
    count = 0
    for hit in client.results(project):
        count += 1
        if output_format == "text" and count == 1:
            click.echo(f"{'RECORD':<24} {'GROUP':<20} {'CONF.':<6} OTHER AGENCIES  "
                       "[FOLLOW-UPS]")
        if output_format == "json":
            click.echo(json.dumps(hit))
        else:
            others = ", ".join(hit["agencies"]) or "(own duplicates only)"
            asks = "".join(f"  [{_follow_up_label(f)}]" for f in hit["follow_ups"])
            click.echo(f"{hit['record']:<24} {hit['group']:<20} {hit['confidence']:<6.1f} "
                       f"{others}{asks}")
    if output_format == "text":
        click.echo(f"{count} of your records have hits.", err=True)


def _follow_up_label(item: dict) -> str:
    """'f-3 from be-police to se-customs: approved ("note")' in one line."""
    answer = f' ("{item["answer_note"]}")' if item.get("answer_note") else ""
    return (f"{item['id']} from {item['requested_by']} to {item['agency']}: "
            f"{item['status']}{answer}")


@main.group(cls=LinkageGroup)
def batch() -> None:
    """Manage submitted batches (agency: its own; coordinator: any).

    Example:

        linkage batch withdraw --project antwerp-q4 --batch-id b-0123456789abcdef --token-file be-police.token
    """


@batch.command("withdraw")
@click.option("--project", required=True, help="Project name.")
@click.option("--batch-id", required=True, help="The batch id 'linkage submit' printed.")
@click.option("--coordinator", "as_coordinator", is_flag=True,
              help="Withdraw as the coordinator (any agency's batch) with a coordinator token.")
@server_options
def batch_withdraw(client: LinkageClient, project, batch_id, as_coordinator) -> None:
    """Withdraw a batch (or an unfinished upload) that no linkage run has used yet.

    A batch a run has compared is part of that run's results: the server refuses and says
    what to do instead.

    Example:

        linkage batch withdraw --project antwerp-q4 --batch-id b-0123456789abcdef --token-file be-police.token
    """
    outcome = client.withdraw_batch(project, batch_id,
                                    role="coordinator" if as_coordinator else "agency")
    kind = "unfinished upload" if outcome["unfinished_upload"] else "batch"
    click.echo(f"Withdrew {kind} {outcome['batch_id']}: {outcome['records_withdrawn']} records.",
               err=True)
    click.echo(json.dumps(outcome))


# -- coordinator side ---------------------------------------------------------------------------

@main.group(cls=LinkageGroup)
def project() -> None:
    """Create and list projects (coordinator).

    Example:

        linkage project create --name antwerp-q4 --schema schema.json --agencies be-police,se-customs --tokens-dir tokens
    """


@project.command("create")
@click.option("--name", required=True, help="Project name (lowercase, digits, . _ -).")
@click.option("--schema", "schema_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Linkage schema JSON, or a shipped one by name: person (the default), "
                   "person-segments (per-field segments: scored field-wise, on shares in "
                   "two-server mode), company.")
@click.option("--agencies", required=True, help="Comma-separated agency names.")
@click.option("--tokens-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write one <agency>.token file per agency into.")
@click.option("--stages", default="",
              help="Comma-separated crime-script stages records may be tagged with, in order.")
@click.option("--entity-schema", "entity_schemas", multiple=True, metavar="TYPE=SCHEMA.json",
              help="A schema for another entity type, e.g. company=company.json (repeatable); "
                   "--schema is the person schema.")
@server_options
@second_server(own_token=True)
def project_create(client: LinkageClient, second, name, schema_path, agencies, tokens_dir,
                   stages, entity_schemas) -> None:
    """Create a project and write one token file per agency.

    Hand each agency its own token file; the server keeps only hashes.

    Example:

        linkage project create --name antwerp-q4 --agencies be-police,be-customs,se-police --tokens-dir tokens

        linkage project create --name antwerp-q4 --agencies be-police,se-police --tokens-dir tokens --server s0:50051 --token-file s0/coordinator.token --server-1 s1:50052 --token-file-1 s1/coordinator.token
    """
    from .private_files import write_private
    schema_text = _schema_text(schema_path)
    names = [a.strip() for a in agencies.split(",") if a.strip()]
    stage_list = [s.strip() for s in stages.split(",") if s.strip()]
    extra = {}
    for item in entity_schemas:
        entity_type, _, path = item.partition("=")
        if not path:
            raise click.UsageError(f"--entity-schema {item!r}: write TYPE=SCHEMA.json")
        extra[entity_type.strip()] = Path(path).read_text("utf-8")
    existing = [tokens_dir / f"{agency}.token" for agency in names
                if (tokens_dir / f"{agency}.token").exists()]
    if existing:
        raise click.ClickException(
            f"{', '.join(map(str, existing))} exist already (another project's tokens?); "
            "refusing to overwrite them. Use another --tokens-dir, e.g. tokens/" + name + ".")
    if second is not None:
        if extra:
            raise click.UsageError("Two-server projects link one entity type (person) for now; "
                                   "leave out --entity-schema.")
        from .shares import create_share_project
        tokens = create_share_project(client, second, name, schema_text, names, stage_list)
    else:
        tokens = client.create_project(name, schema_text, names, stage_list, extra)
    tokens_dir.mkdir(parents=True, exist_ok=True)
    for agency, token in tokens.items():
        write_private(tokens_dir / f"{agency}.token", (token + "\n").encode("ascii"))
    click.echo(f"Created project {name!r} with {len(tokens)} agencies; token files in "
               f"{tokens_dir}/ (one per agency, mode 0600).", err=True)
    if second is None:
        click.echo("One server holds every CLK of this project: with a population register its "
                   "operator can re-identify the people in them, whatever the hardening. "
                   "Two-server mode (--server-1) keeps CLKs off every server "
                   "(docs/privacy.md).", err=True)


@project.command("stages")
@click.option("--project", "name", required=True, help="Project name.")
@click.option("--add", default="", help="Comma-separated stages to add at the end.")
@click.option("--set", "replace", default=None,
              help="Comma-separated stages replacing the whole vocabulary, in order.")
@server_options
def project_stages(client: LinkageClient, name, add, replace) -> None:
    """Show or change a project's crime-script stage vocabulary.

    Without --add or --set it prints the vocabulary. Stages that stored
    records carry cannot be dropped.

    Example:

        linkage project stages --project antwerp-q4 --add port_extraction,inland_transport --token-file linkage-data/coordinator.token
    """
    current = client.project_stages(name)
    wanted = ([s.strip() for s in replace.split(",") if s.strip()] if replace is not None
              else list(current))
    wanted += [s.strip() for s in add.split(",") if s.strip() and s.strip() not in wanted]
    if replace is not None or wanted != current:
        current = client.set_stages(name, wanted)
        click.echo(f"Project {name!r} now has {len(current)} stages.", err=True)
    click.echo(json.dumps({"project": name, "stages": current}))


@project.command("delete")
@click.option("--project", "name", required=True, help="Project name.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@server_options
def project_delete(client: LinkageClient, name, yes) -> None:
    """Delete a misconfigured project that has never been linked (its tokens stop working).

    Its agencies, batches and held uploads are deleted; the audit log keeps
    the calls. A project that has been linked is purged instead
    ('linkage project purge'), which keeps its reports.

    Example:

        linkage project delete --project antwerp-q4 --yes --token-file linkage-data/coordinator.token
    """
    if not yes:
        click.confirm(f"Delete project {name!r} with its batches and agency tokens?",
                      abort=True, err=True)
    outcome = client.delete_project(name)
    click.echo(f"Deleted {name}: {outcome['batches_deleted']} batches, "
               f"{outcome['records_deleted']} records.", err=True)
    click.echo(json.dumps(outcome))


@project.command("reissue-token")
@click.option("--project", "name", required=True, help="Project name.")
@click.option("--agency", required=True, help="The agency whose token is replaced.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the new token file (mode 0600).")
@click.option("--force", is_flag=True, help="Replace an existing file (e.g. the old token's).")
@server_options
def project_reissue_token(client: LinkageClient, name, agency, output, force) -> None:
    """Issue a new token for one agency; its old token stops working at once.

    For a lost, leaked or overwritten token file. Hand the new file to the
    agency as you did the first.

    Example:

        linkage project reissue-token --project antwerp-q4 --agency be-police -o tokens/be-police.token --force --token-file linkage-data/coordinator.token
    """
    if output.exists() and not force:
        raise click.ClickException(f"{output} exists already; refusing to overwrite it (pass "
                                   "--force to replace it, e.g. the old token's file).")
    from .private_files import write_private

    token = client.reissue_token(name, agency)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_private(output, (token + "\n").encode("ascii"))
    click.echo(f"Wrote a new token for {agency} of {name!r} to {output}; the old token no "
               "longer works.", err=True)


@project.command("list")
@server_options
def project_list(client: LinkageClient) -> None:
    """List projects as JSON lines.

    Example:

        linkage project list --token-file linkage-data/coordinator.token
    """
    for item in client.list_projects():
        click.echo(json.dumps(item))


@project.command("purge")
@click.option("--project", "name", required=True, help="Project name.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@server_options
def project_purge(client: LinkageClient, name, yes) -> None:
    """Delete a linked project's CLKs from the server; reports, results and the audit log stay.

    The project takes no more batches or runs afterwards.

    Example:

        linkage project purge --project antwerp-q4 --token-file linkage-data/coordinator.token
    """
    if not yes:
        click.confirm(f"Delete every CLK of project {name!r} from the server? This cannot be "
                      "undone", abort=True, err=True)
    outcome = client.purge(name)
    click.echo(f"Purged {name}: {outcome['records_deleted']} CLKs and "
               f"{outcome['pair_blocks_deleted']} blocks of candidate pairs deleted.", err=True)
    click.echo(json.dumps(outcome))


@main.command()
@click.option("--project", required=True, help="Project name.")
@click.option("--threshold", default="auto", show_default=True,
              help="'auto' (chosen from the score distribution) or a Dice threshold like 0.8.")
@click.option("--blocking", type=click.Choice(["auto", "lsh", "exhaustive"]), default="auto",
              show_default=True,
              help="'lsh' compares only pairs sharing a Hamming-LSH bucket (needs a numeric "
                   "threshold); 'auto' uses it only for very large projects.")
@click.option("--estimates", is_flag=True,
              help="With a numeric threshold, also fit the score model: match probabilities "
                   "as confidences, estimated precision and recall in the report (auto "
                   "always does this).")
@server_options
@second_server(own_token=True)
def run(client: LinkageClient, second, project, threshold, blocking, estimates) -> None:
    """Link every batch of a project; returns when done.

    Example:

        linkage run --project antwerp-q4 --token-file linkage-data/coordinator.token

        linkage run --project antwerp-q4 --threshold 0.8 --server s0:50051 --token-file s0/coordinator.token --server-1 s1:50052 --token-file-1 s1/coordinator.token
    """
    bars: dict[str, tqdm] = {}

    def show(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = _progress(total or None, stage)
        bar.total = total or bar.total
        bar.n = done
        bar.refresh()

    try:
        if second is not None:  # two-server mode: this client deals, server 0 runs
            from .shares import run_shares
            summary = run_shares(client, second, project, threshold, on_progress=show)
        else:
            summary = client.run(project, threshold, on_progress=show, blocking=blocking,
                                 estimates=estimates)
    finally:
        for bar in bars.values():
            bar.close()
    click.echo(json.dumps(summary))


@main.command()
@click.option("--project", required=True, help="Project name.")
@click.option("--format", "output_format", type=click.Choice(["text", "json", "html"]),
              default="text", show_default=True,
              help="Terminal text, JSON for other tools, or one self-contained HTML file.")
@click.option("-o", "--output", default="-", help="File to write ('-' for stdout).")
@server_options
def report(client: LinkageClient, project, output_format, output) -> None:
    """The match report of the latest run: groups, overlap, brokers, network (no record ids).

    The HTML report works offline and shows the network of linked entities and
    cases with filters by agency, stage and entity type.

    Example:

        linkage report --project antwerp-q4 --token-file linkage-data/coordinator.token --format html -o report.html
    """
    document = client.report(project)
    if output_format == "json":
        text = json.dumps(document, indent=2)
    elif output_format == "html":
        from .report_html import render_html
        text = render_html(document)
    else:
        from .render import render_report
        text = render_report(document)
    if output == "-":
        click.echo(text)
    else:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"Wrote the {output_format} report to {output}.", err=True)


@main.command()
@click.option("--project", required=True, help="Project name.")
@click.option("--group", required=True, help="Group id from the report.")
@click.option("--accept", is_flag=True, help="The group is one entity.")
@click.option("--reject", is_flag=True, help="The group is not one entity.")
@click.option("--note", default="", help="Why (no personal data).")
@server_options
def review(client: LinkageClient, project, group, accept, reject, note) -> None:
    """Record a review decision on a group; later reports show it.

    Example:

        linkage review --project antwerp-q4 --group g-1a2b3c4d5e6f7a8b --accept --note "confirmed"
    """
    decision = _one_of({"--accept": accept, "--reject": reject},
                       {"--accept": "accepted", "--reject": "rejected"})
    stored = client.review(project, group, decision, note)
    click.echo(f"Group {group}: {stored}.", err=True)


@main.group("follow-up", cls=LinkageGroup)
def follow_up() -> None:
    """Ask for, and answer, follow-ups on hits (the data flow through legal channels).

    Example:

        linkage follow-up open --project antwerp-q4 --group g-1a2b3c4d5e6f7a8b --token-file be-police.token
    """


@follow_up.command("open")
@click.option("--project", required=True, help="Project name.")
@click.option("--group", required=True, help="Group id from your results or the report.")
@click.option("--note", default="",
              help="Why, without personal data or raw case numbers (e.g. 'port-of-entry "
                   "query'); the details travel through the legal channel.")
@click.option("--coordinator", "as_coordinator", is_flag=True,
              help="You hold the coordinator token (by default the token is an agency's).")
@server_options
def follow_up_open(client: LinkageClient, project, group, note, as_coordinator) -> None:
    """Ask the other agencies of a group for a follow-up; each sees it in its results.

    The answers come back in your 'linkage results' and 'linkage follow-up list'.

    Example:

        linkage follow-up open --project antwerp-q4 --group g-1a2b3c4d5e6f7a8b --note "port-of-entry query" --token-file be-police.token
    """
    for item in client.open_follow_up(project, group, note,
                                      role="coordinator" if as_coordinator else "agency"):
        click.echo(json.dumps(item))


@follow_up.command("list")
@click.option("--project", required=True, help="Project name.")
@click.option("--coordinator", "as_coordinator", is_flag=True,
              help="You hold the coordinator token: list every follow-up of the project.")
@click.option("--format", "output_format", type=click.Choice(["json", "text"]), default="json",
              show_default=True, help="JSON lines, or a readable table.")
@server_options
def follow_up_list(client: LinkageClient, project, as_coordinator, output_format) -> None:
    """Follow-ups your agency asked for and those addressed to it, with their answers.

    Example:

        linkage follow-up list --project antwerp-q4 --format text --token-file be-police.token
    """
    items = client.list_follow_ups(project, role="coordinator" if as_coordinator else "agency")
    if output_format == "text" and items:
        click.echo(f"{'ID':<8} {'GROUP':<20} {'ASKED BY':<16} {'ASKED':<16} {'STATUS':<9} "
                   "NOTE / ANSWER")
    for item in items:
        if output_format == "json":
            click.echo(json.dumps(item))
        else:
            notes = " / ".join(filter(None, (item["note"], item["answer_note"])))
            click.echo(f"{item['id']:<8} {item['group']:<20} {item['requested_by']:<16} "
                       f"{item['agency']:<16} {item['status']:<9} {notes}")
    if output_format == "text":
        click.echo(f"{len(items)} follow-ups.", err=True)


@follow_up.command("answer")
@click.option("--project", required=True, help="Project name.")
@click.option("--id", "follow_up_id", required=True, help="Follow-up id, e.g. f-12.")
@click.option("--approve", is_flag=True, help="Agree to follow up.")
@click.option("--decline", is_flag=True, help="Decline.")
@click.option("--note", default="", help="Note for the requester (no personal data).")
@server_options
def follow_up_answer(client: LinkageClient, project, follow_up_id, approve, decline,
                     note) -> None:
    """Answer a follow-up request addressed to your agency; the answer is recorded.

    Example:

        linkage follow-up answer --project antwerp-q4 --id f-12 --approve --token-file se-customs.token
    """
    decision = _one_of({"--approve": approve, "--decline": decline},
                       {"--approve": "approved", "--decline": "declined"})
    click.echo(json.dumps(client.answer_follow_up(project, follow_up_id, decision, note)))


@main.command()
@click.option("--project", default=None,
              help="Project to open; required with an agency token (a coordinator can switch "
                   "projects in the console).")
@click.option("--port", default=0, show_default="a free port",
              type=click.IntRange(0, 65535), help="Port on 127.0.0.1.")
@click.option("--bind", default="127.0.0.1", show_default=True,
              help="Address to listen on; only 127.0.0.1 is accepted.")
@server_options
def console(client: LinkageClient, project, port, bind) -> None:
    """A local web console: review queue, network and follow-ups, or an agency's hits.

    Serves a web application on 127.0.0.1 that acts with your credentials
    (the same token file and TLS files as every other command) and prints a
    link with a one-time access token; open it in your browser. A coordinator
    token gets the overview, review queue, network and follow-ups; an agency
    token gets its hits and follow-ups. Stop it with Ctrl-C.

    Example:

        linkage console --token-file linkage-data/coordinator.token --project antwerp-q4
    """
    from .console import serve_console

    def announce(url: str, role: str) -> None:
        click.echo(f"The {role} console for {project or 'your projects'} is running. Open this "
                   "link in your browser (it works once; Ctrl-C stops the console):", err=True)
        click.echo(url)
        sys.stdout.flush()

    serve_console(client, project=project, port=port, bind=bind, announce=announce)


# -- operator -----------------------------------------------------------------------------------

@main.command()
@server_options
def metrics(client: LinkageClient) -> None:
    """Server counts: projects, batches, records, runs and calls by outcome (operator token).

    Example:

        linkage metrics --token-file linkage-data/operator.token
    """
    click.echo(json.dumps(client.metrics(), indent=2))


@main.group(cls=LinkageGroup)
def audit() -> None:
    """Read and verify the server's hash-chained audit log (operator or coordinator token).

    Example:

        linkage audit verify --token-file linkage-data/operator.token
    """


def _audit_entries(client: LinkageClient, **filters):
    """The log through the operator service, or the coordinator's for a coordinator token."""
    import grpc
    entries = client.audit_log(role="operator", **filters)
    try:
        first = next(entries, None)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.PERMISSION_DENIED:
            raise
        entries = client.audit_log(role="coordinator", **filters)
        first = next(entries, None)
    if first is not None:
        yield first
        yield from entries


@audit.command("show")
@click.option("--project", default="", help="Only calls about this project.")
@click.option("--caller", default="", help="Only calls by this agency, coordinator or operator.")
@click.option("--method", default="", help="Only this method, e.g. SubmitBatch.")
@click.option("--outcome", default="", help="Only this outcome, e.g. OK or PERMISSION_DENIED.")
@click.option("--since", default="", help="Only calls at or after this time (ISO 8601, UTC).")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@server_options
def audit_show(client: LinkageClient, project, caller, method, outcome, since,
               output_format) -> None:
    """List recorded calls, oldest first, filtered.

    Example:

        linkage audit show --project antwerp-q4 --outcome PERMISSION_DENIED --token-file linkage-data/operator.token
    """
    shown = 0
    for entry in _audit_entries(client, project=project, caller=caller, method=method,
                                outcome=outcome, since=since):
        shown += 1
        if output_format == "text" and shown == 1:
            click.echo(f"{'SEQ':>7} {'TIME (UTC)':<27} {'CALLER':<28} {'METHOD':<16} "
                       f"{'OUTCOME':<18} {'PROJECT':<16} COUNTS")
        if output_format == "json":
            click.echo(json.dumps(vars(entry)))
        else:
            who = f"{entry.role} {entry.caller}" if entry.caller else "(unidentified)"
            click.echo(f"{entry.sequence:>7} {entry.time} {who:<28} {entry.method:<16} "
                       f"{entry.outcome:<18} {entry.project or '-':<16} {entry.counts_json}")


@audit.command("verify")
@click.option("--expect-head", default="",
              help="SEQUENCE:HASH printed by an earlier verification: check that entry is "
                   "still there unchanged (detects a log cut short or rewritten since).")
@server_options
def audit_verify(client: LinkageClient, expect_head) -> None:
    """Recompute the audit log's hash chain; fail on any edited, removed or reordered entry.

    Prints the head (last sequence number and hash): keep it somewhere the
    server cannot write, and pass it with --expect-head next time.

    Example:

        linkage audit verify --token-file linkage-data/operator.token --expect-head 1520:9f2c...
    """
    from linkage.audit import verify_chain
    kept_sequence, kept_hash = _parse_head(expect_head)
    seen_kept = False

    def watched():
        nonlocal seen_kept
        for entry in _audit_entries(client):
            if entry.sequence == kept_sequence:
                seen_kept = entry.entry_hash == kept_hash
            yield entry

    problems, last = verify_chain(watched())
    if kept_sequence and not seen_kept:
        problems.append(_head_problem(kept_sequence))
    for problem in problems:
        click.echo(f"entry {problem.sequence}: {problem.message}", err=True)
    if problems:
        raise click.ClickException(f"The audit log is not intact: {len(problems)} problem(s).")
    if last is None:
        click.echo("The audit log is empty.")
        return
    click.echo(f"The audit log is intact: {last.sequence} entries.")
    click.echo(f"head: {last.sequence}:{last.entry_hash}")


def _one_of(flags: dict[str, bool], values: dict[str, str]) -> str:
    """The value of the one flag given; a usage error for none or several."""
    given = [flag for flag, on in flags.items() if on]
    if len(given) != 1:
        names = " or ".join(flags)
        raise click.UsageError(f"Say {names}" + (f", not both ({' '.join(given)})."
                                                 if given else "."))
    return values[given[0]]


def _parse_head(text: str) -> tuple[int, str]:
    if not text:
        return 0, ""
    sequence, _, digest = text.partition(":")
    if not sequence.isdigit() or len(digest) != 64:
        raise click.BadParameter("expected SEQUENCE:HASH as printed by 'linkage audit verify'",
                                 param_hint="--expect-head")
    return int(sequence), digest


def _head_problem(sequence: int):
    from linkage.audit import ChainProblem
    return ChainProblem(sequence, "the head kept from an earlier verification is missing or "
                                  "changed: the log was cut short or rewritten since")


# -- offline and demo -------------------------------------------------------------------------

@main.command()
@click.option("--threshold", default="auto", show_default=True,
              help="'auto' or a Dice threshold like 0.8.")
@click.option("--estimates", is_flag=True,
              help="With a numeric threshold, also fit the score model: confidences become "
                   "match probabilities and the estimated precision and recall are printed "
                   "(auto always does this).")
@click.option("-o", "--output", default="-", help="CSV file to write ('-' for stdout).")
@click.option("--executor", default="in-process", show_default=True, envvar="LINKAGE_EXECUTOR",
              help="Where the comparisons run: 'in-process', or dask://HOST:PORT to send them "
                   "to a running 'dask scheduler' (as linkage-server --executor; env "
                   "LINKAGE_EXECUTOR). Only CLKs go to the cluster; the output is the same.")
@click.argument("left")
@click.argument("right")
def match(threshold, estimates, output, executor, left, right) -> None:
    """Link two encoded files without a server (1-to-1), using the server's engine.

    Writes CSV: left_record,right_record,confidence. The confidence is the
    score model's match probability, or with a numeric threshold (and no
    --estimates) the pair's Dice score.

    Example:

        linkage match be-police.clk se-customs.clk --threshold auto -o matches.csv
        linkage match a.clk b.clk --threshold 0.8 --executor dask://10.0.0.5:8786 -o m.csv
    """
    from linkage.batch import read_batch
    from linkage.matching.dask_executor import make_executor
    from linkage.matching.executor import load_kernels_in_background
    from linkage.matching.threshold import import_scipy_in_background, parse_threshold
    requested = parse_threshold(threshold)
    try:
        comparisons = make_executor(executor)
    except LinkageError as error:
        raise click.BadParameter(str(error), param_hint="--executor") from None
    if comparisons is None:
        load_kernels_in_background()
    if requested is None or estimates:
        import_scipy_in_background()
    left_batch, right_batch = read_batch(_read_input(left)), read_batch(_read_input(right))
    from linkage.matching.offline import match_batches  # the kernels: loaded by now, or waited on
    bar = _progress(None, "comparing")
    try:
        matches, choice = match_batches(
            left_batch, right_batch, requested, estimates=estimates, executor=comparisons,
            on_progress=lambda stage, done, total: _show_stage(bar, stage, done, total))
    finally:
        bar.close()
        if comparisons is not None:
            comparisons.close()
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["left_record", "right_record", "confidence"])
    writer.writerows((row[0], row[1], f"{row[2]:.6f}") for row in matches)
    if output == "-":
        sys.stdout.write(buffer.getvalue())
    else:  # record ids: readable by their owner only (0600)
        from .private_files import write_private

        write_private(Path(output), buffer.getvalue().encode("utf-8"))
    estimated = ""
    if choice.estimated_precision is not None:
        estimated = (f"; estimated precision {choice.estimated_precision:.4f}, recall "
                     f"{choice.estimated_recall:.4f}")
    click.echo(f"{len(matches)} linked pairs; threshold {choice.threshold:.3f} "
               f"({choice.reason}){estimated}.", err=True)


def _show_stage(bar, stage: str, done: int, total: int) -> None:
    """Point one progress bar at the engine's current stage (comparing, grouping, ...)."""
    if bar.disable:  # not a terminal
        return
    if bar.desc != stage:
        bar.set_description_str(stage, refresh=False)
    bar.total = total or None
    bar.n = done
    bar.refresh()


@main.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write one folder per agency into.")
@click.option("--records", default=2000, show_default=True, help="Records per agency.")
@click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same data).")
def generate(out_dir: Path, records: int, seed: int) -> None:
    """Generate synthetic agency exports (CSV + mapping) and the ground truth.

    Example:

        linkage generate --out demo-data --records 2000
    """
    from .demo import write_synthetic
    write_synthetic(out_dir, records, seed)
    click.echo(f"Wrote synthetic exports for each agency and truth.csv to {out_dir}/", err=True)


@main.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("demo-output"), show_default=True,
              help="Where the demo keeps its files (replaced on each run).")
@click.option("--records", type=int, default=None,
              help="Records per agency.  [default: 2000; with --two-server 1000, because "
                   "every pair is compared on shares: 5 x 2000 with 'auto' took about 9 minutes "
                   "and 7 GB on server 1, 5 x 1000 about 2-3 minutes]")
@click.option("--seed", default=7, show_default=True, help="Random seed.")
@click.option("--console", "leave_console", is_flag=True,
              help="At the end, leave the server and a coordinator console running "
                   "(Ctrl-C stops them); prints the console's link.")
@click.option("--two-server", "two_server", is_flag=True,
              help="Two-server mode: two servers each hold one share of every CLK, neither "
                   "holds a CLK, and they compare only cross-agency pairs (docs/privacy.md).")
@click.option("--threshold", default="auto", show_default=True,
              help="'auto' (chosen from the score distribution) or a Dice threshold like 0.8. "
                   "A server that cannot choose 'auto' in two-server mode says so.")
@click.option("--schema", "schema_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The person schema: a file, or a shipped one by name (person, the "
                   "default; person-segments: scored field-wise, on shares with --two-server, "
                   "about 40 µs a pair: try --records 250).")
def demo(workdir: Path, records: int | None, seed: int, leave_console: bool, two_server: bool,
         threshold: str, schema_path: Path | None) -> None:
    """Several agencies link their records through a real server on loopback.

    Generates synthetic exports, starts linkage-server, encodes at each agency,
    submits over gRPC, runs linkage, prints the report and the precision and
    recall against the generator's truth. The same seed gives the same run:
    the demo derives its secret, case keys and BLIP coin flips from the seed
    (real projects use 'linkage keygen'); only group ids differ, because the
    server keys them with a secret of its own. With --two-server it starts two
    servers, agencies submit one share of each CLK to each, and the figures are
    the same on every run with the seed, though the shares are fresh randomness.

    Example:

        linkage demo --records 2000

        linkage demo --two-server --threshold 0.8 --records 500

        linkage demo --two-server --schema person-segments --records 250
    """
    from .demo import DEFAULT_RECORDS, TWO_SERVER_RECORDS, run_demo
    if records is None:
        records = TWO_SERVER_RECORDS if two_server else DEFAULT_RECORDS
    if records < 1:
        raise click.BadParameter("give at least 1 record per agency.", param_hint="--records")
    run_demo(workdir, records, seed, console=leave_console, two_server=two_server,
             threshold=threshold,
             schema_text=_schema_text(schema_path))


main.add_command(pki)

if __name__ == "__main__":
    main()
