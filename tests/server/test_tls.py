"""Mutual TLS against a real server process on loopback: who gets through the handshake, and
that the certificate and the token must name the same caller."""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
import pytest
from click.testing import CliRunner

from linkage_service.client import pki
from linkage_service.client.api import LinkageClient
from linkage_service.client.cli import main as linkage_cli
from linkage_service.client.demo import ServerProcess
from linkage.errors import InvalidRequestError
from linkage_service.client.synthetic import DEFAULT_STAGES
from linkage_service.server.app import create_server
from linkage_service.server.config import ServerConfig
from linkage_service.server.main import main as server_cli
from linkage_service.server.tls import peer_identity, server_credentials

PROJECT = "tls-project"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, module_store_spec):
    """One mutual-TLS server for the module, with a project for two agencies."""
    base = tmp_path_factory.mktemp("tls")
    with ServerProcess(base / "data", tls_dir=base / "pki") as process:
        yield process


@pytest.fixture(scope="module")
def tokens(tls_server, schema_text, batches):
    agencies = sorted(batches)[:2]
    with tls_server.client(tls_server.coordinator_token, timeout=60) as coordinator:
        return coordinator.create_project(PROJECT, schema_text, agencies, list(DEFAULT_STAGES))


@pytest.fixture(scope="module")
def foreign_ca(tmp_path_factory):
    """Another CA, with a coordinator certificate of its own."""
    directory = tmp_path_factory.mktemp("foreign-pki")
    pki.init_ca(directory)
    pki.issue(directory, "coordinator", "coordinator", directory)
    return directory


def _error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def _code(call) -> grpc.StatusCode:
    return _error(call).code()


def test_a_valid_certificate_and_token_work(tls_server, tokens, batches):
    first, second = sorted(tokens)
    with tls_server.client(tls_server.coordinator_token, timeout=60) as coordinator:
        assert PROJECT in [p["name"] for p in coordinator.list_projects()]
    with tls_server.client(tokens[first], first, "agency", timeout=60) as agency:
        receipt = agency.submit(PROJECT, batches[first])
    assert receipt.records_accepted == len(batches[first])


def test_without_a_client_certificate_the_handshake_fails(tls_server):
    ca = tls_server.tls_dir / "ca.pem"
    with LinkageClient(tls_server.address, tls_server.coordinator_token, timeout=10,
                       ca=ca) as client:
        assert _code(client.list_projects) == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_from_another_ca_is_refused(tls_server, foreign_ca):
    with LinkageClient(tls_server.address, tls_server.coordinator_token, timeout=10,
                       ca=tls_server.tls_dir / "ca.pem", cert=foreign_ca / "coordinator.pem",
                       key=foreign_ca / "coordinator.key") as client:
        assert _code(client.list_projects) == grpc.StatusCode.UNAVAILABLE


def test_a_client_that_does_not_trust_the_server_fails(tls_server, foreign_ca):
    own = tls_server.client_tls("coordinator", "coordinator")
    with LinkageClient(tls_server.address, tls_server.coordinator_token, timeout=10,
                       ca=foreign_ca / "ca.pem", cert=own["cert"], key=own["key"]) as client:
        assert _code(client.list_projects) == grpc.StatusCode.UNAVAILABLE


def test_a_plaintext_client_cannot_talk_to_a_tls_server(tls_server):
    with LinkageClient(tls_server.address, tls_server.coordinator_token, timeout=10) as client:
        assert _code(client.list_projects) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("certificate, token", [
    (("first", "agency"), "second"),
    (("coordinator", "coordinator"), "first"),
    (("first", "agency"), "coordinator"),
    (("coordinator", "operator"), "coordinator"),
])
def test_certificate_and_token_must_name_the_same_caller(tls_server, tokens, certificate,
                                                         token):
    """Needs server/auth.py to compare peer_identity with the token's identity."""
    first, second = sorted(tokens)
    names = {"first": first, "second": second, "coordinator": "coordinator"}
    name, role = names[certificate[0]], certificate[1]
    if token == "coordinator":
        with tls_server.client(tls_server.coordinator_token, name, role, timeout=10) as client:
            error = _error(client.list_projects)
    else:
        with tls_server.client(tokens[names[token]], name, role, timeout=10) as client:
            error = _error(lambda: list(client.results(PROJECT)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "certificate" in error.details()


def test_the_cli_connects_with_tls_flags_or_environment(tls_server, tokens, tmp_path):
    token_file = tmp_path / "coordinator.token"
    token_file.write_text(tls_server.coordinator_token + "\n", encoding="utf-8")
    paths = tls_server.client_tls("coordinator", "coordinator")
    runner = CliRunner()
    base = ["project", "list", "--server", tls_server.address, "--token-file", str(token_file)]
    flags = ["--ca", str(paths["ca"]), "--cert", str(paths["cert"]), "--key", str(paths["key"])]
    result = runner.invoke(linkage_cli, base + flags, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert PROJECT in result.output
    env = {"LINKAGE_CA": str(paths["ca"]), "LINKAGE_CERT": str(paths["cert"]),
           "LINKAGE_KEY": str(paths["key"])}
    result = runner.invoke(linkage_cli, base, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert PROJECT in result.output

    partial = runner.invoke(linkage_cli, base + flags[:2], catch_exceptions=False)
    assert partial.exit_code == 1
    assert "needs --ca, --cert and --key together" in partial.output
    assert "--cert, --key missing" in partial.output
    missing = runner.invoke(linkage_cli, base + ["--ca", str(tmp_path / "nope.pem")] + flags[2:],
                            catch_exceptions=False)
    assert missing.exit_code == 2 and "does not exist" in missing.output
    plaintext = runner.invoke(linkage_cli, base, catch_exceptions=False)
    assert plaintext.exit_code == 1 and "Cannot reach the linkage server" in plaintext.output


def test_the_server_refuses_incomplete_or_mismatched_tls_files(tmp_path):
    pki.init_ca(tmp_path / "pki")
    cert, key, ca = (str(tmp_path / "pki" / n) for n in ("server.pem", "server.key", "ca.pem"))
    other_key = pki.issue(tmp_path / "pki", "coordinator", "coordinator", tmp_path)[1]
    runner = CliRunner()
    data_dir = ["--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0"]
    cases = [
        (["--tls-cert", cert, "--tls-key", key], "--client-ca missing"),
        (["--tls-cert", cert, "--tls-key", str(tmp_path / "absent.key"), "--client-ca", ca],
         "Cannot read --tls-key"),
        (["--tls-cert", cert, "--tls-key", str(other_key), "--client-ca", ca],
         "is not the key of the certificate"),
        (["--tls-cert", key, "--tls-key", key, "--client-ca", ca], "is not a PEM certificate"),
    ]
    for flags, message in cases:
        result = runner.invoke(server_cli, data_dir + flags, catch_exceptions=False)
        assert result.exit_code == 1, (flags, result.output)
        assert message in result.output, (flags, result.output)
    assert not (tmp_path / "data").exists()  # refused before the store was opened


def test_plaintext_stays_on_loopback_but_tls_may_listen_anywhere(tmp_path):
    refused = CliRunner().invoke(server_cli, ["--data-dir", str(tmp_path / "plain"),
                                              "--listen", "0.0.0.0:0"], catch_exceptions=False)
    assert refused.exit_code == 1 and "Refusing to listen on 0.0.0.0:0 without TLS" in \
        refused.output
    with ServerProcess(tmp_path / "data", tls_dir=tmp_path / "pki",
                       extra_args=("--listen", "0.0.0.0:0")) as server:
        with server.client(server.coordinator_token, timeout=10) as coordinator:
            assert coordinator.list_projects() == []
        # Linux routes all of 127/8 to loopback; 127.0.0.2 is not among the certificate's names.
        port = server.address.rsplit(":", 1)[1]
        with LinkageClient(f"127.0.0.2:{port}", server.coordinator_token, timeout=10,
                           **server.client_tls("coordinator", "coordinator")) as elsewhere:
            error = _error(elsewhere.list_projects)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "Hostname Verification" in error.details()


def test_plaintext_is_logged_as_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="linkage.server"):
        server, _port, store = create_server(ServerConfig(data_dir=tmp_path,
                                                          listen="127.0.0.1:0"))
    store.close()
    server.stop(None)
    assert any("NO TLS" in record.getMessage() and record.levelno == logging.WARNING
               for record in caplog.records)


def test_partial_tls_configuration_is_a_clear_error(tmp_path):
    pki.init_ca(tmp_path)
    with pytest.raises(InvalidRequestError, match="--tls-key, --client-ca missing"):
        server_credentials(tmp_path / "server.pem", None, None)
    assert server_credentials(None, None, None) is None


def test_peer_identity_reads_the_client_certificate(tmp_path):
    """A bare gRPC server (no linkage interceptor) echoing what peer_identity sees."""
    pki.init_ca(tmp_path)
    cert, key = pki.issue(tmp_path, "se-police", "agency", tmp_path)

    def who(_request, context) -> bytes:
        identity = peer_identity(context)
        return b"none" if identity is None else f"{identity.role}:{identity.name}".encode()

    handler = grpc.method_handlers_generic_handler(
        "test.Peer", {"Who": grpc.unary_unary_rpc_method_handler(who)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    credentials = server_credentials(tmp_path / "server.pem", tmp_path / "server.key",
                                     tmp_path / "ca.pem")
    tls_port = server.add_secure_port("127.0.0.1:0", credentials)
    plain_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        channel_credentials = grpc.ssl_channel_credentials(
            (tmp_path / "ca.pem").read_bytes(), key.read_bytes(), cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{tls_port}", channel_credentials) as channel:
            assert channel.unary_unary("/test.Peer/Who")(b"", timeout=10) == b"agency:se-police"
        with grpc.insecure_channel(f"127.0.0.1:{plain_port}") as channel:
            assert channel.unary_unary("/test.Peer/Who")(b"", timeout=10) == b"none"
    finally:
        server.stop(None)
