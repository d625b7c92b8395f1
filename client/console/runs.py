"""A linkage run started from the console, followed while the page polls for its progress.

``RunLinkage`` streams progress until the run ends, which can take minutes; a
page request cannot wait that long, so the stream is read on a thread and the
page asks for the latest state. One run at a time per console: the server
refuses a second concurrent run of a project anyway.
"""

from __future__ import annotations

import threading
import time

import grpc

__all__ = ["RunWatch"]


class RunWatch:
    """The state of the latest run started here, and the summaries of those that finished."""

    def __init__(self, client):
        self._client = client
        self._lock = threading.Lock()
        self._state: dict = {"status": "idle"}
        self.finished: list[dict] = []

    def status(self) -> dict:
        with self._lock:
            return dict(self._state)

    def start(self, project: str, threshold: str, blocking: str = "auto") -> bool:
        """Start a run on a thread; False if one started here is still going."""
        with self._lock:
            if self._state.get("status") == "running":
                return False
            self._state = {"status": "running", "project": project, "threshold": threshold,
                           "stage": "starting", "done": 0, "total": 0,
                           "started": time.time()}
        threading.Thread(target=self._follow, args=(project, threshold, blocking),
                         name="linkage-run", daemon=True).start()
        return True

    def _progress(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            self._state.update(stage=stage, done=done, total=total)

    def _follow(self, project: str, threshold: str, blocking: str) -> None:
        try:
            summary = self._client.run(project, threshold, on_progress=self._progress,
                                       blocking=blocking)
        except grpc.RpcError as error:
            with self._lock:
                self._state.update(status="failed", error=f"The server refused "
                                   f"({error.code().name}): {error.details()}")
            return
        except Exception as error:  # noqa: BLE001 - shown on the page, not lost in a thread
            with self._lock:
                self._state.update(status="failed", error=str(error))
            return
        with self._lock:
            self._state.update(status="done", summary=summary,
                               seconds=round(time.time() - self._state["started"], 1))
            self.finished.append({"project": project, **summary})
