"""Running linkage: load from the store, call the core's run, persist what it returns.

The algorithm (floor policy, entity types, deduplication, reviews, group keys)
is ``linkage.matching.run``; this module only translates between the store's rows and
the core's positions, once each way.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import numpy as np

from typing import TYPE_CHECKING

from linkage.matching.candidates import CandidatePairs
from linkage.errors import RunStateError, ShareModeError
from linkage.matching.run_summary import RunSummary

from .. import failpoints
from ..storage import ProjectRow, StoredRecords, Store
from .common import _check_not_purged

if TYPE_CHECKING:  # the run's core (numba kernels) is imported by the first run, not at start-up
    from linkage.matching.run import RunRecords, RunReviews

__all__ = ["GROUP_KEY_SETTING", "run_linkage"]

GROUP_KEY_SETTING = "group_key_secret"


def _group_key_secret(store: Store) -> bytes:
    secret = store.setting(GROUP_KEY_SETTING)
    if secret is None:
        secret = secrets.token_bytes(32)
        store.set_setting(GROUP_KEY_SETTING, secret)
    return secret


def run_linkage(store: Store, project_name: str, threshold_text: str,
                on_progress: Callable[[str, int, int], None] | None = None,
                blocking: str = "auto", *, estimates: bool = False,
                executor: object | None = None) -> RunSummary:
    """Link a project incrementally and store the groups; returns the run summary.

    Only records of batches that no earlier run compared are compared (with
    everything stored and with each other); the pairs found are kept, so old
    pairs are never recomputed. With nothing new and the same settings and
    review decisions, the latest run stands and no work is done.

    Raises:
        InvalidRequestError: malformed settings. RunStateError: no batches, a purged
            project, or a run of the project in progress.
    """
    from linkage.encoding.schema import load_schema
    from linkage.matching.run import RunSettings, can_reuse, link_incrementally, plan_floor
    settings = RunSettings.parse(threshold_text, blocking, estimates)
    project = store.project(project_name)
    _check_not_purged(project)
    if store.share_role(project.id) is not None:
        raise ShareModeError(f"Project {project_name!r} is in two-server mode: run it with "
                             "'linkage run --server-1 HOST:PORT' against server 0, which "
                             "compares on shares with server 1.")
    stored = store.load_records(project.id)
    if not stored.record_ids:
        raise RunStateError(f"Project {project_name!r} has no batches yet; agencies submit with "
                            "'linkage submit' first.")
    latest = store.latest_run(project.id)
    latest_summary = RunSummary.from_json(latest.summary) if latest is not None else None
    schemas = store.entity_schemas(project.id)
    bits = {e.entity_type: e.clk_bits for e in schemas}
    layouts = {e.entity_type: layout for e in schemas
               if (layout := load_schema(e.schema_json).segments) is not None}
    records = _run_records(stored, bits, layouts)
    reviews = _run_reviews(store, project, stored, records)
    if can_reuse(latest_summary, settings, records, reviews):
        return latest_summary.replace(run=latest.number, new_records=0, reused=True)
    report = on_progress or (lambda stage, done, total: None)
    report("loading", len(records), len(records))
    run_id = store.start_run(project.id)  # refuses while another run of the project is going
    started = time.monotonic()
    try:
        now_latest = store.latest_run(project.id)
        if (now_latest.number if now_latest else 0) != (latest.number if latest else 0):
            stored = store.load_records(project.id)  # a run finished meanwhile: use its state
            records = _run_records(stored, bits, layouts)
            reviews = _run_reviews(store, project, stored, records)
        failpoints.reached("run-started")
        floor_plan = plan_floor(records, settings, store.pair_floor(project.id))
        if floor_plan.reset_kept_pairs:
            store.reset_pairs(project.id)
            stored = store.load_records(project.id)
            records = _run_records(stored, bits, layouts)
            reviews = _run_reviews(store, project, stored, records)
        outcome = link_incrementally(
            records, _kept_pairs(store, project, stored), settings, reviews,
            floor=floor_plan.floor, group_key_secret=_group_key_secret(store),
            deduplicated=frozenset(store.deduplicated_agencies(project.id)),
            executor=executor, on_progress=report)
        if records.is_new.any():
            store.add_pairs(project.id, outcome.floor, stored.row_ids[outcome.new_pairs.left],
                            stored.row_ids[outcome.new_pairs.right], outcome.new_pairs.score,
                            stored.new_batches)
            failpoints.reached("run-pairs-stored")
        summary = finish_run(store, project.id, run_id, outcome, started)
    except BaseException as error:
        store.fail_run(run_id, f"{type(error).__name__}: the run did not finish")
        raise
    return summary.replace(run=store.latest_run(project.id).number, reused=False)


def finish_run(store: Store, project_id: int, run_id: int, outcome, started: float):
    """Store a finished run's summary (with its batches and duration) and groups; returns
    the summary. Both the normal run and the two-server run end here."""
    summary = outcome.summary.replace(
        batches_by_agency=_batches_by_agency(store, project_id),
        seconds=round(time.monotonic() - started, 3))
    store.finish_run(run_id, summary.to_json(),
                     [(group.key, group.confidence, group.weakest_score, group.membership)
                      for group in outcome.groups])
    return summary


def _run_records(stored: StoredRecords, clk_bits: dict[str, int], layouts) -> RunRecords:
    from linkage.matching.run import RunRecords
    return RunRecords.from_bytes(stored.agency_ids, stored.record_ids, stored.entity_types,
                                 stored.clks, stored.is_new, clk_bits, layouts)


def _kept_pairs(store: Store, project: ProjectRow, stored: StoredRecords) -> CandidatePairs:
    """The pairs kept from earlier runs, from store keys to positions."""
    left, right, score = store.load_pairs(project.id)
    position = np.searchsorted(stored.row_ids, np.concatenate([left, right]))
    return CandidatePairs(position[:left.shape[0]], position[left.shape[0]:], score)


def _run_reviews(store: Store, project: ProjectRow, stored: StoredRecords,
                 records: RunRecords) -> RunReviews:
    """The decisions, the rejected groups' members as positions, and each type's reviewed
    scores."""
    decisions = {key: decision for key, (decision, _) in store.reviews(project.id).items()}
    rejected_groups, accepted_groups = [], []
    if decisions:
        position_of = {(int(a), r): i for i, (a, r) in enumerate(zip(stored.agency_ids,
                                                                     stored.record_ids))}
        for key, members in store.group_members(project.id, list(decisions)).items():
            positions = [position_of.get((int(a), r)) for a, r in members]
            if None not in positions:  # a group with a withdrawn or purged record is gone
                chosen = rejected_groups if decisions[key] == "rejected" else accepted_groups
                chosen.append(np.asarray(positions, np.int64))
    from linkage.matching.run import RunReviews
    accepted, rejected = {}, {}
    if decisions:
        for entity_type in records.types:
            accepted[entity_type], rejected[entity_type] = store.reviewed_scores(project.id,
                                                                                entity_type)
    return RunReviews(decisions, rejected_groups, accepted, rejected, accepted_groups)


def _batches_by_agency(store: Store, project_id: int) -> dict[int, int]:
    counts: dict[int, int] = {}
    for batch in store.batches(project_id):
        counts[batch.agency_id] = counts.get(batch.agency_id, 0) + 1
    return counts
