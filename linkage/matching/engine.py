"""One linkage run as a pure function: CLKs and owners in, groups and confidences out.

The offline ``linkage match`` calls ``link_records``; the server's incremental
run calls its parts (``compare_new_records``, ``decide``), so both find the
same groups.

What a run costs is the scan: every pair at or above some score. It is kept as
high as the answer allows, because the kernel rules out far fewer pairs early
at a low score (several times the work at 0.5 as at 0.8):

* a numeric threshold is scanned at that threshold, and no score model is
  fitted unless estimates are asked for;
* ``auto`` (and estimates) need the non-match tail down to ``choose_floor``:
  on large inputs it comes from a sample of the records (``SampledTail``),
  and everything is scanned only from a little below the threshold the
  sample points to.

Comparisons are planned as ``ComparisonTask`` blocks and run by an
``Executor`` (``linkage.matching.executor``); the default, ``IN_PROCESS``, runs them
here on every core. Each side is prepared once per run, however many scans
(sample, full, rescan) use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numba
import numpy as np

from linkage.matching.blocking import LshPlan, lsh_candidates, plan_lsh
from linkage.matching.candidates import CandidatePairs
from linkage.clks import popcounts
from linkage.matching.executor import (
    IN_PROCESS,
    ComparisonTask,
    Executor,
    InProcessExecutor,
    PreparedSides,
    ProgressCallback,
    plan_new_record_tasks,
    plan_owner_tasks,
)
from linkage.matching.grouping import Grouping, greedy_groups
from linkage.matching.kernel import iter_dice_tiles
from linkage.matching.threshold import (
    SCORE_FLOOR,
    SampledTail,
    ThresholdChoice,
    _expected_quality,  # the same estimate choose_threshold gives, at the grouped threshold
    choose_threshold,
    one_to_one_scores,
)

__all__ = [
    "ComparisonTask",
    "Executor",
    "HIGHEST_FLOOR",
    "IN_PROCESS",
    "InProcessExecutor",
    "LinkageResult",
    "ProgressCallback",
    "choose_floor",
    "compare_new_records",
    "decide",
    "link_records",
    "plan_blocking",
    "plan_new_record_tasks",
    "plan_owner_tasks",
    "preload",
    "warm_up",
]

_SAMPLE_PAIRS = 200_000
_SAMPLE_CHUNK = 8192
_PAIRS_PER_RECORD = 20
_MIN_PAIR_BUDGET = 50_000
#: ``choose_floor`` never goes above this; stored pairs from a higher floor came from a numeric
#: threshold and cannot serve an auto run.
HIGHEST_FLOOR = 0.7
LSH_MIN_COMPARISONS = 2e11
#: Above this many comparisons, the score model's tail below the scan level comes from a
#: sample of the records (``SampledTail``) instead of a scan of everything at the floor.
TAIL_SAMPLE_MIN_COMPARISONS = 5e8
#: Records sampled for the tail: this share of the left rows of each task, at least
#: ``_TAIL_MIN_ROWS`` of them.
_TAIL_SHARE = 0.02
_TAIL_MIN_ROWS = 2000
#: The full scan starts this far below the threshold the sample suggests, so that the
#: final choice (from all pairs above it) can still move down a little.
_SCAN_MARGIN = 0.05
#: The margin when the sample's choice lies in a wide stretch of tied thresholds (see
#: ``_scan_level``).
_FLAT_SCAN_MARGIN = 0.01
#: Histogram bins of the sample's score model (the full fit's are 0.0025), and its
#: optimiser's tolerance (the full fit's are 1e-6 to 1e-7, in nats of a likelihood over all
#: pairs: far finer than a coarse fit needs): it only picks the basin and the
#: scan level, and the full fit descends from its optimum at full precision.
_SAMPLE_BIN_WIDTH = 0.01
_SAMPLE_FIT_TOLERANCE = 1e-2
#: Seed of the tail sample: fixed, so a run is reproducible, and not a small number, because
#: test-data generators seeded with 0, 1, ... would otherwise draw the same uniforms for the
#: records' contents as the sampler does for choosing them (seen: a sample of only the
#: sparsest CLKs, with no non-match tail at all).
_TAIL_SEED = 0x5A3F_7A11_C0DE


@dataclass(frozen=True)
class LinkageResult:
    """Everything a run produces.

    ``pairs`` holds the candidate pairs at or above the threshold (global record
    indices); ``floor_scores`` every candidate score at or above ``floor`` (for
    the histogram and the score model), those below ``tail.below`` only from a
    sample when ``tail`` is set; ``confidence[g]`` is group g's match
    probability (its weakest score when no model was fitted).
    """

    choice: ThresholdChoice
    floor: float
    pairs: CandidatePairs
    floor_scores: np.ndarray
    grouping: Grouping
    confidence: np.ndarray
    tail: SampledTail | None = None


def choose_floor(clks: np.ndarray, *, seed: int = 0) -> float:
    """The lowest score worth collecting for the score model.

    Scores of random pairs (nearly all non-matches) show where the bulk of the
    non-matches lies; the floor is set so that about ``_PAIRS_PER_RECORD`` pairs
    per record are expected above it, keeping memory bounded while leaving the
    upper tail of the non-matches visible to the model.
    """
    count = clks.shape[0]
    total_pairs = count * (count - 1) / 2
    budget = max(_MIN_PAIR_BUDGET, _PAIRS_PER_RECORD * count)
    if total_pairs <= budget:
        return SCORE_FLOOR
    rng = np.random.default_rng(seed)
    first = rng.integers(0, count, _SAMPLE_PAIRS)
    second = rng.integers(0, count, _SAMPLE_PAIRS)
    distinct = first != second
    first, second = first[distinct], second[distinct]
    counts = popcounts(clks)
    common = np.empty(first.size, np.int64)
    for start in range(0, first.size, _SAMPLE_CHUNK):  # chunks stay in cache: no page faults
        chunk = slice(start, start + _SAMPLE_CHUNK)
        common[chunk] = np.bitwise_count(clks[first[chunk]] & clks[second[chunk]]).sum(
            axis=1, dtype=np.int64)
    totals = counts[first] + counts[second]
    scores = np.where(totals > 0, 2.0 * common / np.maximum(totals, 1), 0.0)
    floor = float(np.quantile(scores, 1.0 - budget / total_pairs))
    return float(np.clip(np.floor(floor * 100) / 100, SCORE_FLOOR, HIGHEST_FLOOR))


def plan_blocking(clks: np.ndarray, is_new: np.ndarray, threshold: float,
                  mode: str = "auto") -> LshPlan | None:
    """The LSH plan to compare new records with, or ``None`` for exhaustive comparison.

    ``mode`` is "exhaustive", "lsh" (block whenever a plan is possible) or
    "auto" (block only when exhaustive comparison would take more than about
    ``LSH_MIN_COMPARISONS`` comparisons).
    """
    if mode == "exhaustive" or clks.shape[0] == 0:
        return None
    new = int(is_new.sum())
    comparisons = new * (clks.shape[0] - new) + new * (new - 1) / 2
    if mode == "auto" and comparisons < LSH_MIN_COMPARISONS:
        return None
    counts = popcounts(clks)
    return plan_lsh(clks.shape[1] * 64, 2 * float(np.quantile(counts, 0.99)), threshold,
                    records=max(new, 1))


def compare_new_records(
    clks: np.ndarray,
    is_new: np.ndarray,
    floor: float,
    *,
    plan: LshPlan | None = None,
    on_progress: ProgressCallback | None = None,
    executor: Executor | None = None,
) -> CandidatePairs:
    """Pairs at or above ``floor`` that involve at least one new record.

    New records are compared with every old record and with each other; pairs of
    two old records are not recomputed. Indices are rows of ``clks``; each pair
    is reported once with ``left < right``. With an LSH ``plan`` only pairs that
    share a bucket are scored (a subset of the exhaustive result). ``executor``
    says where the comparisons run (``None``: in this process); every executor
    returns the same pairs in the same order.
    """
    executor = executor or IN_PROCESS
    with PreparedSides(clks) as prepared:
        return executor.scan(clks, plan_new_record_tasks(is_new), floor, plan=plan,
                             on_progress=on_progress, prepared=prepared)


def decide(
    floor_pairs: CandidatePairs,
    floor: float,
    owners: np.ndarray,
    *,
    threshold: float | None = None,
    max_per_owner: int | Mapping[int, int] | None = None,
    cross_owner_only: bool = False,
    known_matches: np.ndarray | None = None,
    known_non_matches: np.ndarray | None = None,
    on_progress: ProgressCallback | None = None,
    fit_model: bool = True,
    tail: SampledTail | None = None,
    start: ThresholdChoice | None = None,
    lowest: float | None = None,
    bin_width: float | None = None,
    fit_tolerance: float = 0.0,
) -> LinkageResult:
    """Choose the threshold from the pairs above the floor and group the records.

    Args:
        floor_pairs: every candidate pair at or above ``floor`` (indices into ``owners``).
        floor: the lowest score collected.
        owners: owner (agency/file) index of each record.
        threshold: a Dice threshold, or ``None`` for auto.
        max_per_owner: passed to ``greedy_groups`` (1 = 1-to-1 linkage; a mapping limits
            only the owners named, e.g. those whose files are deduplicated).
        cross_owner_only: ignore pairs of records with the same owner.
        known_matches, known_non_matches: scores of pairs people reviewed as matches /
            non-matches; the score model learns from them.
        fit_model: with a numeric ``threshold``, ``False`` skips the score model (no
            estimates; confidences are the groups' weakest scores).
        tail: ``floor_pairs`` below ``tail.below`` are a sample (see ``SampledTail``).
        start: the choice made on a sample of the same comparisons; the score model's
            fits start from its optimum (see ``choose_threshold``).
        lowest: where the full scan began when ``tail`` is set: in a stretch of thresholds
            that tie for the best expected F1, auto takes one at or above it (see
            ``choose_threshold``).
        bin_width: of the score model's histograms (``None``: the model's own).
        fit_tolerance: of the score model's optimiser (``choose_threshold``; 0: its own).
    """
    report = on_progress or (lambda stage, done, total: None)
    if cross_owner_only:
        keep = owners[floor_pairs.left] != owners[floor_pairs.right]
        floor_pairs = CandidatePairs(floor_pairs.left[keep], floor_pairs.right[keep],
                                     floor_pairs.score[keep])
    report("choosing threshold", 0, 1)
    labelled = {}
    if known_matches is not None and len(known_matches):
        labelled["known_matches"] = np.asarray(known_matches, np.float64)
    if known_non_matches is not None and len(known_non_matches):
        labelled["known_non_matches"] = np.asarray(known_non_matches, np.float64)
    if threshold is not None and not fit_model:
        choice = ThresholdChoice(threshold, "set by the coordinator", None)
    else:
        solver = (one_to_one_scores(floor_pairs, owners, tail)
                  if _one_to_one(max_per_owner, owners) else None)
        choice = choose_threshold(floor_pairs.score, threshold, floor, **labelled,
                                  solver=solver, tail=tail, start=start, lowest=lowest,
                                  tolerance=fit_tolerance,
                                  **({"bin_width": bin_width} if bin_width else {}))
        if threshold is None and solver is None and choice.model is not None:
            choice = _grouped_choice(choice, floor_pairs, owners, max_per_owner, tail)
    report("choosing threshold", 1, 1)
    keep = floor_pairs.score >= choice.threshold
    pairs = CandidatePairs(floor_pairs.left[keep], floor_pairs.right[keep], floor_pairs.score[keep])
    report("grouping", 0, len(pairs))
    grouping = greedy_groups(pairs, owners.shape[0], owners, max_per_owner=max_per_owner)
    report("grouping", len(pairs), len(pairs))
    if choice.model is not None:
        confidence = choice.model.match_probability(grouping.weakest_score)
    else:
        confidence = grouping.weakest_score.copy()
    return LinkageResult(choice, floor, pairs, floor_pairs.score, grouping, confidence, tail)


#: The window around the pair model's threshold in which ``_grouped_choice`` looks, and its step.
_GROUPED_BELOW, _GROUPED_ABOVE, _GROUPED_STEP = 0.03, 0.01, 0.0025


def _grouped_choice(choice: ThresholdChoice, floor_pairs: CandidatePairs, owners: np.ndarray,
                    max_per_owner, tail: SampledTail | None) -> ThresholdChoice:
    """The threshold near the pair model's whose *grouped* links have the best expected F1.

    ``choose_threshold`` weighs every candidate pair above a threshold as a
    link, but the grouping keeps only the pairs it can place in one group: a
    false candidate beside two records' better partners is left out. So a
    threshold a little lower than the pair optimum can link better (on
    held-out data the pair optimum 0.800 grouped to F1 0.876, 0.7925 to 0.892).
    This groups at each threshold of a small window and takes the best
    expected F1 of the pairs that end up inside one group (the model's match
    probabilities, as for the one-to-one solver's links). Thresholds where
    pairs are a sample (``tail``) are left out: the grouping needs all of them.
    """
    model, scores = choice.model, floor_pairs.score
    probability = model.match_probability(scores)
    expected_matches = float(probability.sum()) if tail is None else float(
        (probability * tail.weights(scores)).sum())
    lowest = max(choice.threshold - _GROUPED_BELOW, tail.below if tail is not None else 0.0)
    grid = np.round(np.arange(choice.threshold + _GROUPED_ABOVE, lowest - 1e-9, -_GROUPED_STEP), 4)
    best, best_f1 = choice.threshold, -1.0
    for candidate in grid:  # from the top: ties keep the higher threshold
        keep = scores >= candidate
        labels = greedy_groups(CandidatePairs(floor_pairs.left[keep], floor_pairs.right[keep],
                                              scores[keep]), owners.shape[0], owners,
                               max_per_owner=max_per_owner).labels
        left, right = labels[floor_pairs.left[keep]], labels[floor_pairs.right[keep]]
        inside = (left >= 0) & (left == right)
        true_positive = float(probability[keep][inside].sum())
        f1 = 2 * true_positive / max(float(inside.sum()) + expected_matches, 1e-12)
        if f1 > best_f1 + 1e-12:
            best, best_f1 = float(candidate), f1
    if best == choice.threshold:
        return choice
    precision, recall = _expected_quality(scores, model, best,
                                          None if tail is None else tail.weights(scores))
    reason = (f"{choice.reason}; grouped, the links at {best:.3f} have the best expected F1 "
              f"({best_f1:.3f})")
    return replace(choice, threshold=best, reason=reason, estimated_precision=precision,
                   estimated_recall=recall)


def _one_to_one(max_per_owner, owners: np.ndarray) -> bool:
    """Every owner may place at most one record in a group (1-to-1 linkage)."""
    if isinstance(max_per_owner, Mapping):
        present = np.unique(owners).tolist()
        return bool(present) and all(max_per_owner.get(owner) == 1 for owner in present)
    return max_per_owner == 1


def link_records(
    clks: np.ndarray,
    owners: np.ndarray,
    *,
    threshold: float | None = None,
    max_per_owner: int | Mapping[int, int] | None = None,
    cross_owner_only: bool = False,
    estimates: bool | None = None,
    tail_sample: bool | float | None = None,
    executor: Executor | None = None,
    on_progress: ProgressCallback | None = None,
    prepared: PreparedSides | None = None,
) -> LinkageResult:
    """Compare all records pairwise, choose the threshold and group the matches.

    ``clks`` stacks every record's CLK (all agencies); with ``cross_owner_only``
    pairs of one owner's records are never compared. The other arguments are
    those of ``decide``, and:

    Args:
        estimates: fit the score model (match probabilities as confidences,
            estimated precision and recall). Always done for ``threshold=None``
            (auto needs it); by default not for a numeric threshold, which is
            then scanned at that threshold only.
        tail_sample: estimate the model's non-match tail from a sample of the
            records (see ``SampledTail``) and scan everything only from just
            below the threshold; ``None`` does so above
            ``TAIL_SAMPLE_MIN_COMPARISONS`` comparisons; a number in (0, 1) is
            the share of records to sample (default ``_TAIL_SHARE``, at least
            ``_TAIL_MIN_ROWS`` records).
        executor: where the comparisons run (``None``: in this process).
        prepared: sides of ``clks`` prepared already (``offline.match_batches`` prepares
            them while numba loads); closed here.
    """
    with prepared if prepared is not None else PreparedSides(clks) as sides:
        return _link(clks, owners, threshold, max_per_owner, cross_owner_only, estimates,
                     tail_sample, executor or IN_PROCESS, sides, on_progress)


def _link(clks, owners, threshold, max_per_owner, cross_owner_only, estimates, tail_sample,
          executor: Executor, prepared: PreparedSides,
          on_progress: ProgressCallback | None) -> LinkageResult:
    """``link_records`` with every scan's sides prepared once, in ``prepared``."""
    def scan(tasks, level, progress=None):
        return executor.scan(clks, tasks, level, on_progress=progress, prepared=prepared)

    tasks = plan_owner_tasks(owners, cross_owner_only)
    fit_model = threshold is None or bool(estimates)
    if not fit_model:
        pairs = scan(tasks, threshold, on_progress)
        return decide(pairs, threshold, owners, threshold=threshold, max_per_owner=max_per_owner,
                      cross_owner_only=cross_owner_only, on_progress=on_progress,
                      fit_model=False)
    floor = choose_floor(clks)
    if threshold is not None:
        floor = min(floor, threshold)
    comparisons = sum(task.comparisons for task in tasks)
    if tail_sample is None:
        tail_sample = comparisons > TAIL_SAMPLE_MIN_COMPARISONS
    limits = {"max_per_owner": max_per_owner, "cross_owner_only": cross_owner_only}
    if not tail_sample:
        floor_pairs = scan(tasks, floor, on_progress)
        return decide(floor_pairs, floor, owners, threshold=threshold, on_progress=on_progress,
                      **limits)
    share = tail_sample if not isinstance(tail_sample, bool) else None
    sampled_tasks, weight = _sample_tasks(tasks, share)
    sample = scan(sampled_tasks, floor)
    if threshold is not None:
        level, start = threshold, None
    else:
        # The sample's fit only picks the scan level and the basin the full fit descends
        # in, so it is binned coarser (a quarter of the likelihood's cost) and stops sooner.
        guess = decide(sample, floor, owners, **limits, tail=SampledTail(1.0 + 1e-9, weight),
                       bin_width=_SAMPLE_BIN_WIDTH, fit_tolerance=_SAMPLE_FIT_TOLERANCE)
        level, start = _scan_level(guess.choice, floor), guess.choice
    while True:
        full = scan(tasks, level, on_progress)
        below = sample.score < level
        floor_pairs = CandidatePairs.concat([
            CandidatePairs(sample.left[below], sample.right[below], sample.score[below]), full])
        tail = SampledTail(level, weight) if level > floor else None
        result = decide(floor_pairs, floor, owners, threshold=threshold, on_progress=on_progress,
                        tail=tail, start=start, lowest=level if tail else None, **limits)
        if tail is None or result.choice.threshold >= level:
            return result
        level = max(floor, result.choice.threshold - _SCAN_MARGIN)  # rare: the sample misled


def _scan_level(guess: ThresholdChoice, floor: float) -> float:
    """Where the full scan of a sampled auto run starts, from the sample's choice.

    Usually ``_SCAN_MARGIN`` below it, so that the final choice can still move down a
    little. When the sample's choice is the middle of a stretch of thresholds that tie
    for the best expected F1 (matches and non-matches well apart: every threshold in it
    links the same pairs) reaching further down than the margin, the scan starts just
    below the choice and the final choice stays in the stretch's scanned part: the same
    links, and the kernel rules out far more pairs early at a higher level.
    """
    margin = _SCAN_MARGIN
    if guess.tied is not None and guess.threshold - guess.tied[0] > _SCAN_MARGIN:
        margin = _FLAT_SCAN_MARGIN
    return max(floor, guess.threshold - margin)


def _sample_tasks(tasks: Sequence[ComparisonTask], share: float | None = None,
                  seed: int = _TAIL_SEED) -> tuple[list[ComparisonTask], float]:
    """The same tasks restricted to a random share of their left rows, and how many pairs
    each sampled pair stands for.

    Every pair of a task is sampled with the same probability: a pair across two
    sets when its left record is drawn, a pair within one set (``same``) when
    either of its records is (the drawn records against each other and against
    the rest).
    """
    if not tasks:
        return [], 1.0
    if any(task.same for task in tasks) and not all(task.same for task in tasks):
        raise ValueError("tasks mix pairs within and across sets")  # not planned by this module
    rng = np.random.default_rng(seed)
    if share is None:
        largest = max(task.left.size for task in tasks)
        share = min(1.0, max(_TAIL_SHARE, _TAIL_MIN_ROWS / max(largest, 1)))
    if not 0.0 < share <= 1.0:
        raise ValueError(f"the tail sample's share must be in (0, 1], got {share}")
    sampled = []
    for task in tasks:
        drawn = task.left[rng.random(task.left.size) < share]
        if task.same:
            # Pairs (drawn, anyone): a pair {i, j} is in the sample when i or j was drawn.
            sampled.append(ComparisonTask(drawn, drawn, same=True))
            rest = np.setdiff1d(task.left, drawn, assume_unique=True)
            if rest.size:
                sampled.append(ComparisonTask(drawn, rest))
        else:
            sampled.append(ComparisonTask(drawn, task.right))
    same_share = 1.0 - (1.0 - share) ** 2
    return sampled, 1.0 / (same_share if tasks[0].same else share)


def warm_up() -> None:
    """Compile every numba function a run uses, so that the first real run does not.

    The functions are compiled with ``cache=True``: numba writes the machine code
    beside the package's sources (``__pycache__``), and later processes load it in
    milliseconds instead of compiling for tens of seconds. ``make`` calls this
    once after installing, and the server once when it starts; calling it again
    costs only the cache loads. The calls use the argument types of real runs
    (``uint64`` CLK matrices, ``int64`` indices, ``float64`` scores).
    """
    clks, owners = _warm_up_records()
    for threads in sorted({1, numba.get_num_threads()}):
        with _numba_threads(threads):
            for same in (False, True):
                left = clks if same else clks[:150]
                right = clks if same else clks[150:]
                CandidatePairs.concat(list(iter_dice_tiles(left, right, 0.8, same=same)))
            plan = plan_lsh(1024, 2 * 450.0, 0.8, records=150)
            if plan is not None:
                lsh_candidates(clks[:150], clks[150:], 0.8, plan)
                lsh_candidates(clks, clks, 0.8, plan, same=True)
    preload()


def preload() -> None:
    """Load the compiled code of an exhaustive run's kernels (the scan and the grouping).

    numba's first call of a cached function initialises its compiler once per process
    (0.5-1 s); ``executor.load_kernels_in_background`` does it here while the caller reads
    its input.
    """
    clks, owners = _warm_up_records()
    pairs = CandidatePairs.concat(list(iter_dice_tiles(clks[:150], clks[150:], 0.8)))
    greedy_groups(pairs, 300, owners, max_per_owner=1)
    greedy_groups(pairs, 300, owners)


def _warm_up_records() -> tuple[np.ndarray, np.ndarray]:
    """300 random 1024-bit CLKs, the second half copies of the first, in two owners."""
    rng = np.random.default_rng(0)
    clks = np.packbits(rng.random((300, 1024)) < 0.4, axis=1).view("<u8").copy()
    clks[150:] = clks[:150]
    return clks, np.repeat(np.arange(2), 150)


def _numba_threads(threads: int):
    from linkage.matching.kernel import _thread_count
    return _thread_count(threads)
