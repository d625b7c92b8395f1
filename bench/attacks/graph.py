"""The graph-matching attack (Vidanage et al., CIKM 2020; Schäfer et al., ACSAC 2024).

The curious server holds every CLK of an agency's file, so it can compute the
Dice similarity of every pair of the agency's records (with our own kernel).
The attacker encodes her plaintext register with our encoder and the public
schema under secrets of her own, and builds the same graph over her people.
Similarities depend on the people, not on the secret, so the two graphs are
near copies of each other; aligning them (``bench.attacks.align``) and
matching 1-to-1 names every encoded record.

Success is the share of the agency's records matched to the right person,
among those the attacker did not know beforehand (a seeded attacker's k
known pairs are neither counted nor in the denominator). At partial overlap
only the people in both files can be found: at 50% overlap and k = 50 of
1,000 records the ceiling is 450 / 950 = 47%.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .align import align, dice_matrix
from .population import World

__all__ = ["GraphResult", "graph_attack"]


@dataclass(frozen=True)
class GraphResult:
    """Correct re-identifications of one attack run."""

    seeds: int
    correct: int
    records: int
    agreement: float

    @property
    def success(self) -> float:
        """Correct re-identifications / encoded records she did not already know (the seeds)."""
        return self.correct / (self.records - self.seeds)


def graph_attack(world: World, *, seeds: int = 0, seed_rng: int = 0,
                 agency_sim: np.ndarray | None = None,
                 attacker_sim: np.ndarray | None = None) -> GraphResult:
    """Run the attack on one world; with ``seeds`` true pairs known to the attacker.

    ``agency_sim`` / ``attacker_sim`` may be passed in when several attacks
    share one world (the matrices are the expensive part).
    """
    agency_sim = dice_matrix(world.agency_clks) if agency_sim is None else agency_sim
    if attacker_sim is None:
        attacker_sim = np.mean([dice_matrix(clks) for clks in world.attacker_clks], axis=0)
    known = None
    seed_rows = np.zeros(0, dtype=np.int64)
    if seeds:
        present = np.flatnonzero(world.truth >= 0)
        seed_rows = np.random.default_rng(seed_rng).choice(present, seeds, replace=False)
        known = (seed_rows, world.truth[seed_rows])
    result = align(agency_sim, attacker_sim, seeds=known)
    found = (result.mapping == world.truth) & (world.truth >= 0)
    found[seed_rows] = False  # what she knew already is not a re-identification
    return GraphResult(seeds, int(found.sum()), world.records, result.agreement)
