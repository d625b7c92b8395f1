"""Choosing the Dice threshold without ground truth, and turning scores into probabilities.

Candidate scores above a floor are a mixture of the upper tail of the
non-matches (a normal distribution truncated at the floor: it can fall fast or
slowly) and the matches (a beta distribution piled up near 1; its density never
rises towards the floor, so it cannot swallow the non-match tail). The mixture
is fitted by maximum likelihood on a fine histogram of the scores. It gives,
for every score, the probability that the pair is a match; the ``auto``
threshold is the one that maximises the model's expected F1, and the same
model turns a group's weakest-link score into its confidence.

Two kinds of extra knowledge sharpen it:

* **Review feedback** (semi-supervised). Scores of pairs a coordinator accepted
  or rejected enter the likelihood as labelled points: each adds the log of the
  model's probability of the decision at that score, and each class gets a
  bump around its reviewed scores, so the reviews say which class lives there
  and the unlabelled scores how much of it. The match probability, and with it
  the threshold, moves toward the reviews even where a normal and a beta
  could not follow (a cluster of matches with one field always damaged,
  look-alike relatives). Reviews are chosen by score (the uncertain ones), not
  at random, so they inform the match probability at their scores, not the
  share of matches overall.
* **A one-to-one solver.** When each record may link to at most one record of
  the other file, the solver discards most non-matches however low the
  threshold: a link it makes is far more likely a match than a random
  candidate of the same score. ``one_to_one_scores`` runs the solver at the
  floor and again without the links it made: the second round pairs records
  with partners that are (nearly all) not theirs, so its scores show what a
  non-match link looks like (the best of many non-match scores, not a random
  one). The model is then refitted on the links: non-matches shaped like those
  decoys (allowing for other pool sizes, see ``ScoreModel.non_match_power``),
  matches as a beta plus a tail rising linearly from the floor (matches with a
  badly damaged field), and the expected F1 is computed over the links, which
  is what the predicted links are (measurements in docs/quality.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import importlib
import math
import threading

import numpy as np

from linkage.matching.candidates import CandidatePairs
from linkage.errors import InvalidRequestError

__all__ = [
    "DEFAULT_THRESHOLD",
    "REVIEW_PROBABILITIES",
    "SCORE_FLOOR",
    "SampledTail",
    "ScoreModel",
    "SolverScores",
    "ThresholdChoice",
    "BANDED_TAIL_SHARE",
    "band_match_shares",
    "banded_fit",
    "banded_tail_start",
    "choose_banded_threshold",
    "choose_threshold",
    "fit_banded_score_model",
    "fit_score_model",
    "one_to_one_scores",
    "parse_threshold",
    "quality_curve",
    "score_histogram",
]

class _OnFirstUse:
    """A module imported when one of its attributes is first asked for; it then takes the
    place of this stand-in among the module's globals, so later uses cost nothing extra.

    scipy takes most of a second to import; a run with a numeric threshold and
    no estimates never needs it, nor does ``linkage --help``.
    """

    def __init__(self, name: str, global_name: str):
        self._name = name
        self._global_name = global_name

    def __getattr__(self, attribute: str):
        module = importlib.import_module(self._name)
        globals()[self._global_name] = module
        return getattr(module, attribute)


optimize = _OnFirstUse("scipy.optimize", "optimize")
special = _OnFirstUse("scipy.special", "special")


def import_scipy_in_background() -> None:
    """Start importing what the score model needs on a thread of its own.

    A caller that knows it will fit a model (``linkage match --threshold auto``) calls this
    before reading its input, which keeps one core busy while the other is free: the half
    second of imports is then off the path. The import lock makes a fit that comes first
    wait for it; nothing else changes.
    """
    def load() -> None:
        for name in ("scipy.special", "scipy.optimize"):
            importlib.import_module(name)

    threading.Thread(target=load, name="import-scipy", daemon=True).start()

DEFAULT_THRESHOLD = 0.8
SCORE_FLOOR = 0.5
MIN_PAIRS_FOR_MODEL = 30
#: Match probabilities between which a pair (or group) is worth a person's review.
REVIEW_PROBABILITIES = (0.2, 0.8)
_BIN_WIDTH = 0.0025
#: Width of the bump each reviewed score adds to its class (see ``ScoreModel``).
REVIEW_WIDTH = 0.01
_GRID = 801
#: A restart of the optimiser that gains less than this many nats ends the search (``_descend``).
_CONVERGED = 1e-3
#: Restarts of the fit with reviews: it starts at the plain fit's optimum, so it has little
#: way to go, and the bump shares' flat ends (a share near 0) would keep it crawling.
_REVIEW_ROUNDS = 3
#: Starts of the plain fit: the non-match normal's mean below the floor and deviation,
#: and the match beta's (a, b); each descends to its optimum and the best is kept.
_PLAIN_STARTS = ((-0.05, 0.03, 5.0, 1.0), (-0.05, 0.03, 20.0, 3.0),
                 (-0.3, 0.08, 20.0, 1.0), (-0.3, 0.08, 20.0, 3.0))


@dataclass(frozen=True)
class ScoreModel:
    """Non-matches: normal(mean, deviation) truncated at ``floor``; matches: beta(a, b).

    ``match_weight`` is the share of matches among what the model describes:
    all candidate pairs above the floor, or the links a one-to-one solver makes
    at the floor (see ``choose_threshold``). The other fields refine the two
    components and are zero (one for the power) in the plain fit:

    * ``match_tail``: share of the match component rising linearly from the
      floor instead of following the beta (matches with a damaged field);
    * ``non_match_power``: the non-match CDF is the normal's raised to this
      power, then truncated at the floor (the best of that many times as many
      non-match scores as the decoys had: below 1 fewer, above 1 more);
    * ``match_reviewed`` / ``non_match_reviewed``: share of each component in
      bumps of width ``REVIEW_WIDTH`` around the ``accepted`` / ``rejected``
      reviewed scores.
    """

    floor: float
    match_weight: float
    non_match: tuple[float, float]
    match: tuple[float, float]
    match_tail: float = 0.0
    match_reviewed: float = 0.0
    non_match_reviewed: float = 0.0
    accepted: tuple[float, ...] = ()
    rejected: tuple[float, ...] = ()
    non_match_power: float = 1.0

    def _densities(self, scores: np.ndarray):
        match_main = 1 - self.match_tail - self.match_reviewed
        non_match = _non_match_pdf(scores, self.non_match, self.floor)
        if self.non_match_power != 1.0:
            # d/dx of Phi(x)^p truncated at the floor: p Phi^(p-1) phi / (1 - Phi(floor)^p).
            power = self.non_match_power
            cdf = np.maximum(_normal_cdf(scores, self.non_match), 1e-300)
            non_match = (power * cdf ** (power - 1) * non_match
                         * _normal_sf(self.floor, self.non_match)
                         / max(float(_powered_sf(_log_normal_cdf(self.floor, self.non_match),
                                                 power)), 1e-300))
        non = (1 - self.match_weight) * (
            (1 - self.non_match_reviewed) * non_match
            + self.non_match_reviewed * _review_pdf(scores, self.rejected, self.floor))
        match = self.match_weight * (
            match_main * _match_pdf(scores, self.match, self.floor)
            + self.match_tail * _ramp_pdf(scores, self.floor)
            + self.match_reviewed * _review_pdf(scores, self.accepted, self.floor))
        return non, match

    def match_probability(self, scores: np.ndarray) -> np.ndarray:
        """P(match | score) for each score; never decreasing in the score, 0 below the floor.

        Below the non-match normal's mean, no score is taken as likelier a match than the
        mean: there the normal's thin left tail can fall below the matches' tail rising
        from the floor, and the ratio of two tiny densities, carried upwards by the
        monotone envelope, would make every score a match (seen: two agencies of 120
        records, 17 matches, every pair linked at 0.53).
        """
        return self._envelope(scores, below_mean=True)

    def _envelope(self, scores: np.ndarray, below_mean: bool) -> np.ndarray:
        """P(match | score) made non-decreasing; ``below_mean``: capped below the non-match
        mean as ``match_probability`` says (``_separates`` looks at the uncapped one)."""
        scores = np.clip(np.asarray(scores, dtype=np.float64), 1e-9, 1 - 1e-9)
        grid = np.linspace(self.floor, 1 - 1e-9, _GRID)
        non, match = self._densities(grid)
        total = non + match
        probability = np.where(total > 0, match / np.where(total > 0, total, 1), 1.0)
        mode = int(np.searchsorted(grid, self.non_match[0]))
        if below_mean and 0 < mode < grid.size:
            probability[:mode] = np.minimum(probability[:mode], probability[mode])
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
    #: The two fits behind ``model``: to all candidate pairs, and to the links a one-to-one
    #: solver makes (``None`` when not fitted); a fit to more of the same comparisons starts
    #: from them (``choose_threshold``'s ``start``).
    candidate_fit: ScoreModel | None = None
    links_fit: ScoreModel | None = None
    #: For ``auto``: the stretch of thresholds that share the best expected F1 (each links
    #: the same pairs), of which ``threshold`` is the middle (or, with ``lowest``, the middle
    #: of its part at or above ``lowest``).
    tied: tuple[float, float] | None = None


@dataclass(frozen=True)
class SampledTail:
    """Scores below ``below`` were collected from a sample of the comparisons, each
    standing for ``weight`` pairs; scores at or above it from all of them.

    Scanning every pair down to the model's floor costs several times a scan at
    the threshold (the kernel can rule out far fewer pairs early), yet the model
    needs only the shape and size of the non-match tail there, which a few
    percent of the records show as well as all of them.
    """

    below: float
    weight: float

    def weights(self, scores: np.ndarray) -> np.ndarray:
        """How many pairs each score stands for."""
        return np.where(np.asarray(scores) < self.below, self.weight, 1.0)


def _weights(tail: SampledTail | None, scores: np.ndarray) -> np.ndarray | None:
    return None if tail is None else tail.weights(scores)


@dataclass(frozen=True)
class SolverScores:
    """What a one-to-one solver run at the floor reveals (see ``one_to_one_scores``).

    ``kept``: the score of each link the solver makes at the floor (for two
    owners, one per linked pair). ``decoys``: the scores of the links it makes
    when run again without those pairs, nearly all non-matches. With exactly
    two owners, ``records`` holds how many records each has and
    ``candidate_share`` the share of their cross pairs at or above the floor:
    together they bound how many non-match links the solver can make (see
    ``_pool_penalty``).
    """

    kept: np.ndarray
    decoys: np.ndarray
    records: tuple[int, int] | None = None
    candidate_share: float | None = None


def one_to_one_scores(pairs: CandidatePairs, owners: np.ndarray,
                      tail: SampledTail | None = None) -> SolverScores:
    """Run the one-to-one solver (``greedy_groups`` with one record per owner) twice.

    Args:
        pairs: every candidate pair at or above the floor, across owners.
        owners: owner index of each record.
        tail: the pairs below ``tail.below`` are a sample (see ``SampledTail``).
    Returns:
        For two owners, the score of each link of the first round (one pair per
        group), and of each link of a second round on the pairs the first did not
        keep. For more owners, the score of every candidate pair the round placed
        inside one group.
    """
    from linkage.matching.grouping import greedy_groups  # numba: loaded by the runs that need the solver
    count = int(owners.shape[0])
    first = greedy_groups(pairs, count, owners, max_per_owner=1)
    labels = first.labels
    kept = (labels[pairs.left] >= 0) & (labels[pairs.left] == labels[pairs.right])
    rest = CandidatePairs(pairs.left[~kept], pairs.right[~kept], pairs.score[~kept])
    second = greedy_groups(rest, count, owners, max_per_owner=1)
    values, counts = np.unique(owners, return_counts=True)
    if values.size > 2:
        # A group of three or more owners is as weak as its weakest link: one record
        # without a partner joined to a true pair at the floor makes the group's score a
        # non-match's, and the fit then sees almost no matches. Its links are the evidence.
        inside = (second.labels[rest.left] >= 0) & (second.labels[rest.left]
                                                    == second.labels[rest.right])
        return SolverScores(pairs.score[kept].copy(), rest.score[inside].copy())
    records = share = None
    if values.size == 2:
        records = (int(counts[0]), int(counts[1]))
        across = owners[pairs.left] != owners[pairs.right]
        cross = (float(tail.weights(pairs.score[across]).sum()) if tail is not None
                 else int(np.count_nonzero(across)))
        share = cross / max(records[0] * records[1], 1)
    return SolverScores(first.weakest_score.copy(), second.weakest_score.copy(), records, share)


def _pool_penalty(solver: SolverScores, kept_count: int, weight: float) -> float:
    """How far the model's count of non-match links exceeds what the record pools allow.

    A one-to-one solver makes a non-match link only between two records that
    both lack their true partner. If ``weight`` of the ``kept_count`` links are
    matches, each file has (its records - matches) such records, and a pair of
    them is a candidate with about ``candidate_share``; the solver cannot make
    more non-match links than there are such candidates or records. Exceeding
    that costs like a Poisson count far above its mean (Gaussian approximation);
    staying below it costs nothing.
    """
    if solver.records is None or solver.candidate_share is None:
        return 0.0
    matches = weight * kept_count
    free_first = max(solver.records[0] - matches, 0.0)
    free_second = max(solver.records[1] - matches, 0.0)
    allowed = min(solver.candidate_share * free_first * free_second, free_first, free_second)
    excess = (1 - weight) * kept_count - allowed
    return excess * excess / (2 * max(allowed, 1.0)) if excess > 0 else 0.0


def _normal_cdf(scores, params):
    """CDF of normal(mean, deviation): what ``stats.norm(*params).cdf`` computes, without
    building a frozen distribution (which costs milliseconds, in a likelihood the optimiser
    evaluates thousands of times)."""
    mean, deviation = params
    return special.ndtr((np.asarray(scores, dtype=np.float64) - mean) / deviation)


def _normal_sf(score: float, params) -> float:
    """Survival function of normal(mean, deviation), as ``stats.norm(*params).sf``."""
    mean, deviation = params
    return float(special.ndtr(-((score - mean) / deviation)))


def _beta_cdf(scores, params):
    """CDF of beta(a, b) on [0, 1], as ``stats.beta(*params).cdf``."""
    a, b = params
    scores = np.asarray(scores, dtype=np.float64)
    inside = special.betainc(a, b, np.clip(scores, 0.0, 1.0))
    return np.where(scores >= 1.0, 1.0, np.where(scores <= 0.0, 0.0, inside))


def _non_match_pdf(scores, params, floor):
    mean, deviation = params
    z = (np.asarray(scores, dtype=np.float64) - mean) / deviation
    density = np.exp(-z ** 2 / 2.0) / np.sqrt(2 * np.pi) / deviation
    return density / max(_normal_sf(floor, params), 1e-300)


def _beta_pdf(scores, params):
    """Density of beta(a, b), as ``stats.beta(*params).pdf`` (scipy.stats alone takes most
    of a second to import, on every auto run)."""
    a, b = params
    scores = np.asarray(scores, dtype=np.float64)
    inside = (scores >= 0.0) & (scores <= 1.0)
    x = np.clip(scores, 0.0, 1.0)
    log_density = special.xlogy(a - 1, x) + special.xlog1py(b - 1, -x) - special.betaln(a, b)
    return np.where(inside, np.exp(log_density), 0.0)


def _standard_normal_pdf(z):
    return np.exp(-np.square(z) / 2.0) / np.sqrt(2 * np.pi)


def _match_pdf(scores, params, floor):
    return _beta_pdf(scores, params) / max(float(special.betaincc(*params, floor)), 1e-300)


def _log_normal_cdf(scores, params):
    """log Phi(score) for normal(params), precise where Phi is near 1."""
    mean, deviation = params
    upper = special.ndtr(-((np.asarray(scores, dtype=np.float64) - mean) / deviation))
    return np.log1p(-np.minimum(upper, 1.0 - 1e-16))


def _powered_sf(log_cdf, power: float):
    """1 - Phi^power from log Phi (``_log_normal_cdf``)."""
    return -np.expm1(power * log_cdf)


def _powered_truncated_cdf(log_cdf: np.ndarray, power: float) -> np.ndarray:
    """CDF of the law Phi^power (the best of ``power`` times as many draws), truncated to
    [scores[0], inf), at the scores whose ``_log_normal_cdf`` is ``log_cdf`` (power 1: the
    truncated normal)."""
    survival = _powered_sf(log_cdf, power)
    return np.clip(1.0 - survival / max(float(survival[0]), 1e-300), 0.0, 1.0)


def _truncated_normal_cdf(scores, params):
    """CDF of normal(params) truncated to [scores[0], inf), at each score."""
    cdf = _normal_cdf(scores, params)
    return np.clip((cdf - cdf[0]) / max(_normal_sf(float(scores[0]), params), 1e-300), 0.0, 1.0)


def _ramp_pdf(scores, floor):
    """Density rising linearly from 0 at the floor to its highest at 1."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.where(scores >= floor, 2 * (scores - floor) / (1 - floor) ** 2, 0.0)


def _exp(value):
    """exp without overflow: the optimiser may wander far before it turns back."""
    if isinstance(value, float):  # a search coordinate: math costs a tenth of numpy's call
        return math.exp(min(max(value, -50.0), 50.0))
    return np.exp(np.clip(value, -50.0, 50.0))


def _expit(value: float) -> float:
    """``special.expit`` of one search coordinate, without a ufunc call."""
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    small = math.exp(value)
    return small / (1.0 + small)


def _edges(floor: float, width: float = _BIN_WIDTH) -> np.ndarray:
    """Histogram bin edges from the floor to 1 (bins of about ``width``)."""
    return np.linspace(floor, 1.0, max(20, int(round((1 - floor) / width))) + 1)


def _bin_of(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, edges.size - 2)


@dataclass(frozen=True)
class _UsedBins:
    """The histogram bins a binned likelihood needs: those holding a count or a reviewed score.

    An empty bin adds nothing to the log-likelihood (its count times the log of
    its mass), so leaving it out changes no value, only the cost: between the
    non-match tail and the matches most bins are empty, and every bin left out
    is one CDF evaluation fewer at each of the optimiser's thousands of steps.
    ``points`` holds the floor and the edges of the used bins; bin ``i`` of
    ``used`` runs from ``points[lower[i]]`` to ``points[upper[i]]``.
    """

    used: np.ndarray
    points: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def of(cls, edges: np.ndarray, counts: np.ndarray, *bins: np.ndarray) -> _UsedBins:
        used = np.unique(np.concatenate([np.flatnonzero(counts), *bins]).astype(np.int64))
        points = np.unique(np.concatenate([edges[:1], edges[used], edges[used + 1]]))
        return cls(used, points, np.searchsorted(points, edges[used]),
                   np.searchsorted(points, edges[used + 1]))

    def position(self, bins: np.ndarray) -> np.ndarray:
        """Where each of ``bins`` (all among the used ones) sits in ``used``."""
        return np.searchsorted(self.used, bins)

    def masses(self, cdf: np.ndarray) -> np.ndarray:
        """Mass of each used bin from a CDF evaluated at ``points``."""
        return cdf[self.upper] - cdf[self.lower]

    def non_match_mass(self, params) -> np.ndarray:
        """Probability of each used bin under the normal truncated at the floor."""
        return (self.masses(_normal_cdf(self.points, params))
                / max(_normal_sf(float(self.points[0]), params), 1e-300))

    def match_mass(self, params) -> np.ndarray:
        """Probability of each used bin under the beta truncated at the floor."""
        # the points lie in [floor, 1]: the beta's CDF there needs none of _beta_cdf's clipping
        a, b = params
        return (self.masses(special.betainc(a, b, self.points))
                / max(float(special.betaincc(a, b, self.points[0])), 1e-300))


def _review_pdf(scores, reviewed, floor):
    """Density of the bumps around reviewed scores, truncated to [floor, 1]."""
    scores = np.asarray(scores, dtype=np.float64)
    if not len(reviewed):
        return np.zeros(scores.shape)
    centres = np.asarray(reviewed, dtype=np.float64)
    inside = (special.ndtr((1 - centres) / REVIEW_WIDTH)
              - special.ndtr((floor - centres) / REVIEW_WIDTH))
    density = _standard_normal_pdf((scores[..., None] - centres) / REVIEW_WIDTH) / REVIEW_WIDTH
    return (density / np.maximum(inside, 1e-300)).mean(axis=-1)


def _review_mass(edges, reviewed):
    """Probability of each bin under the bumps around reviewed scores."""
    if not len(reviewed):
        return np.zeros(edges.size - 1)
    centres = np.asarray(reviewed, dtype=np.float64)
    cdf = special.ndtr((edges[:, None] - centres) / REVIEW_WIDTH)
    return (np.diff(cdf, axis=0) / np.maximum(cdf[-1] - cdf[0], 1e-300)).mean(axis=1)


def _logit(share: float, limit: float = 12.0) -> float:
    """The inverse of ``special.expit``, kept within +-``limit`` (shares of 0 or 1 included)."""
    return float(special.logit(np.clip(share, special.expit(-limit), special.expit(limit))))


def _tail_shape(slope: float, log_curvature: float, floor: float) -> tuple[float, float]:
    """(mean, deviation) of the normal whose log density falls at ``slope`` per unit score
    at the floor and bends with curvature ``exp(log_curvature)``.

    Only the normal's tail above the floor is ever seen, and there its mean and
    deviation trade off along a long, flat valley (a far mean with a wide
    deviation draws nearly the same tail as a near one with a narrow): the
    optimiser crawled along it and stopped early, hundreds of nats short, and a
    review's small change to the objective let it go on to another model. The
    slope and the curvature at the floor are what the tail shows; searched in
    them, the fit converges.
    """
    curvature = float(_exp(log_curvature))
    variance = 1.0 / (2.0 * curvature)
    return floor - slope * variance, math.sqrt(variance)


def _tail_coordinates(non_match: tuple[float, float], floor: float) -> list[float]:
    """The inverse of ``_tail_shape``."""
    mean, deviation = non_match
    variance = deviation * deviation
    return [(floor - mean) / variance, float(np.log(1.0 / (2.0 * variance)))]


def _plain_parameters(model: ScoreModel) -> list[float]:
    """The plain fit's search coordinates of ``model`` (the inverse of its ``unpack``)."""
    a, b = model.match
    return [_logit(model.match_weight), *_tail_coordinates(model.non_match, model.floor),
            float(np.log(max(a - 1, 1e-12))), float(np.log(b))]


def _descend(objective, start, rounds: int = 30, **options):
    """Nelder-Mead from ``start``, restarted from its own optimum until a restart gains
    less than ``_CONVERGED`` nats: a simplex that has collapsed in some direction reports
    success while the optimum lies further on (a fresh simplex finds the way)."""
    best = None
    point = np.asarray(start, dtype=np.float64)
    for _ in range(rounds):
        found = optimize.minimize(objective, point, method="Nelder-Mead", options=options)
        if not np.isfinite(found.fun):
            break
        improved = best is None or found.fun < best.fun - _CONVERGED
        if best is None or found.fun < best.fun:
            best = found
        if not improved:
            break
        point = found.x
    return best


def _labelled(scores, floor) -> np.ndarray:
    """Reviewed scores the model can use: finite, at or above the floor, below 1."""
    if scores is None:
        return np.zeros(0)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    scores = scores[np.isfinite(scores) & (scores >= floor)]
    return np.clip(scores, floor, 1 - 1e-9)


def _review_penalty(non, match, accepted_bins, rejected_bins) -> float:
    """Minus the log-likelihood of the reviews: log P(decision | score) under the model.

    ``non`` and ``match`` are the weighted bin masses of the two components.
    """
    if not (accepted_bins.size or rejected_bins.size):
        return 0.0
    mixture = np.maximum(non + match, 1e-300)
    return -float(np.log(np.maximum(match[accepted_bins], 1e-300) / mixture[accepted_bins]).sum()
                  + np.log(np.maximum(non[rejected_bins], 1e-300) / mixture[rejected_bins]).sum())


def _unpack_plain(params, floor: float):
    """The plain fit's search coordinates as (weight, mean, deviation, a, b)."""
    weight = _expit(params[0])
    mean, deviation = _tail_shape(params[1], params[2], floor)
    # a >= 1: the match density never rises towards the floor.
    return weight, mean, deviation, 1 + _exp(params[3]), _exp(params[4])


def _plain_starts(floor: float) -> list[list[float]]:
    """The plain fit's starting guesses (``_PLAIN_STARTS`` in search coordinates)."""
    return [[-2.0, *_tail_coordinates((floor + below, deviation), floor),
             np.log(a - 1), np.log(b)] for below, deviation, a, b in _PLAIN_STARTS]


def _fit_plain(bins: _UsedBins, counts, floor: float, starts, tolerance: float = 0.0):
    """The plain mixture's converged fit to binned ``counts`` from each of ``starts``:
    (the optimiser's result, the model) of the best fit whose components keep their roles,
    or (None, None). ``tolerance``: see ``fit_score_model``."""

    def negative_log_likelihood(params):
        weight, mean, deviation, a, b = _unpack_plain(params, floor)
        non = (1 - weight) * bins.non_match_mass((mean, deviation))
        match = weight * bins.match_mass((a, b))
        mixture = np.maximum(non + match, 1e-300)
        return -float((counts * np.log(mixture)).sum())

    fits = []
    with np.errstate(all="ignore"):
        for first in starts:
            result = _descend(negative_log_likelihood, first, maxiter=3000,
                              xatol=max(1e-6, tolerance), fatol=max(1e-6, tolerance))
            if result is not None:
                fits.append(result)
    # The best fit whose components keep their roles: a start can also end with the
    # normal on the matches and the beta on the non-matches (a likelihood as good or better).
    for result in sorted(fits, key=lambda found: found.fun):
        weight, mean, deviation, a, b = _unpack_plain(result.x, floor)
        candidate = ScoreModel(floor, float(weight), (float(mean), float(deviation)),
                               (float(a), float(b)))
        if 1e-6 < weight < 1 - 1e-6 and _separates(candidate):
            return result, candidate
    return None, None


def fit_score_model(scores: np.ndarray, floor: float = SCORE_FLOOR, *,
                    known_matches: np.ndarray | None = None,
                    known_non_matches: np.ndarray | None = None,
                    tail: SampledTail | None = None,
                    start: ScoreModel | None = None,
                    bin_width: float = _BIN_WIDTH,
                    tolerance: float = 0.0) -> ScoreModel | None:
    """Fit the mixture to scores at or above ``floor``; ``None`` if they cannot support it.

    Args:
        scores: candidate pair scores (those below ``floor`` are ignored).
        floor: the lowest score collected.
        known_matches: scores of pairs reviewed as matches (accepted).
        known_non_matches: scores of pairs reviewed as non-matches (rejected).
            Reviewed scores below the floor are outside the model and ignored.
        tail: the scores below ``tail.below`` are a sample (see ``SampledTail``).
        start: a model fitted at the same floor to a sample of the same comparisons:
            the search starts from it alone instead of from several guesses.
        bin_width: of the histogram the likelihood is binned on (coarser is faster: a
            fit that only picks the basin for a finer one, see ``choose_threshold``).
        tolerance: the optimiser stops once a step moves the parameters and the
            likelihood by less than this (or its own, finer, tolerance): such a basin-picking
            fit needs no more precision than its bins give.
    Returns:
        The fitted model, or ``None`` when there are too few scores or the fit
        finds no separate match component.
    """
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[scores >= floor]
    accepted = _labelled(known_matches, floor)
    rejected = _labelled(known_non_matches, floor)
    if scores.size < MIN_PAIRS_FOR_MODEL or float(scores.std()) < 1e-6:
        return None
    edges = _edges(floor, bin_width)
    all_counts, _ = np.histogram(scores, edges, weights=_weights(tail, scores))
    bins = _UsedBins.of(edges, all_counts)
    counts = all_counts[bins.used]

    # The unlabelled scores alone choose the basin (the reviews only refine within it,
    # see ``_fit_with_reviews``): a handful of decisions must not pick another model.
    if start is not None and start.floor == floor:
        # The basin was chosen on a sample of the same comparisons: one descent from there.
        starts = [_plain_parameters(start)]
    else:
        starts = _plain_starts(floor)
    best, model = _fit_plain(bins, counts, floor, starts, tolerance)
    if model is None:
        return None
    if accepted.size or rejected.size:
        model = _fit_with_reviews(model, all_counts, edges, accepted, rejected, best.x,
                                  start if start is not None and start.floor == floor else None)
        if not _separates(model):
            return None
    return model


def _separates(model: ScoreModel) -> bool:
    """Whether the model's matches are above its non-matches: P(match) past 0.5 near 1 and
    below it at the floor, before the cap below the non-match mean (a match component
    that outweighs the non-matches' left tail at the floor is a model that does not
    separate them), and the match beta's mean above the non-match normal's."""
    top, bottom = model._envelope(np.array([0.999, model.floor]), below_mean=False)
    a, b = model.match
    return bool(top >= 0.5 and bottom <= 0.5 and a / (a + b) > model.non_match[0])


def _fit_with_reviews(model: ScoreModel, counts, edges, accepted, rejected, start,
                      warm: ScoreModel | None = None) -> ScoreModel:
    """Refit with a bump of each class around its reviewed scores.

    A normal and a beta cannot put matches where the fit saw mostly
    non-matches (or the reverse) however many reviews say so. A bump around the
    reviewed scores, in the class the reviewers chose, can: the unlabelled
    scores decide how much mass it holds, the reviews which class it is.
    ``warm``: a fit with reviews to a sample of the same comparisons, whose
    bump shares are the one start instead of several.
    """
    floor = model.floor
    accepted_bins, rejected_bins = _bin_of(accepted, edges), _bin_of(rejected, edges)
    bins = _UsedBins.of(edges, counts, accepted_bins, rejected_bins)
    counts = counts[bins.used]
    near_accepted = _review_mass(edges, accepted)[bins.used]
    near_rejected = _review_mass(edges, rejected)[bins.used]
    accepted_bins, rejected_bins = bins.position(accepted_bins), bins.position(rejected_bins)

    def unpack(params):
        return (special.expit(params[0]), *_tail_shape(params[1], params[2], floor),
                1 + _exp(params[3]), _exp(params[4]),
                special.expit(params[5]) if accepted.size else 0.0,
                special.expit(params[6]) if rejected.size else 0.0)

    def negative_log_likelihood(params):
        weight, mean, deviation, a, b, match_share, non_share = unpack(params)
        non = (1 - weight) * ((1 - non_share) * bins.non_match_mass((mean, deviation))
                              + non_share * near_rejected)
        match = weight * ((1 - match_share) * bins.match_mass((a, b))
                          + match_share * near_accepted)
        mixture = np.maximum(non + match, 1e-300)
        return (-float((counts * np.log(mixture)).sum())
                + _review_penalty(non, match, accepted_bins, rejected_bins))

    share_starts = ((-6.0, -6.0), (-2.0, -2.0), (0.0, 0.0))
    if warm is not None and (warm.accepted or warm.rejected):
        share_starts = ((_logit(warm.match_reviewed), _logit(warm.non_match_reviewed)),)
    best = None
    with np.errstate(all="ignore"):
        for shares in share_starts:
            found = _descend(negative_log_likelihood, [*start, *shares], rounds=_REVIEW_ROUNDS,
                             maxiter=6000, xatol=1e-7, fatol=1e-7)
            if found is not None and (best is None or found.fun < best.fun):
                best = found
    if best is None:
        return model
    weight, mean, deviation, a, b, match_share, non_share = unpack(best.x)
    return ScoreModel(floor, float(weight), (float(mean), float(deviation)), (float(a), float(b)),
                      match_reviewed=float(match_share), non_match_reviewed=float(non_share),
                      accepted=tuple(float(x) for x in accepted),
                      rejected=tuple(float(x) for x in rejected))


#: The largest share of matches among the decoys (``_fit_decoys``): seen 1%.
_DECOY_MATCH_SHARE = 0.1
#: The log-likelihood the decoys' matches must add to be used: a likelihood-ratio test
#: at 5% for one parameter (chi-squared 3.84, halved).
_DECOY_MATCH_EVIDENCE = 1.92
#: Search box of the kept-links fit: logits of weight and tail; logs of a - 1, b and power.
_KEPT_BOUNDS = ((-12.0, 12.0), (-6.0, 7.0), (-6.0, 6.0), (-12.0, 4.0), (-5.0, 3.0))


def _fit_kept(model: ScoreModel, solver: SolverScores, accepted: np.ndarray,
              rejected: np.ndarray, tail: SampledTail | None = None,
              warm: ScoreModel | None = None,
              bin_width: float = _BIN_WIDTH, tolerance: float = 0.0) -> ScoreModel | None:
    """The model of the pairs a one-to-one solver keeps; ``None`` if there are too few decoys.

    Non-matches among kept pairs look like the decoys: a truncated normal is
    fitted to them, beside the few matches among them (``_fit_decoys``). The match
    share and the match beta are then refitted on the kept scores, starting from the
    all-candidates fit, with an even tail (``ScoreModel.match_tail``): the kept pairs
    are mostly matches, so they pin
    down the match component's long left tail, which the whole candidate set,
    dominated by non-matches there, cannot. ``warm``: this fit to a sample of the
    same comparisons, the one start instead of several.
    """
    floor = model.floor
    edges = _edges(floor, bin_width)
    if warm is not None and warm.floor != floor:
        warm = None
    decoys = np.asarray(solver.decoys, dtype=np.float64)
    decoys = decoys[decoys >= floor]
    kept = np.asarray(solver.kept, dtype=np.float64)
    kept = kept[kept >= floor]
    if decoys.size < MIN_PAIRS_FOR_MODEL or kept.size == 0:
        return None
    decoy_counts, _ = np.histogram(decoys, edges, weights=_weights(tail, decoys))
    decoy_bins = _UsedBins.of(edges, decoy_counts)
    decoy_counts = decoy_counts[decoy_bins.used]
    decoy_start = ([warm.non_match[0], np.log(warm.non_match[1])] if warm is not None else
                   [float(decoys.mean()), np.log(max(float(decoys.std()), 1e-3))])
    non_match = _fit_decoys(decoy_bins, decoy_counts, decoy_start, model.match, tolerance)
    counts, _ = np.histogram(kept, edges, weights=_weights(tail, kept))
    kept_count = float(counts.sum())
    accepted_bins, rejected_bins = _bin_of(accepted, edges), _bin_of(rejected, edges)
    bins = _UsedBins.of(edges, counts, accepted_bins, rejected_bins)
    counts = counts[bins.used]
    accepted_bins, rejected_bins = bins.position(accepted_bins), bins.position(rejected_bins)
    even = bins.masses(((bins.points - floor) / (1 - floor)) ** 2)
    log_cdf = _log_normal_cdf(bins.points, non_match)

    def unpack(params):
        return (special.expit(params[0]), 1 + _exp(params[1]), _exp(params[2]),
                special.expit(params[3]), _exp(params[4]))

    def negative_log_likelihood(params):
        weight, a, b, tail, power = unpack(params)
        non_part = (1 - weight) * bins.masses(
            _powered_truncated_cdf(log_cdf, power))
        match_part = weight * ((1 - tail) * bins.match_mass((a, b)) + tail * even)
        mixture = np.maximum(non_part + match_part, 1e-300)
        return (-float((counts * np.log(mixture)).sum())
                + _review_penalty(non_part, match_part, accepted_bins, rejected_bins)
                + _pool_penalty(solver, kept_count, weight))

    a, b = model.match
    # A beta sharper than the search box allows (matches piled at 1) starts at the box's
    # edge with the same mean: a and b scaled down together, not a alone.
    scale = min(1.0, float(np.exp(_KEPT_BOUNDS[1][1])) / max(a - 1, 1e-12))
    shape = [np.log(max((a - 1) * scale, 1e-3)), np.log(b * scale)]
    starts = [[weight_start, *shape, tail_start, power_start]
              for weight_start, tail_start, power_start in ((2.0, -3.0, 0.0), (0.0, -0.5, -0.7),
                                                            (4.0, -1.5, -2.1), (2.0, -3.0, 1.1))]
    if not _matches_above(non_match, a, b, 1.0, floor):
        # The all-candidates fit's matches sit among the non-matches (small inputs): its
        # beta is no start; one with its mean at 0.91 is.
        starts += [[weight_start, np.log(19.0), np.log(2.0), tail_start, power_start]
                   for weight_start, tail_start, power_start in ((0.0, -3.0, 0.0),
                                                                 (-1.5, -3.0, 0.0))]
    if warm is not None:
        # The multi-start search on the sample chose the basin: one descent from its optimum.
        starts = [[_logit(warm.match_weight), np.log(max(warm.match[0] - 1, 1e-12)),
                   np.log(warm.match[1]), _logit(warm.match_tail),
                   np.log(warm.non_match_power)]]
    best = None
    with np.errstate(all="ignore"):
        for first in starts:
            start = np.clip(first, [low for low, _ in _KEPT_BOUNDS],
                            [high for _, high in _KEPT_BOUNDS])
            found = optimize.minimize(negative_log_likelihood, start,
                                      method="Nelder-Mead", bounds=_KEPT_BOUNDS,
                                      options={"maxiter": 6000, "xatol": max(1e-7, tolerance),
                                               "fatol": max(1e-7, tolerance)})
            if (np.isfinite(found.fun) and (best is None or found.fun < best.fun)
                    and _matches_above(non_match, *unpack(found.x)[1:3],
                                       unpack(found.x)[4], floor)):
                best = found
    if best is None:
        return None
    weight, a, b, tail, power = unpack(best.x)
    return ScoreModel(floor, float(weight), non_match, (float(a), float(b)), float(tail),
                      non_match_power=float(power))


def _fit_decoys(bins: _UsedBins, counts: np.ndarray, start: list[float],
                match: tuple[float, float], tolerance: float) -> tuple[float, float]:
    """The non-match normal (cut at the floor) of the decoys' histogram.

    Some decoys are matches: the second round links true pairs that the first could
    not place (with three or more agencies, a record its true partner's group had no
    room for). A few of them in the upper tail stretch a plain normal's deviation, and
    the kept non-matches' tail with it. Seen with five agencies of 250 records: 848
    decoys, 9 of them matches, all above 0.78. The plain normal predicted 43 kept
    non-match links above 0.76 where there were 4, and auto chose 0.8175 where
    0.76-0.78 was best. So the decoys are also fitted as the normal plus a small share
    (at most ``_DECOY_MATCH_SHARE``) of matches shaped like the all-candidates fit's
    beta, or like beta(19, 2) when that beta sits among the non-matches itself; that
    normal is used when the matches add ``_DECOY_MATCH_EVIDENCE`` to the likelihood.
    """
    options = {"maxiter": 2000, "xatol": max(1e-7, tolerance), "fatol": max(1e-7, tolerance)}
    with np.errstate(all="ignore"):
        plain = optimize.minimize(
            lambda p: -float((counts * np.log(np.maximum(
                bins.non_match_mass((p[0], _exp(p[1]))), 1e-300))).sum()),
            start, method="Nelder-Mead", options=options)
    non_match = (float(plain.x[0]), float(_exp(plain.x[1])))
    floor = float(bins.points[0])
    shape = match if _matches_above(non_match, *match, 1.0, floor) else (19.0, 2.0)
    matches = bins.match_mass(shape)

    def negative_log_likelihood(params):
        share = _DECOY_MATCH_SHARE * special.expit(params[2])
        mixture = ((1 - share) * bins.non_match_mass((params[0], _exp(params[1])))
                   + share * matches)
        return -float((counts * np.log(np.maximum(mixture, 1e-300))).sum())

    with np.errstate(all="ignore"):
        mixed = optimize.minimize(negative_log_likelihood, [*plain.x, -4.0],
                                  method="Nelder-Mead", options={**options, "maxiter": 3000})
    if not (np.isfinite(mixed.fun) and mixed.fun < plain.fun - _DECOY_MATCH_EVIDENCE):
        return non_match  # no more matches among the decoys than chance would show
    return (float(mixed.x[0]), float(_exp(mixed.x[1])))


def _matches_above(non_match: tuple[float, float], a: float, b: float, power: float,
                   floor: float) -> bool:
    """Whether the match beta's mean lies above 99% of the kept non-match law (Phi^power
    cut at the floor).

    A fit whose beta sits among the non-matches explains non-match links as matches
    (seen: two agencies of 120 records, 104 of 120 links called matches, 17 true); the
    kept-links fit is then not used. The quantile is the cut law's: a power near 0 puts
    Phi^power's mass far below the floor, and the uncut quantile with it (seen: two
    agencies of 60 records, power 0.007, beta mean 0.67 among the non-match links).
    """
    mean, deviation = non_match
    log_at_floor = float(special.log_ndtr((floor - mean) / deviation))
    above_floor = float(-np.expm1(power * log_at_floor))  # 1 - Phi(floor)^power
    log_target = float(np.log1p(-0.01 * above_floor)) / power  # log Phi at the quantile
    # 1 - Phi there, kept precise when it is tiny (a floor many deviations above the mean)
    quantile = mean - deviation * float(special.ndtri(-np.expm1(log_target)))
    return a / (a + b) > quantile


def choose_threshold(scores: np.ndarray, requested: float | None = None,
                     floor: float = SCORE_FLOOR, *,
                     known_matches: np.ndarray | None = None,
                     known_non_matches: np.ndarray | None = None,
                     solver: SolverScores | None = None,
                     tail: SampledTail | None = None,
                     start: ThresholdChoice | None = None,
                     lowest: float | None = None,
                     bin_width: float = _BIN_WIDTH,
                     tolerance: float = 0.0) -> ThresholdChoice:
    """Pick the threshold: ``requested`` if given, else the model's best expected F1.

    Where several thresholds share the best expected F1 (an empty stretch of
    scores: every threshold in it links the same pairs), the middle of the
    stretch is taken: the same links, with the most room on both sides. With
    ``lowest``, the middle of the stretch's part at or above ``lowest`` when the
    stretch reaches it: a sampled run has every pair only from there up, and any
    threshold of the stretch is as good.

    Args:
        scores: scores of all candidate pairs at or above ``floor``.
        requested: a threshold set by the coordinator, or ``None`` for auto.
        floor: the lowest score that was collected.
        known_matches, known_non_matches: scores of pairs reviewed as matches /
            non-matches in earlier runs (see ``fit_score_model``).
        solver: for one-to-one linkage (every owner at most one record per
            group), ``one_to_one_scores`` of the same pairs. The model then
            describes the pairs the solver keeps: its match probabilities, the
            expected precision and recall and the best threshold are theirs.
        tail: the scores below ``tail.below`` (and the solver's) are a sample of
            the comparisons (see ``SampledTail``).
        start: the choice made on a sample of the same comparisons (same floor,
            same reviews): each fit then descends once from the sample's optimum,
            the basin the sample's search among several starts chose, instead of
            searching again. A full scan changes the histogram little.
        lowest: see above.
        bin_width, tolerance: of the fits (``fit_score_model``).
    """
    scores = np.asarray(scores, dtype=np.float64)
    model = fit_score_model(scores, floor, known_matches=known_matches,
                            known_non_matches=known_non_matches, tail=tail,
                            start=start.candidate_fit if start is not None else None,
                            bin_width=bin_width, tolerance=tolerance)
    candidate_fit, kept_model = model, None
    basis, described = scores, "candidate pairs"
    if model is not None and solver is not None:
        kept_model = _fit_kept(model, solver, _labelled(known_matches, floor),
                               _labelled(known_non_matches, floor), tail,
                               warm=start.links_fit if start is not None else None,
                               bin_width=bin_width, tolerance=tolerance)
        if kept_model is not None:
            model = kept_model
            basis = np.asarray(solver.kept, dtype=np.float64)
            basis = basis[basis >= floor]
            described = "links a one-to-one solver makes at the floor"
    weights = np.ones(basis.shape) if tail is None else tail.weights(basis)
    pair_count = int(round(float(_weights(tail, scores).sum()))) if tail else scores.size
    if requested is not None:
        precision, recall = (_expected_quality(basis, model, requested, weights) if model
                             else (None, None))
        return ThresholdChoice(requested, "set by the coordinator", model, precision, recall,
                               candidate_fit, kept_model)
    if model is None:
        return ThresholdChoice(
            DEFAULT_THRESHOLD,
            f"auto: the candidate scores ({pair_count} pairs at or above {floor:.3f}) do not "
            f"separate into matches and non-matches, so the default {DEFAULT_THRESHOLD} was used",
            None,
        )
    grid = np.round(np.arange(floor, 1.0 + 1e-9, 0.0025), 4)
    probability = model.match_probability(basis) * weights
    expected_matches = float(probability.sum())
    f1s = np.empty(grid.size)
    for index, candidate in enumerate(grid):
        above = basis >= candidate
        true_positive = float(probability[above].sum())
        false_positive = float(weights[above].sum()) - true_positive
        false_negative = expected_matches - true_positive
        f1s[index] = 2 * true_positive / max(2 * true_positive + false_positive + false_negative,
                                             1e-12)
    peak = int(np.argmax(f1s))
    best_f1 = float(f1s[peak])
    low = high = peak
    while low > 0 and f1s[low - 1] >= best_f1 - 1e-12:
        low -= 1
    while high + 1 < grid.size and f1s[high + 1] >= best_f1 - 1e-12:
        high += 1
    tied = (float(grid[low]), float(grid[high]))
    if lowest is not None and grid[low] < lowest <= grid[high]:
        low = int(np.searchsorted(grid, lowest - 1e-9))
    best = float(grid[(low + high) // 2])
    precision, recall = _expected_quality(basis, model, best, weights)
    labelled = _labelled(known_matches, floor).size + _labelled(known_non_matches, floor).size
    reviews = f" and {labelled} reviewed pairs" if labelled else ""
    sampled = (f", those below {tail.below:.3f} from a 1-in-{tail.weight:.0f} sample"
               if tail else "")
    reason = (f"auto: a score model fitted to the {pair_count} candidate pairs at or above "
              f"{floor:.3f}{sampled}{reviews} (about {probability.sum():.0f} of the "
              f"{float(weights.sum()):.0f} "
              f"{described} matches) gives the best expected F1 ({best_f1:.3f}) at {best:.3f}")
    return ThresholdChoice(best, reason, model, precision, recall, candidate_fit, kept_model,
                           tied)


def _unpack_banded(params):
    """The banded fit's search coordinates as (weight, mean, deviation, a, b)."""
    weight = special.expit(params[0])
    # a >= 1: the match density never rises towards the floor.
    return weight, params[1], _exp(params[2]), 1 + _exp(params[3]), _exp(params[4])


def _descend_banded(bins: _UsedBins, counts, floor: float):
    """The best Nelder-Mead result of the banded mixture likelihood, or None.

    The plain fit's search before it was reparametrised for its fine bins (``_tail_shape``):
    on a few wide bands that search lands in a model whose match share in the low bands is
    far from the truth, this one does not (tests/linkage/test_threshold_bands.py).
    """

    def negative_log_likelihood(params):
        weight, mean, deviation, a, b = _unpack_banded(params)
        non = (1 - weight) * bins.non_match_mass((mean, deviation))
        match = weight * bins.match_mass((a, b))
        mixture = np.maximum(non + match, 1e-300)
        return -float((counts * np.log(mixture)).sum())

    starts = [[-2.0, start_mean, np.log(0.03), np.log(start_a - 1), np.log(1.0)]
              for start_mean, start_a in ((floor - 0.05, 5.0), (floor + 0.02, 20.0))]
    best = None
    with np.errstate(all="ignore"):
        for first in starts:
            result = optimize.minimize(negative_log_likelihood, first, method="Nelder-Mead",
                                       options={"maxiter": 3000, "xatol": 1e-6, "fatol": 1e-6})
            if np.isfinite(result.fun) and (best is None or result.fun < best.fun):
                best = result
    return best


def _checked_bands(edges, counts) -> tuple[np.ndarray, np.ndarray]:
    """``edges`` and ``counts`` as float arrays.

    Raises:
        InvalidRequestError: edges not strictly increasing in [0, 1), or counts that are not
            one non-negative integer per band.
    """
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(counts)
    if edges.ndim != 1 or edges.size < 2 or not (np.diff(edges) > 0).all() \
            or edges[0] < 0 or edges[-1] >= 1:
        raise InvalidRequestError("band edges must be at least two strictly increasing numbers "
                                  "in [0, 1)")
    if counts.shape != edges.shape or (counts < 0).any() \
            or not np.array_equal(counts, np.round(counts)):
        raise InvalidRequestError(f"band counts must be {edges.size} non-negative integers, "
                                  "one per band")
    return edges, counts.astype(np.float64)


def fit_banded_score_model(edges: np.ndarray, counts: np.ndarray) -> ScoreModel | None:
    """Fit the plain mixture to a coarse histogram: ``counts[k]`` pairs in band ``k``.

    For the two-server mode, where only the count of pairs per Dice band is opened
    (``linkage.mpc.bands``): band ``k`` runs from ``edges[k]`` to ``edges[k+1]`` and the last
    to 1; the floor is ``edges[0]``. The likelihood is the one ``fit_score_model`` maximises
    on its fine bins, here on the bands.

    Returns:
        The model, or ``None`` when the bands hold too few pairs, fewer than three are
        non-empty, or the fit finds no separate match component.
    Raises:
        InvalidRequestError: edges not strictly increasing in [0, 1), or counts that are not
            one non-negative integer per band.
    """
    edges, counts = _checked_bands(edges, counts)
    floor = float(edges[0])
    if counts.sum() < MIN_PAIRS_FOR_MODEL or np.count_nonzero(counts) < 3:
        return None
    all_edges = np.append(edges, 1.0)
    bins = _UsedBins.of(all_edges, counts)
    best = _descend_banded(bins, counts[bins.used], floor)
    if best is None:
        return None
    weight, mean, deviation, a, b = _unpack_banded(best.x)
    if not 1e-6 < weight < 1 - 1e-6:
        return None
    model = ScoreModel(floor, float(weight), (float(mean), float(deviation)), (float(a), float(b)))
    return model if _separates(model) else None


def band_match_shares(model: ScoreModel, edges: np.ndarray) -> np.ndarray:
    """P(match | Dice in band k) under a plain ``model`` fitted at ``edges[0]``.

    A linked pair's band is all two-server mode opens about it, so this is its (and its
    group's weakest link's) confidence there.
    """
    edges = np.asarray(edges, dtype=np.float64)
    # The model describes pairs from its floor up (a fit from the histogram's upper tail,
    # ``banded_tail_start``): bands are cut at the floor, and a band wholly below it has no
    # modelled matches.
    cdf_points = np.maximum(np.append(edges, 1.0), model.floor)
    cdf_points = np.concatenate([[model.floor], cdf_points])
    non_cdf = _truncated_normal_cdf(cdf_points, model.non_match)[1:]
    match_cdf = ((_beta_cdf(cdf_points[1:], model.match) - _beta_cdf(cdf_points[:1], model.match))
                 / max(float(special.betaincc(*model.match, model.floor)), 1e-300))
    non = (1 - model.match_weight) * np.diff(non_cdf)
    match = model.match_weight * np.diff(match_cdf)
    below = np.append(edges[1:], 1.0) <= model.floor
    return np.where(below, 0.0,
                    np.where(non + match > 0, match / np.maximum(non + match, 1e-300), 1.0))


#: ``auto`` on bands fits the mixture from the lowest band edge with at most this share of
#: the histogram's pairs at or above it (``banded_tail_start``).
BANDED_TAIL_SHARE = 0.10


def banded_tail_start(counts: np.ndarray, tail_share: float = BANDED_TAIL_SHARE) -> int:
    """Index of the band edge the banded fit starts from.

    Balanced CLKs put nearly every pair above 0.5, and their non-match scores are not normal
    far out: a normal fitted to the whole histogram falls too fast, and the mixture gives
    the pairs of its upper tail to the matches. On five synthetic agencies (500 records
    each, shipped schema) auto then chose 0.74 at pairwise F1 0.85; fitted from the edge
    with at most 10% of the pairs above it, 0.78 at 0.985, the best edge. Plain CLKs put
    few pairs above 0.5, and the fit starts near it. ``tail_share`` 1 starts at the lowest
    edge (the rule before this one, which ``bench.banded_auto`` compares against).
    """
    counts = np.asarray(counts, dtype=np.float64)
    at_least = np.cumsum(counts[::-1])[::-1]
    if at_least.size == 0 or at_least[0] <= 0:
        return 0
    within = np.flatnonzero(at_least <= tail_share * at_least[0])
    return int(within[0]) if within.size else at_least.size - 1


def banded_fit(edges: np.ndarray, counts: np.ndarray, max_matches: float | None,
                tail_share: float = BANDED_TAIL_SHARE) -> tuple[ScoreModel | None, int]:
    """The banded model and the index of the edge it was fitted from.

    The fit starts at ``banded_tail_start``; where no fit separates there, or one says
    more than ``max_matches`` pairs match (a plain normal bent into an exponential tail
    hands the tail to the matches: 2,910 "matches" among the pairs of 1,500 sampled
    records, where the other starts said 140-280), the next edges up, then down, are tried.
    """
    edges, counts = _checked_bands(edges, counts)  # malformed bands: refused at any start
    first = min(banded_tail_start(counts, tail_share), edges.size - 3)
    for start in [*range(first, edges.size - 2), *range(first - 1, -1, -1)]:
        model = fit_banded_score_model(edges[start:], counts[start:])
        if model is None:
            continue
        if max_matches is not None and float(
                (counts[start:] * band_match_shares(model, edges[start:])).sum()) > max_matches:
            continue
        return model, start
    return None, 0


def choose_banded_threshold(edges: np.ndarray, counts: np.ndarray,
                            requested: float | None = None, *,
                            max_matches: float | None = None,
                            tail_share: float = BANDED_TAIL_SHARE) -> ThresholdChoice:
    """``auto`` on a banded histogram: the band edge with the model's best expected F1.

    Each band's expected matches are its count times the model's share of matches in it
    (match mass over mixture mass), so the expected F1 of linking at ``edges[j]`` needs no
    score of any pair. ``requested`` (a coordinator's threshold) is returned as it is, with
    the model's estimates at the band edge at or below it. ``max_matches``: the most
    matches the histogram's pairs can hold (two-server mode: about one partner per
    sampled record, ``MATCHES_PER_SAMPLED_RECORD``); a fit claiming more is wrong.
    ``tail_share``: where the fit starts (``banded_tail_start``).
    """
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(counts)
    model, start = banded_fit(edges, counts, max_matches, tail_share)
    edges = edges[start:]
    counts = counts.astype(np.float64)[start:]
    pair_count = int(counts.sum())
    if model is None:
        threshold = DEFAULT_THRESHOLD if requested is None else requested
        reason = ("set by the coordinator" if requested is not None else
                  f"auto: the banded histogram ({pair_count} pairs at or above {edges[0]:.3f}) "
                  f"does not separate into matches and non-matches, so the default "
                  f"{DEFAULT_THRESHOLD} was used")
        return ThresholdChoice(threshold, reason, None)
    expected = counts * band_match_shares(model, edges)
    total = float(expected.sum())
    true_positive = np.cumsum(expected[::-1])[::-1]
    linked = np.cumsum(counts[::-1])[::-1]
    f1s = 2 * true_positive / np.maximum(linked + total, 1e-12)
    if requested is not None:
        pick = max(int(np.searchsorted(edges, requested, side="right")) - 1, 0)
    else:
        pick = int(np.argmax(f1s))
    precision = float(true_positive[pick] / linked[pick]) if linked[pick] else 1.0
    recall = float(true_positive[pick] / max(total, 1e-12))
    if requested is not None:
        return ThresholdChoice(requested, "set by the coordinator", model, precision, recall,
                               model)
    reason = (f"auto: a score model fitted to the banded histogram of {pair_count} pairs at or "
              f"above {edges[0]:.3f} ({edges.size} bands; about {total:.0f} matches) gives "
              f"the best expected F1 ({f1s[pick]:.3f}) at the band edge {edges[pick]:.3f}")
    return ThresholdChoice(float(edges[pick]), reason, model, precision, recall, model)


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


def _expected_quality(scores, model, threshold, weights=None):
    weights = np.ones(np.shape(scores)) if weights is None else weights
    probability = model.match_probability(scores) * weights
    above = scores >= threshold
    true_positive = float(probability[above].sum())
    precision = true_positive / float(weights[above].sum()) if above.any() else 1.0
    recall = true_positive / max(float(probability.sum()), 1e-12)
    return precision, recall
