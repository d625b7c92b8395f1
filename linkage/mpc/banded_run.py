"""The band protocols as a two-server run of the service runs them: several agency pairs,
one threshold for all of them, and the band of every hit pair.

Per run (one generator per server, ``run_party``):

* ``auto`` only: ``bands_party`` on a public sample of each agency pair's left records
  (``sample_rows``: a coin in the plan, so data-independent) opens the sample's banded
  histogram; the counts are summed over the agency pairs, server 0 applies the public rule
  (``choose``, e.g. ``choose_banded_threshold``) and sends the chosen edge's index to
  server 1, so the two never split on a float near-tie of the fit;
* every agency pair: ``hits_party`` at the linking threshold opens the hit graph, then the
  hits' bands on the edges above it (``hit_edges``: the histogram's edges and a grid every
  ``HIT_STEP``), on material made once the number of hits is known (``hit_material``).

A hit's band's lower edge is its score: it orders a record's hits for the 1-to-1 rule, and
where the histogram gave a score model, ``band_match_shares`` is its confidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidRequestError
from .band_dealer import BandMaterial
from .bands import BandHits, band_thresholds, bands_party, hits_party
from .dealer import BlockMaterial, PartyMaterial

__all__ = ["HIT_STEP", "MATCHES_PER_SAMPLED_RECORD", "MIN_SAMPLE_ROWS", "SAMPLE_SHARE", "SERVICE_EDGES", "BandedRun",
           "PairShares", "hit_edges", "run_party", "sample_rows"]

#: The sample histogram's band edges (bench.attacks.banded's defaults: coarse in the
#: non-match tail, fine where the best thresholds of unbalanced CLKs lie).
SERVICE_EDGES = (0.5, 0.55, 0.6, 0.65, 0.7, 0.72, 0.74, 0.76, 0.78, 0.8, 0.82, 0.85, 0.9,
                 0.95)
#: Hits' bands are split every this much above the link (they cost per hit, not per pair).
HIT_STEP = 0.01
#: The share of left records the histogram is computed on ...
SAMPLE_SHARE = 0.05
#: ... but at least this many (small files: the fit needs the matches a sample holds).
MIN_SAMPLE_ROWS = 100
#: ``auto`` refuses a banded fit claiming more matches than this per sampled record: a record
#: has about one partner per other agency at most (FEBRL4: exactly one, so the fit's own
#: noise needs room above 1).
MATCHES_PER_SAMPLED_RECORD = 1.5


def sample_rows(left_rows: int, seed: int, pair: int = 0) -> np.ndarray:
    """The public sample of left rows for agency pair ``pair`` (sorted, distinct)."""
    count = min(left_rows, max(MIN_SAMPLE_ROWS, math.ceil(SAMPLE_SHARE * left_rows)))
    rng = np.random.default_rng([int(seed), int(pair)])
    return np.sort(rng.choice(left_rows, count, replace=False))


def hit_edges(edges: Sequence[float], link: int, step: float = HIT_STEP) -> np.ndarray:
    """``edges`` with every multiple of ``step`` above ``edges[link]`` (below 1) added."""
    edges = np.asarray(edges, np.float64)
    first = math.floor(edges[link] / step + 1e-9) + 1
    grid = np.round(np.arange(first, math.ceil(1 / step - 1e-9)) * step, 4)
    return np.unique(np.concatenate([edges, grid[grid > edges[link]]]))


@dataclass(frozen=True)
class PairShares:
    """One agency pair as one server holds it: its shares and its dealer material."""

    left: np.ndarray
    right: np.ndarray
    material: PartyMaterial
    sample_rows: np.ndarray | None = None
    sample_material: BandMaterial | None = None
    #: In ``auto``'s sample histogram (an agency's pairs with itself are not: see
    #: ``server.two_server``'s within-agency pairs).
    sampled: bool = True


@dataclass(frozen=True)
class BandedRun:
    """What a run opened: the summed sample histogram (``auto``), the hit edges, the link's
    index in them and each agency pair's hits with their bands."""

    histogram_edges: np.ndarray | None
    histogram_counts: np.ndarray | None
    edges: np.ndarray
    link: int
    hits: list[BandHits]

    @property
    def threshold(self) -> float:
        return float(self.edges[self.link])


def run_party(party: int, pairs: Sequence[PairShares], clk_bits: int, threshold: float | None,
              choose: Callable[[np.ndarray, np.ndarray], float] | None,
              hit_material: Callable[[int, int, int], BlockMaterial],
              on_pair: Callable[[int], None] | None = None
              ) -> Generator[np.ndarray, np.ndarray, BandedRun]:
    """One server's side of a banded run over every agency pair (see the module docstring).

    Args:
        party: 0 or 1.
        pairs: the agency pairs in plan order (with sample rows and material for ``auto``).
        clk_bits: the CLK length.
        threshold: a numeric threshold, or ``None`` for ``auto``.
        choose: server 0 with ``auto``: (edges, counts per band) -> one of the edges.
        hit_material: (pair index, hits, thresholds) -> this server's hit material.
        on_pair: called with each agency pair's index as its hits' protocol starts.
    Raises:
        InvalidRequestError: material or shares that do not fit, a rule that chose no edge,
            or (server 1) an index from server 0 that is no edge.
    """
    histogram_edges = counts = None
    if threshold is None:
        bands = band_thresholds(SERVICE_EDGES, clk_bits)
        histogram_edges = bands.edges
        at_least = np.zeros(len(bands), np.int64)
        for pair in pairs:
            if not pair.sampled:
                continue
            if pair.sample_rows is None or pair.sample_material is None:
                raise InvalidRequestError("an 'auto' run needs each pair's sample and its "
                                          "band material")
            out = yield from bands_party(party, pair.left[pair.sample_rows], pair.right, bands,
                                         pair.sample_material, None)
            at_least += out.at_least
        counts = at_least - np.append(at_least[1:], 0)
        mine = np.zeros(1, np.int64)
        if party == 0:
            if choose is None:
                raise InvalidRequestError("server 0 needs the rule that chooses the threshold")
            chosen = choose(histogram_edges.copy(), counts.copy())
            found = np.flatnonzero(np.isclose(histogram_edges, chosen, rtol=0, atol=1e-12))
            if not found.size:
                raise InvalidRequestError(f"the threshold rule chose {chosen!r}, no band edge")
            mine[0] = found[0]
        theirs = yield mine
        index = int(mine[0] if party == 0 else theirs[0])
        if not 0 <= index < len(bands):
            raise InvalidRequestError(f"server 0 chose band edge {index}; there are "
                                      f"{len(bands)}")
        base, link = histogram_edges, index
    else:
        base, link = np.array([threshold], np.float64), 0
    edges = hit_edges(base, link)
    linked_at = float(base[link])
    link = int(np.flatnonzero(edges == linked_at)[0])
    bands = band_thresholds(edges, clk_bits)
    higher = len(bands) - link - 1
    found = []
    for index, pair in enumerate(pairs):
        if on_pair is not None:
            on_pair(index)
        hits = yield from hits_party(party, pair.left, pair.right, bands, link, pair.material,
                                     lambda count, index=index: hit_material(index, count,
                                                                             higher))
        found.append(hits)
    return BandedRun(histogram_edges, counts, bands.edges, link, found)
