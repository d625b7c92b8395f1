"""The engine's run paths: numeric thresholds scanned at themselves, auto with a sampled tail,
comparison tasks and the in-process executor, and imports that stay light."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from linkage.matching.candidates import CandidatePairs, candidates_reference
from linkage.matching.engine import (
    IN_PROCESS,
    ComparisonTask,
    compare_new_records,
    decide,
    link_records,
    plan_new_record_tasks,
    plan_owner_tasks,
)
from linkage.matching.grouping import greedy_groups
from linkage.matching.kernel import dice_candidates_native
from linkage.matching.threshold import choose_threshold


def _random_clks(rng, count: int, words: int = 16) -> np.ndarray:
    density = rng.uniform(0.3, 0.5, count)[:, None]
    bits = rng.random((count, words * 64)) < density
    return np.packbits(bits, axis=1).view("<u8").copy()


def _two_files(count: int, seed: int, flips=(0.01, 0.15)) -> tuple[np.ndarray, np.ndarray]:
    """Two files of ``count`` random CLKs; half the second file are damaged copies of the first
    (``flips`` is the range of the share of bits flipped: some copies fall near the threshold)."""
    rng = np.random.default_rng(seed)
    left, right = _random_clks(rng, count), _random_clks(rng, count)
    copies = count // 2
    noise = np.packbits(rng.random((copies, left.shape[1] * 64))
                        < rng.uniform(*flips, copies)[:, None], axis=1).view("<u8")
    right[:copies] = left[:copies] ^ noise
    clks = np.concatenate([left, right])
    return clks, np.repeat(np.arange(2), count)


def _pair_set(pairs: CandidatePairs) -> dict[tuple[int, int], float]:
    return dict(zip(zip(pairs.left.tolist(), pairs.right.tolist()), pairs.score.tolist()))


def test_numeric_threshold_finds_exactly_the_pairs_at_or_above_it_without_a_model():
    clks, owners = _two_files(150, seed=1)
    result = link_records(clks, owners, threshold=0.8, max_per_owner=1, cross_owner_only=True)
    expected = candidates_reference(clks[:150], clks[150:], 0.8)
    assert _pair_set(result.pairs) == _pair_set(
        CandidatePairs(expected.left, expected.right + 150, expected.score))
    assert result.floor == 0.8 and result.choice.model is None
    assert result.choice.estimated_precision is None
    # Without a model a group's confidence is its weakest score.
    assert np.array_equal(result.confidence, result.grouping.weakest_score)


def test_numeric_threshold_groups_as_the_run_with_estimates_does():
    clks, owners = _two_files(400, seed=2)
    fast = link_records(clks, owners, threshold=0.75, max_per_owner=1, cross_owner_only=True)
    modelled = link_records(clks, owners, threshold=0.75, max_per_owner=1,
                            cross_owner_only=True, estimates=True, tail_sample=False)
    assert modelled.floor < 0.75 and modelled.choice.model is not None
    assert 0.0 < modelled.choice.estimated_precision <= 1.0
    assert _pair_set(fast.pairs) == _pair_set(modelled.pairs)
    assert np.array_equal(fast.grouping.labels, modelled.grouping.labels)


@pytest.mark.slow
def test_auto_with_a_sampled_tail_lands_where_the_full_scan_does():
    clks, owners = _two_files(3000, seed=3)
    limits = {"max_per_owner": 1, "cross_owner_only": True}
    full = link_records(clks, owners, tail_sample=False, **limits)
    sampled = link_records(clks, owners, tail_sample=0.1, **limits)
    assert full.choice.model is not None and sampled.tail is not None
    assert "1-in-10 sample" in sampled.choice.reason
    # Where the full scan's best thresholds tie over a stretch (every one links the same
    # pairs), the sampled run takes one in the stretch's part it scanned in full.
    low, high = full.choice.tied
    assert (low <= sampled.choice.threshold <= high
            or abs(sampled.choice.threshold - full.choice.threshold) <= 0.03)
    assert abs(sampled.choice.estimated_precision - full.choice.estimated_precision) <= 0.01
    assert abs(sampled.choice.estimated_recall - full.choice.estimated_recall) <= 0.01
    # Every pair at or above the chosen threshold was scanned in full, not sampled.
    assert sampled.tail.below <= sampled.choice.threshold
    truth = {(i, i + 3000) for i in range(1500)}
    links = []
    for result in (full, sampled):
        linked = {tuple(sorted(m.tolist())) for m in result.grouping.members()}
        assert len(linked & truth) / len(truth) > 0.97
        assert len(linked - truth) / max(len(linked), 1) < 0.02
        links.append(linked)
    assert len(links[0] ^ links[1]) <= 0.01 * len(links[0])


def test_cross_owner_tasks_compare_only_across_owners_and_find_what_the_full_scan_finds():
    rng = np.random.default_rng(4)
    clks = _random_clks(rng, 240, words=4)
    owners = rng.integers(0, 3, 240)
    tasks = plan_owner_tasks(owners, cross_owner_only=True)
    assert len(tasks) == 3 and sum(t.comparisons for t in tasks) == sum(
        int((owners == a).sum()) * int((owners == b).sum()) for a, b in ((0, 1), (0, 2), (1, 2)))
    across = IN_PROCESS.scan(clks, tasks, 0.55)
    everything = dice_candidates_native(clks, clks, 0.55, same=True)
    keep = owners[everything.left] != owners[everything.right]
    assert _pair_set(across) == _pair_set(CandidatePairs(
        everything.left[keep], everything.right[keep], everything.score[keep]))
    assert _pair_set(IN_PROCESS.scan(clks, plan_owner_tasks(owners, False), 0.55)) == \
        _pair_set(everything)


def test_new_records_are_compared_with_everything_and_old_pairs_are_not_redone():
    rng = np.random.default_rng(5)
    clks = _random_clks(rng, 200, words=4)
    is_new = rng.random(200) < 0.3
    found = compare_new_records(clks, is_new, 0.55)
    everything = dice_candidates_native(clks, clks, 0.55, same=True)
    keep = is_new[everything.left] | is_new[everything.right]
    assert _pair_set(found) == _pair_set(CandidatePairs(
        everything.left[keep], everything.right[keep], everything.score[keep]))
    tasks = plan_new_record_tasks(is_new)
    assert [task.same for task in tasks] == [False, True]
    assert isinstance(tasks[0], ComparisonTask)


def test_progress_reaches_the_total_of_each_stage():
    clks, owners = _two_files(300, seed=6)
    seen: dict[str, list[tuple[int, int]]] = {}
    link_records(clks, owners, threshold=0.8, max_per_owner=1, cross_owner_only=True,
                 on_progress=lambda stage, done, total: seen.setdefault(stage, []).append(
                     (done, total)))
    assert {"comparing", "grouping"} <= set(seen)
    for stage, steps in seen.items():
        assert steps[-1][0] == steps[-1][1], stage
        assert [done for done, _ in steps] == sorted(done for done, _ in steps), stage


def test_importing_the_package_loads_neither_scipy_stats_nor_numba():
    code = ("import sys, linkage, linkage.errors, linkage.batch, linkage.matching.threshold; "
            "print(','.join(m for m in ('scipy.stats', 'scipy.optimize', 'numba', 'grpc', 'clkhash') "
            "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == ""
    assert linkage_names_resolve()


def linkage_names_resolve() -> bool:
    import linkage
    return all(getattr(linkage, name) is not None for name in linkage.__all__) and \
        linkage.__all__ == sorted(linkage.__all__)


def test_building_an_executor_loads_no_dask_until_a_scan_needs_the_cluster():
    """``linkage match`` and ``linkage-server`` build their executor in the core; Dask costs
    seconds to import, so only a scan on a cluster may load it."""
    code = ("import sys; from linkage.matching.dask_executor import make_executor; "
            "assert make_executor('in-process') is None; "
            "executor = make_executor('dask://10.0.0.5:8786'); "
            "assert executor.address == 'tcp://10.0.0.5:8786'; "
            "print('distributed' in sys.modules, 'dask' in sys.modules)")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "False False"


def _three_agencies(seed, entities=600):
    """Each person in three agencies; a fifth of the true pairs with a damaged field
    (0.66-0.85), and random non-match candidates between agencies above 0.55."""
    rng = np.random.default_rng(seed)
    owners = np.tile([0, 1, 2], entities)
    entity = np.repeat(np.arange(entities), 3)
    base = np.arange(entities) * 3
    left = np.concatenate([base, base, base + 1])
    right = np.concatenate([base + 1, base + 2, base + 2])
    damaged = rng.random(left.size) < 0.2
    true = np.where(damaged, rng.uniform(0.66, 0.85, left.size),
                    np.clip(rng.beta(30, 3, left.size), 0, 0.999))
    first, second = rng.integers(0, entities * 3, (2, 150_000))
    score = rng.normal(0.5, 0.06, 150_000)
    keep = (entity[first] != entity[second]) & (owners[first] != owners[second]) & (score >= 0.55)
    pairs = CandidatePairs(
        np.concatenate([left, np.minimum(first, second)[keep]]),
        np.concatenate([right, np.maximum(first, second)[keep]]),
        np.concatenate([true, score[keep]]))
    return pairs, owners, entity


def _pairwise_f1(labels, entity):
    labels = labels.copy()
    alone = labels < 0
    labels[alone] = -1 - np.flatnonzero(alone)
    _, sizes = np.unique(labels, return_counts=True)
    _, shared = np.unique(labels.astype(np.int64) * 10**6 + entity, return_counts=True)
    true_links = (shared * (shared - 1) // 2).sum()
    return 2 * true_links / ((sizes * (sizes - 1) // 2).sum() + 3 * (entity.max() + 1))


def test_auto_takes_the_threshold_whose_grouped_links_are_best():
    # The grouping leaves out a false candidate it cannot place beside two records' true
    # partners, so a threshold below the pair model's optimum links more true pairs for few
    # false ones: auto weighs the grouped links.
    pairs, owners, entity = _three_agencies(0)
    pair_model = choose_threshold(pairs.score, None, 0.55)
    keep = pairs.score >= pair_model.threshold
    at_pair_model = greedy_groups(CandidatePairs(pairs.left[keep], pairs.right[keep],
                                                 pairs.score[keep]), owners.size, owners).labels
    result = decide(pairs, 0.55, owners)
    assert result.choice.threshold < pair_model.threshold
    assert "grouped" in result.choice.reason
    assert _pairwise_f1(result.grouping.labels, entity) > _pairwise_f1(at_pair_model, entity) + 0.01


def test_auto_one_to_one_across_three_deduplicated_agencies_scores_the_links_not_the_groups(
        dataset, batches):
    # Three deduplicated agencies of the shipped (balanced) schema: most records have no
    # partner, and at the floor the solver joins one of them to nearly every true pair, so
    # each group's weakest link is a non-match. Fitted to those weakest links the model took
    # every link for a match and chose the floor (0.64, pairwise F1 about 0.3).
    names = sorted(batches)[:3]
    clks = np.concatenate([batches[name].clks for name in names])
    owners = np.concatenate([np.full(len(batches[name]), index)
                             for index, name in enumerate(names)])
    entity_of = {key: entity for key, entity in dataset.truth.items()}
    entity = np.array([entity_of[(name, record)] for name in names
                       for record in batches[name].record_ids])
    result = link_records(clks, owners, max_per_owner=1, cross_owner_only=True)
    assert "one-to-one solver" in result.choice.reason
    pairs = result.pairs
    same = entity[pairs.left] == entity[pairs.right]
    cross = owners[:, None] != owners[None, :]
    true_pairs = int(((entity[:, None] == entity[None, :]) & cross).sum() // 2)
    f1 = 2 * int(same.sum()) / (len(pairs) + true_pairs)
    assert result.choice.threshold > 0.7, result.choice.reason
    assert f1 > 0.95, (f1, result.choice.reason)
