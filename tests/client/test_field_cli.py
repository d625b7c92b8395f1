"""A new agency's and coordinator's path through the CLI without dead ends (issue 15).

Each test drives the real ``linkage`` command line against a real server on loopback and
checks that the user either succeeds or is told exactly what to do.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from click.testing import CliRunner

from linkage_service.client.cli import main
from linkage.batch import write_batch
from linkage_service.client.synthetic import DEFAULT_STAGES

PROJECT = "field-project"
HEADER = "ID,VOORNAAM,NAAM,GEBDAT,ADRES,GEMEENTE,TEL"
ROWS = [
    "PV-1,Antoine,Thiry,17/12/1973,Rue du Moulin 12,Etterbeek,0482 04 66 10",
    "PV-2,Karine,Bodart,1989-01-17,Rue de la Gare 37,Herstal,0467 72 15 39",
    "PV-3,Roger,Vermeersch,16/10/1976,Grote Markt 32,Boom,0481 09 24 83",
]
MAPPING = """record_id = "ID"
[fields.given_name]
column = "VOORNAAM"
[fields.family_name]
column = "NAAM"
[fields.date_of_birth]
column = "GEBDAT"
date_format = {date_format}
[fields.address]
column = "ADRES"
[fields.city]
column = "GEMEENTE"
{phone}
"""
PHONE = '[fields.phone]\ncolumn = "TEL"\nphone_region = "{region}"'


def invoke(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input,
                              catch_exceptions=False)


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret.key"
    assert invoke("keygen", "-o", path).exit_code == 0
    return path


def _mapping(tmp_path, *, date_format='["%d/%m/%Y", "%Y-%m-%d"]', phone=None, name="map.toml"):
    path = tmp_path / name
    path.write_text(MAPPING.format(date_format=date_format,
                                   phone=PHONE.format(region="BE") if phone is None else phone),
                    encoding="utf-8")
    return path


def _export(tmp_path, text: str, name="records.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _coordinator(server):
    return ["--server", server.address, "--token-file", server.data_dir / "coordinator.token"]


def _create(server, tmp_path, agencies="be-police,se-police", *extra, name=PROJECT,
            tokens="tokens"):
    return invoke("project", "create", "--name", name, "--agencies", agencies, "--tokens-dir",
                  tmp_path / tokens, *extra, *_coordinator(server))


def _agency(server, tmp_path, agency, tokens="tokens"):
    return ["--server", server.address, "--token-file", tmp_path / tokens / f"{agency}.token"]


# -- exports and mappings ------------------------------------------------------------------------

def test_semicolon_export_is_read_and_delimiter_can_be_given(tmp_path, secret_file):
    semicolon = _export(tmp_path, "\n".join(line.replace(",", ";") for line in [HEADER, *ROWS])
                        + "\n")
    encoded = invoke("encode", "--secret", secret_file, "--mapping", _mapping(tmp_path),
                     semicolon, "-o", tmp_path / "a.clk")
    assert encoded.exit_code == 0, encoded.output
    assert "Encoded 3 records" in encoded.output
    assert "could not be parsed" not in encoded.output
    wrong = invoke("encode", "--secret", secret_file, "--mapping", _mapping(tmp_path),
                   "--delimiter", "|", semicolon, "-o", tmp_path / "b.clk")
    assert wrong.exit_code == 1
    assert "is not in the file" in wrong.output  # one column named after the whole header
    tab = _export(tmp_path, "\n".join(line.replace(",", "\t") for line in [HEADER, *ROWS]),
                  name="tab.csv")
    assert invoke("encode", "--secret", secret_file, "--mapping", _mapping(tmp_path),
                  "--delimiter", "tab", tab, "-o", tmp_path / "c.clk").exit_code == 0


def test_a_row_with_extra_fields_names_the_separator_and_the_option(tmp_path, secret_file):
    export = _export(tmp_path, "\n".join([HEADER, *ROWS, "PV-9,a,b,c,d,e,f,g;h"]) + "\n")
    result = invoke("encode", "--secret", secret_file, "--mapping", _mapping(tmp_path), export,
                    "-o", tmp_path / "a.clk")
    assert result.exit_code == 1
    assert "row 5 has more fields than the header (7, separated by comma)" in result.output
    assert "--delimiter" in result.output


def test_several_date_formats_are_tried_in_order(tmp_path, secret_file):
    export = _export(tmp_path, "\n".join([HEADER, *ROWS]) + "\n")
    mixed = invoke("encode", "--secret", secret_file, "--mapping", _mapping(tmp_path), export,
                   "-o", tmp_path / "a.clk")
    assert mixed.exit_code == 0 and "could not be parsed" not in mixed.output, mixed.output
    one = invoke("encode", "--secret", secret_file, "--mapping",
                 _mapping(tmp_path, date_format='"%d/%m/%Y"'), export, "-o", tmp_path / "b.clk")
    assert one.exit_code == 0
    assert "1 values could not be parsed" in one.output
    assert "row 3, column GEBDAT: not a date in format %d/%m/%Y" in one.output


@pytest.mark.parametrize("date_format, phone, expected", [
    ('"dd-mm-yyyy"', None, "date_format 'dd-mm-yyyy' is not a strptime format"),
    ('["%d/%m/%Y", "%Y"]', None, "date_format '%Y' needs a year, a month and a day"),
    ('"%d/%m/%Y"', PHONE.format(region="XX"), "phone_region 'XX' is not a region"),
])
def test_an_invalid_date_format_or_phone_region_is_refused(tmp_path, secret_file, date_format,
                                                           phone, expected):
    export = _export(tmp_path, "\n".join([HEADER, *ROWS]) + "\n")
    result = invoke("encode", "--secret", secret_file, "--mapping",
                    _mapping(tmp_path, date_format=date_format, phone=phone), export,
                    "-o", tmp_path / "a.clk")
    assert result.exit_code == 1
    assert expected in result.output
    assert not (tmp_path / "a.clk").exists()


def test_latin1_export_names_the_byte_and_encoding_reads_it(tmp_path, secret_file):
    text = "\n".join([HEADER, *ROWS, "PV-4,Céline,Dubois,01/02/1990,Rue Haute 1,Liège,"
                                     "0470 12 34 56"]) + "\n"
    export = _export(tmp_path, text, encoding="latin-1")
    refused = invoke("encode", "--secret", secret_file, "--mapping", _mapping(tmp_path), export,
                     "-o", tmp_path / "a.clk")
    assert refused.exit_code == 1
    assert "byte 0xE9" in refused.output and "(line 5)" in refused.output
    assert "--encoding cp1252" in refused.output
    read = invoke("encode", "--secret", secret_file, "--mapping", _mapping(tmp_path),
                  "--encoding", "latin-1", export, "-o", tmp_path / "a.clk")
    assert read.exit_code == 0, read.output
    assert "Encoded 4 records" in read.output


def test_a_feature_can_be_declared_absent_and_same_named_columns_fill_in(tmp_path, secret_file):
    no_phone = _export(tmp_path, "\n".join(line.rsplit(",", 1)[0] for line in [HEADER, *ROWS])
                       + "\n")
    left_out = invoke("encode", "--secret", secret_file, "--mapping",
                      _mapping(tmp_path, phone=""), no_phone, "-o", tmp_path / "a.clk")
    assert left_out.exit_code == 1
    assert "[fields.phone] absent = true" in left_out.output
    absent = invoke("encode", "--secret", secret_file, "--mapping",
                    _mapping(tmp_path, phone="[fields.phone]\nabsent = true"), no_phone,
                    "-o", tmp_path / "a.clk")
    assert absent.exit_code == 0, absent.output
    assert "could not be parsed" not in absent.output
    same_name = _export(tmp_path, "\n".join([HEADER.replace(",TEL", ",phone"), *ROWS]) + "\n",
                        name="same.csv")
    mapping = tmp_path / "nophone.toml"
    mapping.write_text(MAPPING.format(date_format='"%d/%m/%Y"', phone="")
                       .replace('date_format = "%d/%m/%Y"',
                                'date_format = ["%d/%m/%Y", "%Y-%m-%d"]'), encoding="utf-8")
    fallback = invoke("encode", "--secret", secret_file, "--mapping", mapping, same_name,
                      "-o", tmp_path / "b.clk")
    assert fallback.exit_code == 0, fallback.output
    # The same-named column was read: its national numbers lack a region and are reported.
    assert "column phone: not an international phone number" in fallback.output


# -- stages ----------------------------------------------------------------------------------------

def test_stages_are_checked_at_encode_and_the_coordinator_can_add_them(tmp_path, server,
                                                                       secret_file):
    text = "\n".join([HEADER + ",FASE", *(row + ",port_extraction" for row in ROWS)]) + "\n"
    export = _export(tmp_path, text)
    mapping = _mapping(tmp_path)
    mapping.write_text(mapping.read_text() + '[attributes]\nstage_column = "FASE"\n')
    checked = invoke("encode", "--secret", secret_file, "--mapping", mapping, "--stages",
                     "logistics", export, "-o", tmp_path / "a.clk")
    assert checked.exit_code == 1
    assert "row 2 (record PV-1): 'port_extraction'" in checked.output
    assert "linkage project stages --add" in checked.output
    encoded = invoke("encode", "--secret", secret_file, "--mapping", mapping, export,
                     "-o", tmp_path / "a.clk")
    assert encoded.exit_code == 0
    assert "Stages in this batch: port_extraction" in encoded.output
    assert _create(server, tmp_path).exit_code == 0  # as the README's quick start: no --stages
    refused = invoke("submit", "--project", PROJECT, *_agency(server, tmp_path, "be-police"),
                     tmp_path / "a.clk")
    assert refused.exit_code == 1
    assert "('PV-1') has stage 'port_extraction'" in refused.output
    assert f"linkage project stages --project {PROJECT} --add port_extraction" in refused.output
    added = invoke("project", "stages", "--project", PROJECT, "--add",
                   "port_extraction,logistics", *_coordinator(server))
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["stages"] == ["port_extraction", "logistics"]
    accepted = invoke("submit", "--project", PROJECT, *_agency(server, tmp_path, "be-police"),
                      tmp_path / "a.clk")
    assert accepted.exit_code == 0, accepted.output
    dropped = invoke("project", "stages", "--project", PROJECT, "--set", "logistics",
                     *_coordinator(server))
    assert dropped.exit_code == 1 and "keep them in the vocabulary" in dropped.output
    check = invoke("project", "stages", "--project", PROJECT, *_coordinator(server))
    assert json.loads(check.stdout)["stages"] == ["port_extraction", "logistics"]


def test_a_misconfigured_project_can_be_deleted_and_purge_says_so(tmp_path, server, batches):
    assert _create(server, tmp_path).exit_code == 0
    batch = tmp_path / "b.clk"
    batch.write_bytes(write_batch(batches["be-police"]))
    purge = invoke("project", "purge", "--project", PROJECT, "--yes", *_coordinator(server))
    assert purge.exit_code == 1
    assert f"linkage project delete --project {PROJECT}" in purge.output
    deleted = invoke("project", "delete", "--project", PROJECT, "--yes", *_coordinator(server))
    assert deleted.exit_code == 0, deleted.output
    listed = invoke("project", "list", *_coordinator(server))
    assert PROJECT not in listed.output
    gone = invoke("results", "--project", PROJECT, *_agency(server, tmp_path, "be-police"))
    assert gone.exit_code == 1 and "UNAUTHENTICATED" in gone.output
    again = _create(server, tmp_path, "be-police,se-police", "--stages",
                    ",".join(DEFAULT_STAGES), tokens="tokens2")
    assert again.exit_code == 0, again.output


# -- tokens ----------------------------------------------------------------------------------------

def test_token_files_are_never_overwritten_and_a_token_can_be_reissued(tmp_path, server):
    assert _create(server, tmp_path).exit_code == 0
    first = (tmp_path / "tokens" / "be-police.token").read_text()
    second = _create(server, tmp_path, "be-police,se-customs", name="other-project")
    assert second.exit_code == 1
    assert "refusing to overwrite" in second.output and "--tokens-dir" in second.output
    assert (tmp_path / "tokens" / "be-police.token").read_text() == first
    listed = invoke("project", "list", *_coordinator(server))
    assert "other-project" not in listed.output  # refused before the project was created
    target = tmp_path / "tokens" / "be-police.token"
    kept = invoke("project", "reissue-token", "--project", PROJECT, "--agency", "be-police",
                  "-o", target, *_coordinator(server))
    assert kept.exit_code == 1 and "--force" in kept.output
    old = tmp_path / "old.token"
    old.write_text(first)
    reissued = invoke("project", "reissue-token", "--project", PROJECT, "--agency", "be-police",
                      "-o", target, "--force", *_coordinator(server))
    assert reissued.exit_code == 0, reissued.output
    assert target.read_text() != first
    revoked = invoke("follow-up", "list", "--project", PROJECT, "--server", server.address,
                     "--token-file", old)
    assert revoked.exit_code == 1 and "UNAUTHENTICATED" in revoked.output
    works = invoke("follow-up", "list", "--project", PROJECT,
                   *_agency(server, tmp_path, "be-police"))
    assert works.exit_code == 0, works.output
    unknown = invoke("project", "reissue-token", "--project", PROJECT, "--agency", "nl-police",
                     "-o", tmp_path / "x.token", *_coordinator(server))
    assert unknown.exit_code == 1 and "agencies: be-police, se-police" in unknown.output


# -- receipts, follow-ups, review flags --------------------------------------------------------------

@pytest.fixture
def linked(tmp_path, server, batches):
    """be-police and se-police submitted and linked through the CLI."""
    assert _create(server, tmp_path, "be-police,se-police", "--stages",
                   ",".join(DEFAULT_STAGES)).exit_code == 0
    for agency in ("be-police", "se-police"):
        path = tmp_path / f"{agency}.clk"
        path.write_bytes(write_batch(batches[agency]))
        submitted = invoke("submit", "--project", PROJECT, *_agency(server, tmp_path, agency),
                           path)
        assert submitted.exit_code == 0, submitted.output
    ran = invoke("run", "--project", PROJECT, *_coordinator(server))
    assert ran.exit_code == 0, ran.output
    return tmp_path


def test_receipts_name_the_agency_and_what_happened(linked, server):
    again = invoke("submit", "--project", PROJECT, *_agency(server, linked, "be-police"),
                   linked / "be-police.clk")
    assert again.exit_code == 0
    assert json.loads(again.stdout) == {**json.loads(again.stdout), "agency": "be-police",
                                        "already_stored": True}
    other = invoke("submit", "--project", PROJECT, *_agency(server, linked, "se-police"),
                   linked / "be-police.clk")
    assert other.exit_code == 1
    assert "Another agency of this project submitted a batch with exactly this content" in \
        other.output
    assert "choose another batch id" not in other.output
    assert invoke("project", "purge", "--project", PROJECT, "--yes",
                  *_coordinator(server)).exit_code == 0
    purged = invoke("submit", "--project", PROJECT, *_agency(server, linked, "be-police"),
                    linked / "be-police.clk")
    assert purged.exit_code == 1
    assert "was purged" in purged.output and "already holds" not in purged.output


def _a_shared_group(server, tmp_path) -> str:
    hits = invoke("results", "--project", PROJECT, *_agency(server, tmp_path, "be-police"))
    shared = [json.loads(line) for line in hits.stdout.splitlines()]
    return next(h["group"] for h in shared if "se-police" in h["agencies"])


def test_follow_up_answers_come_back_to_the_agency_that_asked(linked, server):
    group = _a_shared_group(server, linked)
    opened = invoke("follow-up", "open", "--project", PROJECT, "--group", group, "--note",
                    "port-of-entry query", *_agency(server, linked, "be-police"))
    assert opened.exit_code == 0, opened.output
    follow_up = json.loads(opened.stdout.splitlines()[0])["id"]
    answered = invoke("follow-up", "answer", "--project", PROJECT, "--id", follow_up,
                      "--approve", "--note", "via liaison officer",
                      *_agency(server, linked, "se-police"))
    assert answered.exit_code == 0, answered.output
    results = invoke("results", "--project", PROJECT, *_agency(server, linked, "be-police"))
    mine = [json.loads(line) for line in results.stdout.splitlines()]
    back = [f for hit in mine if hit["group"] == group for f in hit["follow_ups"]]
    assert back and back[0]["status"] == "approved"
    assert back[0]["answer_note"] == "via liaison officer"
    listed = invoke("follow-up", "list", "--project", PROJECT, "--format", "text",
                    *_agency(server, linked, "be-police"))
    assert listed.exit_code == 0
    assert listed.stdout.splitlines()[0].split()[:3] == ["ID", "GROUP", "ASKED"]
    assert f"{follow_up} " in listed.stdout and "approved" in listed.stdout
    everything = invoke("follow-up", "list", "--project", PROJECT, "--coordinator",
                        *_coordinator(server))
    assert [json.loads(line)["id"] for line in everything.stdout.splitlines()] == [follow_up]
    report = invoke("report", "--project", PROJECT, *_coordinator(server))
    assert "Follow-ups: 1" in report.stdout and "via liaison officer" in report.stdout
    text = invoke("results", "--project", PROJECT, "--format", "text",
                  *_agency(server, linked, "be-police"))
    assert text.stdout.splitlines()[0].split()[:3] == ["RECORD", "GROUP", "CONF."]
    assert f"{follow_up} from be-police to se-police: approved" in text.stdout
    audit = invoke("audit", "show", "--method", "OpenFollowUp", "--format", "json", "--server",
                   server.address, "--token-file", server.data_dir / "operator.token")
    outcomes = [json.loads(line)["outcome"] for line in audit.stdout.splitlines()]
    assert outcomes == ["OK"]  # the agency's client asked its own service only


def test_accept_and_reject_or_approve_and_decline_are_exclusive(linked, server):
    group = _a_shared_group(server, linked)
    both = invoke("review", "--project", PROJECT, "--group", group, "--accept", "--reject",
                  *_coordinator(server))
    assert both.exit_code == 2 and "not both" in both.output
    neither = invoke("review", "--project", PROJECT, "--group", group, *_coordinator(server))
    assert neither.exit_code == 2 and "Say --accept or --reject." in neither.output
    answer = invoke("follow-up", "answer", "--project", PROJECT, "--id", "f-1", "--approve",
                    "--decline", *_agency(server, linked, "se-police"))
    assert answer.exit_code == 2 and "not both" in answer.output


def test_audit_show_has_column_headers_and_create_project_names_its_project(linked, server):
    shown = invoke("audit", "show", "--method", "CreateProject", "--server", server.address,
                   "--token-file", server.data_dir / "operator.token")
    assert shown.exit_code == 0
    header, *rows = shown.stdout.splitlines()
    assert header.split()[:4] == ["SEQ", "TIME", "(UTC)", "CALLER"]
    assert rows and all(PROJECT in row for row in rows)


# -- a stopped server ------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("command", [
    ("submit", "--project", PROJECT, "{batch}"),
    ("results", "--project", PROJECT),
    ("report", "--project", PROJECT),
    ("project", "list"),
    ("follow-up", "list", "--project", PROJECT),
])
def test_a_stopped_server_fails_fast_with_one_message(tmp_path, batches, command):
    token = tmp_path / "t.token"
    token.write_text("x" * 43)
    batch = tmp_path / "b.clk"
    batch.write_bytes(write_batch(batches["be-police"]))
    started = time.monotonic()
    result = invoke(*(part.format(batch=batch) for part in command), "--server",
                    f"127.0.0.1:{_free_port()}", "--token-file", token)
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert "Cannot reach the linkage server" in result.output
    assert "Connection refused" in result.output  # gRPC's own reason is kept
    assert elapsed < 10, f"{command[0]} took {elapsed:.1f} s to give up"


def test_an_address_that_never_answers_fails_within_the_connect_deadline(tmp_path):
    """A listening socket that never completes the HTTP/2 handshake (like a host that drops
    packets) would hold a call until its deadline; the client gives up after 5 s."""
    token = tmp_path / "t.token"
    token.write_text("x" * 43)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        result = invoke("project", "list", "--server",
                        f"127.0.0.1:{silent.getsockname()[1]}", "--token-file", token)
        elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert "Cannot reach the linkage server" in result.output
    assert "no connection to 127.0.0.1:" in result.output and "within 5 s" in result.output
    assert elapsed < 15


@pytest.mark.slow
def test_the_demo_is_reproducible_with_the_same_seed(tmp_path, capsys):
    from linkage_service.client.demo import run_demo

    def threshold_line() -> str:
        out = capsys.readouterr().out
        return next(line for line in out.splitlines() if line.strip().startswith("threshold"))

    first = run_demo(tmp_path / "one", 120, 5, tls=False)
    first_threshold = threshold_line()
    second = run_demo(tmp_path / "two", 120, 5, tls=False)
    assert threshold_line() == first_threshold
    assert {k: vars(v) for k, v in first.items()} == {k: vars(v) for k, v in second.items()}


def test_a_shipped_schema_is_named_and_a_missing_file_said_plainly(tmp_path):
    """``--schema person-segments`` is the shipped segments schema wherever the package is
    installed; a schema file that is not there is a usage error that names the choices."""
    from pathlib import Path

    import linkage.encoding as encoding_package
    from linkage_service.client.cli import _schema_text

    shipped = Path(encoding_package.__file__).parent / "schemas" / "person_segments.json"
    assert _schema_text(Path("person-segments")) == shipped.read_text("utf-8")
    result = CliRunner().invoke(main, ["encode", "--schema", str(tmp_path / "nowhere.json"),
                                       "-o", str(tmp_path / "out.clk"), "records.csv"])
    assert result.exit_code == 2
    assert "cannot read the schema" in result.output and "person-segments" in result.output
