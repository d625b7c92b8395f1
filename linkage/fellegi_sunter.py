"""A Fellegi-Sunter model over per-field similarity levels, trained by EM without labels.

Why: a record-level Dice score weighs every field alike and counts a missing
field against the pair. Fellegi and Sunter weigh each field by how much more
often its agreement level occurs among matches (m) than among non-matches (u);
a missing value contributes nothing. That is what plaintext linkers such as
Splink do; here it runs on the per-field Dice of encoded segments
(``linkage.field_segments``).

Training: u starts from random pairs (almost all non-matches, so no labels
are needed), m from "matches mostly agree"; then EM on the candidate pairs
estimates m, u and the match share together. u must be re-estimated on the
candidates: they were chosen for being similar, so their non-matches agree far
more often than random pairs do, and EM with u held at the random-pair values
explains every candidate as a match (measured: match share 1.0). Known matches and non-matches (review decisions) enter
as pairs whose class is given, each counted once: a handful of reviews moves
the model by a handful of pairs, not more.

Pure: arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["FellegiSunterModel", "LEVEL_THRESHOLDS", "fit_fellegi_sunter", "levels_of"]

#: Per-field Dice at or above which a pair is at level 0 (about exact), 1, 2; below: last level.
LEVEL_THRESHOLDS = (0.95, 0.85, 0.7, 0.5)
_MISSING = -1
_SMOOTHING = 1.0  # pseudo-count per level, so that no level has m or u of zero


def levels_of(similarity: np.ndarray, thresholds=LEVEL_THRESHOLDS) -> np.ndarray:
    """Agreement level per pair and field (0 = best); ``-1`` where the similarity is NaN."""
    levels = np.full(similarity.shape, len(thresholds), np.int64)
    for level in range(len(thresholds) - 1, -1, -1):
        levels[similarity >= thresholds[level]] = level
    levels[np.isnan(similarity)] = _MISSING
    return levels


@dataclass(frozen=True)
class FellegiSunterModel:
    """m and u per field and level, and the prior match share of the candidate pairs.

    ``m[f, l]`` is P(level l of field f | match), ``u[f, l]`` the same among
    non-matches; ``match_share`` is P(match) among the candidate pairs the
    model was fitted on.
    """

    fields: tuple[str, ...]
    m: np.ndarray = field(repr=False)
    u: np.ndarray = field(repr=False)
    match_share: float
    iterations: int

    def field_weights(self, levels: np.ndarray) -> np.ndarray:
        """log2(m / u) per pair and field; 0 where a field is missing (no evidence)."""
        weights = np.log2(self.m / self.u)
        out = np.zeros(levels.shape)
        present = levels >= 0
        columns = np.broadcast_to(np.arange(levels.shape[1]), levels.shape)
        out[present] = weights[columns[present], levels[present]]
        return out

    def prior_weight(self) -> float:
        share = min(max(self.match_share, 1e-12), 1 - 1e-12)
        return float(np.log2(share / (1 - share)))

    def match_weight(self, levels: np.ndarray) -> np.ndarray:
        """The prior plus every field's weight: log2 of the posterior odds of a match."""
        return self.prior_weight() + self.field_weights(levels).sum(axis=1)

    def match_probability(self, levels: np.ndarray) -> np.ndarray:
        weight = np.clip(self.match_weight(levels), -60, 60)
        return 1.0 / (1.0 + np.exp2(-weight))


def _distribution(levels: np.ndarray, weights: np.ndarray, count: int) -> np.ndarray:
    """Weighted share of each level per field, missing values left out, smoothed."""
    out = np.empty((levels.shape[1], count))
    for column in range(levels.shape[1]):
        present = levels[:, column] >= 0
        totals = np.bincount(levels[present, column], weights=weights[present], minlength=count)
        totals = totals + _SMOOTHING / count
        out[column] = totals / totals.sum()
    return out


def fit_fellegi_sunter(fields: tuple[str, ...], candidate_levels: np.ndarray,
                       random_levels: np.ndarray, *,
                       known_matches: np.ndarray | None = None,
                       known_non_matches: np.ndarray | None = None,
                       initial_posterior: np.ndarray | None = None,
                       iterations: int = 50, tolerance: float = 1e-6) -> FellegiSunterModel:
    """EM for m and the match share on candidate pairs, u from random pairs.

    Args:
        candidate_levels: levels (``levels_of``) of the candidate pairs.
        random_levels: levels of random record pairs, for u.
        known_matches / known_non_matches: levels of reviewed pairs (labelled).
        initial_posterior: P(match) of each candidate pair to start from, e.g.
            the record-level score model's. EM finds a local optimum; started
            from "matches mostly agree" alone it can settle on another latent
            class (measured on the held-out data: people of one country), so a
            caller with a better first guess passes it.
    """
    count = len(LEVEL_THRESHOLDS) + 1
    u = _distribution(random_levels, np.ones(random_levels.shape[0]), count)
    # Start: matches agree at the best level most of the time.
    m = np.tile(np.array([0.7, 0.15, 0.08, 0.04, 0.03])[:count], (len(fields), 1))
    m = m / m.sum(axis=1, keepdims=True)
    share = 0.01
    known_m = known_matches if known_matches is not None else np.zeros((0, len(fields)), int)
    known_u = known_non_matches if known_non_matches is not None else \
        np.zeros((0, len(fields)), int)
    levels = np.concatenate([candidate_levels, known_m, known_u])
    fixed = np.concatenate([np.full(candidate_levels.shape[0], np.nan),
                            np.ones(known_m.shape[0]), np.zeros(known_u.shape[0])])
    if initial_posterior is not None:
        start = np.concatenate([initial_posterior, np.ones(known_m.shape[0]),
                                np.zeros(known_u.shape[0])])
        m = _distribution(levels, start, count)
        u = _distribution(levels, 1.0 - start, count)
        share = float(np.mean(initial_posterior)) if initial_posterior.size else share
    done = 0
    for done in range(1, iterations + 1):
        model = FellegiSunterModel(fields, m, u, share, done)
        posterior = model.match_probability(levels)
        posterior = np.where(np.isnan(fixed), posterior, fixed)
        new_m = _distribution(levels, posterior, count)
        new_u = _distribution(levels, 1.0 - posterior, count)
        unlabelled = np.isnan(fixed)
        new_share = float(posterior[unlabelled].mean()) if unlabelled.any() else share
        change = float(np.abs(new_m - m).max()) + float(np.abs(new_u - u).max()) \
            + abs(new_share - share)
        m, u, share = new_m, new_u, new_share
        if change < tolerance:
            break
    return FellegiSunterModel(fields, m, u, share, done)
