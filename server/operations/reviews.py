"""Review decisions on groups and follow-up requests between agencies."""

from __future__ import annotations

import re

from linkage.errors import InvalidRequestError, NotFoundError

from ..auth import Identity
from ..storage import Store
from .common import (
    MAX_FOLLOW_UPS_PER_GROUP_AGENCY,
    FollowUpView,
    _follow_up_view,
    _latest_run,
    _project_for,
    bounded_note,
    shortened,
)

__all__ = ["answer_follow_up", "list_follow_ups", "open_follow_up", "review_group"]


def open_follow_up(store: Store, identity: Identity, project_name: str, group: str,
                   note: str) -> list[FollowUpView]:
    """Ask every other agency of a group of the latest run for a follow-up.

    An agency may ask only about groups in which it has a record itself.
    """
    note = bounded_note(note, "The follow-up note")
    project = _project_for(store, identity, project_name)
    run = _latest_run(store, project)
    members = store.group_agencies(run.id, [group]).get(group)
    if not members or (identity.role == "agency" and identity.agency_id not in members):
        # the same answer for an absent group and one without the caller: no existence oracle
        raise NotFoundError(f"No group {shortened(group)!r} with a record of yours in the latest "
                            f"run of {shortened(project_name)!r}; 'linkage results' lists your "
                            "hits and their groups.")
    asked = sorted(a for a in members if a != identity.agency_id)
    if not asked:
        raise InvalidRequestError("No other agency holds a record of that group.")
    requested_by = identity.name if identity.role == "agency" else "coordinator"
    names = {a.id: a.name for a in store.agencies(project.id)}
    return [_follow_up_view(row, names)
            for row in store.add_follow_ups(project.id, group, requested_by, asked, note,
                                            most_per_agency=MAX_FOLLOW_UPS_PER_GROUP_AGENCY)]


def answer_follow_up(store: Store, identity: Identity, project_name: str, follow_up: str,
                     decision: str, note: str) -> FollowUpView:
    """The asked agency approves or declines; the answer is recorded."""
    project = _project_for(store, identity, project_name)
    if decision not in ("approved", "declined"):
        raise InvalidRequestError("A follow-up answer is 'approved' or 'declined'.")
    if not re.fullmatch(r"f-\d{1,18}", follow_up):
        raise InvalidRequestError("A follow-up id looks like 'f-12'.")
    note = bounded_note(note, "The answer note")
    row = store.answer_follow_up(project.id, int(follow_up[2:]), identity.agency_id, decision,
                                 note)
    return _follow_up_view(row, {a.id: a.name for a in store.agencies(project.id)})


def review_group(store: Store, project_name: str, group: str, decision: str, note: str) -> str:
    """Record a decision on a group of the latest run."""
    if decision not in ("accepted", "rejected"):
        raise InvalidRequestError("A review decision is 'accepted' or 'rejected'.")
    note = bounded_note(note, "The review note")
    project = store.project(project_name)
    run = _latest_run(store, project)
    if not any(g.key == group for g in store.groups(run.id)):
        raise NotFoundError(f"No group {group!r} in the latest run of {project_name!r}; "
                            "'linkage report' lists the groups.")
    store.set_review(project.id, group, decision, note)
    return decision


def list_follow_ups(store: Store, identity: Identity, project_name: str) -> list[FollowUpView]:
    """Follow-ups of a project: all of them for a coordinator; for an agency those it asked
    for and those addressed to it."""
    project = _project_for(store, identity, project_name)
    names = {a.id: a.name for a in store.agencies(project.id)}
    return [_follow_up_view(row, names) for row in store.follow_ups(project.id)
            if identity.role != "agency" or row.agency_id == identity.agency_id
            or row.requested_by == identity.name]
