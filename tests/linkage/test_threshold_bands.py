"""``auto`` from a banded histogram (two-server mode opens only counts per Dice band)."""

import numpy as np
import pytest

from linkage.errors import InvalidRequestError
from linkage.matching.threshold import band_match_shares, banded_tail_start, \
    choose_banded_threshold, \
    choose_threshold, fit_banded_score_model

EDGES = np.array([0.5, 0.55, 0.6, 0.65, 0.7, 0.72, 0.74, 0.76, 0.78, 0.8, 0.82, 0.85, 0.9, 0.95])


def _scores(rng, non_matches=200_000, matches=2_000):
    non = rng.normal(0.45, 0.06, non_matches)
    match = 1 - rng.beta(1.5, 12, matches)
    return np.concatenate([non[non >= 0.5], match]), match


def _banded(scores):
    return np.histogram(scores, bins=[*EDGES, 1.0 + 1e-12])[0]


def _f1(scores, matches, threshold):
    linked = (scores >= threshold).sum()
    true = (matches >= threshold).sum()
    return 2 * true / (linked + matches.size)


def test_banded_auto_picks_the_best_band_edge_and_matches_the_fine_fit():
    rng = np.random.default_rng(3)
    scores, matches = _scores(rng)
    banded = choose_banded_threshold(EDGES, _banded(scores))
    assert banded.threshold in EDGES
    best_edge = max(EDGES, key=lambda edge: _f1(scores, matches, edge))
    assert _f1(scores, matches, banded.threshold) >= _f1(scores, matches, best_edge) - 0.01
    fine = choose_threshold(scores, None, 0.5)
    assert abs(banded.threshold - fine.threshold) <= 0.05
    # the model describes the pairs from its floor up (the fit starts in the upper tail)
    modelled = int((scores >= banded.model.floor).sum())
    assert abs(banded.model.match_weight * modelled - matches.size) < 0.15 * matches.size
    assert "banded histogram" in banded.reason and 0.9 < banded.estimated_precision <= 1


def test_a_requested_threshold_is_kept_with_the_models_estimates():
    rng = np.random.default_rng(4)
    scores, _ = _scores(rng)
    choice = choose_banded_threshold(EDGES, _banded(scores), requested=0.8)
    assert choice.threshold == 0.8 and choice.reason == "set by the coordinator"
    assert choice.estimated_recall is not None


def test_too_few_or_unseparated_bands_fall_back_to_the_default():
    counts = np.zeros(EDGES.size, np.int64)
    counts[0] = 10
    assert fit_banded_score_model(EDGES, counts) is None
    assert choose_banded_threshold(EDGES, counts).threshold == 0.8


@pytest.mark.parametrize("edges, counts", [
    ([0.5], [3]), ([0.6, 0.5], [1, 2]), ([0.5, 1.0], [1, 2]), ([0.5, 0.6], [1, 2, 3]),
    ([0.5, 0.6], [1, -2]), ([0.5, 0.6], [1, 2.5]),
])
def test_malformed_bands_are_refused(edges, counts):
    with pytest.raises(InvalidRequestError, match="band"):
        fit_banded_score_model(edges, counts)


def test_band_match_shares_rise_with_the_band_and_match_the_truth():
    """A linked pair's confidence in two-server mode is its band's share of matches."""
    rng = np.random.default_rng(6)
    scores, matches = _scores(rng)
    model = fit_banded_score_model(EDGES, _banded(scores))
    shares = band_match_shares(model, EDGES)
    assert np.all(np.diff(shares) >= -1e-9) and shares[0] < 0.01 and shares[-1] > 0.99
    truth = _banded(matches) / np.maximum(_banded(scores), 1)
    busy = _banded(scores) >= 200
    assert np.abs(shares[busy] - truth[busy]).max() < 0.1


def test_the_banded_fit_starts_in_the_upper_tail_of_balanced_scores():
    """Balanced CLKs put nearly every pair above 0.5 and their non-match tail is heavier than
    a normal's: fitted from 0.5 the model gave the tail to the matches and chose far too low
    an edge; fitted from the edge with at most 10% of the pairs above it, it does not."""
    rng = np.random.default_rng(8)
    # a heavy upper tail: a normal's bulk plus a wider normal's shoulder
    non = np.concatenate([rng.normal(0.61, 0.025, 400_000), rng.normal(0.63, 0.04, 100_000)])
    match = 1 - rng.beta(2.0, 12, 500)
    scores = np.concatenate([non[non >= 0.5], match])
    counts = _banded(scores)
    start = banded_tail_start(counts)
    assert EDGES[start] > 0.6 and counts[start:].sum() <= 0.1 * counts.sum()
    choice = choose_banded_threshold(EDGES, counts)
    best_edge = max(EDGES, key=lambda edge: _f1(scores, match, edge))
    assert _f1(scores, match, choice.threshold) >= _f1(scores, match, best_edge) - 0.01
    from_the_bottom = fit_banded_score_model(EDGES, counts)
    assert from_the_bottom is None or choice.model.floor > from_the_bottom.floor
    shares = band_match_shares(choice.model, EDGES)
    assert np.all(shares[np.append(EDGES[1:], 1.0) <= choice.model.floor] == 0)
