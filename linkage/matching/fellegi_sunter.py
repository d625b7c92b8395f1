"""A Fellegi-Sunter model over per-field similarity levels, trained by EM without labels.

Why: a record-level Dice score weighs every field alike and counts a missing
field against the pair. Fellegi and Sunter weigh each field by how much more
often its agreement level occurs among matches (m) than among non-matches (u);
a missing value contributes nothing. That is what plaintext linkers such as
Splink do; here it runs on the per-field Dice of encoded segments
(``linkage.encoding.field_segments``).

Training follows Splink's recipe, because the obvious one fails:

* **u from random pairs.** Nearly all random pairs are non-matches, so their
  levels estimate u without labels.
* **m by EM in blocked sessions.** A session takes the pairs that agree
  exactly on some fields (e.g. the date of birth) and estimates, with u held
  fixed, the m of the *other* fields only. Among pairs chosen for one field,
  the other fields of non-matches still look like random pairs (conditional
  independence), so the fixed u is right for them. EM on candidate pairs
  chosen by the record-level score fails both ways (measured): with u fixed it
  calls every candidate a match; with u free it settles on another latent
  class (people of one country, or of one family name).
* **The prior** is the match share among *all* pairs, so that a pair's
  probability does not depend on how it was found (blocking only chooses
  which pairs are scored).

Known matches and non-matches (review decisions) enter every session as pairs
whose class is given, each counted once: a handful of reviews moves the model
by a handful of pairs, not more.

Pure: arrays in, arrays out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from linkage.matching.candidates import CandidatePairs
from linkage.encoding.field_segments import (
    FieldLayout,
    SHARED_KEY_FIELDS,
    exact_segment_pairs,
    pair_similarities,
    segment_frequencies,
)

__all__ = ["FellegiSunterModel", "FieldwiseScores", "LEVEL_THRESHOLDS", "ReviewedPairs",
           "TrainingSession", "fit_fellegi_sunter", "levels_of", "score_fieldwise",
           "model_cut", "model_quality", "score_levels", "u_from_counts"]

#: Per-field Dice at or above which a pair is at level 0 (about exact), 1, 2, 3; below: last.
LEVEL_THRESHOLDS = (0.95, 0.85, 0.7, 0.5)
LEVELS = len(LEVEL_THRESHOLDS) + 1
_MISSING = -1
_SMOOTHING = 1.0  # pseudo-count spread over the levels, so that no m or u is zero


def levels_of(similarity: np.ndarray, thresholds=LEVEL_THRESHOLDS) -> np.ndarray:
    """Agreement level per pair and field (0 = best); ``-1`` where the similarity is NaN."""
    levels = np.full(similarity.shape, len(thresholds), np.int64)
    for level in range(len(thresholds) - 1, -1, -1):
        levels[similarity >= thresholds[level]] = level
    levels[np.isnan(similarity)] = _MISSING
    return levels


@dataclass(frozen=True)
class FellegiSunterModel:
    """m and u per field and level, and the match share among all record pairs.

    ``m[f, l]`` is P(level l of field f | match), ``u[f, l]`` the same among
    non-matches; ``match_share`` is P(match) of two records drawn at random.
    ``sessions`` counts, per field, the EM sessions that estimated its m.
    """

    fields: tuple[str, ...]
    m: np.ndarray = field(repr=False)
    u: np.ndarray = field(repr=False)
    match_share: float
    sessions: tuple[int, ...] = ()

    @property
    def weights(self) -> np.ndarray:
        """log2(m / u) per field and level, made non-increasing from level to level.

        A worse agreement never counts for more than a better one. Without
        this, a level that is rare among random pairs gets a large positive
        weight even when it means disagreement (measured: dates with Dice
        below 0.5, which random dates rarely reach since they share "19" and
        the separators, got +8 bits).
        """
        return np.minimum.accumulate(np.log2(self.m / self.u), axis=1)

    def field_weights(self, levels: np.ndarray) -> np.ndarray:
        """log2(m / u) per pair and field; 0 where a field is missing (no evidence)."""
        weights = self.weights
        out = np.zeros(levels.shape)
        present = levels >= 0
        columns = np.broadcast_to(np.arange(levels.shape[1]), levels.shape)
        out[present] = weights[columns[present], levels[present]]
        return out

    def prior_weight(self) -> float:
        share = min(max(self.match_share, 1e-15), 1 - 1e-15)
        return float(np.log2(share / (1 - share)))

    def term_frequency_weights(self, levels: np.ndarray, value_share: np.ndarray
                               ) -> np.ndarray:
        """Splink's term-frequency adjustment of exact agreements: log2(u[f, 0] / share).

        ``value_share[p, f]`` is the share of records holding pair p's value of
        field f where the pair agrees exactly on it (NaN elsewhere, or where the
        field has no adjustment): agreeing on a rare name is stronger evidence
        than agreeing on a common one, at the same level.
        """
        exact = (levels == 0) & ~np.isnan(value_share)
        out = np.zeros(levels.shape)
        u_exact = np.broadcast_to(self.u[:, 0], levels.shape)
        out[exact] = np.log2(u_exact[exact] / np.maximum(value_share[exact], 1e-12))
        return out

    def match_weight(self, levels: np.ndarray, value_share: np.ndarray | None = None
                     ) -> np.ndarray:
        """The prior plus every field's weight: log2 of the posterior odds of a match."""
        weights = self.field_weights(levels)
        if value_share is not None:
            weights = weights + self.term_frequency_weights(levels, value_share)
        return self.prior_weight() + weights.sum(axis=1)

    def match_probability(self, levels: np.ndarray, value_share: np.ndarray | None = None
                          ) -> np.ndarray:
        weight = np.clip(self.match_weight(levels, value_share), -60, 60)
        return 1.0 / (1.0 + np.exp2(-weight))


@dataclass(frozen=True)
class TrainingSession:
    """Levels of the pairs blocked on ``blocked`` fields (indices), which this session skips."""

    levels: np.ndarray
    blocked: tuple[int, ...]


def _distribution(levels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted share of each level per field, missing values left out, smoothed."""
    out = np.empty((levels.shape[1], LEVELS))
    for column in range(levels.shape[1]):
        present = levels[:, column] >= 0
        totals = np.bincount(levels[present, column], weights=weights[present],
                             minlength=LEVELS)[:LEVELS]
        totals = totals + _SMOOTHING / LEVELS
        out[column] = totals / totals.sum()
    return out


def _weights_of(levels: np.ndarray, table: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """log-likelihood of each pair's levels under ``table`` (fields × levels), free columns only."""
    out = np.zeros(levels.shape[0])
    for column in columns.tolist():
        present = levels[:, column] >= 0
        out[present] += np.log(table[column, levels[present, column]])
    return out


def _session_m(session: TrainingSession, u: np.ndarray, m: np.ndarray, labelled: np.ndarray,
               labels: np.ndarray, iterations: int, tolerance: float) -> np.ndarray:
    """EM with u fixed: m of the fields this session leaves free."""
    free = np.array([c for c in range(u.shape[0]) if c not in session.blocked], np.int64)
    levels = np.concatenate([session.levels, labelled])
    fixed = np.concatenate([np.full(session.levels.shape[0], np.nan), labels])
    unlabelled = np.isnan(fixed)
    share = 0.5
    for _ in range(iterations):
        log_match = np.log(share) + _weights_of(levels, m, free)
        log_other = np.log(1 - share) + _weights_of(levels, u, free)
        posterior = 1.0 / (1.0 + np.exp(np.clip(log_other - log_match, -700, 700)))
        posterior = np.where(unlabelled, posterior, fixed)
        new_m = m.copy()
        new_m[free] = _distribution(levels, posterior)[free]
        new_share = float(np.clip(posterior[unlabelled].mean(), 1e-6, 1 - 1e-6)) \
            if unlabelled.any() else share
        change = float(np.abs(new_m - m).max()) + abs(new_share - share)
        m, share = new_m, new_share
        if change < tolerance:
            break
    return m


def u_from_counts(counts: np.ndarray) -> np.ndarray:
    """u from per-field level counts of random pairs (fields x levels), smoothed as
    ``fit_fellegi_sunter`` smooths random pairs' levels: what two-server mode opens."""
    totals = np.asarray(counts, np.float64) + _SMOOTHING / LEVELS
    return totals / totals.sum(axis=1, keepdims=True)


def fit_fellegi_sunter(fields: Sequence[str], sessions: Sequence[TrainingSession],
                       random_levels: np.ndarray | None, match_share: float, *,
                       known_matches: np.ndarray | None = None,
                       known_non_matches: np.ndarray | None = None,
                       iterations: int = 100, tolerance: float = 1e-7,
                       u: np.ndarray | None = None) -> FellegiSunterModel:
    """u from random pairs, m from blocked EM sessions (see the module docstring).

    Args:
        sessions: pairs blocked on some fields each; a field's m is the mean of
            the sessions that leave it free (fields no session estimates keep
            the starting guess "matches mostly agree").
        random_levels: levels of random record pairs, for u.
        match_share: P(match) of two random records (e.g. expected matches /
            all pairs, from the record-level score model).
        known_matches / known_non_matches: levels of reviewed pairs.
        u: u given (fields x levels, e.g. ``u_from_counts``) instead of ``random_levels``.
    """
    count = len(fields)
    if u is None:
        u = _distribution(random_levels, np.ones(random_levels.shape[0]))
    start = np.tile(np.array([0.75, 0.12, 0.06, 0.04, 0.03])[:LEVELS], (count, 1))
    start = start / start.sum(axis=1, keepdims=True)
    known_m = known_matches if known_matches is not None else np.zeros((0, count), np.int64)
    known_u = known_non_matches if known_non_matches is not None else \
        np.zeros((0, count), np.int64)
    labelled = np.concatenate([known_m, known_u]).astype(np.int64)
    labels = np.concatenate([np.ones(known_m.shape[0]), np.zeros(known_u.shape[0])])
    total = np.zeros_like(start)
    estimated = np.zeros(count, np.int64)
    for session in sessions:
        if session.levels.shape[0] == 0:
            continue
        m = _session_m(session, u, start.copy(), labelled, labels, iterations, tolerance)
        free = [c for c in range(count) if c not in session.blocked]
        total[free] += m[free]
        estimated[free] += 1
    m = np.where(estimated[:, None] > 0, total / np.maximum(estimated, 1)[:, None], start)
    return FellegiSunterModel(tuple(fields), m, u, float(match_share), tuple(estimated.tolist()))


# -- the core call: segments and candidate pairs in, levels, model and probabilities out ---------

#: Training blocks: pairs identical on these fields estimate the m of the other fields.
TRAINING_KEYS = (("date_of_birth",), ("given_name", "family_name"))
#: Fields whose exact agreements are adjusted for the value's frequency (unhardened segments).
TERM_FREQUENCY_FIELDS = ("given_name", "family_name", "city")
#: Random pairs drawn for u; pairs kept per training block (a sample beyond that).
RANDOM_PAIRS = 200_000
TRAINING_PAIRS = 200_000
#: Largest block of identical values a training session takes (a very common value is skipped).
TRAINING_MAX_BLOCK = 1_000
#: Match probability at or above which a pair is a link when no model can say better.
LINK_PROBABILITY = 0.5
#: Steps of the expected-F1 search over probability cut-offs and of the quality curve.
CUTOFF_STEP = 0.005
CURVE_STEP = 0.02


@dataclass(frozen=True)
class ReviewedPairs:
    """Pairs a person decided: rows of the loaded records and whether they are one entity."""

    left: np.ndarray
    right: np.ndarray
    is_match: np.ndarray

    def __len__(self) -> int:
        return int(np.asarray(self.left).shape[0])


@dataclass(frozen=True)
class FieldwiseScores:
    """What ``score_fieldwise`` returns; every per-pair array is parallel to the candidate pairs.

    ``similarities`` are per-field Dice (NaN = missing), ``levels`` their
    agreement levels (-1 = missing), ``swapped`` marks pairs compared with given
    and family name crosswise, ``value_share`` the share of records holding
    the value of an exact agreement (NaN where there is no term-frequency
    evidence), ``weights`` each field's contribution in bits (term frequency
    included; 0 where missing), ``match_weight`` the prior plus their sum and
    ``probability`` the match probability.
    """

    fields: tuple[str, ...]
    similarities: np.ndarray = field(repr=False)
    levels: np.ndarray = field(repr=False)
    swapped: np.ndarray = field(repr=False)
    value_share: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    match_weight: np.ndarray = field(repr=False)
    probability: np.ndarray = field(repr=False)
    model: FellegiSunterModel
    reviews_used: int = 0
    #: Per pair, the best support through a third record (``path_support``); the
    #: probability is at least this. None where it was not computed.
    support: np.ndarray | None = field(default=None, repr=False)

    def expected_quality(self, link_probability: float = LINK_PROBABILITY
                         ) -> tuple[float, float]:
        """The model's expected (precision, recall) of linking pairs at or above the probability.

        Recall is relative to the matches among the candidate pairs (the model
        sees no others).
        """
        linked = self.probability >= link_probability
        true_links = float(self.probability[linked].sum())
        precision = true_links / linked.sum() if linked.any() else 1.0
        recall = true_links / max(float(self.probability.sum()), 1e-12)
        return float(precision), float(recall)

    def quality_curve(self, step: float = CURVE_STEP) -> list[tuple[float, float, float]]:
        """The model's expected (cut-off, precision, recall) for cut-offs from ``step`` to
        1 - ``step``: what the coordinator trades by moving the probability cut-off."""
        return [(round(float(cutoff), 4), *self.expected_quality(float(cutoff)))
                for cutoff in _cutoffs(step)]

    def best_cutoff(self, step: float = CUTOFF_STEP) -> tuple[float, float]:
        """The probability cut-off with the best expected F1, and that F1.

        A fixed 0.5 is best only when a miss and a false link cost alike and the
        probabilities are exact; the expected F1 over the calibrated probabilities
        weighs the matches the cut-off would lose against the links it would add,
        as the record-level ``auto`` does. Where several cut-offs share the best
        (no pair between them), the middle of the stretch is taken.
        """
        cutoffs = _cutoffs(step)
        probability = np.sort(self.probability)[::-1]
        expected_matches = float(probability.sum())
        if not probability.size or expected_matches <= 0:
            return LINK_PROBABILITY, 0.0
        true_positive = np.concatenate([[0.0], np.cumsum(probability)])
        linked = probability.size - np.searchsorted(probability[::-1], cutoffs, side="left")
        gained = true_positive[linked]
        f1s = 2 * gained / np.maximum(linked + expected_matches, 1e-12)
        peak = int(np.argmax(f1s))
        low = high = peak
        while low > 0 and f1s[low - 1] >= f1s[peak] - 1e-12:
            low -= 1
        while high + 1 < cutoffs.size and f1s[high + 1] >= f1s[peak] - 1e-12:
            high += 1
        return float(cutoffs[(low + high) // 2]), float(f1s[peak])


def _cutoffs(step: float) -> np.ndarray:
    return np.round(np.arange(step, 1.0 - step / 2, step), 4)


def _keep(pairs: CandidatePairs, keep: np.ndarray) -> CandidatePairs:
    return CandidatePairs(pairs.left[keep], pairs.right[keep], pairs.score[keep])


def _allowed(pairs: CandidatePairs, owners: np.ndarray | None, cross_owner_only: bool
             ) -> CandidatePairs:
    if not cross_owner_only or owners is None:
        return pairs
    return _keep(pairs, owners[pairs.left] != owners[pairs.right])


def _all_pair_count(count: int, owners: np.ndarray | None, cross_owner_only: bool) -> float:
    if cross_owner_only and owners is not None:
        sizes = np.bincount(np.unique(owners, return_inverse=True)[1]).astype(float)
        return float((sizes.sum() ** 2 - (sizes ** 2).sum()) / 2)
    return count * (count - 1) / 2


def _random_pairs(rng, count: int, owners, cross_owner_only: bool) -> CandidatePairs:
    first, second = rng.integers(0, count, RANDOM_PAIRS), rng.integers(0, count, RANDOM_PAIRS)
    pairs = CandidatePairs(np.minimum(first, second), np.maximum(first, second),
                           np.zeros(RANDOM_PAIRS))
    return _allowed(_keep(pairs, first != second), owners, cross_owner_only)


def _levels(clks, layout, pairs, names):
    similarities, swapped = pair_similarities(clks, layout, pairs, names)
    return similarities, levels_of(similarities), swapped


def _training_sessions(clks, layout, names, owners, cross_owner_only, rng, keys):
    """Blocked sessions, and per session the number of pairs its sample stands for."""
    sessions, totals = [], []
    for key in keys:
        if not all(f in layout.fields for f in key):
            continue
        pairs = _allowed(exact_segment_pairs(clks, layout, key, max_block=TRAINING_MAX_BLOCK),
                         owners, cross_owner_only)
        totals.append(len(pairs))
        if len(pairs) > TRAINING_PAIRS:
            pairs = _keep(pairs, np.sort(rng.choice(len(pairs), TRAINING_PAIRS, replace=False)))
        sessions.append(TrainingSession(_levels(clks, layout, pairs, names)[1],
                                        tuple(layout.fields.index(f) for f in key)))
    return sessions, totals


def _session_match_share(session: TrainingSession, model: FellegiSunterModel) -> float:
    """Share of matches among a session's pairs under the model, blocked fields left out."""
    free = np.array([c for c in range(model.m.shape[0]) if c not in session.blocked], np.int64)
    share = 0.5
    for _ in range(200):
        log_match = np.log(share) + _weights_of(session.levels, model.m, free)
        log_other = np.log(1 - share) + _weights_of(session.levels, model.u, free)
        posterior = 1.0 / (1.0 + np.exp(np.clip(log_other - log_match, -700, 700)))
        new_share = float(np.clip(posterior.mean(), 1e-9, 1 - 1e-9))
        if abs(new_share - share) < 1e-9:
            break
        share = new_share
    return share


def _estimated_matches(sessions, totals, model, random_levels) -> float | None:
    """Matches among all pairs: each session's matches over P(a match lands in its block).

    A match lands in the block of fields F when both records hold every field
    of F (as often as among random pairs: missing values do not depend on the
    match) and agree on them exactly (m at level 0). The sessions' estimates
    are combined by their geometric mean.
    """
    presence = [float(np.all(random_levels[:, list(s.blocked)] >= 0, axis=1).mean())
                for s in sessions]
    return _estimated_matches_from(sessions, totals, model, presence)


def _estimated_matches_from(sessions, totals, model, presence) -> float | None:
    """``_estimated_matches`` with P(both records hold the blocked fields) given per session."""
    estimates = []
    for session, total, present in zip(sessions, totals, presence):
        if session.levels.shape[0] < 20:
            continue
        blocked = list(session.blocked)
        landing = present * float(np.prod(model.m[blocked, 0]))
        if landing <= 0:
            continue
        estimates.append(_session_match_share(session, model) * total / landing)
    if not estimates:
        return None
    return float(np.exp(np.mean(np.log(np.maximum(estimates, 1e-9)))))


def _value_shares(clks, layout, pairs, levels, fields):
    """Share of records holding the value where a pair's segments are identical (else NaN)."""
    out = np.full(levels.shape, np.nan)
    for name in fields:
        if name not in layout.fields:
            continue
        column = layout.fields.index(name)
        segment = layout.segment(clks, name)
        identical = np.all(segment[pairs.left] == segment[pairs.right], axis=1) \
            & (levels[:, column] == 0)
        out[identical, column] = segment_frequencies(clks, layout, name)[pairs.left[identical]]
    return out


#: Largest P(a record has a match at another owner) the one-to-one adjustment assumes.
MAX_MATCHED_SHARE = 0.99

#: Pairs at or above this probability carry support to the pairs they close a path to.
SUPPORT_PROBABILITY = 0.9


def path_support(pairs: CandidatePairs, probability: np.ndarray, count: int,
                 strong: float = SUPPORT_PROBABILITY) -> np.ndarray:
    """Per candidate pair (a, b), the largest p(a, c) * p(c, b) over third records c.

    Why: a pair model scores every pair alone, but a record with several damaged
    fields is often the same person as two records that agree with each other and
    with it (FEBRL3: several duplicates per person). If a is c and c is b, a is b;
    with the two links independent that is at least p(a, c) * p(c, b). Only links
    of probability ``strong`` or more carry support (so the work stays linear in
    the confident links); a pair with no such path gets 0.
    """
    out = np.zeros(len(pairs))
    if not len(pairs):
        return out
    keep = probability >= strong
    if keep.sum() < 2:
        return out
    left = np.asarray(pairs.left, np.int64)[keep]
    right = np.asarray(pairs.right, np.int64)[keep]
    weight = probability[keep]
    node = np.concatenate([left, right])
    other = np.concatenate([right, left])
    weights = np.concatenate([weight, weight])
    order = np.argsort(node, kind="stable")
    node, other, weights = node[order], other[order], weights[order]
    starts = np.flatnonzero(np.r_[True, node[1:] != node[:-1]])
    ends = np.r_[starts[1:], node.size]
    path_keys, path_values = [], []
    for start, end in zip(starts.tolist(), ends.tolist()):
        if end - start < 2:
            continue
        first, second = np.triu_indices(end - start, k=1)
        a, b = other[start:end][first], other[start:end][second]
        value = weights[start:end][first] * weights[start:end][second]
        low, high = np.minimum(a, b), np.maximum(a, b)
        path_keys.append(low * count + high)
        path_values.append(value)
    if not path_keys:
        return out
    keys = np.concatenate(path_keys)
    values = np.concatenate(path_values)
    unique, inverse = np.unique(keys, return_inverse=True)
    best = np.zeros(unique.size)
    np.maximum.at(best, inverse, values)
    wanted = (np.minimum(pairs.left, pairs.right).astype(np.int64) * count
              + np.maximum(pairs.left, pairs.right).astype(np.int64))
    where = np.clip(np.searchsorted(unique, wanted), 0, unique.size - 1)
    found = unique[where] == wanted
    out[found] = best[where[found]]
    return out


def one_to_one_probabilities(pairs: CandidatePairs, odds: np.ndarray, owners: np.ndarray
                             ) -> np.ndarray:
    """Match probabilities when a record matches at most one record of each other owner.

    Why: with one record per owner per group (FEBRL4, deduplicated files), a
    pair's odds depend on the record's other candidates at that owner: record
    a matches b, another candidate, or nobody there. With pairwise odds
    ``o`` (prior included) and ``pi`` the share of a's owner's records that
    have a match at b's owner (expected matches over records, at most
    ``MAX_MATCHED_SHARE``), P(a-b) = o_ab / ((1 - pi) + sum of o over a's
    candidates at b's owner). Taken from both records' sides, the smaller.
    """
    owner_codes, owner_index = np.unique(owners, return_inverse=True)
    count = owner_codes.size
    sizes = np.bincount(owner_index, minlength=count).astype(float)
    pairwise = odds / (1.0 + odds)
    expected = np.zeros((count, count))
    np.add.at(expected, (owner_index[pairs.left], owner_index[pairs.right]), pairwise)
    expected = expected + expected.T
    out = np.ones(len(pairs))
    for this, other in ((pairs.left, pairs.right), (pairs.right, pairs.left)):
        this_owner, other_owner = owner_index[this], owner_index[other]
        matched = np.minimum(expected[this_owner, other_owner] / sizes[this_owner],
                             MAX_MATCHED_SHARE)
        slot = this.astype(np.int64) * count + other_owner
        keys, inverse = np.unique(slot, return_inverse=True)
        totals = np.bincount(inverse, weights=odds, minlength=keys.size)
        out = np.minimum(out, odds / ((1.0 - matched) + totals[inverse]))
    return out


def score_fieldwise(clks: np.ndarray, layout: FieldLayout, pairs: CandidatePairs, *,
                    owners: np.ndarray | None = None, cross_owner_only: bool = False,
                    one_to_one: bool = False,
                    reviewed: ReviewedPairs | None = None, match_share: float | None = None,
                    term_frequencies: bool = True,
                    names: tuple[str, str] | None = SHARED_KEY_FIELDS,
                    training_keys: tuple[tuple[str, ...], ...] = TRAINING_KEYS,
                    seed: int = 0) -> FieldwiseScores:
    """Train a Fellegi-Sunter model on the records' segments and score the candidate pairs.

    Args:
        clks: the loaded records' CLKs made of per-field segments (records × words).
        layout: where each field's segment lies (``FieldLayout``).
        pairs: candidate pairs (rows of ``clks``, ``left < right``), e.g. the
            record-level kernel's at the floor plus ``blocking_pairs``.
        owners: each record's owner (agency) code; with ``cross_owner_only``
            only pairs of two owners are possible matches.
        one_to_one: a record matches at most one record of each other owner
            (deduplicated files): probabilities take the record's competing
            candidates into account (``one_to_one_probabilities``); needs ``owners``.
        reviewed: decided pairs; each enters training once with its class
            given, so a handful of reviews moves the model by a handful of pairs
            (the match share among all pairs is estimated from unlabelled pairs
            only).
        match_share: P(match) of two random records, if known; otherwise
            estimated from the training blocks (``_estimated_matches``).
        term_frequencies: adjust exact agreements on ``TERM_FREQUENCY_FIELDS``
            by the value's frequency among the records (meaningful only on
            unhardened segments, where identical segments are identical values).
        names: the two name fields compared crosswise too (swapped names), or None.
        training_keys: the fields each training block is identical on.
        seed: for the random pairs and samples.
    Returns:
        ``FieldwiseScores``; the links are the pairs at or above ``best_cutoff()`` (``auto``)
            or a probability the coordinator set.
    Raises:
        ValueError: ``clks`` narrower than the layout, or indices outside ``clks``.
    """
    if one_to_one and owners is None:
        raise ValueError("one_to_one needs each record's owner")
    if clks.ndim != 2 or clks.shape[1] < layout.words:
        raise ValueError(f"CLKs of {clks.shape[-1] if clks.ndim else 0} words do not hold the "
                         f"layout's {layout.words} words of per-field segments")
    count = clks.shape[0]
    for name, rows in (("pairs", (pairs.left, pairs.right)),
                       ("reviewed", () if reviewed is None else (reviewed.left, reviewed.right))):
        for side in rows:
            side = np.asarray(side)
            if side.size and (side.min() < 0 or side.max() >= count):
                raise ValueError(f"{name} refer to records outside the {count} loaded")
    rng = np.random.default_rng(seed)
    fields = layout.fields
    random_levels = _levels(clks, layout, _random_pairs(rng, count, owners, cross_owner_only),
                            names)[1]
    sessions, totals = _training_sessions(clks, layout, names, owners, cross_owner_only, rng,
                                          training_keys)
    known_matches = known_non_matches = None
    if reviewed is not None and len(reviewed):
        decided = CandidatePairs(np.asarray(reviewed.left, np.int64),
                                 np.asarray(reviewed.right, np.int64), np.zeros(len(reviewed)))
        decided_levels = _levels(clks, layout, decided, names)[1]
        is_match = np.asarray(reviewed.is_match, bool)
        known_matches, known_non_matches = decided_levels[is_match], decided_levels[~is_match]
    share = 1e-6 if match_share is None else match_share
    model = fit_fellegi_sunter(fields, sessions, random_levels, share,
                               known_matches=known_matches, known_non_matches=known_non_matches)
    if match_share is None:
        matches = _estimated_matches(sessions, totals, model, random_levels)
        if matches is None:
            matches = count / 2  # no training block: about one match per two records
        all_pairs = _all_pair_count(count, owners, cross_owner_only)
        model = FellegiSunterModel(model.fields, model.m, model.u,
                                   float(np.clip(matches / max(all_pairs, 1.0), 1e-12, 0.5)),
                                   model.sessions)
    similarities, levels, swapped = _levels(clks, layout, pairs, names)
    value_share = (_value_shares(clks, layout, pairs, levels, TERM_FREQUENCY_FIELDS)
                   if term_frequencies else np.full(levels.shape, np.nan))
    weights = model.field_weights(levels) + model.term_frequency_weights(levels, value_share)
    match_weight = model.prior_weight() + weights.sum(axis=1)
    probability = 1.0 / (1.0 + np.exp2(-np.clip(match_weight, -60, 60)))
    if one_to_one and owners is not None and len(pairs):
        probability = one_to_one_probabilities(pairs, np.exp2(np.clip(match_weight, -60, 60)),
                                               np.asarray(owners))
    support = path_support(pairs, probability, count)
    probability = np.maximum(probability, support)
    return FieldwiseScores(fields, similarities, levels, swapped, value_share, weights,
                           match_weight, probability, model,
                           0 if reviewed is None else len(reviewed), support)


def score_levels(fields: Sequence[str], levels: np.ndarray, random_counts: np.ndarray,
                 random_pairs: int, *, all_pairs: float, pairs: CandidatePairs | None = None,
                 owners: np.ndarray | None = None, one_to_one: bool = False,
                 training_keys: tuple[tuple[str, ...], ...] = TRAINING_KEYS,
                 match_share: float | None = None) -> FieldwiseScores:
    """``score_fieldwise`` from opened levels instead of CLKs (two-server mode).

    Why: on shares the servers learn each candidate's levels and the random sample's level
    counts, never a segment, so the parts of ``score_fieldwise`` that read segments are
    replaced: u from ``random_counts`` (``u_from_counts``); each training session is the
    candidates at level 0 on its key's fields (not pairs with identical segments, which no
    server sees), its total their number; the chance that both records hold a key's fields
    is the product of the fields' present shares among the sampled pairs; no term
    frequencies and no swapped names (the levels are as given).

    Args:
        fields: the layout's fields, in the levels' column order.
        levels: candidates x fields, 0 (best) to ``LEVELS - 1``, -1 = missing.
        random_counts: fields x ``LEVELS``: how many of ``random_pairs`` random pairs are
            at each level (a missing field counted at none).
        all_pairs: the number of pairs the candidates were chosen from (for the match share).
        pairs, owners, one_to_one: as ``score_fieldwise`` (``pairs`` only for one-to-one).
        match_share: P(match) of two random records, if known.
    Returns:
        ``FieldwiseScores`` (``similarities`` NaN, ``value_share`` NaN, ``swapped`` False).
    Raises:
        ValueError: levels and counts do not fit the fields, or one-to-one without pairs
            and owners.
    """
    levels = np.asarray(levels, np.int64)
    counts = np.asarray(random_counts, np.int64)
    count = len(fields)
    if levels.ndim != 2 or levels.shape[1] != count or counts.shape != (count, LEVELS):
        raise ValueError(f"levels ({levels.shape}) and counts ({counts.shape}) must have one "
                         f"column per field ({count}) and counts {LEVELS} levels")
    if one_to_one and (pairs is None or owners is None):
        raise ValueError("one_to_one needs the candidate pairs and each record's owner")
    u = u_from_counts(counts)
    present_share = counts.sum(axis=1) / max(int(random_pairs), 1)
    sessions, totals, presence = [], [], []
    for key in training_keys:
        if not all(f in fields for f in key):
            continue
        blocked = tuple(list(fields).index(f) for f in key)
        inside = np.all(levels[:, list(blocked)] == 0, axis=1)
        sessions.append(TrainingSession(levels[inside], blocked))
        totals.append(int(inside.sum()))
        presence.append(float(np.prod(present_share[list(blocked)])))
    share = 1e-6 if match_share is None else match_share
    model = fit_fellegi_sunter(fields, sessions, None, share, u=u)
    if match_share is None:
        matches = _estimated_matches_from(sessions, totals, model, presence)
        if matches is None:
            matches = levels.shape[0] / 2
        model = FellegiSunterModel(model.fields, model.m, model.u,
                                   float(np.clip(matches / max(all_pairs, 1.0), 1e-12, 0.5)),
                                   model.sessions)
    value_share = np.full(levels.shape, np.nan)
    weights = model.field_weights(levels)
    match_weight = model.prior_weight() + weights.sum(axis=1)
    probability = 1.0 / (1.0 + np.exp2(-np.clip(match_weight, -60, 60)))
    if one_to_one and levels.shape[0]:
        probability = one_to_one_probabilities(pairs, np.exp2(np.clip(match_weight, -60, 60)),
                                               np.asarray(owners))
    return FieldwiseScores(tuple(fields), np.full(levels.shape, np.nan), levels,
                           np.zeros(levels.shape[0], bool), value_share, weights, match_weight,
                           probability, model, 0)


def _weight_sums(model: FellegiSunterModel, present_share: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every attainable sum of field weights (prior left out), highest first, with the
    model's cumulative chance of reaching at least it among matches and among non-matches:
    fields independent given the class, a field present with ``present_share[f]`` in both
    classes (as ``score_fieldwise`` assumes); every pattern of levels is enumerated (6 states
    a field), so this is for a handful of fields."""
    weights = model.weights
    present = np.clip(np.asarray(present_share, np.float64), 0.0, 1.0)
    total, p_match, p_other = np.zeros(1), np.ones(1), np.ones(1)
    for f in range(weights.shape[0]):
        w = np.append(weights[f], 0.0)
        m = np.append(present[f] * model.m[f], 1.0 - present[f])
        u = np.append(present[f] * model.u[f], 1.0 - present[f])
        total = (total[:, None] + w[None]).ravel()
        p_match = (p_match[:, None] * m[None]).ravel()
        p_other = (p_other[:, None] * u[None]).ravel()
    order = np.argsort(-total, kind="stable")
    total, p_match, p_other = total[order], p_match[order], p_other[order]
    last = np.r_[np.flatnonzero(np.diff(total) != 0), total.size - 1]  # end of each value
    return total[last], np.cumsum(p_match)[last], np.cumsum(p_other)[last]


def model_cut(model: FellegiSunterModel, present_share: np.ndarray, all_pairs: float
              ) -> tuple[float, float]:
    """The cut-off on the sum of field weights with the best F1 the model itself expects.

    Why: on shares (two-server mode) the candidates' probabilities are not opened, so
    ``best_cutoff`` cannot read them; the model alone gives the distribution of weight sums
    among matches (m) and non-matches (u) (``_weight_sums``).

    Returns:
        ``(cut, expected_f1)``: link when the sum of field weights (prior left out) is at
        least ``cut`` bits; the cut lies halfway between two attainable sums, so rounding the
        weights cannot move a pattern across it.
    """
    sums, reach_match, reach_other = _weight_sums(model, present_share)
    matches = model.match_share * all_pairs
    found = matches * reach_match
    linked = found + (all_pairs - matches) * reach_other
    f1 = 2 * found / np.maximum(linked + matches, 1e-12)
    best = int(np.argmax(f1))
    below = sums[best + 1] if best + 1 < sums.size else sums[best] - 1.0
    return float((sums[best] + below) / 2), float(f1[best])


def model_quality(model: FellegiSunterModel, present_share: np.ndarray, all_pairs: float,
                  cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The model's expected (precision, recall) of linking at each cut on the sum of field
    weights (prior left out), from the same enumeration as ``model_cut``."""
    sums, reach_match, reach_other = _weight_sums(model, present_share)
    cuts = np.atleast_1d(np.asarray(cuts, np.float64))
    # patterns at or above each cut: the sums are decreasing
    reached = np.searchsorted(-sums, -cuts, side="right") - 1
    matches = model.match_share * all_pairs
    found = np.where(reached >= 0, matches * reach_match[np.maximum(reached, 0)], 0.0)
    linked = found + np.where(reached >= 0, (all_pairs - matches)
                              * reach_other[np.maximum(reached, 0)], 0.0)
    precision = np.where(linked > 0, found / np.maximum(linked, 1e-300), 1.0)
    return precision, found / max(matches, 1e-12)
