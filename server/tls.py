"""Mutual TLS on the server side: loading its credentials and reading who a peer's
certificate names.

gRPC verifies the client certificate against the client CA during the handshake
(``require_client_auth=True``), so by the time a handler runs the certificate in the auth
context is one the CA issued; ``peer_identity`` only reads its subject.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from linkage.errors import AuthenticationError, InvalidRequestError
from linkage.identity import CertificateIdentity, certificate_identity

__all__ = ["peer_identity", "server_credentials"]


def server_credentials(tls_cert: Path | None, tls_key: Path | None,
                       client_ca: Path | None) -> grpc.ServerCredentials | None:
    """Credentials that require a client certificate from ``client_ca``; None when all three
    paths are None (plaintext, loopback only).

    The files are checked here, before the server binds, because gRPC reports a bad PEM or a
    key that does not fit its certificate only as a failed handshake on each call.

    Raises:
        InvalidRequestError: only some of the three are given, a file cannot be read, is not
            PEM, or the key does not belong to the certificate.
    """
    given = {"--tls-cert": tls_cert, "--tls-key": tls_key, "--client-ca": client_ca}
    if all(path is None for path in given.values()):
        return None
    missing = [flag for flag, path in given.items() if path is None]
    if missing:
        raise InvalidRequestError(
            "Mutual TLS needs --tls-cert, --tls-key and --client-ca together; "
            f"{', '.join(missing)} missing. 'linkage pki init --out DIR' writes server.pem, "
            "server.key and ca.pem.")
    cert_pem, key_pem, ca_pem = (_read(flag, path) for flag, path in given.items())
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        x509.load_pem_x509_certificates(ca_pem)
    except ValueError:
        raise InvalidRequestError(f"{tls_cert} or {client_ca} is not a PEM certificate.") \
            from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise InvalidRequestError(f"{tls_key} is not an unencrypted PEM private key.") from None
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise InvalidRequestError(f"{tls_key} is not the key of the certificate {tls_cert}.")
    return grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=ca_pem,
                                       require_client_auth=True)


def peer_identity(context: grpc.ServicerContext) -> CertificateIdentity | None:
    """The (name, role) the caller's client certificate names; None on a plaintext connection.

    Raises:
        AuthenticationError: the connection is TLS but carries no client certificate, or its
            subject lacks the CN/OU the server needs.
    """
    auth = context.auth_context()
    if auth.get("transport_security_type") != [b"ssl"]:
        return None
    certificates = auth.get("x509_pem_cert")
    if not certificates:
        raise AuthenticationError("No client certificate: pass --ca, --cert and --key "
                                  "(or LINKAGE_CA, LINKAGE_CERT, LINKAGE_KEY).")
    return certificate_identity(certificates[0])


def _read(flag: str, path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise InvalidRequestError(f"Cannot read {flag} {path}: {error.strerror}.") from None


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
