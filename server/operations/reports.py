"""The coordinator's report of a run and each agency's hit/no-hit results."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from linkage.matching.review import needs_review
from linkage.matching.run_summary import RunSummary

from ..auth import Identity
from ..storage import ProjectRow, Store
from .common import (
    MAX_FOLLOW_UPS_IN_REPORT,
    FollowUpView,
    _follow_up_view,
    _latest_run,
    _project_for,
)

__all__ = ["AgencyReport", "GroupReport", "ProjectReport", "RecordHit", "agency_results",
           "project_report"]


_TOP_BROKERS_TRACKED = 10


@dataclass(frozen=True)
class RecordHit:
    """One of the calling agency's records that belongs to a group."""

    record: str
    group: str
    agencies: list[str]
    confidence: float
    duplicate_in_own_agency: bool
    follow_ups: list[FollowUpView]


@dataclass(frozen=True)
class AgencyReport:
    agency: str
    records: int
    batches: int
    records_with_hits: int
    duplicate_records: int


@dataclass(frozen=True)
class GroupReport:
    id: str
    agencies: dict[str, int]
    size: int
    confidence: float
    review: str
    review_note: str
    follow_ups: list[FollowUpView]
    needs_review: bool = False


@dataclass(frozen=True)
class ProjectReport:
    project: str
    summary: RunSummary
    agencies: list[AgencyReport]
    agency_pairs: list[tuple[str, str, int]]
    groups: list[GroupReport]
    histogram: list[tuple[float, float, int]]
    estimated_precision: float
    estimated_recall: float
    network: dict


#: Group explanations a report carries (the least certain first; the HTML draws 40 of them).
WATERFALL_PAGE = 200


def agency_results(store: Store, identity: Identity, project_name: str) -> Iterator[RecordHit]:
    """Hit/no-hit for the caller's own records: own ids, group ids and other agencies' names."""
    project = _project_for(store, identity, project_name)
    run = _latest_run(store, project)
    names = {a.id: a.name for a in store.agencies(project.id)}
    rows = list(store.agency_results(run.id, identity.agency_id))
    group_keys = sorted({key for _, key in rows})
    composition = store.group_agencies(run.id, group_keys)
    confidence = {g.key: g.confidence for g in store.groups(run.id)}
    mine: dict[str, list[FollowUpView]] = {}
    for follow_up in store.follow_ups(project.id):
        if follow_up.agency_id == identity.agency_id or follow_up.requested_by == identity.name:
            mine.setdefault(follow_up.group_key, []).append(_follow_up_view(follow_up, names))
    for record_id, key in rows:
        members = composition.get(key, {})
        others = sorted(names[a] for a in members if a != identity.agency_id)
        yield RecordHit(record_id, key, others, _coarse(confidence.get(key, 0.0)),
                        members.get(identity.agency_id, 0) > 1, mine.get(key, []))


def _coarse(confidence: float) -> float:
    """Round a confidence down to a tenth for agencies: it derives from similarity scores,
    and precise values would let an agency probe other agencies' records by fingerprinting."""
    return math.floor(confidence * 10 + 1e-9) / 10


def project_report(store: Store, project_name: str) -> ProjectReport:
    """The coordinator's report of the latest run (no record ids)."""
    project = store.project(project_name)
    run = _latest_run(store, project)
    agencies = store.agencies(project.id)
    names = {a.id: a.name for a in agencies}
    reviews = store.reviews(project.id)
    groups = store.groups(run.id)
    summary = RunSummary.from_json(run.summary).replace(run=run.number)
    attributes = store.member_attributes(run.id)
    flagged = _review_flags(summary, groups, {key: kind for key, _, kind, _, _ in attributes})
    follow_ups: dict[str, list[FollowUpView]] = {}
    for follow_up in store.follow_ups(project.id):
        follow_ups.setdefault(follow_up.group_key, []).append(_follow_up_view(follow_up, names))
    hits = {a.id: 0 for a in agencies}
    duplicates = {a.id: 0 for a in agencies}
    pair_counts: dict[tuple[str, str], int] = {}
    group_reports = []
    for group, uncertain in zip(groups, flagged.tolist()):
        members = group.members_by_agency
        if len(members) > 1:
            for agency_id, count in members.items():
                hits[agency_id] += count
            present = sorted(names[a] for a in members)
            for i, first in enumerate(present):
                for second in present[i + 1:]:
                    pair_counts[(first, second)] = pair_counts.get((first, second), 0) + 1
        for agency_id, count in members.items():
            if count > 1:
                duplicates[agency_id] += count
        decision, note = reviews.get(group.key, ("", ""))
        group_reports.append(GroupReport(
            group.key, {names[a]: c for a, c in sorted(members.items(), key=lambda x: names[x[0]])},
            group.size, group.confidence, decision, note,
            follow_ups.get(group.key, [])[-MAX_FOLLOW_UPS_IN_REPORT:],
            needs_review=uncertain and not decision))
    agency_reports = [
        AgencyReport(a.name, summary.records_by_agency.get(a.id, 0),
                     summary.batches_by_agency.get(a.id, 0), hits[a.id], duplicates[a.id])
        for a in agencies
    ]
    network = _network(store, project, run, summary, names, groups, attributes)
    return ProjectReport(
        project=project.name,
        summary=summary,
        agencies=agency_reports,
        agency_pairs=[(a, b, n) for (a, b), n in sorted(pair_counts.items())],
        groups=group_reports,
        histogram=list(summary.histogram),
        estimated_precision=summary.estimated_precision,
        estimated_recall=summary.estimated_recall,
        network=network,
    )


def _review_flags(summary: RunSummary, groups, type_of: dict[str, str]) -> np.ndarray:
    """Which groups need review, by the core's one rule applied per entity type: a modelled
    type's probabilities against the probability band, an unmodelled type's Dice scores
    against the Dice band above its threshold."""
    confidence = np.array([g.confidence for g in groups], np.float64)
    types = np.array([type_of.get(g.key, "person") for g in groups], dtype=object)
    flags = np.zeros(len(groups), bool)
    for entity_type in set(types.tolist()):
        entry = summary.entity_types.get(entity_type)
        modelled = entry.modelled if entry else bool(summary.estimated_precision)
        threshold = entry.threshold if entry else summary.threshold
        mine = types == entity_type
        flags[mine] = needs_review(confidence[mine], modelled=modelled, threshold=threshold)
    return flags


def _network(store: Store, project: ProjectRow, run, run_summary: RunSummary,
             names: dict[int, str], groups, attributes) -> dict:
    """The entity-case network of a run, the broker ranking, and what changed since the last."""
    from linkage.analysis.network import Membership, build_network  # networkx: not at start-up
    def network_of(member_attributes):
        memberships = [Membership(group, names[agency], entity_type, case_ref, stage)
                       for group, agency, entity_type, case_ref, stage in member_attributes]
        return build_network(memberships, stage_order=project.stages)

    summary = network_of(attributes)
    previous = store.previous_run(project.id, run.number)
    changes = None
    if previous is not None:
        before = {g.key for g in store.groups(previous.id)}
        now = {g.key for g in groups}
        cross_now = {g.key for g in groups if len(g.members_by_agency) > 1}
        earlier_rank = {b.group: b.rank for b in
                        network_of(store.member_attributes(previous.id)).brokers}
        top_now = [b for b in summary.brokers if len(b.agencies) > 1][:_TOP_BROKERS_TRACKED]
        changes = {"previous_run": previous.number,
                   "new_groups": sorted(now - before),
                   "new_cross_agency_groups": sorted((now - before) & cross_now),
                   "gone_groups": len(before - now),
                   "top_brokers": [{"group": b.group, "rank": b.rank,
                                    "previous_rank": earlier_rank.get(b.group)}
                                   for b in top_now]}
    return {
        "stages": project.stages,
        "nodes": summary.nodes,
        "edges": summary.edges,
        "brokers": [broker.__dict__ for broker in summary.brokers],
        "clusters": summary.clusters,
        "stage_coverage": summary.stage_coverage,
        "changes": changes,
        "quality_curve": [list(point) for point in run_summary.quality_curve],
        # A field-wise primary type's expected quality by match-probability cut-off.
        "probability_curve": [list(point) for point in run_summary.probability_curve],
        # Why each field-wise group was linked: field names, levels and weights only. It rides
        # in the network's JSON, which the contract already pages, so the contract is unchanged.
        # The least certain groups first: those are the ones a reviewer asks "why?" about.
        **_waterfall_page(store, run.id, run_summary),
    }


def _waterfall_page(store: Store, run_id: int, run_summary: RunSummary) -> dict:
    """The first ``WATERFALL_PAGE`` group explanations, the least certain first, and how many
    there are: from their table, or from the summary of a run stored before it had one."""
    total = store.waterfall_count(run_id)
    if total:
        page = dict(store.waterfalls(run_id, 0, WATERFALL_PAGE))
    else:
        ordered = sorted(run_summary.waterfalls.items(),
                         key=lambda item: (item[1]["probability"], item[0]))
        total, page = len(ordered), dict(ordered[:WATERFALL_PAGE])
    return {"waterfalls": page, "waterfalls_total": total}
