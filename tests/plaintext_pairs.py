"""The plaintext kernel's pairs as a two-server run lays them out: the reference the
two-server tests compare the servers' groups with."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from linkage.batch import EncodedBatch
from linkage.matching.candidates import CandidatePairs
from linkage.matching.kernel import dice_candidates_native


def servers_pairs(batches: Mapping[str, EncodedBatch], agencies: Sequence[str],
                  threshold: float, *, within: bool,
                  score: Callable[[np.ndarray], np.ndarray] = lambda found: found
                  ) -> tuple[list[tuple[str, str]], np.ndarray, CandidatePairs]:
    """(members, owners, pairs) at ``threshold`` in the servers' positions and order.

    Records are numbered as the servers number them: agencies in project order, each
    agency's records by record id. Pairs come agency pair by agency pair (cross pairs
    first, then with ``within`` each agency's pairs with itself, as server 0 plans
    them), each in (left, right) order; ``score`` maps the Dice scores to what the run
    scores them by (e.g. the band's lower edge).
    """
    members, owners, offsets, clks = [], [], {}, {}
    for index, agency in enumerate(agencies):
        order = sorted(range(len(batches[agency])), key=batches[agency].record_ids.__getitem__)
        offsets[agency] = len(members)
        members += [(agency, batches[agency].record_ids[i]) for i in order]
        owners += [index] * len(order)
        clks[agency] = batches[agency].clks[order]
    sides = [(left, right) for i, left in enumerate(agencies) for right in agencies[i + 1:]]
    lefts, rights, scores = [], [], []
    for left, right in sides + ([(agency, agency) for agency in agencies] if within else []):
        found = dice_candidates_native(clks[left], clks[right], threshold)
        if left == right:
            above = found.left < found.right
            found = CandidatePairs(found.left[above], found.right[above], found.score[above])
        order = np.lexsort((found.right, found.left))
        lefts.append(found.left[order] + offsets[left])
        rights.append(found.right[order] + offsets[right])
        scores.append(score(found.score[order]))
    pairs = CandidatePairs(np.concatenate(lefts), np.concatenate(rights),
                           np.concatenate(scores).astype(np.float64))
    return members, np.asarray(owners), pairs
