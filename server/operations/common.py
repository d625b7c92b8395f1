"""What the use cases share: name rules, access checks, bounds on notes, follow-up views."""

from __future__ import annotations

import re
from dataclasses import dataclass

from linkage.errors import InvalidRequestError, PermissionDeniedError, RunStateError

from ..auth import Identity
from ..storage import ProjectRow, Store

__all__ = ["FollowUpView", "MAX_AGENCIES", "MAX_ENTITY_TYPES", "MAX_FOLLOW_UPS_IN_REPORT",
           "MAX_FOLLOW_UPS_PER_GROUP_AGENCY", "MAX_NOTE_CHARS", "MAX_STAGES", "RESERVED_NAMES",
           "bounded_note", "shortened"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


_ATTRIBUTE = re.compile(r"^[a-z0-9_]{1,32}$")


@dataclass(frozen=True)
class FollowUpView:
    """A follow-up request as its parties see it."""

    id: str
    group: str
    requested_by: str
    agency: str
    status: str
    note: str
    answer_note: str


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise InvalidRequestError(f"{kind} name {name!r} is not allowed: use 1-63 lowercase letters, "
                               "digits, '.', '_' or '-', starting with a letter or digit.")


def _project_for(store: Store, identity: Identity, project_name: str) -> ProjectRow:
    if identity.role == "agency" and identity.project != project_name:
        raise PermissionDeniedError(f"This agency token belongs to project {identity.project!r}, "
                                    f"not {shortened(project_name)!r}.")
    return store.project(project_name)


def _check_not_purged(project: ProjectRow) -> None:
    if project.purged_at is not None:
        raise RunStateError(f"Project {project.name!r} was purged at {project.purged_at}: its "
                            "CLKs are deleted and it takes no more batches or runs. Its reports "
                            "and results stay readable; start a new project to link again.")


def _owned(agency_id: int, identity: Identity) -> bool:
    return agency_id == identity.agency_id


def _latest_run(store: Store, project: ProjectRow):
    run = store.latest_run(project.id)
    if run is None:
        raise RunStateError(f"Project {project.name!r} has no finished linkage run yet; a "
                            "coordinator starts one with 'linkage run'.")
    return run


def _follow_up_view(row, names: dict[int, str]) -> FollowUpView:
    # notes stored before they were bounded are cut on the way out, so no reply outgrows
    # the message limit
    return FollowUpView(f"f-{row.id}", row.group_key, row.requested_by, names[row.agency_id],
                        row.status, row.note[:MAX_NOTE_CHARS], row.answer_note[:MAX_NOTE_CHARS])


# -- bounds on what one caller may make the server keep and send (docs/security.md) ------------

#: Agencies, stages and further entity types one project may have: the CreateProject reply
#: (one token per agency) must fit in one message, and is checked before anything is stored.
MAX_AGENCIES = 200
MAX_STAGES = 64
MAX_ENTITY_TYPES = 8
#: Role names are not agency names.
RESERVED_NAMES = frozenset({"coordinator", "operator", "agency"})
#: The longest follow-up, answer or review note, in characters.
MAX_NOTE_CHARS = 2000
#: Follow-ups one group may hold for one asked agency (open and answered).
MAX_FOLLOW_UPS_PER_GROUP_AGENCY = 5
#: Follow-ups a report shows per group (the most recent): with up to 200 agencies a group
#: could hold 1,000, more than one reply may carry.
MAX_FOLLOW_UPS_IN_REPORT = 100
_SHORTENED_CHARS = 80


def bounded_note(note: str, what: str) -> str:
    """A free-text note as stored, or InvalidRequestError when it is too long."""
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidRequestError(f"{what} is {len(note)} characters; at most {MAX_NOTE_CHARS} "
                                  "are kept. Shorten it: the details go through the follow-up's "
                                  "legal channel, not through this server.")
    return note


def shortened(text: str) -> str:
    """A caller-supplied name as an error message may quote it."""
    return text if len(text) <= _SHORTENED_CHARS else text[:_SHORTENED_CHARS] + "…"
