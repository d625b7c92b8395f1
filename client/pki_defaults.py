"""The PKI's defaults, apart from ``client.pki`` so that the CLI can show them in its options
without importing cryptography (every ``linkage`` command would pay for it)."""

from __future__ import annotations

__all__ = ["CA_DAYS", "CLIENT_DAYS", "DEFAULT_SERVER_NAMES", "ROLES"]

#: Duplicated from ``linkage.identity.ROLES`` (which imports cryptography); a test pins them equal.
ROLES = ("agency", "coordinator", "operator", "server")
DEFAULT_SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 3650
CLIENT_DAYS = 397  # the longest lifetime browsers accept; renew yearly
