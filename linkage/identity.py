"""Who a client certificate names: the subject's CN is the caller's name, its OU the role.

Shared by the server (which reads the certificate of each TLS peer) and the
PKI tooling (which writes such certificates); parsing only, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from linkage.errors import AuthenticationError

__all__ = ["ROLES", "CertificateIdentity", "certificate_identity"]

#: "server" is a matching server of two-server mode calling its peer (no token).
ROLES = ("agency", "coordinator", "operator", "server")


@dataclass(frozen=True)
class CertificateIdentity:
    """Who a client certificate names: CN is ``name``, OU is ``role``."""

    name: str
    role: str


def certificate_identity(pem_bytes: bytes) -> CertificateIdentity:
    """The (name, role) a client certificate names in its subject's CN and OU.

    Raises:
        AuthenticationError: not a PEM certificate, or the subject lacks exactly one CN and
            one OU, or the OU is not a known role.
    """
    try:
        cert = x509.load_pem_x509_certificate(pem_bytes)
    except ValueError:
        raise AuthenticationError("The client certificate is not a PEM X.509 certificate.") \
            from None
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(common) != 1 or len(units) != 1:
        raise AuthenticationError(
            "The client certificate's subject needs exactly one CN (the agency or coordinator "
            "name) and one OU (its role: agency, coordinator or operator); issue it with "
            "'linkage pki issue'.")
    role = str(units[0].value)
    if role not in ROLES:
        raise AuthenticationError(f"The client certificate's OU {role!r} is not a role "
                                  f"({', '.join(ROLES)}).")
    return CertificateIdentity(name=str(common[0].value), role=role)
