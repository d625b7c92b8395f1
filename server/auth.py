"""Who is calling, what each role may call, and the record of every call.

Callers present ``authorization: Bearer <token>`` metadata. Tokens are
stored only as SHA-256 hashes; the presented token is hashed, looked up, and
compared in constant time. With mutual TLS the client certificate's name and
role must also match the token's, so a stolen token alone is not enough.

``POLICY`` names the roles allowed on each RPC; a linkage RPC missing from it
is refused, so a new RPC is closed until someone decides who may call it.
``GuardInterceptor`` enforces, for every call and in this order: a deadline,
authentication, the policy, the caller's rate limit; it makes the caller's
identity available to the handler, translates domain errors into status codes
and appends the call to the hash-chained audit log (caller, role, project,
method, outcome, counts; never record ids or CLKs).
"""

from __future__ import annotations

import contextvars
import hashlib
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
from .store import Store
from .tls import peer_identity

__all__ = [
    "GuardInterceptor",
    "Identity",
    "POLICY",
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
_GUARDED_PREFIX = "/linkage."

AGENCY, COORDINATOR, OPERATOR = "agency", "coordinator", "operator"
ROLES = (AGENCY, COORDINATOR, OPERATOR)

#: The roles allowed on each RPC. Project scope is enforced in ``operations``: an
#: agency only ever reaches the project its token was issued for.
POLICY: dict[str, frozenset[str]] = {
    _AGENCY + "SubmitBatch": frozenset({AGENCY}),
    _AGENCY + "GetResults": frozenset({AGENCY}),
    _AGENCY + "GetUploadStatus": frozenset({AGENCY}),
    _AGENCY + "OpenFollowUp": frozenset({AGENCY}),
    _AGENCY + "AnswerFollowUp": frozenset({AGENCY}),
    _COORDINATOR + "CreateProject": frozenset({COORDINATOR}),
    _COORDINATOR + "ListProjects": frozenset({COORDINATOR}),
    _COORDINATOR + "RunLinkage": frozenset({COORDINATOR}),
    _COORDINATOR + "GetReport": frozenset({COORDINATOR}),
    _COORDINATOR + "ReviewGroup": frozenset({COORDINATOR}),
    _COORDINATOR + "OpenFollowUp": frozenset({COORDINATOR}),
    _COORDINATOR + "PurgeProject": frozenset({COORDINATOR}),
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

_identity: contextvars.ContextVar["Identity"] = contextvars.ContextVar("linkage_identity")
_audit: contextvars.ContextVar["_AuditDraft"] = contextvars.ContextVar("linkage_audit")
_LONGEST_DEADLINE = 366 * 24 * 3600.0  # beyond this a "deadline" is really none


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
    if project:
        draft.project = project
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


class RateLimiter:
    """A token bucket per caller: ``rate`` calls a second on average, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int):
        self._rate, self._burst = float(rate), float(burst)
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._lock = threading.Lock()

    def admit(self, caller: tuple[str, str]) -> None:
        """Take one call from the caller's bucket.

        Raises:
            ServerBusyError: the bucket is empty.
        """
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(caller, (self._burst, now))
            tokens = min(self._burst, tokens + (now - then) * self._rate)
            if tokens < 1.0:
                self._buckets[caller] = (tokens, now)
                wait = (1.0 - tokens) / self._rate
                raise ServerBusyError(
                    f"Too many calls from {caller[1] or 'this address'}: the limit is "
                    f"{self._rate:g} a second (bursts of {self._burst:g}); retry in {wait:.1f} s.")
            self._buckets[caller] = (tokens - 1.0, now)


class GuardInterceptor(grpc.ServerInterceptor):
    """Deadline, authentication, ``POLICY``, rate limit, error mapping and audit, for every
    linkage RPC."""

    def __init__(self, store: Store, limiter: RateLimiter | None = None):
        self._store = store
        self._limiter = limiter or RateLimiter(50.0, 200)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(_GUARDED_PREFIX):
            return handler  # health and reflection: open to every connected client
        call = _Call(self._store, self._limiter, method, handler_call_details.invocation_metadata)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                call.unary(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                call.unary(handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                call.stream(handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            call.stream(handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)


class _Call:
    """One guarded RPC: admits the caller, runs the handler, records the outcome."""

    def __init__(self, store: Store, limiter: RateLimiter, method: str, metadata):
        self._store, self._limiter = store, limiter
        self._method, self._metadata = method, metadata
        self._name = method.rsplit("/", 1)[-1]
        self._identity: Identity | None = None
        self._draft = _AuditDraft()
        self._outcome = "OK"

    def _admit(self, request, context) -> Identity:
        remaining = context.time_remaining()
        if remaining is None or remaining > _LONGEST_DEADLINE:
            raise InvalidRequestError(
                f"{self._name} was called without a deadline; every call must set one "
                "(gRPC 'timeout'), so that no call can hold the server forever.")
        allowed = POLICY.get(self._method)
        try:
            identity = resolve_identity(self._store, _bearer_token(self._metadata))
        except AuthenticationError:
            self._limiter.admit(("", _peer_host(context)))
            raise
        self._identity = identity
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
        self._limiter.admit((identity.role, identity.name))
        project = getattr(request, "project", "") if request is not None else ""
        self._draft.project = project if isinstance(project, str) else ""
        return identity

    def unary(self, behaviour):
        def guarded(request, context):
            identity_token = audit_token = None
            try:
                probe = None if _is_iterator(request) else request
                identity_token = _identity.set(self._admit(probe, context))
                audit_token = _audit.set(self._draft)
                return behaviour(request, context)
            except Exception as error:  # noqa: BLE001 - translated in one place
                self._fail(context, error)
            finally:
                if audit_token is not None:
                    _audit.reset(audit_token)
                if identity_token is not None:
                    _identity.reset(identity_token)
                self._record()
        return guarded

    def stream(self, behaviour):
        def guarded(request, context):
            sent = 0
            try:
                probe = None if _is_iterator(request) else request
                _identity.set(self._admit(probe, context))
                _audit.set(self._draft)
                for message in behaviour(request, context):
                    sent += 1
                    yield message
            except GeneratorExit:
                self._outcome = "CANCELLED"
                raise
            except Exception as error:  # noqa: BLE001 - translated in one place
                self._fail(context, error)
            finally:
                self._draft.counts.setdefault("messages_sent", sent)
                self._record()
        return guarded

    def _fail(self, context, error: BaseException):
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
        identity = self._identity
        entry = AuditEntry(
            sequence=0,
            time=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            caller=identity.name if identity else "",
            role=identity.role if identity else "",
            project=self._draft.project or (identity.project if identity and identity.project
                                            else ""),
            method=self._name,
            outcome=self._outcome,
            counts_json=json.dumps(self._draft.counts, sort_keys=True),
            previous_hash="",
        )
        try:
            self._store.append_audit(entry)
        except Exception:  # noqa: BLE001 - the call's own outcome must still reach the caller
            log.exception("Could not append %s to the audit log", self._name)


def _is_iterator(request) -> bool:
    return hasattr(request, "__next__")


def _peer_host(context) -> str:
    peer = context.peer() or ""
    return peer.rsplit(":", 1)[0]


def _already_aborted(context) -> bool:
    return context.code() is not None if hasattr(context, "code") else False
