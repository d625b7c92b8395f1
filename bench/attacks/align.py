"""Aligning two similarity graphs over (mostly) the same people: the core of both attacks.

The method is bootstrapped percolation, written from the descriptions in
Vidanage et al. (CIKM 2020: node features of the similarity graph, then a
1-to-1 matching) and the seeded graph-matching literature:

1. **Fingerprints** (unseeded start): each node gets features that do not
   depend on how the nodes are numbered: its largest similarities, sorted; its
   degree at several similarity thresholds (quantiles of its own graph, so the
   two graphs need not share a scale); and its neighbours' degrees. Nodes are
   matched 1-to-1 on feature distance (``scipy.optimize.linear_sum_assignment``)
   and the pairs with the clearest margin become *anchors*.
2. **Anchored refinement**: every node is described by its vector of
   similarities to the anchors, which in the other graph must look the same
   (the anchors are the same people). Vectors are compared by correlation;
   pairs that are each other's best match become the next, larger anchor set.
   Repeated until the anchors stop changing, then one last 1-to-1 matching.

A seeded attacker (who knows k true pairs) skips step 1 and starts step 2
from her k pairs. The attacker can judge her own result without the truth:
``Alignment.agreement`` is the mean profile correlation of the matched pairs,
high when the alignment has locked on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from linkage.matching.kernel import dice_candidates_native

__all__ = ["Alignment", "align", "dice_matrix", "fingerprints", "refine"]

_TOP = 32
_QUANTILES = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)
_MAX_ANCHORS = 600
_ROUNDS = 12


@dataclass(frozen=True)
class Alignment:
    """``mapping[i]`` is the node of graph B matched to node ``i`` of graph A.

    ``agreement``: the mean (double-centred) profile correlation of the
    matched pairs, computed without the truth: high when the attack worked.
    """

    mapping: np.ndarray
    agreement: float
    anchors: int


def dice_matrix(clks: np.ndarray) -> np.ndarray:
    """Every pairwise Dice of one file, dense and symmetric, as the server can compute it.

    Uses the service's own kernel (``linkage.matching.kernel``) at threshold 0; the
    diagonal is 0.
    """
    n = clks.shape[0]
    pairs = dice_candidates_native(clks, clks, 0.0, same=True)
    out = np.zeros((n, n), dtype=np.float32)
    out[pairs.left, pairs.right] = pairs.score
    out[pairs.right, pairs.left] = pairs.score
    return out


def fingerprints(sim: np.ndarray) -> np.ndarray:
    """Numbering-free node features of one similarity graph (rows: nodes)."""
    n = sim.shape[0]
    top = -np.sort(-sim, axis=1)[:, :min(_TOP, n - 1)]
    upper = sim[np.triu_indices(n, 1)]
    cuts = np.quantile(upper, _QUANTILES)
    degrees = np.stack([(sim >= cut).sum(axis=1) for cut in cuts], axis=1).astype(np.float64)
    neighbours = np.argsort(-sim, axis=1)[:, :10]
    neighbour_degree = degrees[neighbours].mean(axis=1)
    neighbour_top = top[neighbours, :3].mean(axis=1)
    return np.hstack([top, np.log1p(degrees), np.log1p(neighbour_degree), neighbour_top,
                      sim.mean(axis=1, keepdims=True), sim.std(axis=1, keepdims=True)])


def _standardise_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pooled = np.vstack([a, b])
    mean, std = pooled.mean(axis=0), pooled.std(axis=0)
    std[std == 0] = 1.0
    return (a - mean) / std, (b - mean) / std


def _anchor_profiles(sim: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Each node's similarities to the anchors, z-scored per anchor, then unit length per node."""
    profile = sim[:, anchors].astype(np.float32)
    profile -= profile.mean(axis=0)
    profile /= profile.std(axis=0) + 1e-6
    profile -= profile.mean(axis=1, keepdims=True)
    profile /= np.linalg.norm(profile, axis=1, keepdims=True) + 1e-6
    return profile


def _anchor_scores(sim_a, sim_b, anchors_a, anchors_b) -> np.ndarray:
    """Correlation of every A node's anchor profile with every B node's, double-centred.

    Removing row and column means takes out "hubness" (nodes similar to
    everyone correlate with everyone), which otherwise swamps identity.
    """
    score = _anchor_profiles(sim_a, anchors_a) @ _anchor_profiles(sim_b, anchors_b).T
    score -= score.mean(axis=1, keepdims=True)
    score -= score.mean(axis=0, keepdims=True)
    return score


def _mutual_best(score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i, j) with j the best of row i and i the best of column j, and their margins."""
    best_col = score.argmax(axis=1)
    best_row = score.argmax(axis=0)
    rows = np.flatnonzero(best_row[best_col] == np.arange(score.shape[0]))
    cols = best_col[rows]
    top = score[rows, cols]
    second_row = np.partition(score[rows], -2, axis=1)[:, -2] if score.shape[1] > 1 else top
    second_col = (np.partition(score[:, cols], -2, axis=0)[-2] if score.shape[0] > 1 else top)
    return rows, cols, top - np.maximum(second_row, second_col)


def refine(sim_a: np.ndarray, sim_b: np.ndarray, anchors_a: np.ndarray, anchors_b: np.ndarray,
           *, rounds: int = _ROUNDS, rng: np.random.Generator | None = None) -> Alignment:
    """Grow an anchor set by anchor-similarity correlation, then match 1-to-1.

    Args:
        sim_a, sim_b: the two dense similarity matrices.
        anchors_a, anchors_b: paired anchor nodes (believed to be the same people).
        rounds: at most this many growth rounds (stops early when stable).
    Returns:
        The final 1-to-1 ``Alignment`` (graph A's nodes onto graph B's).
    """
    rng = rng or np.random.default_rng(0)
    anchors_a, anchors_b = np.asarray(anchors_a), np.asarray(anchors_b)
    previous = None
    for _ in range(rounds):
        if len(anchors_a) > _MAX_ANCHORS:  # enough signal; bounds the matrix product
            keep = rng.choice(len(anchors_a), _MAX_ANCHORS, replace=False)
            anchors_a, anchors_b = anchors_a[keep], anchors_b[keep]
        score = _anchor_scores(sim_a, sim_b, anchors_a, anchors_b)
        rows, cols, margin = _mutual_best(score)
        order = np.argsort(-margin)
        grow = max(2 * len(anchors_a), 20)
        chosen = order[:grow]
        new_a, new_b = rows[chosen], cols[chosen]
        signature = frozenset(zip(new_a.tolist(), new_b.tolist()))
        if signature == previous:
            break
        previous = signature
        anchors_a, anchors_b = new_a, new_b
    score = _anchor_scores(sim_a, sim_b, anchors_a, anchors_b)
    rows, cols = linear_sum_assignment(-score)
    mapping = np.full(sim_a.shape[0], -1, dtype=np.int64)
    mapping[rows] = cols
    return Alignment(mapping, float(score[rows, cols].mean()), len(anchors_a))


def align(sim_a: np.ndarray, sim_b: np.ndarray, *, seeds: tuple[np.ndarray, np.ndarray] | None
          = None, starts: tuple[int, ...] = (10, 30, 100),
          extra_features: tuple[np.ndarray, np.ndarray] | None = None) -> Alignment:
    """Align graph A onto graph B; from ``seeds`` (known true pairs) if given.

    Unseeded, the fingerprint matching proposes anchors; several anchor-set
    sizes (``starts``) are tried and the alignment with the highest
    ``agreement`` (judged without the truth) is kept. ``extra_features``:
    further numbering-free features per node of A and of B (e.g. frequencies).
    """
    if seeds is not None:
        return refine(sim_a, sim_b, *seeds)
    features_a, features_b = fingerprints(sim_a), fingerprints(sim_b)
    if extra_features is not None:
        features_a = np.hstack([features_a, extra_features[0]])
        features_b = np.hstack([features_b, extra_features[1]])
    features_a, features_b = _standardise_pair(features_a, features_b)
    cost = (np.square(features_a).sum(1)[:, None] + np.square(features_b).sum(1)[None, :]
            - 2.0 * features_a @ features_b.T)
    rows, cols, margin = _mutual_best(-cost)
    order = np.argsort(-margin)
    best = None
    for start in starts:
        chosen = order[:start]
        if len(chosen) < 3:
            continue
        result = refine(sim_a, sim_b, rows[chosen], cols[chosen])
        if best is None or result.agreement > best.agreement:
            best = result
    if best is None:
        rows, cols = linear_sum_assignment(cost)
        mapping = np.full(sim_a.shape[0], -1, dtype=np.int64)
        mapping[rows] = cols
        best = Alignment(mapping, 0.0, 0)
    return best
