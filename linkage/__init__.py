"""The pure core of the linkage service: arrays and dataclasses in, arrays and dataclasses out.

Nothing here talks to the network, a database or a terminal; ``server`` and
``client`` are the edges that do.

The names below are loaded on first use (PEP 562), not when the package is
imported: ``import linkage.errors`` from a command's ``--help`` must not pay for
scipy and numba, which the engine needs only when it runs.
"""

from __future__ import annotations

import importlib

__all__ = [
    "CandidatePairs",
    "EncodedBatch",
    "Grouping",
    "LinkageError",
    "LinkageResult",
    "LinkageSchema",
    "candidates_reference",
    "dice",
    "greedy_groups",
    "link_records",
    "load_schema",
    "read_batch",
    "write_batch",
]

_HOMES = {
    "CandidatePairs": "matching.candidates",
    "EncodedBatch": "batch",
    "Grouping": "matching.grouping",
    "LinkageError": "errors",
    "LinkageResult": "matching.engine",
    "LinkageSchema": "encoding.schema",
    "candidates_reference": "matching.candidates",
    "dice": "matching.candidates",
    "greedy_groups": "matching.grouping",
    "link_records": "matching.engine",
    "load_schema": "encoding.schema",
    "read_batch": "batch",
    "write_batch": "batch",
}


def __getattr__(name: str):
    """Import the module that defines ``name`` the first time it is asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'linkage' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
