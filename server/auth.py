"""Who is calling, what each role may call, and the record of every call.

Callers present ``authorization: Bearer <token>`` metadata. Tokens are
stored only as SHA-256 hashes; the presented token is hashed, looked up, and
compared in constant time. With mutual TLS the client certificate's name and
role must also match the token's, so a stolen token alone is not enough.

``POLICY`` names the roles allowed on each RPC; a linkage RPC missing from it
is refused, so a new RPC is closed until someone decides who may call it.
``GuardInterceptor`` enforces, for every call and in this order, from the
metadata alone and before any request message is read: authentication, the
caller's rate limit, a deadline, the certificate, the policy, the caller's
calls in flight. It then reads the request under a watchdog that ends calls
whose message does not come (docs/security.md), makes the caller's identity
available to the handler, translates domain errors into status codes and
appends the call to the hash-chained audit log (caller, role, project, method,
outcome, counts; never record ids or CLKs).
"""

from __future__ import annotations

import contextvars
import hashlib
import heapq
import hmac
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import grpc

from linkage.audit import AuditEntry
from linkage.errors import (
    AuthenticationError,
    InvalidRequestError,
    LinkageError,
    PermissionDeniedError,
    ServerBusyError,
)

from .errors import status_for
from .storage import Store
from .tls import peer_identity

__all__ = [
    "CallLimits",
    "GuardInterceptor",
    "Identity",
    "POLICY",
    "RateLimited",
    "RateLimiter",
    "audit_note",
    "current_identity",
    "hash_token",
    "new_token",
]

log = logging.getLogger("linkage.server")

_AGENCY = "/linkage.v1.AgencyService/"
_COORDINATOR = "/linkage.v1.CoordinatorService/"
_OPERATOR = "/linkage.v1.OperatorService/"
_SHARES = "/linkage.v1.ShareService/"
_PEER = "/linkage.v1.PeerService/"
_GUARDED_PREFIX = "/linkage."

AGENCY, COORDINATOR, OPERATOR = "agency", "coordinator", "operator"
#: The other matching server of two-server mode: known by its certificate only, no token.
SERVER = "server"
ROLES = (AGENCY, COORDINATOR, OPERATOR)

#: The roles allowed on each RPC. Project scope is enforced in ``operations``: an
#: agency only ever reaches the project its token was issued for.
POLICY: dict[str, frozenset[str]] = {
    _AGENCY + "SubmitBatch": frozenset({AGENCY}),
    _AGENCY + "GetResults": frozenset({AGENCY}),
    _AGENCY + "GetUploadStatus": frozenset({AGENCY}),
    _AGENCY + "OpenFollowUp": frozenset({AGENCY}),
    _AGENCY + "AnswerFollowUp": frozenset({AGENCY}),
    _AGENCY + "WithdrawBatch": frozenset({AGENCY}),
    _COORDINATOR + "CreateProject": frozenset({COORDINATOR}),
    _COORDINATOR + "ListProjects": frozenset({COORDINATOR}),
    _COORDINATOR + "RunLinkage": frozenset({COORDINATOR}),
    _COORDINATOR + "GetReport": frozenset({COORDINATOR}),
    _COORDINATOR + "ReviewGroup": frozenset({COORDINATOR}),
    _COORDINATOR + "OpenFollowUp": frozenset({COORDINATOR}),
    _COORDINATOR + "PurgeProject": frozenset({COORDINATOR}),
    _COORDINATOR + "WithdrawBatch": frozenset({COORDINATOR}),
    _COORDINATOR + "ReadAuditLog": frozenset({COORDINATOR}),
    _OPERATOR + "GetMetrics": frozenset({OPERATOR}),
    _OPERATOR + "ReadAuditLog": frozenset({OPERATOR}),
}

# Project maintenance and follow-up lists (issue 15).
POLICY.update({
    _AGENCY + "ListFollowUps": frozenset({AGENCY}),
    _COORDINATOR + "SetProjectStages": frozenset({COORDINATOR}),
    _COORDINATOR + "DeleteProject": frozenset({COORDINATOR}),
    _COORDINATOR + "ReissueAgencyToken": frozenset({COORDINATOR}),
    _COORDINATOR + "ListFollowUps": frozenset({COORDINATOR}),
})

# Two-server mode (server/two_server.py).
POLICY.update({
    _SHARES + "CreateShareProject": frozenset({COORDINATOR}),
    _SHARES + "SubmitShares": frozenset({AGENCY}),
    _SHARES + "PlanShareRun": frozenset({COORDINATOR}),
    _SHARES + "DeliverMaterial": frozenset({COORDINATOR}),
    _SHARES + "RunShares": frozenset({COORDINATOR}),
    _PEER + "AgreePlan": frozenset({SERVER}),
    _PEER + "Compare": frozenset({SERVER}),
})

_identity: contextvars.ContextVar["Identity"] = contextvars.ContextVar("linkage_identity")
_audit: contextvars.ContextVar["_AuditDraft"] = contextvars.ContextVar("linkage_audit")


@dataclass(frozen=True)
class Identity:
    """An authenticated caller. Agencies are bound to one project."""

    role: str
    name: str
    project: str | None = None
    agency_id: int | None = None


@dataclass
class _AuditDraft:
    """What the audit entry of the call in progress will say."""

    project: str = ""
    counts: dict = field(default_factory=dict)


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 hex of a token: what the store keeps."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def current_identity() -> Identity:
    """The caller of the RPC being handled (set by ``GuardInterceptor``)."""
    return _identity.get()


def audit_note(*, project: str | None = None, **counts: int) -> None:
    """Add the project and counts (never ids) to the audit entry of the call in progress."""
    draft = _audit.get(None)
    if draft is None:
        return
    if project and not draft.project:  # an agency's entry keeps its token's project
        draft.project = _loggable(project)
    draft.counts.update(counts)


def resolve_identity(store: Store, token: str) -> Identity:
    """Find who a token belongs to.

    Raises:
        AuthenticationError: unknown token.
    """
    token_hash = hash_token(token)
    staff = store.staff_by_token(token_hash)
    if staff is not None and hmac.compare_digest(staff[2], token_hash):
        return Identity(staff[1], staff[0])
    found = store.agency_by_token(token_hash)
    if found is not None and hmac.compare_digest(found[2], token_hash):
        project, agency, _ = found
        return Identity(AGENCY, agency.name, project.name, agency.id)
    raise AuthenticationError("The token is not known to this server: check --token-file "
                              "(coordinator/operator: the file the server wrote on first start; "
                              "agency: the file 'linkage project create' wrote).")


def _bearer_token(context_metadata) -> str:
    for key, value in context_metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer "):].strip()
    raise AuthenticationError("No credential: send the metadata 'authorization: Bearer <token>' "
                              "(the linkage CLI: --token-file FILE or LINKAGE_TOKEN_FILE).")


class RateLimited(ServerBusyError):
    """A call refused by the rate limit. ``quiet`` when a refusal of the same caller was
    recorded within ``RateLimiter.QUIET_SECONDS``: a flood must not bury the audit log, so
    only one refusal per caller and interval is recorded, carrying how many were not."""

    def __init__(self, message: str, *, quiet: bool, not_recorded: int):
        super().__init__(message)
        self.quiet, self.not_recorded = quiet, not_recorded


class RateLimiter:
    """A token bucket per caller: ``rate`` calls a second on average, bursts of ``burst``."""

    QUIET_SECONDS = 10.0
    _MOST_CALLERS = 100_000  # forget full buckets beyond this many callers

    def __init__(self, rate: float, burst: int):
        self._rate, self._burst = float(rate), float(burst)
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._refusals: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def admit(self, caller: tuple[str, str]) -> None:
        """Take one call from the caller's bucket.

        Raises:
            RateLimited: the bucket is empty.
        """
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) > self._MOST_CALLERS:
                self._forget_idle(now)
            tokens, then = self._buckets.get(caller, (self._burst, now))
            tokens = min(self._burst, tokens + (now - then) * self._rate)
            if tokens < 1.0:
                self._buckets[caller] = (tokens, now)
                wait = (1.0 - tokens) / self._rate
                recorded_at, not_recorded = self._refusals.get(caller, (-self.QUIET_SECONDS, 0))
                quiet = now - recorded_at < self.QUIET_SECONDS
                self._refusals[caller] = ((recorded_at, not_recorded + 1) if quiet
                                          else (now, 0))
                raise RateLimited(
                    f"Too many calls from {caller[1] or 'this address'}: the limit is "
                    f"{self._rate:g} a second (bursts of {self._burst:g}); retry in {wait:.1f} s.",
                    quiet=quiet, not_recorded=0 if quiet else not_recorded)
            self._buckets[caller] = (tokens - 1.0, now)

    def _forget_idle(self, now: float) -> None:
        full = [caller for caller, (tokens, then) in self._buckets.items()
                if tokens + (now - then) * self._rate >= self._burst]
        for caller in full:
            del self._buckets[caller]
            self._refusals.pop(caller, None)


@dataclass(frozen=True)
class CallLimits:
    """How long and how many calls a caller may hold (see docs/security.md).

    ``first_message_seconds``: a call that has not sent its (first) request message by then is
    ended, so a caller cannot hold a worker thread by sending headers only.
    ``message_gap_seconds``: the longest wait between two messages of an upload stream.
    ``calls_per_caller``: calls one authenticated caller may have in flight at once.
    ``open_calls``: health and reflection calls (open to every connected client) in flight.
    ``longest_deadline_seconds``: a longer (or no) deadline is refused.
    ``unauthenticated_per_second`` / ``_burst``: calls without a valid token, per address.
    """

    first_message_seconds: float = 10.0
    message_gap_seconds: float = 60.0
    calls_per_caller: int = 4
    open_calls: int = 4
    longest_deadline_seconds: float = 24 * 3600.0
    unauthenticated_per_second: float = 5.0
    unauthenticated_burst: int = 100


class Watchdog:
    """One thread that ends calls whose wait for a request message ran out.

    gRPC's sync server cannot time out a read from the request stream, so a caller that sends
    headers and then nothing would hold a worker thread for as long as its deadline allows.
    """

    def __init__(self) -> None:
        self._due: list[tuple[float, int, list]] = []
        self._sequence = 0
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, action) -> list:
        """Run ``action()`` in ``seconds`` unless the returned ticket is disarmed first."""
        ticket = [action]
        with self._condition:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="linkage-watchdog",
                                                daemon=True)
                self._thread.start()
            self._sequence += 1
            heapq.heappush(self._due, (time.monotonic() + seconds, self._sequence, ticket))
            self._condition.notify()
        return ticket

    @staticmethod
    def disarm(ticket: list) -> None:
        """Cancel an armed action (a no-op once it has run)."""
        ticket[0] = None

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._due or self._due[0][0] > time.monotonic():
                    timeout = self._due[0][0] - time.monotonic() if self._due else None
                    self._condition.wait(timeout)
                _, _, ticket = heapq.heappop(self._due)
            action, ticket[0] = ticket[0], None
            if action is not None:
                try:
                    action()
                except Exception:  # noqa: BLE001 - one failed reaping must not stop the others
                    log.exception("The watchdog could not end a stalled call")


class _Slots:
    """Calls in flight per key, refused above a bound."""

    def __init__(self, bound: int):
        self._bound = bound
        self._held: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def take(self, key: tuple[str, str], what: str) -> None:
        """Raises ServerBusyError when ``key`` holds the bound already."""
        with self._lock:
            held = self._held.get(key, 0)
            if held >= self._bound:
                raise ServerBusyError(
                    f"{what} has {held} calls in flight already, the most allowed at once; "
                    "wait for them to finish and retry.")
            self._held[key] = held + 1

    def give(self, key: tuple[str, str]) -> None:
        with self._lock:
            held = self._held.get(key, 1) - 1
            if held > 0:
                self._held[key] = held
            else:
                self._held.pop(key, None)


#: Streams whose message count the audit entry leaves out: GetResults sends one message per
#: hit, and operators, who read the audit log, must not learn an agency's hit count.
_UNCOUNTED_STREAMS = frozenset({"GetResults", "Compare"})

#: Open (unguarded) methods that hold a thread for as long as the caller likes.
_REFUSED_OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Watch"})


class GuardInterceptor(grpc.ServerInterceptor):
    """Deadline, authentication, ``POLICY``, rate limit, calls in flight, error mapping and
    audit, for every linkage RPC; a bound on open (health, reflection) calls.

    Every handler is handed to gRPC as a *request-streaming* handler (the wire format is the
    same for one message or many): gRPC then runs it at once instead of first blocking a worker
    thread on reading the request. The guard checks the credential from the metadata, then
    reads the request message under the watchdog, so a caller without a token holds nothing
    and one with a token holds at most ``calls_per_caller`` threads for
    ``first_message_seconds``.
    """

    def __init__(self, store: Store, limiter: RateLimiter | None = None,
                 limits: CallLimits | None = None, *, peer_name: str | None = None):
        self._store = store
        self._peer_name = peer_name  # the CN PeerService callers' certificates must carry
        self._limiter = limiter or RateLimiter(50.0, 200)
        self._limits = limits or CallLimits()
        self._watchdog = Watchdog()
        self._caller_slots = _Slots(self._limits.calls_per_caller)
        self._anonymous = RateLimiter(self._limits.unauthenticated_per_second,
                                      self._limits.unauthenticated_burst)
        self._open_slots = _Slots(self._limits.open_calls)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return None
        if method.startswith(_GUARDED_PREFIX):
            call = _Call(self, method, handler_call_details.invocation_metadata)
        else:
            call = _OpenCall(self, method)
        behaviour = (handler.unary_unary or handler.unary_stream or handler.stream_unary
                     or handler.stream_stream)
        wrap = call.stream if handler.response_streaming else call.unary
        make = (grpc.stream_stream_rpc_method_handler if handler.response_streaming
                else grpc.stream_unary_rpc_method_handler)
        return make(wrap(behaviour, handler.request_streaming),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)


class _PacedRequests:
    """The request stream of one call, each read bounded by the watchdog."""

    def __init__(self, requests, context, guard: GuardInterceptor, call: "_Call | _OpenCall"):
        self._requests, self._context = requests, context
        self._guard, self._call = guard, call
        self._first = True

    def __iter__(self):
        return self

    def __next__(self):
        limits = self._guard._limits
        seconds = limits.first_message_seconds if self._first else limits.message_gap_seconds
        self._first = False
        context = self._context

        def reap():
            # gRPC's sync server sends a status only from the handler's thread, which is the
            # one blocked here: cancel the call, which frees it (the caller sees CANCELLED).
            self._call.stalled(seconds)
            context.cancel()

        ticket = self._guard._watchdog.arm(seconds, reap)
        try:
            return next(self._requests)
        except grpc.RpcError:
            # gRPC could not read the message (over the size limit, the stream broke): the
            # caller got the status from gRPC; the audit entry says what happened
            self._call.unreadable()
            raise
        finally:
            Watchdog.disarm(ticket)

    def single(self):
        """The one request message of a unary-request call."""
        try:
            return next(self)
        except StopIteration:
            raise InvalidRequestError("The call ended before its request message arrived; "
                                      "send exactly one request message.") from None


class _OpenCall:
    """A health or reflection call: open to every connected client, but bounded in number
    and in how long it may wait for messages."""

    def __init__(self, guard: GuardInterceptor, method: str):
        self._guard, self._method = guard, method

    def stalled(self, seconds: float) -> None:
        log.info("%s ended: no message for %gs", self._method, seconds)

    def unreadable(self) -> None:
        log.info("%s ended: its request could not be read", self._method)

    def _enter(self, context) -> tuple[str, str]:
        if self._method in _REFUSED_OPEN_METHODS:
            context.abort(grpc.StatusCode.UNIMPLEMENTED,
                          f"{self._method} is not served (it would hold a thread for as long as "
                          "the caller likes); poll Check instead.")
        key = ("open", "")
        try:
            self._guard._open_slots.take(key, "Health and reflection")
        except ServerBusyError as error:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
        return key

    def unary(self, behaviour, request_streaming: bool):
        def guarded(requests, context):
            key = self._enter(context)
            try:
                paced = _PacedRequests(requests, context, self._guard, self)
                return behaviour(paced if request_streaming else paced.single(), context)
            except InvalidRequestError as error:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            finally:
                self._guard._open_slots.give(key)
        return guarded

    def stream(self, behaviour, request_streaming: bool):
        def guarded(requests, context):
            key = self._enter(context)
            try:
                paced = _PacedRequests(requests, context, self._guard, self)
                yield from behaviour(paced if request_streaming else paced.single(), context)
            except InvalidRequestError as error:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            finally:
                self._guard._open_slots.give(key)
        return guarded


class _Call:
    """One guarded RPC: admits the caller, reads its request, runs the handler, records the
    outcome."""

    def __init__(self, guard: GuardInterceptor, method: str, metadata):
        self._guard = guard
        self._store, self._limiter = guard._store, guard._limiter
        self._method, self._metadata = method, metadata
        self._name = method.rsplit("/", 1)[-1]
        self._identity: Identity | None = None
        self._slot: tuple[str, str] | None = None
        self._draft = _AuditDraft()
        self._outcome = "OK"
        self._quiet = False

    def unreadable(self) -> None:
        """gRPC could not read the request (too large, or the stream broke)."""
        if "stalled_seconds" not in self._draft.counts:  # not when the watchdog ended it
            self._draft.counts["request_unreadable"] = 1

    def stalled(self, seconds: float) -> None:
        """The watchdog ended this call: say so in its audit entry."""
        self._outcome = "CANCELLED"
        self._draft.counts["stalled_seconds"] = int(seconds)

    def _admit(self, context) -> Identity:
        """Everything decided from the metadata alone, before any message is read."""
        remaining = context.time_remaining()
        longest = self._guard._limits.longest_deadline_seconds
        if self._method.startswith(_PEER):
            return self._admit_peer(context, remaining, longest)
        try:
            identity = resolve_identity(self._store, _bearer_token(self._metadata))
        except AuthenticationError:
            self._guard._anonymous.admit(("", _peer_host(context)))
            raise
        self._identity = identity
        if identity.project:
            self._draft.project = identity.project
        # counted before the role and certificate checks, so refused calls count too
        key = (identity.role, f"{identity.name}@{identity.project}" if identity.project
               else identity.name)
        self._limiter.admit(key)
        if remaining is None or remaining > longest:
            raise InvalidRequestError(
                f"{self._name} was called without a deadline or with one over {longest:g} s; "
                "every call must set one (gRPC 'timeout'), so that no call can hold the "
                "server forever.")
        allowed = POLICY.get(self._method)
        certificate = peer_identity(context)
        if certificate is not None and (certificate.role, certificate.name) != \
                (identity.role, identity.name):
            raise PermissionDeniedError(
                f"The client certificate is for {certificate.role} {certificate.name!r} but the "
                f"token for {identity.role} {identity.name!r}: use the token and certificate "
                "issued to the same party.")
        if allowed is None:
            raise PermissionDeniedError(f"{self._name} has no access policy; nobody may call it.")
        if identity.role not in allowed:
            raise PermissionDeniedError(
                f"{self._name} needs the {' or '.join(sorted(allowed))} role; this token "
                f"belongs to {identity.role} {identity.name!r}.")
        self._guard._caller_slots.take(key, f"{identity.role} {identity.name!r}")
        self._slot = key
        return identity

    def _admit_peer(self, context, remaining, longest) -> Identity:
        """The other matching server: its client certificate (mutual TLS, from the project's
        CA, checked by gRPC) must name the expected peer server; no token is involved."""
        certificate = peer_identity(context)
        expected = self._guard._peer_name
        if certificate is None:
            raise AuthenticationError("PeerService is served over mutual TLS only.")
        self._identity = Identity(certificate.role, certificate.name)
        self._limiter.admit((certificate.role, certificate.name))
        if expected is None:
            raise PermissionDeniedError("This server is not in two-server mode; it has no peer.")
        if (certificate.role, certificate.name) != (SERVER, expected):
            raise PermissionDeniedError(
                f"PeerService takes only the peer server's certificate ({SERVER} {expected!r}); "
                f"this one is for {certificate.role} {certificate.name!r}.")
        if remaining is None or remaining > longest:
            raise InvalidRequestError(f"{self._name} needs a deadline of at most {longest:g} s.")
        key = (SERVER, certificate.name)
        self._guard._caller_slots.take(key, f"server {certificate.name!r}")
        self._slot = key
        return self._identity

    def _argument(self, requests, context, request_streaming: bool):
        paced = _PacedRequests(requests, context, self._guard, self)
        if request_streaming:
            return paced
        request = paced.single()
        if not self._draft.project:
            self._draft.project = _loggable(getattr(request, "project", ""))
        return request

    def _release(self) -> None:
        if self._slot is not None:
            self._guard._caller_slots.give(self._slot)
            self._slot = None

    def unary(self, behaviour, request_streaming: bool):
        def guarded(requests, context):
            identity_token = audit_token = None
            try:
                identity_token = _identity.set(self._admit(context))
                audit_token = _audit.set(self._draft)
                return behaviour(self._argument(requests, context, request_streaming), context)
            except Exception as error:  # noqa: BLE001 - translated in one place
                self._fail(context, error)
            finally:
                self._release()
                if audit_token is not None:
                    _audit.reset(audit_token)
                if identity_token is not None:
                    _identity.reset(identity_token)
                self._record()
        return guarded

    def stream(self, behaviour, request_streaming: bool):
        def guarded(requests, context):
            sent = 0
            try:
                _identity.set(self._admit(context))
                _audit.set(self._draft)
                argument = self._argument(requests, context, request_streaming)
                for message in behaviour(argument, context):
                    sent += 1
                    yield message
            except GeneratorExit:
                self._outcome = "CANCELLED"
                raise
            except Exception as error:  # noqa: BLE001 - translated in one place
                self._fail(context, error)
            finally:
                self._release()
                if self._name not in _UNCOUNTED_STREAMS:
                    self._draft.counts.setdefault("messages_sent", sent)
                self._record()
        return guarded

    def _fail(self, context, error: BaseException):
        if isinstance(error, RateLimited):
            self._quiet = error.quiet
            if error.not_recorded:
                self._draft.counts["refusals_not_recorded"] = error.not_recorded
        if "stalled_seconds" in self._draft.counts:
            raise error  # the watchdog cancelled the call: nobody is left to answer
        if isinstance(error, grpc.RpcError) or _already_aborted(context):
            code = context.code() if hasattr(context, "code") else None
            self._outcome = getattr(code, "name", None) or "ABORTED"
            raise error
        if isinstance(error, LinkageError):
            code = status_for(error)
            self._outcome = code.name
            log.info("%s refused: %s", self._name, code.name)
            context.abort(code, str(error))
        self._outcome = "INTERNAL"
        log.exception("%s failed unexpectedly", self._name)
        context.abort(grpc.StatusCode.INTERNAL,
                      "The server hit an unexpected error; the operator can find it in the "
                      "server log.")

    def _record(self) -> None:
        if self._quiet:
            return  # counted in the next recorded refusal of this caller
        identity = self._identity
        entry = AuditEntry(
            sequence=0,
            time=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            caller=identity.name if identity else "",
            role=identity.role if identity else "",
            project=_loggable(self._draft.project or (identity.project if identity and
                                                      identity.project else "")),
            method=self._name,
            outcome=self._outcome,
            counts_json=json.dumps(self._draft.counts, sort_keys=True),
            previous_hash="",
        )
        try:
            self._store.append_audit(entry)
        except Exception:  # noqa: BLE001 - the call's own outcome must still reach the caller
            log.exception("Could not append %s to the audit log", self._name)


#: The longest project name an audit entry keeps; longer (or non-text) names are cut.
AUDIT_FIELD_CHARS = 200


def _loggable(value) -> str:
    """A request field as an audit entry may hold it: text, printable, bounded."""
    if not isinstance(value, str):
        return ""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in value[:AUDIT_FIELD_CHARS])
    return cleaned + ("…" if len(value) > AUDIT_FIELD_CHARS else "")


def _peer_host(context) -> str:
    peer = context.peer() or ""
    return peer.rsplit(":", 1)[0]


def _already_aborted(context) -> bool:
    return context.code() is not None if hasattr(context, "code") else False
