"""``auto`` under many encodings of the same records: how often does it choose badly?

    python -m bench.auto_encodings                       # 50 encodings of the test data
    python -m bench.auto_encodings --encodings 210 --agencies 3 --seed 11 --records 250

Every project has its own secret, and BLIP draws fresh coins at every encoding, so the
same people give different scores in every project. One quality run per data set says how
``auto`` does under one encoding; this says how often it goes wrong under others. It
normalises the generator's records once (seed, records per agency, the first AGENCIES
agencies by name), then for each encoding i encodes them under a secret and BLIP coins
derived from i (repeatable) and links them with ``link_records`` and ``auto``, as the
server does: one-to-one across agencies, as for agencies declared deduplicated, or with
``--dedupe`` link-and-dedupe (within-agency pairs compared too: the server's default).

The reference in the same run is the same pipeline at its hindsight-best threshold
(0.50-0.995 in steps of 0.005, scored against the truth: a number no user could know),
per encoding. It prints the spread of the chosen thresholds, of auto's link F1 (pairs
across agencies; with ``--dedupe`` all pairs) and of its gap to the hindsight best, and
the worst encodings.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

from linkage.encoding.encoder import encode_values, prepare_records
from linkage.encoding.mapping import parse_mapping
from linkage.encoding.schema import default_schema_text, load_schema
from linkage.matching.candidates import CandidatePairs
from linkage.matching.engine import compare_new_records, link_records
from linkage.matching.grouping import greedy_groups

from .quality import SCAN
from .quality_data import load_synthetic

#: F1 below which an encoding counts as a failure of ``auto`` in the table.
FAILED_F1 = 0.9


@dataclass(frozen=True)
class EncodingResult:
    """One encoding's ``auto`` choice and link F1, and the hindsight-best F1 beside it."""

    index: int
    threshold: float
    f1: float
    best_threshold: float
    best_f1: float


def encoding_secret(index: int) -> bytes:
    """The secret of encoding ``index``: fixed, so that a run can be repeated."""
    return hashlib.sha256(b"bench.auto_encodings secret %d" % index).digest()


def _pair_codes(left: np.ndarray, right: np.ndarray, count: int) -> np.ndarray:
    low, high = np.minimum(left, right), np.maximum(left, right)
    return np.unique(low.astype(np.int64) * count + high)


def _linked_codes(labels: np.ndarray, owners: np.ndarray, cross_only: bool = True
                  ) -> np.ndarray:
    """Codes of the record pairs (across owners, unless not ``cross_only``) that share a
    group label."""
    order = np.argsort(labels, kind="stable")
    left, right = [], []
    start = 0
    sorted_labels = labels[order]
    while start < order.size:
        stop = start + 1
        while stop < order.size and sorted_labels[stop] == sorted_labels[start]:
            stop += 1
        if stop - start > 1 and sorted_labels[start] >= 0:
            members = order[start:stop]
            first, second = np.triu_indices(members.size, 1)
            cross = (owners[members[first]] != owners[members[second]]) | (not cross_only)
            left.append(members[first][cross])
            right.append(members[second][cross])
        start = stop
    if not left:
        return np.empty(0, np.int64)
    return _pair_codes(np.concatenate(left), np.concatenate(right), labels.size)


def _f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    if predicted.size + truth.size == 0:
        return 1.0
    return 2 * np.intersect1d(predicted, truth, assume_unique=True).size / (
        predicted.size + truth.size)


def true_codes(entities: np.ndarray, owners: np.ndarray, cross_only: bool = True
               ) -> np.ndarray:
    """Codes of the record pairs (across owners, unless not ``cross_only``) that are one
    entity."""
    _, entity = np.unique(entities, return_inverse=True)
    return _linked_codes(entity, owners, cross_only)


def run_encoding(index: int, values: list[list[str]], owners: np.ndarray,
                 truth: np.ndarray, schema_text: str, dedupe: bool = False
                 ) -> EncodingResult:
    """Encode under encoding ``index``'s secret and coins, link with ``auto``, and scan."""
    schema = load_schema(schema_text)
    clks = encode_values(values, schema, encoding_secret(index), workers=1,
                         rng=np.random.default_rng(index))
    one = None if dedupe else 1
    result = link_records(clks, owners, threshold=None, max_per_owner=one,
                          cross_owner_only=not dedupe)
    f1 = _f1(_linked_codes(result.grouping.labels, owners, not dedupe), truth)
    scan = compare_new_records(clks, np.ones(len(owners), bool), float(SCAN[0]))
    keep = (owners[scan.left] != owners[scan.right]) | dedupe
    pairs = CandidatePairs(scan.left[keep], scan.right[keep], scan.score[keep])
    best_threshold, best_f1 = float(SCAN[0]), -1.0
    for threshold in SCAN:
        above = pairs.score >= threshold
        labels = greedy_groups(CandidatePairs(pairs.left[above], pairs.right[above],
                                              pairs.score[above]),
                               len(owners), owners, max_per_owner=one).labels
        scanned = _f1(_linked_codes(labels, owners, not dedupe), truth)
        if scanned > best_f1 + 1e-12:
            best_threshold, best_f1 = float(threshold), scanned
    return EncodingResult(index, float(result.choice.threshold), f1, best_threshold, best_f1)


def prepare(seed: int, records: int, agencies: int, corruption: float, schema_text: str,
            dedupe: bool = False):
    """The first ``agencies`` agencies' normalised values, owners and true pairs (across
    agencies; with ``dedupe`` within them too)."""
    data = load_synthetic(corruption, seed, records)
    schema = load_schema(schema_text)
    chosen = sorted(range(len(data.exports)), key=lambda i: data.exports[i].name)[:agencies]
    values: list[list[str]] = []
    owners: list[int] = []
    entities: list[str] = []
    for position, owner in enumerate(chosen):
        export = data.exports[owner]
        prepared = prepare_records(export.rows, schema, parse_mapping(export.mapping_toml))
        values.extend(prepared.values)
        owners.extend([position] * len(prepared.values))
        entities.extend(data.entities[data.owners == owner])
    owner_array = np.asarray(owners, np.int64)
    names = [data.exports[i].name for i in chosen]
    return (values, owner_array, true_codes(np.asarray(entities), owner_array, not dedupe),
            names)


def render(results: list[EncodingResult], worst: int = 5) -> str:
    """The table of spreads and the worst encodings."""
    def spread(numbers):
        return (f"{min(numbers):.4f} / {statistics.median(numbers):.4f} / "
                f"{statistics.fmean(numbers):.4f} / {max(numbers):.4f}")

    thresholds = [r.threshold for r in results]
    f1 = [r.f1 for r in results]
    best = [r.best_f1 for r in results]
    gap = [r.best_f1 - r.f1 for r in results]
    failed = [r for r in results if r.f1 < FAILED_F1]
    lines = [
        "| measure (over encodings) | min / median / mean / max |",
        "|---|---|",
        f"| auto threshold | {spread(thresholds)} |",
        f"| auto link F1 | {spread(f1)} |",
        f"| hindsight-best link F1 | {spread(best)} |",
        f"| hindsight best minus auto | {spread(gap)} |",
        "",
        f"encodings: {len(results)}; auto link F1 below {FAILED_F1}: {len(failed)}; "
        f"within 0.01 of the hindsight best: {sum(g <= 0.01 for g in gap)}",
        "",
        "| worst encodings | auto threshold | auto F1 | hindsight-best threshold | best F1 |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: r.f1)[:worst]:
        lines.append(f"| {r.index} | {r.threshold:.4f} | {r.f1:.4f} | {r.best_threshold:.3f} "
                     f"| {r.best_f1:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encodings", type=int, default=50)
    parser.add_argument("--first", type=int, default=0, help="index of the first encoding")
    parser.add_argument("--seed", type=int, default=11, help="generator seed (11: the tests')")
    parser.add_argument("--records", type=int, default=250, help="records per agency")
    parser.add_argument("--agencies", type=int, default=3)
    parser.add_argument("--corruption", type=float, default=0.2)
    parser.add_argument("--dedupe", action="store_true",
                        help="agencies not declared deduplicated: link and dedupe")
    args = parser.parse_args(argv)
    if args.encodings < 1 or args.agencies < 2:
        parser.error("need at least one encoding and two agencies")
    schema_text = default_schema_text()
    values, owners, truth, names = prepare(args.seed, args.records, args.agencies,
                                           args.corruption, schema_text, args.dedupe)
    print(f"{len(values)} records of {', '.join(names)} (generator seed {args.seed}, "
          f"corruption {args.corruption:g}), {truth.size} true pairs "
          f"{'in all' if args.dedupe else 'across agencies'}; the shipped schema; "
          f"{'link and dedupe' if args.dedupe else 'one-to-one'}", flush=True)
    results = []
    started = time.perf_counter()
    for index in range(args.first, args.first + args.encodings):
        results.append(run_encoding(index, values, owners, truth, schema_text, args.dedupe))
        done = len(results)
        if done % 10 == 0 or done == args.encodings:
            print(f"  {done}/{args.encodings} encodings, {time.perf_counter() - started:.0f} s",
                  file=sys.stderr, flush=True)
    print()
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
