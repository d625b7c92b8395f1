"""Compatibility shim: storage moved to the ``server.storage`` package.

``from server.store import ...`` keeps working; new code imports ``server.storage``.
"""

from __future__ import annotations

from .storage import (  # noqa: F401 - re-exported
    DATABASE_NAME,
    AgencyRow,
    BatchRow,
    EntitySchemaRow,
    FollowUpRow,
    GroupRow,
    ProjectRow,
    RunRow,
    SqliteStore,
    StaffRow,
    Store,
    StoredRecords,
    UploadRow,
)
from .storage.sqlite import LOCK_NAME  # noqa: F401 - re-exported

__all__ = [
    "AgencyRow",
    "BatchRow",
    "EntitySchemaRow",
    "FollowUpRow",
    "GroupRow",
    "ProjectRow",
    "RunRow",
    "SqliteStore",
    "Store",
    "StoredRecords",
    "UploadRow",
]
