"""Who may use the console: the holder of a one-time link, then of the session it opened.

The console acts with the caller's linkage token, so anyone who can send it a
request can act as the coordinator or the agency. Notebook servers solve the
same problem with a token in the printed URL; here that token is good once:
it is exchanged for a session cookie (HttpOnly, SameSite=Strict) and is dead
afterwards, so a URL left in a shell history, a screen share or a browser's
history opens nothing. Sessions live in this process only and end with it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading

__all__ = ["OneTimeToken", "SessionRegistry"]


class OneTimeToken:
    """A random access token that can be redeemed exactly once.

    Only its hash is kept, and it is compared in constant time.
    """

    def __init__(self, value: str | None = None):
        self.value = value or secrets.token_urlsafe(32)
        self._digest = hashlib.sha256(self.value.encode("utf-8")).digest()
        self._used = False
        self._lock = threading.Lock()

    @property
    def used(self) -> bool:
        return self._used

    def redeem(self, offered: str) -> bool:
        """True the first time the right token is offered, False ever after (and for any
        wrong token)."""
        offered_digest = hashlib.sha256(offered.encode("utf-8", "replace")).digest()
        with self._lock:
            if self._used or not hmac.compare_digest(offered_digest, self._digest):
                return False
            self._used = True
            return True


class SessionRegistry:
    """The session ids this process handed out; a cookie naming any other id is refused."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def open(self) -> str:
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._ids.add(session_id)
        return session_id

    def valid(self, session_id: object) -> bool:
        if not isinstance(session_id, str):
            return False
        with self._lock:
            return session_id in self._ids

    def close(self, session_id: object) -> None:
        with self._lock:
            self._ids.discard(session_id)  # type: ignore[arg-type]
