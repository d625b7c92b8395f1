"""Choosing the Dice threshold without ground truth, and turning scores into probabilities.

Candidate scores above a low floor are a mixture of non-matches (piled up
near the floor) and matches (near 1). A two-component Gaussian mixture fitted
by EM gives, for every score, the probability that the pair is a match. The
``auto`` threshold is the one that maximises the model's expected F1, and the
same model turns a group's weakest-link score into its confidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InvalidRequestError

__all__ = [
    "DEFAULT_THRESHOLD",
    "SCORE_FLOOR",
    "ScoreModel",
    "ThresholdChoice",
    "choose_threshold",
    "fit_score_model",
    "parse_threshold",
    "score_histogram",
]

DEFAULT_THRESHOLD = 0.8
SCORE_FLOOR = 0.5
MIN_PAIRS_FOR_MODEL = 30


@dataclass(frozen=True)
class ScoreModel:
    """Two Gaussians over candidate scores: non-matches (0) and matches (1)."""

    match_weight: float
    means: tuple[float, float]
    deviations: tuple[float, float]

    def match_probability(self, scores: np.ndarray) -> np.ndarray:
        """P(match | score) for each score."""
        scores = np.asarray(scores, dtype=np.float64)
        non = (1 - self.match_weight) * _normal_pdf(scores, self.means[0], self.deviations[0])
        match = self.match_weight * _normal_pdf(scores, self.means[1], self.deviations[1])
        total = non + match
        with np.errstate(invalid="ignore", divide="ignore"):
            probability = np.where(total > 0, match / np.where(total > 0, total, 1), 0.0)
        # Above the match mean a higher score never means a lower probability.
        return np.where(scores >= self.means[1], np.maximum(probability, 0.5), probability)


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold used, why, and what the score model expects of it."""

    threshold: float
    reason: str
    model: ScoreModel | None
    estimated_precision: float | None = None
    estimated_recall: float | None = None


def fit_score_model(scores: np.ndarray, *, iterations: int = 200) -> ScoreModel | None:
    """Fit the two-component mixture by EM; ``None`` if the data cannot support it."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size < MIN_PAIRS_FOR_MODEL or float(scores.std()) < 1e-6:
        return None
    low, high = float(np.quantile(scores, 0.1)), float(np.quantile(scores, 0.98))
    means = np.array([low, max(high, low + 0.05)])
    deviations = np.array([0.05, 0.05])
    weight = 0.5
    for _ in range(iterations):
        non = (1 - weight) * _normal_pdf(scores, means[0], deviations[0])
        match = weight * _normal_pdf(scores, means[1], deviations[1])
        total = non + match + 1e-300
        responsibility = match / total
        new_weight = float(responsibility.mean())
        if new_weight <= 1e-6 or new_weight >= 1 - 1e-6:
            return None
        new_means = np.array([
            np.average(scores, weights=1 - responsibility),
            np.average(scores, weights=responsibility),
        ])
        new_devs = np.sqrt(np.array([
            np.average((scores - new_means[0]) ** 2, weights=1 - responsibility),
            np.average((scores - new_means[1]) ** 2, weights=responsibility),
        ]))
        new_devs = np.maximum(new_devs, 0.005)
        converged = (abs(new_weight - weight) < 1e-7
                     and np.allclose(new_means, means, atol=1e-7))
        weight, means, deviations = new_weight, new_means, new_devs
        if converged:
            break
    if means[1] < means[0]:
        means, deviations, weight = means[::-1], deviations[::-1], 1 - weight
    if means[1] - means[0] < 0.05:
        return None
    return ScoreModel(weight, (float(means[0]), float(means[1])),
                      (float(deviations[0]), float(deviations[1])))


def choose_threshold(scores: np.ndarray, requested: float | None = None) -> ThresholdChoice:
    """Pick the threshold: ``requested`` if given, else the model's best expected F1.

    Args:
        scores: scores of all candidate pairs at or above ``SCORE_FLOOR``.
        requested: a threshold set by the coordinator, or ``None`` for auto.
    """
    scores = np.asarray(scores, dtype=np.float64)
    model = fit_score_model(scores)
    if requested is not None:
        precision, recall = _expected_quality(scores, model, requested) if model else (None, None)
        return ThresholdChoice(requested, "set by the coordinator", model, precision, recall)
    if model is None:
        return ThresholdChoice(
            DEFAULT_THRESHOLD,
            f"auto: too few or too uniform candidate scores ({scores.size} pairs at or above "
            f"{SCORE_FLOOR}) to fit a score model, so the default {DEFAULT_THRESHOLD} was used",
            None,
        )
    grid = np.round(np.arange(SCORE_FLOOR, 1.0 + 1e-9, 0.005), 3)
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
    reason = (f"auto: a two-component score model fitted to {scores.size} candidate pairs "
              f"(non-matches around {model.means[0]:.2f}, matches around {model.means[1]:.2f}, "
              f"{model.match_weight:.0%} matches) gives the best expected F1 ({best_f1:.3f}) "
              f"at {best:.3f}")
    return ThresholdChoice(best, reason, model, precision, recall)


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
    precision = true_positive / max(int(above.sum()), 1)
    recall = true_positive / max(float(probability.sum()), 1e-12)
    return precision, recall


def _normal_pdf(x, mean, deviation):
    return np.exp(-0.5 * ((x - mean) / deviation) ** 2) / (deviation * math.sqrt(2 * math.pi))
