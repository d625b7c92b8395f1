"""A small private PKI for mutual TLS: one CA, one server certificate, one client certificate
per agency, coordinator or operator.

The server reads a caller's identity from its client certificate: the subject's common name
(CN) is the agency or coordinator name and the organisational unit (OU) its role. Both must
agree with the caller's bearer token, so a stolen token alone is not enough.

Keys are EC P-256 and written with mode 0600; existing keys are never replaced unless asked.
A real deployment may bring its own CA instead (see docs/tls.md): only CN, OU and the
clientAuth extended key usage matter to the server.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from linkage.errors import (
    AlreadyExistsError,
    InvalidRequestError,
    NotFoundError,
)

from linkage.identity import ROLES, CertificateIdentity, certificate_identity

from .pki_defaults import CA_DAYS, CLIENT_DAYS, DEFAULT_SERVER_NAMES


__all__ = [
    "CA_DAYS",
    "CLIENT_DAYS",
    "CertificateIdentity",
    "DEFAULT_SERVER_NAMES",
    "ROLES",
    "certificate_identity",
    "init_ca",
    "issue",
]

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_CA_FILES = ("ca.pem", "ca.key", "server.pem", "server.key")


def init_ca(out_dir: Path, *, server_names: Iterable[str] = DEFAULT_SERVER_NAMES,
            days: int = CA_DAYS, server_days: int = CLIENT_DAYS, force: bool = False) -> None:
    """Create a CA and a server certificate signed by it in ``out_dir``.

    Writes ca.pem, ca.key, server.pem and server.key (keys mode 0600). The server certificate
    names localhost, 127.0.0.1 and ::1 plus every entry of ``server_names`` (host names or IP
    addresses) as subject alternative names; clients check the address they dial against them.

    Raises:
        AlreadyExistsError: ``out_dir`` holds a CA already and ``force`` is not set (replacing
            the CA invalidates every certificate it issued).
        InvalidRequestError: a server name is empty, or ``days`` is not positive.
    """
    out_dir = Path(out_dir)
    existing = [name for name in _CA_FILES if (out_dir / name).exists()]
    if existing and not force:
        raise AlreadyExistsError(
            f"{out_dir} holds a CA already ({', '.join(existing)}); refusing to replace it, "
            "which would invalidate every certificate it issued (use --force if you mean it).")
    if days <= 0 or server_days <= 0:
        raise InvalidRequestError("Certificate lifetimes must be at least one day.")
    names = list(dict.fromkeys((*DEFAULT_SERVER_NAMES, *server_names)))
    if any(not name.strip() for name in names):
        raise InvalidRequestError("A server name is empty: give host names or IP addresses.")
    out_dir.mkdir(parents=True, exist_ok=True)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "linkage CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "server")])
    server_cert = (
        _leaf_builder(server_subject, ca_cert, ca_key, server_key, server_days,
                      ExtendedKeyUsageOID.SERVER_AUTH)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))

    from .private_files import write_private

    write_private(out_dir / "ca.key", _key_pem(ca_key))
    _write_public(out_dir / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))
    write_private(out_dir / "server.key", _key_pem(server_key))
    _write_public(out_dir / "server.pem", server_cert.public_bytes(serialization.Encoding.PEM))


def issue(ca_dir: Path, name: str, role: str, out_dir: Path, *, days: int = CLIENT_DAYS,
          force: bool = False) -> tuple[Path, Path]:
    """Issue a client certificate for ``name`` in ``role``; returns (NAME.pem, NAME.key).

    The subject is CN=name, OU=role, with the clientAuth extended key usage, signed by the CA
    in ``ca_dir`` (from ``init_ca``). The name must be the agency's name in the project (or
    the coordinator's, ``coordinator`` by default), because the server compares it with the
    token's.

    Raises:
        InvalidRequestError: the name or role is not allowed.
        NotFoundError: ``ca_dir`` holds no ca.pem/ca.key.
        AlreadyExistsError: NAME.pem or NAME.key exists in ``out_dir`` and ``force`` is unset.
    """
    if not _NAME.fullmatch(name):
        raise InvalidRequestError(f"Name {name!r} is not allowed: use 1-63 lowercase letters, "
                                  "digits, '.', '_' or '-', starting with a letter or digit.")
    if role not in ROLES:
        raise InvalidRequestError(f"Role {role!r} is not one of {', '.join(ROLES)}.")
    if days <= 0:
        raise InvalidRequestError("Certificate lifetimes must be at least one day.")
    ca_dir, out_dir = Path(ca_dir), Path(out_dir)
    try:
        ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
        ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(),
                                                    password=None)
    except FileNotFoundError:
        raise NotFoundError(f"{ca_dir} holds no CA (ca.pem and ca.key): create one with "
                            "'linkage pki init --out DIR'.") from None
    except ValueError:
        raise InvalidRequestError(f"{ca_dir}/ca.pem or ca.key is not a PEM certificate or "
                                  "an unencrypted PEM key.") from None
    cert_path, key_path = out_dir / f"{name}.pem", out_dir / f"{name}.key"
    existing = [str(p) for p in (cert_path, key_path) if p.exists()]
    if existing and not force:
        raise AlreadyExistsError(f"{', '.join(existing)} exists already; refusing to overwrite "
                                 "(use --force to issue a replacement).")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role)])
    cert = (_leaf_builder(subject, ca_cert, ca_key, key, days, ExtendedKeyUsageOID.CLIENT_AUTH)
            .sign(ca_key, hashes.SHA256()))
    out_dir.mkdir(parents=True, exist_ok=True)
    from .private_files import write_private

    write_private(key_path, _key_pem(key))
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _builder(subject: x509.Name, issuer: x509.Name, public_key, days: int):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clock skew
            .not_valid_after(now + datetime.timedelta(days=days)))


def _leaf_builder(subject, ca_cert, ca_key, key, days: int, usage):
    """An end-entity certificate for ``key``: not a CA, one extended key usage."""
    return (_builder(subject, ca_cert.subject, key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False))


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_public(path: Path, data: bytes) -> None:
    path.write_bytes(data)
