"""The ``linkage`` command line against a real server on loopback."""

from __future__ import annotations

import csv
import io
import json
import stat

import click
import pytest
from click.testing import CliRunner

from linkage_service.client.cli import main
from linkage.batch import read_batch
from linkage.clks import clks_to_base64
from linkage_service.client.synthetic import DEFAULT_STAGES

PROJECT = "cli-project"


def invoke(*args, env=None, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, input=input,
                              catch_exceptions=False)


def _all_commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _all_commands(command, prefix + (name,))


def test_every_command_has_help_with_an_example():
    for path, _command in _all_commands(main):
        result = invoke(*path, "--help")
        assert result.exit_code == 0, path
        assert "Example:" in result.output, f"'linkage {' '.join(path)}' help has no example"


@pytest.fixture
def agency_files(tmp_path, dataset):
    """Each agency's export and mapping written to disk, as an agency would have them."""
    paths = {}
    for name, export in dataset.exports.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "records.csv").write_text(export.to_csv(), encoding="utf-8")
        (folder / "mapping.toml").write_text(export.mapping_toml(), encoding="utf-8")
        paths[name] = folder
    return paths


def test_keygen_writes_a_private_256_bit_secret(tmp_path):
    path = tmp_path / "secret.key"
    assert invoke("keygen", "-o", path).exit_code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(bytes.fromhex(path.read_text().strip())) == 32
    again = invoke("keygen", "-o", path)
    assert again.exit_code == 1 and "refusing to overwrite" in again.output


def test_full_workflow_through_the_cli(tmp_path, server, agency_files):
    secret = tmp_path / "secret.key"
    invoke("keygen", "-o", secret)
    coordinator = ["--server", server.address, "--token-file", server.data_dir / "coordinator.token"]
    agencies = sorted(agency_files)
    created = invoke("project", "create", "--name", PROJECT, "--agencies", ",".join(agencies),
                     "--tokens-dir", tmp_path / "tokens", "--stages",
                     ",".join(DEFAULT_STAGES), *coordinator)
    assert created.exit_code == 0, created.output
    assert "One server holds every CLK" in created.output and "--server-1" in created.output
    for name in agencies:
        batch = agency_files[name] / "batch.clk"
        case_key = agency_files[name] / "case.key"
        invoke("keygen", "-o", case_key)
        encoded = invoke("encode", "--secret", secret, "--case-key", case_key, "--mapping",
                         agency_files[name] / "mapping.toml", agency_files[name] / "records.csv",
                         "-o", batch)
        assert encoded.exit_code == 0, encoded.output
        token = tmp_path / "tokens" / f"{name}.token"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        submitted = invoke("submit", "--project", PROJECT, "--server", server.address,
                           "--token-file", token, batch)
        assert submitted.exit_code == 0, submitted.output
        receipt = json.loads(submitted.stdout)
        assert receipt["agency"] == name
        assert receipt["records_accepted"] == len(read_batch(batch.read_bytes()))
    ran = invoke("run", "--project", PROJECT, *coordinator)
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["groups"] > 0
    report = json.loads(invoke("report", "--project", PROJECT, "--format", "json",
                               *coordinator).stdout)
    assert isinstance(report["threshold"], float)
    assert set(report["agencies"]) == set(agencies)
    assert all({"records"} <= set(v) for v in report["agencies"].values())
    group = report["groups"][0]
    assert {"id", "agencies", "size", "confidence", "review"} <= set(group)
    assert group["review"] is None
    text = invoke("report", "--project", PROJECT, *coordinator)
    assert "Shared entities between agencies" in text.output
    reviewed = invoke("review", "--project", PROJECT, "--group", group["id"], "--accept",
                      *coordinator)
    assert reviewed.exit_code == 0, reviewed.output
    again = json.loads(invoke("report", "--project", PROJECT, "--format", "json",
                              *coordinator).stdout)
    assert {g["id"]: g for g in again["groups"]}[group["id"]]["review"] == "accepted"
    results = invoke("results", "--project", PROJECT, "--format", "json", "--server",
                     server.address, "--token-file", tmp_path / "tokens" / "be-police.token")
    assert results.exit_code == 0
    lines = [json.loads(line) for line in results.stdout.splitlines()]
    assert lines
    for line in lines:
        assert set(line) >= {"record", "group", "agencies", "confidence"}
        assert 0.0 <= line["confidence"] <= 1.0
        assert "be-police" not in line["agencies"]


def test_encode_reports_unparseable_values_without_showing_them(tmp_path, agency_files):
    secret = tmp_path / "secret.key"
    invoke("keygen", "-o", secret)
    folder = agency_files["be-police"]
    rows = list(csv.DictReader(io.StringIO((folder / "records.csv").read_text("utf-8"))))
    rows[0]["GEBDAT"] = "31/02/1980-not-a-date"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    (folder / "bad.csv").write_text(buffer.getvalue(), encoding="utf-8")
    case_key = tmp_path / "case.key"
    invoke("keygen", "-o", case_key)
    no_key = invoke("encode", "--secret", secret, "--mapping", folder / "mapping.toml",
                    folder / "bad.csv", "-o", tmp_path / "out.clk")
    assert no_key.exit_code == 1 and "--case-key" in no_key.output
    lenient = invoke("encode", "--secret", secret, "--case-key", case_key, "--mapping",
                     folder / "mapping.toml", folder / "bad.csv", "-o", tmp_path / "out.clk")
    assert lenient.exit_code == 0
    assert "row 2, column GEBDAT" in lenient.output
    assert "not-a-date" not in lenient.output
    strict = invoke("encode", "--strict", "--secret", secret, "--case-key", case_key,
                    "--mapping", folder / "mapping.toml", folder / "bad.csv", "-o",
                    tmp_path / "strict.clk")
    assert strict.exit_code == 1
    assert "row 2, column GEBDAT" in strict.output and "not-a-date" not in strict.output
    assert not (tmp_path / "strict.clk").exists()


def test_encode_errors_list_every_problem(tmp_path, agency_files):
    secret = tmp_path / "secret.key"
    invoke("keygen", "-o", secret)
    folder = agency_files["se-police"]
    no_mapping = invoke("encode", "--secret", secret, folder / "records.csv", "-o", tmp_path / "x")
    assert no_mapping.exit_code == 1
    assert "given_name" in no_mapping.output and "phone" in no_mapping.output
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"version": 3, "clkConfig": {"l": 1000, "kdf": {"type": "HKDF"}},
                                  "features": [{"identifier": "x"}]}))
    bad_schema = invoke("encode", "--schema", schema, "--secret", secret,
                        folder / "records.csv", "-o", tmp_path / "x")
    assert bad_schema.exit_code == 1
    assert "features/0" in bad_schema.output
    no_secret = invoke("encode", "--mapping", folder / "mapping.toml", folder / "records.csv",
                       "-o", tmp_path / "x", env={"LINKAGE_SECRET": ""})
    assert no_secret.exit_code == 1 and "linkage keygen" in no_secret.output
    duplicated = tmp_path / "dup.csv"
    text = (folder / "records.csv").read_text("utf-8").splitlines()
    duplicated.write_text("\n".join(text + [text[1]]) + "\n", encoding="utf-8")
    dup = invoke("encode", "--secret", secret, "--case-key", secret, "--mapping",
                 folder / "mapping.toml", duplicated, "-o", tmp_path / "x")
    assert dup.exit_code == 1 and "must be unique" in dup.output


def _clkhash_output(dataset, agency: str, secret: bytes) -> list[str]:
    """What clkhash's own encoder makes of an agency's normalised export (no hardening)."""
    from clkhash.clk import generate_clks

    from linkage_service.client import files
    from linkage.clks import clks_from_bytes
    from linkage.encoding.schema import default_schema_text, load_schema
    export = dataset.exports[agency]
    schema = load_schema(default_schema_text())
    prepared = files.encode_export(default_schema_text(), secret,
                                   export.to_csv().encode("utf-8"), export.mapping_toml(),
                                   case_key=bytes(32)).prepared
    filters = generate_clks(prepared.values, schema.clkhash, secret, max_workers=1)
    return clks_to_base64(clks_from_bytes([f.tobytes() for f in filters], schema.clkhash_bits))


def test_truncated_batch_file_and_clkhash_json(tmp_path, server, agency_files, batches, secret,
                                               dataset):
    coordinator = ["--server", server.address, "--token-file", server.data_dir / "coordinator.token"]
    invoke("project", "create", "--name", PROJECT, "--agencies", "be-police,se-police",
           "--tokens-dir", tmp_path / "tokens", *coordinator)
    token = ["--server", server.address, "--token-file", tmp_path / "tokens" / "be-police.token"]
    from linkage.batch import write_batch
    data = write_batch(batches["be-police"])
    (tmp_path / "cut.clk").write_bytes(data[: len(data) // 2])
    cut = invoke("submit", "--project", PROJECT, *token, tmp_path / "cut.clk")
    assert cut.exit_code == 1 and "truncated" in cut.output
    clkhash_json = tmp_path / "clks.json"
    clkhash_json.write_text(json.dumps({"clks": _clkhash_output(dataset, "be-police", secret)}))
    refused = invoke("submit", "--project", PROJECT, *token, clkhash_json)
    # clkhash JSON cannot be checked against the project's key and schema (issue 15): refused.
    assert refused.exit_code == 1 and "is clkhash JSON. It is not accepted" in refused.output
    assert "linkage encode" in refused.output


def test_unreachable_server_is_a_clear_error(tmp_path):
    token = tmp_path / "t"
    token.write_text("x")
    result = invoke("project", "list", "--server", "127.0.0.1:1", "--token-file", token)
    assert result.exit_code == 1
    assert "Cannot reach the linkage server" in result.output


def test_offline_match_writes_one_to_one_csv(tmp_path, batches):
    from linkage.batch import write_batch
    left, right = tmp_path / "a.clk", tmp_path / "b.clk"
    left.write_bytes(write_batch(batches["be-police"]))
    right.write_bytes(write_batch(batches["be-customs"]))
    result = invoke("match", left, right, "--threshold", "auto", "-o", tmp_path / "m.csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO((tmp_path / "m.csv").read_text("utf-8"))))
    assert rows and list(rows[0]) == ["left_record", "right_record", "confidence"]
    assert len({r["left_record"] for r in rows}) == len(rows)
    assert len({r["right_record"] for r in rows}) == len(rows)
    assert set(r["left_record"] for r in rows) <= set(batches["be-police"].record_ids)


def test_offline_match_at_a_number_loads_no_crypto_grpc_encoder_or_score_model(tmp_path,
                                                                                batches):
    """What ``linkage match --threshold 0.8`` does not need it must not import: each of
    these cost a user tens to hundreds of milliseconds before the first comparison."""
    import subprocess
    import sys

    from linkage.batch import write_batch
    left, right = tmp_path / "a.clk", tmp_path / "b.clk"
    left.write_bytes(write_batch(batches["be-police"]))
    right.write_bytes(write_batch(batches["be-customs"]))
    code = ("import sys; from linkage_service.client.cli import main; "
            f"main(['match', {str(left)!r}, {str(right)!r}, '--threshold', '0.8', '-o', "
            f"{str(tmp_path / 'm.csv')!r}], standalone_mode=False); "
            "print(','.join(m for m in ('cryptography', 'grpc', 'clkhash', 'scipy.stats', "
            "'scipy.optimize', 'linkage.encoding.encoder') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == ""
    assert (tmp_path / "m.csv").read_text("utf-8").startswith("left_record,")


def test_pki_defaults_name_the_roles_the_server_knows():
    from linkage.identity import ROLES
    from linkage_service.client.pki_defaults import ROLES as SHOWN
    assert SHOWN == ROLES
