"""The private PKI for mutual TLS (``client.pki``) and ``linkage pki``."""

from __future__ import annotations

import datetime
import ipaddress
import stat

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from linkage_service.client import pki
from linkage_service.client.cli import main
from linkage.errors import (
    AlreadyExistsError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
)


def _cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    pki.init_ca(directory, server_names=("linkage.example.org", "10.0.0.5"))
    return directory


def test_public_names_are_sorted_and_exist():
    assert pki.__all__ == sorted(pki.__all__)
    assert all(hasattr(pki, name) for name in pki.__all__)


def test_init_writes_a_ca_and_a_server_certificate_it_signed(ca_dir):
    assert {p.name for p in ca_dir.iterdir()} >= {"ca.pem", "ca.key", "server.pem", "server.key"}
    assert _mode(ca_dir / "ca.key") == 0o600 and _mode(ca_dir / "server.key") == 0o600
    ca, server = _cert(ca_dir / "ca.pem"), _cert(ca_dir / "server.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "linkage.example.org"]
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.0.0.5")}
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    key = serialization.load_pem_private_key((ca_dir / "server.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == server.public_key().public_numbers()


def test_init_never_replaces_a_ca_unless_forced(tmp_path):
    pki.init_ca(tmp_path)
    before = (tmp_path / "ca.pem").read_bytes()
    with pytest.raises(AlreadyExistsError, match="holds a CA already"):
        pki.init_ca(tmp_path)
    assert (tmp_path / "ca.pem").read_bytes() == before
    pki.init_ca(tmp_path, force=True)
    assert (tmp_path / "ca.pem").read_bytes() != before


def test_issue_names_the_caller_and_its_role(ca_dir, tmp_path):
    cert_path, key_path = pki.issue(ca_dir, "be-police", "agency", tmp_path / "out")
    assert (cert_path.name, key_path.name) == ("be-police.pem", "be-police.key")
    assert _mode(key_path) == 0o600
    cert = _cert(cert_path)
    cert.verify_directly_issued_by(_cert(ca_dir / "ca.pem"))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "be-police"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == \
        "agency"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert pki.certificate_identity(cert_path.read_bytes()) == \
        pki.CertificateIdentity("be-police", "agency")


def test_issue_refuses_overwrites_bad_names_roles_and_a_missing_ca(ca_dir, tmp_path):
    pki.issue(ca_dir, "coordinator", "coordinator", tmp_path)
    with pytest.raises(AlreadyExistsError, match="refusing to overwrite"):
        pki.issue(ca_dir, "coordinator", "coordinator", tmp_path)
    pki.issue(ca_dir, "coordinator", "coordinator", tmp_path, force=True)
    with pytest.raises(InvalidRequestError, match="not one of agency, coordinator, operator"):
        pki.issue(ca_dir, "x", "admin", tmp_path)
    with pytest.raises(InvalidRequestError, match="not allowed"):
        pki.issue(ca_dir, "../escape", "agency", tmp_path)
    with pytest.raises(NotFoundError, match="holds no CA"):
        pki.issue(tmp_path / "nowhere", "x", "agency", tmp_path)


def _self_signed(subject: list[x509.NameAttribute]) -> bytes:
    """A certificate with an arbitrary subject, to feed certificate_identity."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(subject)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_certificate_identity_needs_one_cn_and_a_known_role_in_ou():
    cn = x509.NameAttribute(NameOID.COMMON_NAME, "se-customs")
    assert pki.certificate_identity(_self_signed(
        [cn, x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "operator")])) == \
        pki.CertificateIdentity("se-customs", "operator")
    with pytest.raises(AuthenticationError, match="exactly one CN .* and one OU"):
        pki.certificate_identity(_self_signed([cn]))
    with pytest.raises(AuthenticationError, match="exactly one CN"):
        pki.certificate_identity(_self_signed(
            [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "agency")]))
    with pytest.raises(AuthenticationError, match="'admin' is not a role"):
        pki.certificate_identity(_self_signed(
            [cn, x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "admin")]))
    with pytest.raises(AuthenticationError, match="not a PEM X.509 certificate"):
        pki.certificate_identity(b"-----BEGIN CERTIFICATE-----\nnonsense\n")


def test_cli_init_and_issue_write_private_keys_and_refuse_to_overwrite(tmp_path):
    out = tmp_path / "pki"
    result = _invoke("pki", "init", "--out", out, "--name", "linkage.example.org")
    assert result.exit_code == 0, result.output
    assert "linkage.example.org" in result.output
    assert _mode(out / "ca.key") == 0o600 and _mode(out / "server.key") == 0o600
    ca_before = (out / "ca.pem").read_bytes()
    again = _invoke("pki", "init", "--out", out)
    assert again.exit_code == 1 and "refusing to replace it" in again.output
    assert (out / "ca.pem").read_bytes() == ca_before

    clients = tmp_path / "clients"
    result = _invoke("pki", "issue", "--ca-dir", out, "--name", "be-customs", "--role", "agency",
                     "--out", clients)
    assert result.exit_code == 0, result.output
    assert _mode(clients / "be-customs.key") == 0o600
    assert pki.certificate_identity((clients / "be-customs.pem").read_bytes()) == \
        pki.CertificateIdentity("be-customs", "agency")
    key_before = (clients / "be-customs.key").read_bytes()
    again = _invoke("pki", "issue", "--ca-dir", out, "--name", "be-customs", "--role", "agency",
                    "--out", clients)
    assert again.exit_code == 1 and "refusing to overwrite" in again.output
    assert (clients / "be-customs.key").read_bytes() == key_before
    bad_role = _invoke("pki", "issue", "--ca-dir", out, "--name", "x", "--role", "admin",
                       "--out", clients)
    assert bad_role.exit_code == 2 and "'admin' is not one of" in bad_role.output
