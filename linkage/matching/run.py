"""The server's incremental run as a pure function: arrays in, pairs, groups and a summary out.

A project's run compares only the records of batches no earlier run compared
(with everything stored and with each other), keeps the pairs it finds, and
groups all kept pairs again. The server loads what this module needs from its
store, calls it, and persists what it returns; nothing here touches storage.

Every index here is a *position*: a record's place in the loaded ``RunRecords``.
The server translates its own record keys to positions once when it loads and
back once when it persists.

Two calls make a run:

1. ``plan_floor`` says how low the kept pairs must reach for these settings, and
   whether the pairs kept so far must be discarded (then the server resets them
   and loads the records again, all of them new);
2. ``link_incrementally`` compares, groups and summarises.

What is compared follows the project's deduplication: two records of one agency
that declared its batches deduplicated can never share a group, so they are
never compared.

An entity type whose schema has per-field segments (``fieldSegments``) is
decided field-wise: the record-level kernel still finds the candidates at the
floor, then a Fellegi-Sunter model scores each candidate field by field
(``score_fieldwise``) and the records are grouped on match probabilities. Its
threshold is a probability: ``auto`` links at the cut-off with the best expected F1
of the calibrated probabilities, a numeric threshold links at that probability
(not at a Dice score). Each group's
confidence is its weakest link's probability, and its waterfall (field names,
levels, weights; no values) explains that link.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from linkage.matching.blocking import LshPlan
from linkage.matching.candidates import CandidatePairs
from linkage.clks import clks_from_bytes
from linkage.encoding.field_segments import FieldLayout
from linkage.analysis.explain import group_waterfalls
from linkage.matching.engine import HIGHEST_FLOOR, LinkageResult, choose_floor, decide, plan_blocking
from linkage.matching.fellegi_sunter import ReviewedPairs, score_fieldwise
from linkage.matching.grouping import greedy_groups
from linkage.errors import InvalidRequestError
from linkage.matching.executor import IN_PROCESS, ComparisonTask, plan_new_record_tasks
from linkage.matching.group_keys import unique_group_keys
from linkage.matching.review import needs_review
from linkage.matching.run_summary import EntityTypeSummary, RunSummary
from linkage.matching.threshold import (
    ThresholdChoice,
    parse_threshold,
    quality_curve,
    score_histogram,
)

__all__ = [
    "AUTO",
    "Auto",
    "Blocking",
    "FloorPlan",
    "RunGroup",
    "RunOutcome",
    "RunRecords",
    "RunReviews",
    "RunSettings",
    "can_reuse",
    "link_incrementally",
    "plan_floor",
]

ProgressCallback = Callable[[str, int, int], None]


class Auto(enum.Enum):
    """The threshold is chosen by the score model."""

    AUTO = "auto"


AUTO = Auto.AUTO


class Blocking(enum.Enum):
    """How new records are compared: LSH buckets, every pair, or LSH only when large."""

    AUTO = "auto"
    LSH = "lsh"
    EXHAUSTIVE = "exhaustive"


@dataclass(frozen=True)
class RunSettings:
    """What the coordinator asked of a run, parsed and checked once (``parse``).

    ``estimates`` fits the score model with a numeric threshold too (match
    probabilities as confidences, estimated precision and recall); ``auto``
    always fits it, and so does a type whose groups people reviewed (the
    reviews are what the model learns from).
    """

    threshold: float | Auto = AUTO
    blocking: Blocking = Blocking.AUTO
    estimates: bool = False

    @classmethod
    def parse(cls, threshold: str | None, blocking: str | None = "auto",
              estimates: bool = False) -> RunSettings:
        """Settings from the request's text.

        Raises:
            InvalidRequestError: a threshold that is neither 'auto' nor in (0, 1], an
                unknown blocking mode, or LSH blocking with an 'auto' threshold.
        """
        requested = parse_threshold(threshold)
        text = (blocking or "auto").strip().lower()
        try:
            mode = Blocking(text)
        except ValueError:
            raise InvalidRequestError("Blocking is 'auto', 'lsh' or 'exhaustive'.") from None
        if mode is Blocking.LSH and requested is None:
            raise InvalidRequestError("LSH blocking needs a numeric threshold (e.g. --threshold "
                                      "0.8): it finds pairs at a threshold, and 'auto' must see "
                                      "the scores below it.")
        return cls(AUTO if requested is None else requested, mode, bool(estimates))

    @property
    def requested(self) -> float | None:
        """The numeric threshold, or ``None`` for auto."""
        return None if self.threshold is AUTO else float(self.threshold)

    @property
    def threshold_setting(self) -> str:
        """The threshold as the summary records it ("auto" or e.g. "0.8")."""
        return "auto" if self.threshold is AUTO else f"{self.threshold:g}"


@dataclass(frozen=True)
class RunRecords:
    """Every stored record of a project, by position.

    ``clks[t]`` holds the packed CLKs of entity type t's records, in position
    order (``rows_of(t)`` gives their positions); types have their own lengths.
    ``layouts[t]`` is the per-field segment layout of a type whose schema has
    one (such a type is decided field-wise).
    """

    agency: np.ndarray
    record_ids: Sequence[str]
    entity_type: np.ndarray
    is_new: np.ndarray
    clks: Mapping[str, np.ndarray]
    layouts: Mapping[str, FieldLayout] = field(default_factory=dict)

    @classmethod
    def from_bytes(cls, agency: np.ndarray, record_ids: Sequence[str],
                   entity_types: Sequence[str], clks: Sequence[bytes], is_new: np.ndarray,
                   clk_bits: Mapping[str, int],
                   layouts: Mapping[str, FieldLayout] | None = None) -> RunRecords:
        """Records from stored CLK bytes; ``clk_bits`` gives each type's CLK length."""
        types = np.asarray(entity_types, dtype=object)
        matrices = {t: clks_from_bytes([clks[i] for i in np.flatnonzero(types == t)], clk_bits[t])
                    for t in sorted(set(entity_types))}
        return cls(np.asarray(agency, np.int64), record_ids, types,
                   np.asarray(is_new, bool), matrices, dict(layouts or {}))

    def __len__(self) -> int:
        return int(self.agency.shape[0])

    @property
    def types(self) -> list[str]:
        return sorted(self.clks)

    def rows_of(self, entity_type: str) -> np.ndarray:
        """Positions of the records of one entity type, in order."""
        return np.flatnonzero(self.entity_type == entity_type)


@dataclass(frozen=True)
class RunReviews:
    """The coordinator's review decisions, as the run uses them.

    ``rejected_groups`` holds the positions of each rejected group's records
    (groups whose records are all still stored); ``accepted_scores[t]`` and
    ``rejected_scores[t]`` the weakest-pair scores of type t's reviewed groups,
    which its score model learns from. ``accepted_groups`` holds the accepted
    groups' positions: a field-wise type learns from their pairs (and from
    rejected groups of two).
    """

    decisions: Mapping[str, str] = field(default_factory=dict)
    rejected_groups: Sequence[np.ndarray] = ()
    accepted_scores: Mapping[str, np.ndarray] = field(default_factory=dict)
    rejected_scores: Mapping[str, np.ndarray] = field(default_factory=dict)
    accepted_groups: Sequence[np.ndarray] = ()

    @property
    def digest(self) -> str:
        """A hash of the decisions: a later run with other decisions is not a reuse."""
        return hashlib.sha256(json.dumps(sorted(self.decisions.items())).encode()).hexdigest()

    def scores(self, entity_type: str) -> tuple[np.ndarray, np.ndarray]:
        empty = np.zeros(0, np.float64)
        return (np.asarray(self.accepted_scores.get(entity_type, empty), np.float64),
                np.asarray(self.rejected_scores.get(entity_type, empty), np.float64))


@dataclass(frozen=True)
class FloorPlan:
    """The lowest score the kept pairs reach, and whether those kept so far must go."""

    floor: float
    reset_kept_pairs: bool


@dataclass(frozen=True)
class RunGroup:
    """A group of a run: its key, confidence, weakest pair score and members.

    ``members`` are positions; ``membership`` the same records as sorted
    (agency, record id) pairs: what the key hashes and the store keeps.
    """

    key: str
    confidence: float
    weakest_score: float
    members: np.ndarray
    membership: list[tuple[int, str]]
    entity_type: str
    needs_review: bool
    #: Why a field-wise group was linked (``group_waterfalls``); ``None`` for record-level.
    waterfall: dict | None = None


@dataclass(frozen=True)
class RunOutcome:
    """What a run produced: the pairs to keep, the groups and the summary.

    ``new_pairs`` (positions, at or above ``floor``) are to be kept beside the
    pairs kept before; ``results[t]`` is entity type t's engine result (its
    indices are rows of ``records.rows_of(t)``).
    """

    floor: float
    new_pairs: CandidatePairs
    groups: list[RunGroup]
    results: Mapping[str, LinkageResult]
    summary: RunSummary


def can_reuse(latest: RunSummary | None, settings: RunSettings, records: RunRecords,
              reviews: RunReviews) -> bool:
    """Nothing new, same settings, same decisions: the latest run stands."""
    return (latest is not None and not records.is_new.any()
            and latest.records == len(records)
            and latest.threshold_setting == settings.threshold_setting
            and latest.reviews_digest == reviews.digest
            and latest.blocking_setting == settings.blocking.value
            and latest.estimates_setting == settings.estimates)


def _blocking_plans(records: RunRecords, settings: RunSettings) -> dict[str, LshPlan | None]:
    """Each type's LSH plan (``None``: exhaustive).

    Raises:
        InvalidRequestError: LSH was asked for but cannot reach its completeness.
    """
    requested = settings.requested
    if requested is None:
        return {t: None for t in records.types}
    plans = {t: plan_blocking(records.clks[t], records.is_new[records.rows_of(t)], requested,
                              settings.blocking.value)
             for t in records.types}
    if settings.blocking is Blocking.LSH and any(p is None for p in plans.values()):
        raise InvalidRequestError(f"LSH blocking cannot reach 99.5% completeness at "
                                  f"threshold {requested} with these CLKs; use a higher "
                                  "threshold or --blocking exhaustive.")
    return plans


def plan_floor(records: RunRecords, settings: RunSettings, kept_floor: float | None
               ) -> FloorPlan:
    """How low this run's pairs must reach, given the floor of the pairs kept so far.

    A numeric threshold without estimates needs nothing below itself; estimates and
    ``auto`` need the non-match tail down to ``choose_floor``. Kept pairs are
    discarded when they do not reach low enough, when ``auto`` finds them above
    ``HIGHEST_FLOOR``, or when LSH blocking (which finds pairs at the threshold
    only) would mix with kept pairs below it.

    Raises:
        InvalidRequestError: LSH was asked for but cannot be planned.
    """
    def lowest_floor() -> float:
        return min(choose_floor(matrix) for matrix in records.clks.values())

    requested = settings.requested
    if requested is None:
        if kept_floor is not None and kept_floor <= HIGHEST_FLOOR:
            return FloorPlan(kept_floor, False)
        return FloorPlan(lowest_floor(), kept_floor is not None)
    blocked = any(p is not None for p in _blocking_plans(records, settings).values())
    wanted = requested
    if settings.estimates and not blocked:
        wanted = min(lowest_floor(), requested)
    if kept_floor is None:
        return FloorPlan(wanted, False)
    if blocked and kept_floor < requested:
        return FloorPlan(requested, True)
    if kept_floor > wanted:
        return FloorPlan(wanted, True)
    return FloorPlan(kept_floor, False)


def _new_pair_tasks(agency: np.ndarray, is_new: np.ndarray, deduplicated: frozenset[int]
                    ) -> list[ComparisonTask]:
    """Comparisons of one type's new records with everything, leaving out pairs inside one
    deduplicated agency. Indices are the type's rows."""
    closed = sorted(deduplicated.intersection(np.unique(agency).tolist()))
    if not closed:
        return plan_new_record_tasks(is_new)
    # Each deduplicated agency is a set of its own; all other agencies form one open set
    # whose records are compared with each other too.
    sets = [np.isin(agency, closed, invert=True)] + [agency == a for a in closed]
    open_rows = np.flatnonzero(sets[0])
    tasks = [ComparisonTask(open_rows[t.left], open_rows[t.right], t.same)
             for t in plan_new_record_tasks(is_new[open_rows])] if open_rows.size else []
    # Across sets, each pair once: set i's new records against every record of the later
    # sets and the old records of the earlier ones (old against old was compared before).
    earlier_old = np.zeros(agency.shape[0], bool)
    later = np.logical_or.reduce(sets)
    for rows in sets:
        later &= ~rows
        tasks.append(ComparisonTask(np.flatnonzero(rows & is_new),
                                    np.flatnonzero(later | earlier_old)))
        earlier_old |= rows & ~is_new
    return [t for t in tasks if t.left.size and t.right.size]


def _scan(clks: np.ndarray, tasks: list[ComparisonTask], floor: float, plan: LshPlan | None,
          executor, on_progress: ProgressCallback) -> CandidatePairs:
    """The one place a run's comparisons are handed to the engine's executor."""
    # The executor seam (issue 14): ``executor=None`` is the engine's in-process default.
    return (executor or IN_PROCESS).scan(clks, tasks, floor, plan=plan, on_progress=on_progress)


def _inside_one_deduplicated_agency(pairs: CandidatePairs, agency: np.ndarray,
                                    deduplicated: frozenset[int]) -> np.ndarray:
    same = agency[pairs.left] == agency[pairs.right]
    return same & np.isin(agency[pairs.left], sorted(deduplicated))


def _break_rejected_groups(pairs: CandidatePairs, count: int,
                           rejected_groups: Sequence[np.ndarray]) -> tuple[CandidatePairs, int]:
    """Drop the weakest pair inside each rejected group, so that the group is not formed
    again (its records may still link elsewhere); returns the pairs and how many went."""
    if not rejected_groups or len(pairs) == 0:
        return pairs, 0
    group_of = np.full(count, -1, np.int64)
    for number, members in enumerate(rejected_groups):
        group_of[np.asarray(members, np.int64)] = number
    inside = (group_of[pairs.left] >= 0) & (group_of[pairs.left] == group_of[pairs.right])
    candidates = np.flatnonzero(inside)
    if candidates.size == 0:
        return pairs, 0
    order = candidates[np.lexsort((pairs.score[candidates], group_of[pairs.left[candidates]]))]
    groups = group_of[pairs.left[order]]
    weakest = order[np.r_[True, groups[1:] != groups[:-1]]]
    keep = np.ones(len(pairs), bool)
    keep[weakest] = False
    return CandidatePairs(pairs.left[keep], pairs.right[keep], pairs.score[keep]), int(
        weakest.size)


def _subset(pairs: CandidatePairs, keep: np.ndarray) -> CandidatePairs:
    return CandidatePairs(pairs.left[keep], pairs.right[keep], pairs.score[keep])


def link_incrementally(
    records: RunRecords,
    kept: CandidatePairs,
    settings: RunSettings,
    reviews: RunReviews,
    *,
    floor: float,
    group_key_secret: bytes,
    deduplicated: frozenset[int] = frozenset(),
    executor: object | None = None,
    on_progress: ProgressCallback | None = None,
) -> RunOutcome:
    """Compare the new records, group every kept and new pair, and summarise.

    Args:
        records: every stored record; ``is_new`` marks those no run compared yet.
        kept: the pairs kept from earlier runs (positions), all at or above ``floor``.
        settings: the run's settings.
        reviews: the review decisions so far.
        floor: from ``plan_floor`` (after any reset it asked for).
        group_key_secret: the key of the groups' keyed hashes.
        deduplicated: agencies that declared their batches deduplicated: at most one of
            their records per group, and none of their pairs compared.
        executor: where the comparisons run (``None``: in this process).
        on_progress: called with (stage, done, total).
    Returns:
        The outcome; its summary has no run number or time yet (the server sets them).
    Raises:
        InvalidRequestError: LSH blocking was asked for but cannot be planned.
    """
    report = on_progress or (lambda stage, done, total: None)
    requested = settings.requested
    plans = _blocking_plans(records, settings)
    fresh = []
    if records.is_new.any():
        for entity_type in records.types:
            rows = records.rows_of(entity_type)
            tasks = _new_pair_tasks(records.agency[rows], records.is_new[rows], deduplicated)
            found = _scan(records.clks[entity_type], tasks, floor, plans[entity_type], executor,
                          report)
            fresh.append(CandidatePairs(rows[found.left], rows[found.right], found.score))
    new_pairs = CandidatePairs.concat(fresh) if fresh else _subset(kept, np.zeros(len(kept), bool))
    every = CandidatePairs.concat([kept, new_pairs])
    if deduplicated:
        # Kept from before the agency declared itself deduplicated: they cannot link.
        every = _subset(every, ~_inside_one_deduplicated_agency(every, records.agency,
                                                                deduplicated))
    every, broken_links = _break_rejected_groups(every, len(records), reviews.rejected_groups)
    one_per_group = {agency: 1 for agency in deduplicated}
    groups: list[RunGroup] = []
    results: dict[str, LinkageResult] = {}
    curves: dict[str, list[tuple[float, float, float]]] = {}
    types: dict[str, EntityTypeSummary] = {}
    position = np.full(len(records), -1, np.int64)
    for entity_type in records.types:
        rows = records.rows_of(entity_type)
        position[:] = -1
        position[rows] = np.arange(rows.size)
        mine = (position[every.left] >= 0) & (position[every.right] >= 0)
        pairs = CandidatePairs(position[every.left[mine]], position[every.right[mine]],
                               every.score[mine])
        accepted, rejected = reviews.scores(entity_type)
        layout = records.layouts.get(entity_type)
        waterfalls: Mapping[int, dict] = {}
        if layout is not None:
            reviewed = _reviewed_pairs(reviews, position)
            result, waterfalls, curves[entity_type] = _decide_fieldwise(
                records.clks[entity_type], layout, pairs, floor, records.agency[rows],
                requested, one_per_group, reviewed, report)
            accepted = reviewed.left[reviewed.is_match]
            rejected = reviewed.left[~reviewed.is_match]
            fit_model, modelled = True, True
        else:
            fit_model = requested is None or settings.estimates or bool(accepted.size
                                                                        or rejected.size)
            result = decide(pairs, floor, records.agency[rows], threshold=requested,
                            max_per_owner=one_per_group or None, on_progress=report,
                            known_matches=accepted, known_non_matches=rejected,
                            fit_model=fit_model)
            modelled = result.choice.model is not None
        flags = needs_review(result.confidence, modelled=modelled,
                             threshold=result.choice.threshold)
        groups.extend(_named_groups(result, records, rows, entity_type, flags,
                                    group_key_secret, waterfalls))
        results[entity_type] = result
        types[entity_type] = EntityTypeSummary(
            records=int(rows.size), threshold=float(result.choice.threshold),
            threshold_reason=result.choice.reason, groups=result.grouping.group_count,
            reviews_used_accepted=int(accepted.size) if fit_model else 0,
            reviews_used_rejected=int(rejected.size) if fit_model else 0,
            modelled=modelled, groups_to_review=int(flags.sum()))
    summary = _summary(records, settings, reviews, floor, results, types, groups,
                       broken_links, deduplicated, plans, curves)
    return RunOutcome(floor, new_pairs, groups, results, summary)


def _one_to_one(max_per_owner: Mapping[int, int], owners: np.ndarray) -> bool:
    """Every agency present is deduplicated: a record matches at most one of each other."""
    present = np.unique(owners).tolist()
    return bool(present) and all(max_per_owner.get(owner) == 1 for owner in present)


def _reviewed_pairs(reviews: RunReviews, position: np.ndarray) -> ReviewedPairs:
    """The decided pairs of one type (rows of the type): every pair of an accepted group is
    a match; a rejected group of two is a non-match (in a larger rejected group no single
    pair is known to be wrong)."""
    left, right, is_match = [], [], []
    for members, decision in ([(m, True) for m in reviews.accepted_groups]
                              + [(m, False) for m in reviews.rejected_groups if len(m) == 2]):
        rows = position[np.asarray(members, np.int64)]
        rows = np.sort(rows[rows >= 0])
        for i in range(rows.size):
            for j in range(i + 1, rows.size):
                left.append(rows[i]), right.append(rows[j]), is_match.append(decision)
    return ReviewedPairs(np.asarray(left, np.int64), np.asarray(right, np.int64),
                         np.asarray(is_match, bool))


def _decide_fieldwise(clks: np.ndarray, layout: FieldLayout, pairs: CandidatePairs,
                      floor: float, owners: np.ndarray, requested: float | None,
                      one_per_group: Mapping[int, int], reviewed: ReviewedPairs,
                      report: ProgressCallback
                      ) -> tuple[LinkageResult, dict[int, dict], list[tuple[float, float, float]]]:
    """Score the type's candidates field-wise and group on match probabilities.

    ``auto`` takes the probability cut-off with the best expected F1
    (``FieldwiseScores.best_cutoff``). Returns the result (its ``pairs`` scored by
    probability, ``floor_scores`` still the Dice scores for the histogram), each
    group label's waterfall, and the expected quality by cut-off.
    """
    report("scoring fields", 0, len(pairs))
    scores = score_fieldwise(clks, layout, pairs, owners=owners,
                             one_to_one=_one_to_one(one_per_group, owners),
                             reviewed=reviewed if len(reviewed) else None)
    report("scoring fields", len(pairs), len(pairs))
    if requested is None:
        cutoff, best_f1 = scores.best_cutoff()
    else:
        cutoff, best_f1 = requested, None
    keep = scores.probability >= cutoff
    linked = CandidatePairs(pairs.left[keep], pairs.right[keep], scores.probability[keep])
    report("grouping", 0, len(linked))
    grouping = greedy_groups(linked, owners.shape[0], owners,
                             max_per_owner=one_per_group or None)
    report("grouping", len(linked), len(linked))
    precision, recall = scores.expected_quality(cutoff)
    reason = (f"field-wise match probability >= {cutoff:g}"
              + (f" (auto: the best expected F1, {best_f1:.3f}, of the calibrated "
                 "probabilities)" if requested is None else " (set by the coordinator)")
              + (f", {scores.reviews_used} reviewed pairs" if scores.reviews_used else ""))
    choice = ThresholdChoice(float(cutoff), reason, None, precision, recall)
    waterfalls = group_waterfalls(scores, grouping.labels, pairs.left, pairs.right, keep)
    result = LinkageResult(choice, floor, linked, pairs.score, grouping,
                           grouping.weakest_score.copy())
    return result, waterfalls, scores.quality_curve()


def _named_groups(result: LinkageResult, records: RunRecords, rows: np.ndarray,
                  entity_type: str, flags: np.ndarray, secret: bytes,
                  waterfalls: Mapping[int, dict] | None = None) -> list[RunGroup]:
    """The type's groups with their keys: keyed hashes of the (agency, record id) members."""
    members = [rows[local] for local in result.grouping.members()]
    agency, record_ids = records.agency.tolist(), records.record_ids
    memberships = [sorted([(agency[p], record_ids[p]) for p in group.tolist()])
                   for group in members]
    keys = unique_group_keys(secret, memberships)
    confidence = result.confidence.tolist()
    weakest = result.grouping.weakest_score.tolist()
    flagged = flags.tolist()
    waterfalls = waterfalls or {}
    return [RunGroup(key, confidence[label], weakest[label], members[label], memberships[label],
                     entity_type, flagged[label], waterfalls.get(label))
            for label, key in enumerate(keys)]


def _summary(records: RunRecords, settings: RunSettings, reviews: RunReviews, floor: float,
             results: Mapping[str, LinkageResult], types: Mapping[str, EntityTypeSummary],
             groups: list[RunGroup], broken_links: int, deduplicated: frozenset[int],
             plans: Mapping[str, LshPlan | None],
             curves: Mapping[str, list[tuple[float, float, float]]]) -> RunSummary:
    primary_type = "person" if "person" in results else next(iter(results))
    primary = results[primary_type]
    choice = primary.choice
    edges, counts = score_histogram(primary.floor_scores, low=floor)
    agencies, per_agency = np.unique(records.agency, return_counts=True)
    cross = sum(1 for g in groups if len({agency for agency, _ in g.membership}) > 1)
    requested = settings.requested
    return RunSummary(
        threshold=float(choice.threshold),
        threshold_reason=(choice.reason if len(results) == 1
                          else f"{primary_type}s: {choice.reason}"),
        records=len(records),
        candidate_pairs=sum(len(r.pairs) for r in results.values()),
        groups=len(groups),
        cross_agency_groups=cross,
        new_records=int(records.is_new.sum()),
        blocking="; ".join(
            f"{t}: lsh {p.bits} bits x {p.tables} tables, expected completeness "
            f"{p.expected_completeness:.4f} at {requested}" if p is not None else
            f"{t}: exhaustive" for t, p in plans.items()),
        groups_to_review=sum(t.groups_to_review for t in types.values()),
        reviews_used_accepted=sum(t.reviews_used_accepted for t in types.values()),
        reviews_used_rejected=sum(t.reviews_used_rejected for t in types.values()),
        threshold_setting=settings.threshold_setting,
        blocking_setting=settings.blocking.value,
        estimates_setting=settings.estimates,
        reviews_digest=reviews.digest,
        estimated_precision=float(choice.estimated_precision or 0.0),
        estimated_recall=float(choice.estimated_recall or 0.0),
        entity_types=dict(types),
        records_by_agency={int(a): int(n) for a, n in zip(agencies, per_agency)},
        rejected_links_broken=broken_links,
        deduplicated_agencies=tuple(sorted(int(a) for a in deduplicated)),
        histogram=tuple((float(edges[i]), float(edges[i + 1]), int(counts[i]))
                        for i in range(len(counts))),
        quality_curve=tuple(tuple(point) for point in
                            quality_curve(primary.floor_scores, choice.model, floor)),
        waterfalls={g.key: g.waterfall for g in groups if g.waterfall is not None},
        probability_curve=tuple(tuple(point) for point in curves.get(primary_type, ())),
    )
