"""The one place where domain errors become gRPC status codes."""

from __future__ import annotations

import grpc

from linkage import errors

__all__ = ["STATUS_FOR_ERROR", "status_for"]

# Most specific first: the first matching class wins.
STATUS_FOR_ERROR: tuple[tuple[type[errors.LinkageError], grpc.StatusCode], ...] = (
    (errors.SchemaError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ShareModeError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.PeerError, grpc.StatusCode.UNAVAILABLE),
    (errors.SecretError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.RunStateError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ClkError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.BatchFormatError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.DuplicateRecordError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.EmptyBatchError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.MappingError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InputDataError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NormalisationError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.AuthenticationError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.ServerBusyError, grpc.StatusCode.RESOURCE_EXHAUSTED),
)


def status_for(error: errors.LinkageError) -> grpc.StatusCode:
    """The status code a domain error is reported with (INVALID_ARGUMENT if unlisted)."""
    for error_type, code in STATUS_FOR_ERROR:
        if isinstance(error, error_type):
            return code
    return grpc.StatusCode.INVALID_ARGUMENT
