"""One error tree for the whole linkage core.

Every error the core raises derives from ``LinkageError`` so the edges (the
gRPC server and the CLI) can translate them in one place each::

    LinkageError
    ├── SchemaError            the linkage schema is invalid, or batches disagree on it
    ├── SecretError            the secret is missing/short, or batches were encoded under another
    ├── MappingError           an agency's column mapping does not fit its export or the schema
    ├── NormalisationError     a value cannot be normalised (bad date, bad phone number)
    ├── InputDataError         a records file is unusable (missing column, duplicate ids, empty)
    ├── BatchFormatError       a batch / clkhash JSON file is malformed or truncated
    ├── ClkError               a CLK has the wrong length or cannot be decoded
    ├── DuplicateRecordError   record ids repeat inside one batch
    ├── EmptyBatchError        a batch holds no records
    ├── InvalidRequestError    a parameter is malformed (a name, a threshold, a decision)
    ├── NotFoundError          a project, agency, batch or group does not exist
    ├── AlreadyExistsError     a project of that name exists already
    ├── PermissionDeniedError  the caller may not do this (wrong role, other agency's data)
    ├── ServerBusyError        too much work in flight; retry shortly
    ├── AuthenticationError    no credential, or one the server does not know
    ├── RunStateError          the operation needs a run that has not happened yet
    │   └── ShareModeError     a CLK call on a two-server project, or a share call on a normal one
    └── PeerError              the other matching server or the dealer failed or was refused

Messages say what is wrong and how to fix it; they never contain raw
identifiers or secrets.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "AuthenticationError",
    "BatchFormatError",
    "ClkError",
    "DuplicateRecordError",
    "EmptyBatchError",
    "InputDataError",
    "InvalidRequestError",
    "LinkageError",
    "MappingError",
    "NormalisationError",
    "NotFoundError",
    "PeerError",
    "PermissionDeniedError",
    "RunStateError",
    "SchemaError",
    "SecretError",
    "ServerBusyError",
    "ShareModeError",
]


class LinkageError(Exception):
    """Base of every error raised by the linkage core, server and client."""


class SchemaError(LinkageError):
    """The linkage schema is invalid, or a batch was encoded under another schema.

    ``problems`` lists every problem found, so a user fixes them all at once.
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems or [])
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class SecretError(LinkageError):
    """The secret is unusable, or a batch was encoded under a different secret."""


class MappingError(LinkageError):
    """An agency's mapping file does not fit its export or the linkage schema."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems or [])
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class NormalisationError(LinkageError):
    """A value cannot be normalised (an unparseable date or phone number).

    The message names the kind of problem only, never the value itself, so it
    can be logged safely.
    """


class InputDataError(LinkageError):
    """A records export is unusable: missing columns, duplicate ids, no rows."""


class BatchFormatError(LinkageError):
    """A batch file or clkhash JSON file is malformed or truncated."""


class ClkError(LinkageError):
    """A CLK cannot be decoded or has the wrong length for the schema."""


class DuplicateRecordError(LinkageError):
    """The same record id appears more than once in one batch."""


class EmptyBatchError(LinkageError):
    """A batch with no records was submitted."""


class InvalidRequestError(LinkageError):
    """A request parameter is malformed: a name, a threshold, a review decision."""


class NotFoundError(LinkageError):
    """A project, agency, batch or group does not exist."""


class AlreadyExistsError(LinkageError):
    """Something with that name exists already."""


class PermissionDeniedError(LinkageError):
    """The caller is known but may not do this."""


class ServerBusyError(LinkageError):
    """The server has as much work in flight as it accepts; the caller should retry shortly."""


class AuthenticationError(LinkageError):
    """The caller presented no credential, or one the server does not know."""


class RunStateError(LinkageError):
    """The operation needs a finished linkage run (or new data) first."""


class ShareModeError(RunStateError):
    """The project is in the other mode: CLKs sent to a two-server project, or shares to a
    normal one, or a two-server call to the wrong server."""


class PeerError(LinkageError):
    """The other matching server or the dealer failed, was unreachable, or was refused: a
    two-server run cannot go on (nothing of it is stored)."""
