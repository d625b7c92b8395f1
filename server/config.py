"""Server configuration, read once at start and passed in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ServerConfig"]

MiB = 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    """Where the server keeps its data and how it listens.

    ``max_message_bytes`` bounds one gRPC message (uploads arrive as many
    chunks well below it); ``workers`` is the RPC thread pool size;
    ``max_concurrent_uploads`` uploads are received at once, more are refused
    with RESOURCE_EXHAUSTED (clients retry); ``max_concurrent_rpcs`` bounds all
    calls in flight the same way. ``pause_at`` arms crash-test pause points
    (see ``failpoints``); empty in normal operation.
    """

    data_dir: Path
    listen: str = "127.0.0.1:50051"
    workers: int = 16
    max_message_bytes: int = 4 * MiB
    max_concurrent_uploads: int = 4
    max_concurrent_rpcs: int = 64
    pause_at: frozenset[str] = frozenset()
