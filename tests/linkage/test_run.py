"""The incremental run in the core: settings, floor policy, deduplicated agencies, the
needs-review rule and the run summary's stored and contract forms."""

from __future__ import annotations

import numpy as np
import pytest

from linkage.matching.candidates import CandidatePairs
from linkage.matching.engine import link_records
from linkage.errors import InvalidRequestError
from linkage.matching.review import REVIEW_DICE_MARGIN, REVIEW_PROBABILITIES, needs_review
from linkage.matching.run import (
    AUTO,
    Blocking,
    RunRecords,
    RunReviews,
    RunSettings,
    can_reuse,
    link_incrementally,
    plan_floor,
)
from linkage.matching.run_summary import EntityTypeSummary, RunSummary

SECRET = b"s" * 32
NO_PAIRS = CandidatePairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))


def _records(count: int, seed: int, agencies: int = 2, *, is_new=None,
             flips=(0.01, 0.15)) -> RunRecords:
    """``agencies`` files of ``count`` random CLKs; in each later file half the records are
    damaged copies of the first file's (some near the threshold)."""
    rng = np.random.default_rng(seed)
    words = 16

    def random(rows):
        density = rng.uniform(0.3, 0.5, rows)[:, None]
        return np.packbits(rng.random((rows, words * 64)) < density, axis=1).view("<u8")

    files = [random(count)]
    for _ in range(agencies - 1):
        other = random(count)
        copies = count // 2
        noise = np.packbits(rng.random((copies, words * 64))
                            < rng.uniform(*flips, copies)[:, None], axis=1).view("<u8")
        other[:copies] = files[0][:copies] ^ noise
        files.append(other)
    clks = np.concatenate(files)
    total = clks.shape[0]
    agency = np.repeat(np.arange(1, agencies + 1), count)
    return RunRecords(agency, [f"r{i}" for i in range(total)],
                      np.array(["person"] * total, dtype=object),
                      np.ones(total, bool) if is_new is None else is_new,
                      {"person": clks})


def _groups(outcome) -> list[tuple[int, ...]]:
    return sorted(tuple(sorted(g.members.tolist())) for g in outcome.groups)


def _run(records, settings, kept=NO_PAIRS, floor=None, **options):
    plan = plan_floor(records, settings, None if floor is None else floor)
    return link_incrementally(records, kept, settings, RunReviews(), floor=plan.floor,
                              group_key_secret=SECRET, **options)


def test_settings_are_parsed_once_with_clear_errors():
    assert RunSettings.parse("auto") == RunSettings(AUTO, Blocking.AUTO, False)
    assert RunSettings.parse(" 0.8 ", "LSH").threshold == 0.8
    assert RunSettings.parse("0.8").threshold_setting == "0.8"
    with pytest.raises(InvalidRequestError, match="neither 'auto' nor a number"):
        RunSettings.parse("high")
    with pytest.raises(InvalidRequestError, match="outside"):
        RunSettings.parse("1.5")
    with pytest.raises(InvalidRequestError, match="Blocking is 'auto', 'lsh' or 'exhaustive'"):
        RunSettings.parse("0.8", "buckets")
    with pytest.raises(InvalidRequestError, match="LSH blocking needs a numeric threshold"):
        RunSettings.parse("auto", "lsh")


def test_a_numeric_threshold_is_scanned_at_itself_and_fits_no_model():
    records = _records(400, 1)
    settings = RunSettings.parse("0.8")
    assert plan_floor(records, settings, None).floor == 0.8
    outcome = _run(records, settings)
    assert outcome.results["person"].choice.model is None
    assert outcome.summary.estimated_precision == 0.0
    assert not outcome.summary.entity_types["person"].modelled
    assert outcome.new_pairs.score.min() >= 0.8
    # estimates ask for the model, and so for the tail below the threshold
    estimated = RunSettings.parse("0.8", estimates=True)
    assert plan_floor(records, estimated, None).floor < 0.8
    assert plan_floor(records, estimated, 0.8).reset_kept_pairs
    assert _run(records, estimated).summary.entity_types["person"].modelled


def test_floor_policy_keeps_or_discards_the_kept_pairs():
    records = _records(300, 2)
    assert plan_floor(records, RunSettings.parse("0.8"), 0.6).floor == 0.6  # lower: kept
    higher = plan_floor(records, RunSettings.parse("0.7"), 0.8)
    assert higher.reset_kept_pairs and higher.floor == 0.7
    too_high_for_auto = plan_floor(records, RunSettings.parse("auto"), 0.8)
    assert too_high_for_auto.reset_kept_pairs and too_high_for_auto.floor <= 0.7
    assert not plan_floor(records, RunSettings.parse("auto"), 0.6).reset_kept_pairs


def test_the_run_finds_the_groups_of_link_records():
    """Both agencies deduplicated: the offline 1-to-1 match and the server's run agree."""
    records = _records(500, 3)
    outcome = _run(records, RunSettings.parse("0.8"), deduplicated=frozenset({1, 2}))
    offline = link_records(records.clks["person"], records.agency, threshold=0.8,
                           max_per_owner=1, cross_owner_only=True)
    expected = sorted(tuple(sorted(m.tolist())) for m in offline.grouping.members())
    assert _groups(outcome) == expected and expected


def test_records_of_one_deduplicated_agency_are_never_compared():
    records = _records(300, 4, agencies=3)
    agency = records.agency
    # agency 3 holds its own near-copies, so an undeduplicated run pairs them
    clks = records.clks["person"].copy()
    third = np.flatnonzero(agency == 3)
    clks[third[100:150]] = clks[third[:50]]
    records = RunRecords(agency, records.record_ids, records.entity_type, records.is_new,
                         {"person": clks})
    settings = RunSettings.parse("0.8")
    plain = _run(records, settings)
    within_three = (agency[plain.new_pairs.left] == 3) & (agency[plain.new_pairs.right] == 3)
    assert within_three.sum() >= 50
    deduplicated = _run(records, settings, deduplicated=frozenset({3}))
    pairs = deduplicated.new_pairs
    assert not ((agency[pairs.left] == 3) & (agency[pairs.right] == 3)).any()
    # every other pair is still found: only the pairs inside agency 3 are left out
    found = set(zip(pairs.left.tolist(), pairs.right.tolist()))
    expected = {(a, b) for a, b in zip(plain.new_pairs.left.tolist(),
                                       plain.new_pairs.right.tolist())
                if not (agency[a] == 3 and agency[b] == 3)}
    assert found == expected
    for group in deduplicated.groups:
        assert np.count_nonzero(agency[group.members] == 3) <= 1


@pytest.mark.parametrize("deduplicated", [frozenset(), frozenset({1, 3}), frozenset({2, 3, 4})])
def test_an_incremental_run_equals_a_full_run(deduplicated):
    records = _records(300, 5, agencies=4)
    settings = RunSettings.parse("0.8")
    first_batch = np.isin(records.agency, [1, 3])
    # the first run holds agencies 1 and 3 only; positions are re-numbered for it
    first = RunRecords(records.agency[first_batch],
                       [r for r, keep in zip(records.record_ids, first_batch) if keep],
                       records.entity_type[first_batch], np.ones(first_batch.sum(), bool),
                       {"person": records.clks["person"][first_batch]})
    one = _run(first, settings, deduplicated=deduplicated)
    position = np.flatnonzero(first_batch)
    kept = CandidatePairs(position[one.new_pairs.left], position[one.new_pairs.right],
                          one.new_pairs.score)
    later = RunRecords(records.agency, records.record_ids, records.entity_type,
                       ~first_batch, records.clks)
    two = _run(later, settings, kept=kept, floor=one.floor, deduplicated=deduplicated)
    assert not (first_batch[two.new_pairs.left] & first_batch[two.new_pairs.right]).any()
    full = _run(records, settings, deduplicated=deduplicated)
    # the kept and the new pairs are the full run's pairs, each once
    both = CandidatePairs.concat([kept, two.new_pairs])
    assert sorted(zip(both.left.tolist(), both.right.tolist())) == sorted(
        zip(full.new_pairs.left.tolist(), full.new_pairs.right.tolist()))
    assert _groups(two) == _groups(full)
    assert {g.key for g in two.groups} == {g.key for g in full.groups}
    assert two.summary.new_records == int((~first_batch).sum())


def test_rejected_groups_lose_their_weakest_link():
    records = _records(300, 6)
    settings = RunSettings.parse("0.8")
    before = _run(records, settings)
    rejected = next(g for g in before.groups if g.members.size == 2)
    reviews = RunReviews({rejected.key: "rejected"}, [rejected.members])
    after = link_incrementally(records, NO_PAIRS, settings, reviews, floor=0.8,
                               group_key_secret=SECRET)
    assert rejected.key not in {g.key for g in after.groups}
    assert after.summary.rejected_links_broken == 1
    assert after.summary.reviews_digest == reviews.digest != before.summary.reviews_digest


def test_the_review_rule_reads_probabilities_and_dice_scores_differently():
    low, high = REVIEW_PROBABILITIES
    probabilities = np.array([low - 0.01, low, 0.5, high - 0.01, high])
    assert needs_review(probabilities, modelled=True, threshold=0.9).tolist() == [
        False, True, True, True, False]
    # Raw Dice scores of an unmodelled type are no probabilities: 0.7 at threshold 0.6 is a
    # clear link (the probability band would flag it); only links just above the threshold
    # are uncertain.
    dice = np.array([0.6, 0.6 + REVIEW_DICE_MARGIN - 0.001, 0.6 + REVIEW_DICE_MARGIN, 0.7])
    assert needs_review(dice, modelled=False, threshold=0.6).tolist() == [
        True, True, False, False]


def test_an_unmodelled_types_groups_are_flagged_by_the_dice_band():
    records = _records(400, 7, flips=(0.01, 0.25))
    outcome = _run(records, RunSettings.parse("0.6"))
    assert not outcome.summary.entity_types["person"].modelled
    weakest = np.array([g.weakest_score for g in outcome.groups])
    flagged = np.array([g.needs_review for g in outcome.groups])
    assert (weakest < 0.6 + REVIEW_DICE_MARGIN).any() and (weakest >= 0.7).any()
    assert flagged.tolist() == (weakest < 0.6 + REVIEW_DICE_MARGIN).tolist()
    assert outcome.summary.groups_to_review == int(flagged.sum())
    # with a model, the flags are the probability band of the confidences
    modelled = _run(records, RunSettings.parse("auto"))
    assert modelled.summary.entity_types["person"].modelled
    for group in modelled.groups:
        low, high = REVIEW_PROBABILITIES
        assert group.needs_review == (low <= group.confidence < high)


def test_reuse_needs_the_same_settings_records_and_decisions():
    records = _records(200, 8)
    settings = RunSettings.parse("0.8")
    summary = _run(records, settings).summary
    done = RunRecords(records.agency, records.record_ids, records.entity_type,
                      np.zeros(len(records), bool), records.clks)
    assert can_reuse(summary, settings, done, RunReviews())
    assert not can_reuse(summary, settings, records, RunReviews())  # new records
    assert not can_reuse(summary, RunSettings.parse("0.9"), done, RunReviews())
    assert not can_reuse(summary, RunSettings.parse("0.8", estimates=True), done, RunReviews())
    assert not can_reuse(summary, settings, done, RunReviews({"g-1": "accepted"}))
    assert not can_reuse(None, settings, done, RunReviews())


def test_the_summary_round_trips_through_json_and_the_contract():
    summary = _run(_records(300, 9), RunSettings.parse("auto")).summary.replace(
        run=3, seconds=1.25, batches_by_agency={1: 2, 2: 1})
    # the store numbers runs itself, and "reused" belongs to a reply: neither is stored
    assert RunSummary.from_json(summary.to_json()) == summary.replace(run=0)
    contract = RunSummary.from_contract_values(summary.contract_values())
    assert contract.contract_values() == summary.contract_values()
    view = contract.client_view()
    assert view["run"] == 3 and view["reviews_used"] == {"accepted": 0, "rejected": 0}


def test_summaries_stored_by_earlier_versions_still_load():
    """The ~35-key dictionary earlier servers stored (no 'modelled', a 'review_band')."""
    stored = {
        "threshold": 0.8, "threshold_setting": "0.8", "reviews_digest": "ab",
        "blocking_setting": "auto", "threshold_reason": "set by the coordinator",
        "estimated_precision": 0.97, "estimated_recall": 0.9,
        "entity_types": {"person": {"records": 10, "threshold": 0.8,
                                    "threshold_reason": "set by the coordinator", "groups": 3,
                                    "reviews_used_accepted": 1, "reviews_used_rejected": 0}},
        "records": 10, "records_by_agency": {"1": 6, "2": 4}, "batches_by_agency": {"1": 1},
        "new_records": 10, "candidate_pairs": 4, "groups": 3, "cross_agency_groups": 2,
        "groups_to_review": 1, "review_band": [0.2, 0.8], "reviews_used_accepted": 1,
        "reviews_used_rejected": 0, "rejected_links_broken": 0,
        "deduplicated_agencies": ["2"], "seconds": 0.5, "blocking": "person: exhaustive",
        "histogram": [[0.8, 0.81, 2]], "quality_curve": [[0.8, 0.9, 0.95]],
    }
    summary = RunSummary.from_json(stored)
    assert summary.records_by_agency == {1: 6, 2: 4}
    assert summary.deduplicated_agencies == (2,)
    assert summary.entity_types["person"] == EntityTypeSummary(
        10, 0.8, "set by the coordinator", 3, 1, 0, modelled=True)
    assert summary.histogram == ((0.8, 0.81, 2),) and summary.estimates_setting is False
    unmodelled = RunSummary.from_json(dict(stored, estimated_precision=0.0))
    assert not unmodelled.entity_types["person"].modelled
