"""``auto`` and 1-to-1 in two-server mode: Dice bands on shares, cost and quality.

    python -m bench.attacks banded --dataset febrl4 --sample 0.05
    python -m bench.attacks banded --dataset synthetic --records 1000 --full

Runs ``linkage.mpc``'s band protocols in one process (``run_locally``: the two servers one
after the other, so one server's online time is half the measured time):

* **sampled** (the default design): the banded histogram on a public random sample of the
  left records (``bands_party`` with no linking rule), ``auto`` on it
  (``choose_banded_threshold``: the band edge with the best expected F1), then the hit graph at
  that edge for every pair and the bands of the hits alone (``hits_party``);
* **full** (``--full``): K comparisons on every pair, the exact histogram, then the same;
* **single**: today's one comparison per pair at the threshold the sampled design chose.

Each checks its opened values against the plaintext kernel's (``banded_reference``), then
links 1-to-1 by band (greedy, best band first) and measures F1 against the truth.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass

import numpy as np

from linkage.matching.candidates import CandidatePairs
from linkage.matching.grouping import greedy_groups
from linkage.matching.kernel import dice_candidates_native
from linkage.matching.threshold import choose_banded_threshold
from linkage.mpc import (BandDealer, BandHits, BandMaterial, Dealer, HitDealer, PartyMaterial,
                         Plan, band_plan, band_thresholds, bands_party, hit_material, hits_party,
                         rational_threshold, run_locally, split_clks, threshold_party)
from linkage.mpc.banded_run import MATCHES_PER_SAMPLED_RECORD

__all__ = ["DEFAULT_EDGES", "BandedRun", "banded_link", "banded_reference", "hit_edges", "main",
           "one_to_one"]

#: Band edges: coarse in the non-match tail, fine where FEBRL4's and the generator's best
#: thresholds lie (0.72-0.8).
DEFAULT_EDGES = (0.5, 0.55, 0.6, 0.65, 0.7, 0.72, 0.74, 0.76, 0.78, 0.8, 0.82, 0.85, 0.9, 0.95)


@dataclass(frozen=True)
class BandedRun:
    """What one band run opened, and what it cost."""

    hits: BandHits
    sample_rows: np.ndarray
    sample_at_least: np.ndarray
    threshold: float
    reason: str
    online_s: float          # per server
    dealer_s: float
    sent_bytes: int          # by one server to the other
    dealer_bytes: int        # to server 1 (server 0 gets seeds)


def _sample_rows(left_rows: int, sample: float, seed: int) -> np.ndarray:
    """A public random sample of left records (a coin both servers share; data-independent)."""
    count = max(1, min(left_rows, round(sample * left_rows)))
    return np.sort(np.random.default_rng(seed).choice(left_rows, count, replace=False))


def _link_index(edges, at_least, sampled_records: int | None = None) -> tuple[int, str]:
    """The edge auto links at; ``sampled_records`` bounds the matches as the service does."""
    counts = np.asarray(at_least) - np.append(np.asarray(at_least)[1:], 0)
    choice = choose_banded_threshold(
        np.asarray(edges), counts,
        max_matches=None if sampled_records is None else MATCHES_PER_SAMPLED_RECORD * sampled_records)
    index = int(np.argmin(np.abs(np.asarray(edges) - choice.threshold)))
    return index, choice.reason


def _histogram(l0, l1, r0, r1, bits, bands, rows):
    plan = band_plan(len(rows), r0.shape[0], bits, len(bands))
    started = time.perf_counter()
    dealer = BandDealer(plan, len(bands))
    corrections = list(dealer.corrections())
    dealer_s = time.perf_counter() - started
    started = time.perf_counter()
    out, _, sent = run_locally(
        bands_party(0, l0[rows], r0, bands, BandMaterial(0, plan, len(bands), dealer.seeds[0]),
                    None),
        bands_party(1, l1[rows], r1, bands, BandMaterial(1, plan, len(bands), dealer.seeds[1],
                                                         iter(corrections)), None))
    return out, (time.perf_counter() - started) / 2, dealer_s, sent, \
        sum(c.nbytes for c in corrections)


def hit_edges(edges, link: int, step: float) -> np.ndarray:
    """The histogram's edges up to the link, then a grid of ``step`` above it (hits only)."""
    edges = np.asarray(edges, np.float64)
    if not step:
        return edges
    grid = np.round(np.arange(edges[link], 1.0 - 1e-9, step), 4)
    return np.unique(np.concatenate([edges, grid]))


def banded_link(left: np.ndarray, right: np.ndarray, clk_bits: int,
                edges=DEFAULT_EDGES, *, sample: float = 0.05, sample_seed: int = 0,
                full: bool = False, hit_step: float = 0.0) -> BandedRun:
    """Link two agencies' CLKs on shares with ``auto`` on bands (see the module docstring).

    ``hit_step``: in the sampled design, the hits' bands are also split every ``hit_step``
    above the link (they cost per hit, not per pair); 0 keeps the histogram's edges.
    """
    bands = band_thresholds(edges, clk_bits)
    l0, l1 = split_clks(left, clk_bits)
    r0, r1 = split_clks(right, clk_bits)
    if full:
        plan = band_plan(left.shape[0], right.shape[0], clk_bits, len(bands))
        started = time.perf_counter()
        dealer = BandDealer(plan, len(bands))
        corrections = list(dealer.corrections())
        dealer_s = time.perf_counter() - started
        reasons = []

        def choose(at_least):
            index, reason = _link_index(bands.edges, at_least, left.shape[0])
            reasons.append(reason)
            return index

        started = time.perf_counter()
        hits, _, sent = run_locally(
            bands_party(0, l0, r0, bands, BandMaterial(0, plan, len(bands), dealer.seeds[0]),
                        choose),
            bands_party(1, l1, r1, bands, BandMaterial(1, plan, len(bands), dealer.seeds[1],
                                                       iter(corrections)), choose))
        online = (time.perf_counter() - started) / 2
        return BandedRun(hits, np.arange(left.shape[0]), hits.at_least,
                         float(bands.edges[hits.link]), reasons[0], online, dealer_s, sent,
                         sum(c.nbytes for c in corrections))
    rows = _sample_rows(left.shape[0], sample, sample_seed)
    histogram, online_h, dealer_h, sent_h, dealer_bytes_h = _histogram(l0, l1, r0, r1, clk_bits,
                                                                       bands, rows)
    link, reason = _link_index(bands.edges, histogram.at_least, rows.size)
    threshold = float(bands.edges[link])
    bands = band_thresholds(hit_edges(bands.edges, link, hit_step), clk_bits)
    link = int(np.flatnonzero(bands.edges == threshold)[0])
    plan = Plan(left.shape[0], right.shape[0], clk_bits)
    started = time.perf_counter()
    dealer = Dealer(plan)
    corrections = list(dealer.corrections())
    dealer_s = dealer_h + time.perf_counter() - started
    dealer_bytes = dealer_bytes_h + sum(c.nbytes for c in corrections)
    made: list = []
    higher = len(bands) - link - 1

    def material(party):
        def make(count):
            nonlocal dealer_s, dealer_bytes
            if party == 0:
                started = time.perf_counter()
                made.append(HitDealer(count, higher))
                made.append(made[0].correction())
                dealer_s += time.perf_counter() - started
                dealer_bytes += made[1].nbytes
                return hit_material(0, count, higher, made[0].seeds[0])
            return hit_material(1, count, higher, made[0].seeds[1], made[1])
        return make

    started = time.perf_counter()
    hits, _, sent = run_locally(
        hits_party(0, l0, r0, bands, link, PartyMaterial(0, plan, dealer.seeds[0]), material(0)),
        hits_party(1, l1, r1, bands, link,
                   PartyMaterial(1, plan, dealer.seeds[1], iter(corrections)), material(1)))
    online = (time.perf_counter() - started) / 2 + online_h
    return BandedRun(hits, rows, histogram.at_least, float(bands.edges[link]), reason, online,
                     dealer_s, sent + sent_h, dealer_bytes)


def banded_reference(left: np.ndarray, right: np.ndarray, edges, sample_rows: np.ndarray,
                     hit_step: float = 0.0
                     ) -> tuple[np.ndarray, int, CandidatePairs, np.ndarray, np.ndarray]:
    """The same opened values from the plaintext kernel: sample histogram, link, hits, bands,
    and the hit edges ``link`` and ``band`` index (see ``hit_edges``)."""
    edges = np.asarray(edges, np.float64)
    sampled = dice_candidates_native(left[sample_rows], right, float(edges[0]))
    at_least = np.array([(sampled.score >= edge).sum() for edge in edges])
    link, _ = _link_index(edges, at_least, len(sample_rows))
    threshold = edges[link]
    edges = hit_edges(edges, link, hit_step)
    link = int(np.flatnonzero(edges == threshold)[0])
    pairs = dice_candidates_native(left, right, float(edges[link]))
    order = np.lexsort((pairs.right, pairs.left))
    pairs = CandidatePairs(pairs.left[order], pairs.right[order], pairs.score[order])
    band = np.searchsorted(edges, pairs.score, side="right") - 1
    return at_least, link, pairs, band, edges


def one_to_one(left: np.ndarray, right: np.ndarray, score: np.ndarray, left_rows: int,
               right_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Each record in at most one link, best (coarse) score first: the greedy solver."""
    pairs = CandidatePairs(left.astype(np.int64), (right + left_rows).astype(np.int64),
                           np.asarray(score, np.float64))
    owners = np.r_[np.zeros(left_rows, np.int64), np.ones(right_rows, np.int64)]
    labels = greedy_groups(pairs, left_rows + right_rows, owners, max_per_owner=1).labels
    linked = labels[pairs.left] >= 0
    same = labels[pairs.left] == labels[pairs.right]
    keep = linked & same
    return left[keep], right[keep]


def _single(left, right, bits, threshold):
    plan = Plan(left.shape[0], right.shape[0], bits)
    dealer = Dealer(plan)
    corrections = list(dealer.corrections())
    l0, l1 = split_clks(left, bits)
    r0, r1 = split_clks(right, bits)
    rational = rational_threshold(threshold, bits)
    started = time.perf_counter()
    hits, _, sent = run_locally(
        threshold_party(0, l0, r0, rational, PartyMaterial(0, plan, dealer.seeds[0])),
        threshold_party(1, l1, r1, rational,
                        PartyMaterial(1, plan, dealer.seeds[1], iter(corrections))))
    return hits, (time.perf_counter() - started) / 2, sent, sum(c.nbytes for c in corrections)


def _check(run: BandedRun, left, right, edges, hit_step) -> None:
    at_least, link, pairs, band, _ = banded_reference(left, right, edges, run.sample_rows,
                                                      hit_step)
    hits = run.hits
    if not (np.array_equal(run.sample_at_least, at_least) and hits.link == link
            and np.array_equal(hits.left, pairs.left) and np.array_equal(hits.right, pairs.right)
            and np.array_equal(hits.band, band)):
        raise AssertionError("band protocol's opened values differ from the plaintext kernel's")


def _quality(data, keep, a_rows, b_rows, lefts, rights):
    from bench.attacks.two_server import _f1

    return _f1(data, keep, a_rows[lefts], b_rows[rights])


def main(args) -> int:
    from bench.attacks.two_server import _two_owners

    schema, data, clks, keep = _two_owners(args.dataset, args.records, args.hardening)
    a_rows = np.flatnonzero(data.owners == 0)
    b_rows = np.flatnonzero(data.owners == 1)
    left, right = clks[a_rows], clks[b_rows]
    bits = schema.clk_bits
    dice_candidates_native(left[:64], right[:64], 0.5)  # compiled before timing
    if args.reference_sweep:
        return _reference_sweep(args, data, keep, a_rows, b_rows, left, right)
    rows = []
    for run in range(args.runs):
        banded = banded_link(left, right, bits, args.edges, sample=args.sample,
                             sample_seed=run, full=args.full, hit_step=args.hit_step)
        _check(banded, left, right, args.edges, 0.0 if args.full else args.hit_step)
        pairs = left.shape[0] * right.shape[0]
        hits = banded.hits
        at_threshold = _quality(data, keep, a_rows, b_rows, hits.left, hits.right)
        kept = one_to_one(hits.left, hits.right, hits.score, left.shape[0], right.shape[0])
        linked = _quality(data, keep, a_rows, b_rows, *kept)
        if args.skip_single:
            single_s, single_sent, single_dealer = float("nan"), 0, 0
        else:
            single_hits, single_s, single_sent, single_dealer = _single(left, right, bits,
                                                                        banded.threshold)
            if not (np.array_equal(single_hits.left, hits.left)
                    and np.array_equal(single_hits.right, hits.right)):
                raise AssertionError("the single-threshold run found other pairs")
        started = time.perf_counter()
        dice_candidates_native(left, right, banded.threshold)
        kernel_s = time.perf_counter() - started
        row = {"run": run, "design": "full" if args.full else f"sampled {args.sample}",
               "hit_step": 0.0 if args.full else args.hit_step,
               "pairs": pairs, "thresholds": len(args.edges), "auto_threshold": banded.threshold,
               "hits": len(hits), "equal_to_kernel": True,
               "f1_at_threshold": at_threshold.f1, "f1_one_to_one": linked.f1,
               "precision_one_to_one": linked.precision, "recall_one_to_one": linked.recall,
               "us_per_pair_banded": 1e6 * banded.online_s / pairs,
               "us_per_pair_single": 1e6 * single_s / pairs,
               "cost_ratio": banded.online_s / single_s,
               "bytes_per_pair_banded": banded.sent_bytes / pairs,
               "bytes_per_pair_single": single_sent / pairs,
               "dealer_bytes_per_pair_banded": banded.dealer_bytes / pairs,
               "dealer_bytes_per_pair_single": single_dealer / pairs,
               "dealer_s_banded": banded.dealer_s, "kernel_s": kernel_s,
               "reason": banded.reason}
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(f"\n{args.dataset}: {left.shape[0]} x {right.shape[0]} records, {bits}-bit CLKs, "
          f"{len(args.edges)} band edges, median of {len(rows)} runs")
    print("| figure | median | runs |\n|---|---|---|")
    for key, value in rows[0].items():
        if key in ("run", "reason") or isinstance(value, (str, bool)):
            continue
        values = [r[key] for r in rows]
        print(f"| {key} | {statistics.median(values):.4g} | "
              f"{', '.join(f'{v:.4g}' for v in values)} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    return 0


def _reference_sweep(args, data, keep, a_rows, b_rows, left, right) -> int:
    """F1 of the values the protocol opens, computed by the plaintext kernel (tested equal)."""
    print("| sample | hit step | run | auto threshold | hits | F1 at threshold "
          "| 1-to-1 precision | 1-to-1 recall | 1-to-1 F1 |\n|---|---|---|---|---|---|---|---|---|")
    for sample in args.reference_sweep:
        for step in (0.0, 0.01):
            for run in range(args.runs):
                rows = _sample_rows(left.shape[0], sample, run)
                _, link, pairs, band, edges = banded_reference(left, right, args.edges, rows,
                                                               step)
                at = _quality(data, keep, a_rows, b_rows, pairs.left, pairs.right)
                kept = one_to_one(pairs.left, pairs.right, edges[band], left.shape[0],
                                  right.shape[0])
                one = _quality(data, keep, a_rows, b_rows, *kept)
                print(f"| {sample} | {step} | {run} | {edges[link]:.3f} | {len(pairs)} "
                      f"| {at.f1:.4f} | {one.precision:.4f} | {one.recall:.4f} "
                      f"| {one.f1:.4f} |", flush=True)
    return 0


def add_arguments(sub) -> None:
    """The ``banded`` command's options (``python -m bench.attacks banded``)."""
    sub.add_argument("--dataset", choices=("synthetic", "febrl4"), default="synthetic")
    sub.add_argument("--records", type=int, default=1000, help="synthetic records per agency")
    sub.add_argument("--runs", type=int, default=1)
    sub.add_argument("--sample", type=float, default=0.05,
                     help="share of left records the histogram is computed on")
    sub.add_argument("--full", action="store_true", help="the histogram on every pair")
    sub.add_argument("--hit-step", type=float, default=0.0,
                     help="also split the hits' bands every STEP above the link (sampled)")
    sub.add_argument("--edges", type=float, nargs="+", default=list(DEFAULT_EDGES))
    sub.add_argument("--hardening", help="replace the shipped schema's hardening (JSON)")
    sub.add_argument("--skip-single", action="store_true",
                     help="do not also run the single-threshold mode (its cost figures: nan)")
    sub.add_argument("--reference-sweep", type=float, nargs="+", metavar="SAMPLE",
                     help="only the plaintext equivalent of the opened values, at these samples")
    sub.add_argument("--json", help="also write every figure to this file")
