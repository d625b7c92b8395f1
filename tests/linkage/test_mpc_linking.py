"""Grouping the hit pairs of a two-server run (``linkage.mpc.linking``)."""

from __future__ import annotations

import numpy as np
import pytest

from linkage.errors import InvalidRequestError
from linkage.matching.run import RunSettings
from linkage.mpc import Dealer, PartyMaterial, Plan, rational_threshold, run_locally, split_clks
from linkage.mpc import threshold_party
from linkage.mpc.linking import group_hits


def _clks(rng, rows: int, words: int = 4) -> np.ndarray:
    clks = rng.integers(0, 2 ** 63, size=(rows, words), dtype=np.uint64)
    clks[:, 0] |= np.uint64(1)
    return clks


def test_hit_pairs_from_shares_group_into_named_groups_with_a_summary():
    rng = np.random.default_rng(3)
    left = _clks(rng, 6)
    right = np.vstack([left[:3], _clks(rng, 2)])  # three true matches
    plan = Plan(left.shape[0], right.shape[0], 256)
    dealer = Dealer(plan)
    l0, l1 = split_clks(left, 256)
    r0, r1 = split_clks(right, 256)
    rational = rational_threshold(0.9, 256)
    hits, _, _ = run_locally(
        threshold_party(0, l0, r0, rational, PartyMaterial(0, plan, dealer.seeds[0])),
        threshold_party(1, l1, r1, rational,
                        PartyMaterial(1, plan, dealer.seeds[1], dealer.corrections())))
    agency = np.array([1] * 6 + [2] * 5)
    ids = [f"a{i}" for i in range(6)] + [f"b{i}" for i in range(5)]
    outcome = group_hits(agency, ids, hits.left, hits.right + 6, RunSettings.parse("0.9"),
                         b"k" * 32, frozenset({1, 2}))
    memberships = sorted(g.membership for g in outcome.groups)
    assert memberships == [[(1, f"a{i}"), (2, f"b{i}")] for i in range(3)]
    assert outcome.summary.groups == 3 and outcome.summary.records == 11
    assert all(g.weakest_score == 0.9 for g in outcome.groups)  # a lower bound, no score
    assert "two-server" in outcome.summary.threshold_reason


def test_auto_without_the_opened_histogram_choice_is_refused():
    # auto works only with the threshold chosen on the opened sample histogram
    with pytest.raises(InvalidRequestError, match="chosen by 'auto' on the opened histogram"):
        group_hits(np.zeros(2, np.int64), ["a", "b"], np.zeros(0, np.int64),
                   np.zeros(0, np.int64), RunSettings.parse("auto"), b"k" * 32)
