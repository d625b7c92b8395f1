"""The functions a Dask worker runs for a run's comparisons: core package only.

A worker needs nothing but ``linkage`` (and numpy, numba) installed: no server,
no store, no gRPC. Each function takes what the client scattered (prepared
sides or CLK slices) and a unit's bounds, and returns the unit's pairs as rows
of the task's two sides; the client maps them to the run's rows and joins the
units in plan order (``linkage.matching.executor``), so the result is the in-process one.
"""

from __future__ import annotations

import numpy as np

from linkage.matching.blocking import lsh_table_pairs
from linkage.matching.candidates import CandidatePairs
from linkage.matching.executor import TILE_ROWS
from linkage.matching.kernel import PreparedSide, scan_prepared

__all__ = ["scan_lsh_tables", "scan_tile_range"]


def scan_tile_range(left: PreparedSide, right: PreparedSide, floor: float, same: bool,
                    start: int, stop: int) -> CandidatePairs:
    """Pairs at or above ``floor`` of sorted left rows ``start:stop``, in tile order."""
    return CandidatePairs.concat(list(scan_prepared(left, right, floor, same=same, start=start,
                                                    stop=stop, tile_rows=TILE_ROWS)))


def scan_lsh_tables(left: np.ndarray, right: np.ndarray, floor: float, same: bool,
                    positions: list[np.ndarray], earlier: list[np.ndarray] = ()
                    ) -> CandidatePairs:
    """Pairs at or above ``floor`` whose first shared bucket, in plan order, is in one of
    these tables (``earlier``: the plan's tables before them), so that the units of a
    plan report each pair once; the client orders them once all tables are in."""
    return lsh_table_pairs(left, right, floor, positions, same=same, earlier=earlier)
