"""Choosing the Dice threshold without ground truth, and turning scores into probabilities.

Candidate scores above a floor are a mixture of the upper tail of the
non-matches (a normal distribution truncated at the floor: it can fall fast or
slowly) and the matches (a beta distribution, piled up near 1 with a long left
tail). The mixture is fitted by maximum likelihood on a fine histogram of the
scores. It gives, for every score, the probability that the pair is a match;
the ``auto`` threshold is the one that maximises the model's expected F1, and
the same model turns a group's weakest-link score into its confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from .errors import InvalidRequestError

__all__ = [
    "DEFAULT_THRESHOLD",
    "SCORE_FLOOR",
    "ScoreModel",
    "ThresholdChoice",
    "choose_threshold",
    "fit_score_model",
    "parse_threshold",
    "quality_curve",
    "score_histogram",
]

DEFAULT_THRESHOLD = 0.8
SCORE_FLOOR = 0.5
MIN_PAIRS_FOR_MODEL = 30
_BIN_WIDTH = 0.0025


@dataclass(frozen=True)
class ScoreModel:
    """Non-matches: normal(mean, deviation) truncated at ``floor``; matches: beta(a, b)."""

    floor: float
    match_weight: float
    non_match: tuple[float, float]
    match: tuple[float, float]

    def _densities(self, scores: np.ndarray):
        normal = stats.norm(*self.non_match)
        beta = stats.beta(*self.match)
        non = (1 - self.match_weight) * normal.pdf(scores) / max(normal.sf(self.floor), 1e-300)
        match = self.match_weight * beta.pdf(scores) / max(beta.sf(self.floor), 1e-300)
        return non, match

    def match_probability(self, scores: np.ndarray) -> np.ndarray:
        """P(match | score) for each score; never decreasing in the score."""
        scores = np.clip(np.asarray(scores, dtype=np.float64), 1e-9, 1 - 1e-9)
        grid = np.linspace(self.floor, 1 - 1e-9, 801)
        non, match = self._densities(grid)
        total = non + match
        probability = np.where(total > 0, match / np.where(total > 0, total, 1), 1.0)
        probability = np.maximum.accumulate(probability)
        return np.interp(scores, grid, probability, left=0.0)


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold used, why, and what the score model expects of it."""

    threshold: float
    reason: str
    model: ScoreModel | None
    estimated_precision: float | None = None
    estimated_recall: float | None = None


def fit_score_model(scores: np.ndarray, floor: float = SCORE_FLOOR) -> ScoreModel | None:
    """Fit the mixture to scores at or above ``floor``; ``None`` if they cannot support it."""
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[scores >= floor]
    if scores.size < MIN_PAIRS_FOR_MODEL or float(scores.std()) < 1e-6:
        return None
    bins = max(20, int(round((1 - floor) / _BIN_WIDTH)))
    edges = np.linspace(floor, 1.0, bins + 1)
    counts, _ = np.histogram(scores, edges)

    def unpack(params):
        weight = 1 / (1 + np.exp(-params[0]))
        return weight, params[1], np.exp(params[2]), np.exp(params[3]), np.exp(params[4])

    def negative_log_likelihood(params):
        weight, mean, deviation, a, b = unpack(params)
        normal, beta = stats.norm(mean, deviation), stats.beta(a, b)
        non = np.diff(normal.cdf(edges)) / max(normal.sf(floor), 1e-300)
        match = np.diff(beta.cdf(edges)) / max(beta.sf(floor), 1e-300)
        probability = np.maximum((1 - weight) * non + weight * match, 1e-300)
        return -float((counts * np.log(probability)).sum())

    best = None
    with np.errstate(all="ignore"):
        for start_mean, start_a in ((floor - 0.05, 5.0), (floor + 0.02, 20.0)):
            start = [-2.0, start_mean, np.log(0.03), np.log(start_a), np.log(1.0)]
            result = optimize.minimize(negative_log_likelihood, start, method="Nelder-Mead",
                                       options={"maxiter": 3000, "xatol": 1e-6, "fatol": 1e-6})
            if np.isfinite(result.fun) and (best is None or result.fun < best.fun):
                best = result
    if best is None:
        return None
    weight, mean, deviation, a, b = unpack(best.x)
    if not 1e-6 < weight < 1 - 1e-6:
        return None
    model = ScoreModel(floor, float(weight), (float(mean), float(deviation)), (float(a), float(b)))
    top, bottom = model.match_probability(np.array([0.999, floor]))
    if top < 0.5 or bottom > 0.5:
        return None  # no separation between the two components
    return model


def choose_threshold(scores: np.ndarray, requested: float | None = None,
                     floor: float = SCORE_FLOOR) -> ThresholdChoice:
    """Pick the threshold: ``requested`` if given, else the model's best expected F1.

    Args:
        scores: scores of all candidate pairs at or above ``floor``.
        requested: a threshold set by the coordinator, or ``None`` for auto.
        floor: the lowest score that was collected.
    """
    scores = np.asarray(scores, dtype=np.float64)
    model = fit_score_model(scores, floor)
    if requested is not None:
        precision, recall = _expected_quality(scores, model, requested) if model else (None, None)
        return ThresholdChoice(requested, "set by the coordinator", model, precision, recall)
    if model is None:
        return ThresholdChoice(
            DEFAULT_THRESHOLD,
            f"auto: the candidate scores ({scores.size} pairs at or above {floor:.3f}) do not "
            f"separate into matches and non-matches, so the default {DEFAULT_THRESHOLD} was used",
            None,
        )
    grid = np.round(np.arange(floor, 1.0 + 1e-9, 0.0025), 4)
    probability = model.match_probability(scores)
    best, best_f1 = DEFAULT_THRESHOLD, -1.0
    expected_matches = float(probability.sum())
    for candidate in grid:
        above = scores >= candidate
        true_positive = float(probability[above].sum())
        false_positive = float(above.sum()) - true_positive
        false_negative = expected_matches - true_positive
        f1 = 2 * true_positive / max(2 * true_positive + false_positive + false_negative, 1e-12)
        if f1 > best_f1 + 1e-12:
            best, best_f1 = float(candidate), f1
    precision, recall = _expected_quality(scores, model, best)
    reason = (f"auto: a score model fitted to the {scores.size} candidate pairs at or above "
              f"{floor:.3f} (about {probability.sum():.0f} of them matches) gives the best "
              f"expected F1 ({best_f1:.3f}) at {best:.3f}")
    return ThresholdChoice(best, reason, model, precision, recall)


def quality_curve(scores: np.ndarray, model: ScoreModel | None, floor: float,
                  step: float = 0.01) -> list[tuple[float, float, float]]:
    """The model's expected (threshold, precision, recall) from the floor to 1."""
    if model is None:
        return []
    scores = np.asarray(scores, dtype=np.float64)
    return [(round(float(t), 4), *_expected_quality(scores, model, float(t)))
            for t in np.arange(floor, 1.0 + 1e-9, step)]


def parse_threshold(text: str | None) -> float | None:
    """'auto' or empty -> None (choose automatically); otherwise a number in (0, 1].

    Raises:
        InvalidRequestError: neither 'auto' nor a number in range.
    """
    text = (text or "auto").strip().lower()
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequestError(f"Threshold {text!r} is neither 'auto' nor a number.") from None
    if not 0.0 < value <= 1.0:
        raise InvalidRequestError(f"Threshold {value} is outside (0, 1]; use e.g. 0.8 or auto.")
    return value


def score_histogram(scores: np.ndarray, *, low: float = SCORE_FLOOR, bins: int = 20):
    """Counts of scores in ``bins`` equal bins over [low, 1]: (edges, counts)."""
    counts, edges = np.histogram(np.asarray(scores, dtype=np.float64), bins=bins, range=(low, 1.0))
    return edges, counts


def _expected_quality(scores, model, threshold):
    probability = model.match_probability(scores)
    above = scores >= threshold
    true_positive = float(probability[above].sum())
    precision = true_positive / int(above.sum()) if above.any() else 1.0
    recall = true_positive / max(float(probability.sum()), 1e-12)
    return precision, recall
