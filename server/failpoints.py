"""Named pause points for crash tests.

A server started with ``--pause-at NAME`` stops for good when it reaches the
point NAME, after writing ``paused-NAME`` into its data directory, so a test
can kill it with SIGKILL at exactly that moment and check what survives.
Unarmed points cost one set lookup.
"""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["POINTS", "configure", "reached"]

POINTS = (
    "upload-chunk-stored",   # a chunk of an upload is durably held, the batch not committed
    "run-started",           # a run is recorded as running, nothing compared yet
    "run-pairs-stored",      # new candidate pairs are stored, groups not yet written
    "run-writing-results",   # inside the transaction that writes a run's groups
)

_armed: frozenset[str] = frozenset()
_marker_dir: Path | None = None


def configure(names: frozenset[str], marker_dir: Path) -> None:
    """Arm the named points (called once at start)."""
    global _armed, _marker_dir
    unknown = set(names) - set(POINTS)
    if unknown:
        raise ValueError(f"unknown pause points {sorted(unknown)}; known: {', '.join(POINTS)}")
    _armed, _marker_dir = frozenset(names), marker_dir


def reached(name: str) -> None:
    """Pause forever here if this point is armed."""
    if name not in _armed:
        return
    if _marker_dir is not None:
        (_marker_dir / f"paused-{name}").write_text(name)
    while True:
        time.sleep(3600)
