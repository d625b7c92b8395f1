"""Files only their owner may read: tokens, secrets, keys and match results.

Kept apart from ``client.files`` (the encode pipeline), so that commands which
only write such a file do not import clkhash and the encoder.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_private"]


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (mode 0600), replacing it atomically."""
    temporary = path.with_name(path.name + ".partial")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
