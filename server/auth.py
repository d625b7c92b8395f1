"""Who is calling, and what each role may call.

Callers present ``authorization: Bearer <token>`` metadata. Tokens are
stored only as SHA-256 hashes; the presented token is hashed, looked up, and
compared in constant time. ``POLICY`` names the role each RPC needs; the
``GuardInterceptor`` enforces it for every call, makes the caller's identity
available to the handler, and translates domain errors into status codes.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

import grpc

from linkage.errors import AuthenticationError, LinkageError, PermissionDeniedError

from .errors import status_for
from .store import Store

__all__ = ["GuardInterceptor", "Identity", "POLICY", "current_identity", "hash_token", "new_token"]

log = logging.getLogger("linkage.server")

_AGENCY = "/linkage.v1.AgencyService/"
_COORDINATOR = "/linkage.v1.CoordinatorService/"

POLICY: dict[str, str] = {
    _AGENCY + "SubmitBatch": "agency",
    _AGENCY + "GetResults": "agency",
    _AGENCY + "GetUploadStatus": "agency",
    _AGENCY + "OpenFollowUp": "agency",
    _AGENCY + "AnswerFollowUp": "agency",
    _COORDINATOR + "CreateProject": "coordinator",
    _COORDINATOR + "ListProjects": "coordinator",
    _COORDINATOR + "RunLinkage": "coordinator",
    _COORDINATOR + "GetReport": "coordinator",
    _COORDINATOR + "ReviewGroup": "coordinator",
    _COORDINATOR + "OpenFollowUp": "coordinator",
}

_identity: contextvars.ContextVar["Identity"] = contextvars.ContextVar("linkage_identity")


@dataclass(frozen=True)
class Identity:
    """An authenticated caller. Agencies are bound to one project."""

    role: str
    name: str
    project: str | None = None
    agency_id: int | None = None


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 hex of a token: what the store keeps."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def current_identity() -> Identity:
    """The caller of the RPC being handled (set by ``GuardInterceptor``)."""
    return _identity.get()


def resolve_identity(store: Store, token: str) -> Identity:
    """Find who a token belongs to.

    Raises:
        AuthenticationError: unknown token.
    """
    token_hash = hash_token(token)
    coordinator = store.coordinator_by_token(token_hash)
    if coordinator is not None and hmac.compare_digest(coordinator[1], token_hash):
        return Identity("coordinator", coordinator[0])
    found = store.agency_by_token(token_hash)
    if found is not None and hmac.compare_digest(found[2], token_hash):
        project, agency, _ = found
        return Identity("agency", agency.name, project.name, agency.id)
    raise AuthenticationError("The token is not known to this server: check --token-file "
                              "(coordinator: the file the server wrote on first start; agency: "
                              "the file 'linkage project create' wrote).")


def _bearer_token(context_metadata) -> str:
    for key, value in context_metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer "):].strip()
    raise AuthenticationError("No credential: pass --token-file FILE or set LINKAGE_TOKEN_FILE.")


class GuardInterceptor(grpc.ServerInterceptor):
    """Authenticates, authorises by ``POLICY`` and maps errors, for every linkage RPC."""

    def __init__(self, store: Store):
        self._store = store

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method not in POLICY:
            return handler
        required = POLICY[method]
        metadata = handler_call_details.invocation_metadata

        def admit() -> Identity:
            identity = resolve_identity(self._store, _bearer_token(metadata))
            if identity.role != required:
                raise PermissionDeniedError(
                    f"{method.rsplit('/', 1)[-1]} needs the {required} role; this token "
                    f"belongs to {identity.role} {identity.name!r}.")
            return identity

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _guard_unary(handler.unary_unary, admit, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _guard_unary(handler.stream_unary, admit, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _guard_stream(handler.unary_stream, admit, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            _guard_stream(handler.stream_stream, admit, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)


def _abort(context, method: str, error: BaseException):
    if isinstance(error, LinkageError):
        code = status_for(error)
        log.info("%s refused: %s", method, code.name)
        context.abort(code, str(error))
    log.exception("%s failed unexpectedly", method)
    context.abort(grpc.StatusCode.INTERNAL,
                  "The server hit an unexpected error; the operator can find it in the server log.")


def _guard_unary(behaviour, admit, method):
    def guarded(request, context):
        try:
            token = _identity.set(admit())
            try:
                return behaviour(request, context)
            finally:
                _identity.reset(token)
        except Exception as error:  # noqa: BLE001 - translated in one place
            if isinstance(error, grpc.RpcError) or _already_aborted(context):
                raise
            _abort(context, method, error)
    return guarded


def _guard_stream(behaviour, admit, method):
    def guarded(request, context):
        try:
            _identity.set(admit())
            yield from behaviour(request, context)
        except Exception as error:  # noqa: BLE001 - translated in one place
            if isinstance(error, grpc.RpcError) or _already_aborted(context):
                raise
            _abort(context, method, error)
    return guarded


def _already_aborted(context) -> bool:
    return context.code() is not None if hasattr(context, "code") else False
