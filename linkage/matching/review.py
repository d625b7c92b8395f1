"""Which groups a person should look at: the one rule the run and the report share.

A group's confidence means one of two things. Where its entity type has a
score model, it is a match probability, and a group is uncertain when that
probability is in ``REVIEW_PROBABILITIES`` (the model is not sure either way).
Where the type has no model (a numeric threshold without estimates, or too
few pairs to fit one), it is the group's weakest Dice score, which is no
probability: such a group is uncertain when its weakest link only just
cleared the threshold, by less than ``REVIEW_DICE_MARGIN``.
"""

from __future__ import annotations

import numpy as np

from linkage.matching.threshold import REVIEW_PROBABILITIES

__all__ = ["REVIEW_DICE_MARGIN", "REVIEW_PROBABILITIES", "needs_review"]

#: An unmodelled group needs review when its weakest Dice score is below threshold + this.
REVIEW_DICE_MARGIN = 0.05


def needs_review(confidence: np.ndarray, *, modelled: bool, threshold: float) -> np.ndarray:
    """Which groups need a person's decision (see the module docstring for the rule).

    Args:
        confidence: each group's confidence: a match probability when ``modelled``,
            otherwise its weakest Dice score.
        modelled: the confidences come from a score model.
        threshold: the Dice threshold the groups were formed at.
    Returns:
        A boolean array, one flag per group.
    """
    confidence = np.asarray(confidence, np.float64)
    if modelled:
        low, high = REVIEW_PROBABILITIES
    else:
        low, high = threshold, threshold + REVIEW_DICE_MARGIN
    return (confidence >= low) & (confidence < high)
