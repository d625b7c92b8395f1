"""Why a group was linked, without raw data: a waterfall of match weights, as Splink draws.

A group stands or falls with its weakest link (its confidence is that link's
probability), so the group's explanation is that pair's: the prior, then each
field's agreement level and the bits it adds or takes away (term-frequency
adjustment included), then the total and the probability. Only field names,
levels and weights appear: no record id, no value, no per-field Dice (a Dice
of a single field's segment says more about the values than its level does).

The result is plain JSON-able data; ``client.report_html`` draws it.
"""

from __future__ import annotations

import numpy as np

from linkage.matching.fellegi_sunter import LEVEL_THRESHOLDS, FieldwiseScores

__all__ = ["LEVEL_NAMES", "group_waterfalls", "pair_waterfall"]

#: What each agreement level means, best first; the last is "disagrees".
LEVEL_NAMES = ("exact", "close", "similar", "weak", "disagrees")
assert len(LEVEL_NAMES) == len(LEVEL_THRESHOLDS) + 1


def pair_waterfall(scores: FieldwiseScores, index: int) -> dict:
    """The waterfall of candidate pair ``index``: prior, each field, total and probability.

    ``through_third_record`` (where present) is the pair's support through a third
    record: the probability is the larger of it and the fields' own.

    Each step has ``field``, ``level`` (-1 = missing), ``label``, ``weight``
    (bits; 0 for a missing field), ``term_frequency`` (the part of the weight
    from the value's frequency) and ``cumulative`` (the running total).
    """
    model = scores.model
    prior = model.prior_weight()
    steps = [{"field": "prior", "level": None, "label": "match share among all pairs",
              "weight": round(prior, 3), "term_frequency": 0.0, "cumulative": round(prior, 3)}]
    running = prior
    levels = scores.levels[index]
    tf = model.term_frequency_weights(levels[None, :], scores.value_share[index][None, :])[0]
    for column, name in enumerate(scores.fields):
        level = int(levels[column])
        weight = float(scores.weights[index, column])
        running += weight
        label = "missing" if level < 0 else LEVEL_NAMES[level]
        if name in ("given_name", "family_name") and bool(scores.swapped[index]) and level >= 0:
            label += " (names swapped)"
        steps.append({"field": name, "level": level, "label": label, "weight": round(weight, 3),
                      "term_frequency": round(float(tf[column]), 3),
                      "cumulative": round(running, 3)})
    out = {"steps": steps, "match_weight": round(float(scores.match_weight[index]), 3),
           "probability": round(float(scores.probability[index]), 4)}
    if scores.support is not None and scores.support[index] > 0:
        # The probability is at least this: both records are confidently one
        # person with the same third record (``path_support``).
        out["through_third_record"] = round(float(scores.support[index]), 4)
    return out


def group_waterfalls(scores: FieldwiseScores, labels: np.ndarray, pair_left: np.ndarray,
                     pair_right: np.ndarray, linked: np.ndarray) -> dict[int, dict]:
    """Per group label with at least one linked pair, the waterfall of its weakest linked pair.

    Args:
        scores: the scored candidate pairs.
        labels: group label per record.
        pair_left, pair_right: the candidate pairs' records (parallel to ``scores``).
        linked: which candidate pairs the grouping kept (both records in one group).
    """
    inside = np.asarray(linked, bool) & (labels[pair_left] == labels[pair_right])
    out: dict[int, dict] = {}
    weakest: dict[int, int] = {}
    for index in np.flatnonzero(inside).tolist():
        group = int(labels[pair_left[index]])
        best = weakest.get(group)
        if best is None or scores.probability[index] < scores.probability[best]:
            weakest[group] = index
    for group, index in sorted(weakest.items()):
        out[group] = pair_waterfall(scores, index)
    return out
