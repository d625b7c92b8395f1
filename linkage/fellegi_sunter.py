"""A Fellegi-Sunter model over per-field similarity levels, trained by EM without labels.

Why: a record-level Dice score weighs every field alike and counts a missing
field against the pair. Fellegi and Sunter weigh each field by how much more
often its agreement level occurs among matches (m) than among non-matches (u);
a missing value contributes nothing. That is what plaintext linkers such as
Splink do; here it runs on the per-field Dice of encoded segments
(``linkage.field_segments``).

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

__all__ = ["FellegiSunterModel", "LEVEL_THRESHOLDS", "TrainingSession", "fit_fellegi_sunter",
           "levels_of"]

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


def fit_fellegi_sunter(fields: Sequence[str], sessions: Sequence[TrainingSession],
                       random_levels: np.ndarray, match_share: float, *,
                       known_matches: np.ndarray | None = None,
                       known_non_matches: np.ndarray | None = None,
                       iterations: int = 100, tolerance: float = 1e-7) -> FellegiSunterModel:
    """u from random pairs, m from blocked EM sessions (see the module docstring).

    Args:
        sessions: pairs blocked on some fields each; a field's m is the mean of
            the sessions that leave it free (fields no session estimates keep
            the starting guess "matches mostly agree").
        random_levels: levels of random record pairs, for u.
        match_share: P(match) of two random records (e.g. expected matches /
            all pairs, from the record-level score model).
        known_matches / known_non_matches: levels of reviewed pairs.
    """
    count = len(fields)
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
