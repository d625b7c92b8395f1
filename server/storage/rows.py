"""Typed rows the stores return: plain frozen dataclasses, the same for every backend."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = [
    "AgencyRow",
    "BatchRow",
    "EntitySchemaRow",
    "FollowUpRow",
    "GroupRow",
    "ProjectRow",
    "RunRow",
    "StaffRow",
    "StoredRecords",
    "UploadRow",
]


@dataclass(frozen=True)
class ProjectRow:
    id: int
    name: str
    schema_json: str
    schema_fingerprint: str
    clk_bits: int
    key_check: str | None
    stages_json: str = "[]"
    purged_at: str | None = None

    @property
    def stages(self) -> list[str]:
        return json.loads(self.stages_json)


@dataclass(frozen=True)
class AgencyRow:
    id: int
    project_id: int
    name: str


@dataclass(frozen=True)
class BatchRow:
    id: str
    agency_id: int
    record_count: int
    content_hash: str


@dataclass(frozen=True)
class EntitySchemaRow:
    """The schema one entity type of a project is encoded with."""

    entity_type: str
    schema_json: str
    fingerprint: str
    clk_bits: int


@dataclass(frozen=True)
class StoredRecords:
    """Every record of a project, in storage order.

    ``row_ids`` are the store's own record keys (what stored pairs refer to);
    ``is_new`` marks records of batches not yet compared in any run.
    """

    row_ids: np.ndarray
    agency_ids: np.ndarray
    record_ids: list[str]
    clks: list[bytes]
    is_new: np.ndarray
    new_batches: list[str]
    entity_types: list[str]


@dataclass(frozen=True)
class UploadRow:
    """An upload in progress: held durably, invisible to runs until committed."""

    batch_id: str
    project_id: int
    agency_id: int
    header: str
    records_received: int


@dataclass(frozen=True)
class FollowUpRow:
    """A recorded follow-up request and its answer."""

    id: int
    group_key: str
    requested_by: str
    agency_id: int
    note: str
    status: str
    answer_note: str


@dataclass(frozen=True)
class RunRow:
    id: int
    project_id: int
    number: int
    status: str
    summary: dict


@dataclass(frozen=True)
class GroupRow:
    key: str
    confidence: float
    size: int
    members_by_agency: dict[int, int]
    weakest_score: float | None = None


class StaffRow(NamedTuple):
    """A coordinator or operator credential; a tuple, so callers unpack it as before."""

    name: str
    role: str
    token_hash: str
