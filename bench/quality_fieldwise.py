"""Field-aware scoring on encodings, measured: per-field segments + Fellegi-Sunter EM.

    python -m bench.quality_fieldwise --datasets heldout synthetic --corruption 0.25 --seed 101

Why: the record-level CLK loses recall that plaintext Splink keeps (issue:
quality close to plaintext). This runs the prototype of the field-aware path
on the same data as ``bench.quality``, beside our record-level ``auto`` and
plaintext Splink, in the same run:

1. the normalised values we encode are hashed into one Bloom filter per field
   (``linkage.encoding.field_segments``), concatenated;
2. the record-level kernel finds candidate pairs on the concatenation at the
   engine's floor (``linkage.matching.engine.choose_floor``);
3. each candidate pair gets a per-field Dice and an agreement level per field;
   given and family names compared crosswise too, and taken crosswise when
   that agrees better (swapped names);
4. ``linkage.matching.fellegi_sunter``: u from random pairs, m and the match share by
   EM; pairs with match probability at or above the cut-off of the best
   expected F1 (``FieldwiseScores.best_cutoff``, what the server's ``auto``
   takes) are grouped with our greedy complete-linkage grouping (one record
   per owner for one-to-one data).

It prints pairwise P/R/F1 per method, candidate recall at the floor, and the
calibration of the model's pair probabilities against truth.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from linkage.matching.candidates import CandidatePairs
from linkage.matching.engine import choose_floor, compare_new_records, decide
from linkage.matching.fellegi_sunter import (
    LINK_PROBABILITY,
    FieldwiseScores,
    ReviewedPairs,
    score_fieldwise,
)
from linkage.encoding.field_segments import (
    DEFAULT_SEGMENT_BITS,
    blocking_pairs,
    encode_field_segments,
    layout_for,
    union_pairs,
)
from linkage.matching.grouping import greedy_groups
from linkage.encoding.schema import LinkageSchema, load_schema

from .quality import (
    BLIP_SEED,
    PERSON_SCHEMA,
    SECRET,
    _limits,
    _load,
    encode_ours,
    links_from_labels,
    measure,
    run_ours,
    true_links,
)

__all__ = ["fieldwise_candidates", "run_fieldwise"]

#: The shipped per-field segment layout (the person schema's features, unhardened).
SEGMENTS_SCHEMA = Path(str(resources.files("linkage.encoding").joinpath("schemas/person_segments.json")))


#: Blocking keys: records whose segments of these fields are identical are candidates too.
BLOCKING_KEYS = (("family_name",), ("given_name", "date_of_birth"), ("date_of_birth", "city"),
                 ("phone",), ("address",), ("city",), ("date_of_birth",),
                 ("given_name", "family_name"))


def fieldwise_candidates(clks, layout, data, floor, blocking: bool = True) -> CandidatePairs:
    """The record-level kernel's pairs at the floor, plus exact-segment blocking."""
    parts = [compare_new_records(clks, np.ones(len(data), bool), floor)]
    if blocking:
        parts.append(blocking_pairs(clks, layout, BLOCKING_KEYS))
    pairs = union_pairs(parts)
    if data.one_to_one:
        keep = data.owners[pairs.left] != data.owners[pairs.right]
        pairs = CandidatePairs(pairs.left[keep], pairs.right[keep], pairs.score[keep])
    return pairs


def _record_level_match_share(pairs, floor, data) -> float:
    """P(match) of two random records from the record-level score model's expected matches."""
    above = pairs.score >= floor
    record_level = decide(CandidatePairs(pairs.left[above], pairs.right[above],
                                         pairs.score[above]),
                          floor, data.owners, threshold=None, **_limits(data))
    model = record_level.choice.model
    expected = (float(model.match_probability(pairs.score[above]).sum()) if model is not None
                else float(len(data)) / 2)
    if data.one_to_one:
        sizes = np.bincount(data.owners)
        all_pairs = float(sizes[0]) * float(sizes[1:].sum())
    else:
        all_pairs = len(data) * (len(data) - 1) / 2
    return expected / all_pairs


def encode_fieldwise(data, schema: LinkageSchema, values, *, blip_epsilon: float | None = None,
                     layout=None):
    """Per-field segments of ``values``: ``layout``, else ``DEFAULT_SEGMENT_BITS`` by kind."""
    if layout is None:
        layout = layout_for(schema.feature_names,
                            [DEFAULT_SEGMENT_BITS.get(f.kind, 128) for f in schema.features])
    clks = encode_field_segments(values, schema.text, SECRET, layout, blip_epsilon=blip_epsilon,
                                 rng=np.random.default_rng(BLIP_SEED))
    return layout, clks


def link_fieldwise(scores: FieldwiseScores, pairs: CandidatePairs, data,
                   cutoff: float = LINK_PROBABILITY) -> np.ndarray:
    """Group labels from the pairs at or above the probability ``cutoff``."""
    take = scores.probability >= cutoff
    kept = CandidatePairs(pairs.left[take], pairs.right[take], scores.probability[take])
    return greedy_groups(kept, len(data), data.owners,
                         max_per_owner=_limits(data)["max_per_owner"]).labels


def run_fieldwise(data, schema: LinkageSchema, values, *, blip_epsilon: float | None = None,
                  term_frequencies: bool = True, match_share: str = "blocks",
                  reviewed: ReviewedPairs | None = None, encoded=None, layout=None):
    """The field-aware path on one data set: labels, scores, pairs (``score_fieldwise``)."""
    started = time.perf_counter()
    layout, clks = encoded or encode_fieldwise(data, schema, values, blip_epsilon=blip_epsilon,
                                               layout=layout)
    encoded_at = time.perf_counter()
    floor = choose_floor(clks)
    pairs = fieldwise_candidates(clks, layout, data, floor)
    share = _record_level_match_share(pairs, floor, data) if match_share == "record-level" \
        else None
    scores = score_fieldwise(clks, layout, pairs, owners=data.owners,
                             cross_owner_only=data.one_to_one, one_to_one=data.one_to_one,
                             reviewed=reviewed,
                             match_share=share, term_frequencies=term_frequencies)
    cutoff = scores.best_cutoff()[0]
    labels = link_fieldwise(scores, pairs, data, cutoff)
    return {"labels": labels, "cutoff": cutoff, "model": scores.model, "scores": scores,
            "pairs": pairs,
            "probability": scores.probability, "floor": floor, "bits": layout.bits,
            "layout": layout, "clks": clks, "encode_s": encoded_at - started,
            "link_s": time.perf_counter() - encoded_at}


#: Probability bins of the calibration table.
CALIBRATION_BINS = (0.0, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99, 1.0 + 1e-9)


def calibration(probability: np.ndarray, outcome: np.ndarray) -> list[tuple]:
    """Per bin: (low, high, pairs, mean predicted probability, observed share of matches)."""
    rows = []
    for low, high in zip(CALIBRATION_BINS[:-1], CALIBRATION_BINS[1:]):
        inside = (probability >= low) & (probability < high)
        if inside.any():
            rows.append((low, min(high, 1.0), int(inside.sum()),
                         float(probability[inside].mean()), float(outcome[inside].mean())))
    return rows


def wilson_interval(share: float, count: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of an observed share of ``count`` trials: a bin of 15 pairs
    says far less about calibration than one of 15,000, and this says how much less."""
    if count <= 0:
        return 0.0, 1.0
    centre = (share + z * z / (2 * count)) / (1 + z * z / count)
    half = z * np.sqrt(share * (1 - share) / count + z * z / (4 * count * count)) / (
        1 + z * z / count)
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


def group_confidence(fieldwise: dict, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group of two or more records: its weakest linked pair's probability, and purity."""
    labels, pairs = fieldwise["labels"], fieldwise["pairs"]
    probability = fieldwise["probability"]
    inside = (probability >= fieldwise["cutoff"]) & (labels[pairs.left] == labels[pairs.right])
    weakest: dict[int, float] = {}
    for group, value in zip(labels[pairs.left[inside]].tolist(), probability[inside].tolist()):
        weakest[group] = min(value, weakest.get(group, 1.0))
    groups = np.array(sorted(weakest), np.int64)
    pure = np.array([np.unique(codes[labels == g]).size == 1 for g in groups.tolist()], bool)
    return np.array([weakest[g] for g in groups.tolist()]), pure


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["heldout", "synthetic", "febrl4",
                                                          "febrl3"])
    parser.add_argument("--corruption", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--records", type=int, default=1500)
    parser.add_argument("--blip", type=float, default=None,
                        help="BLIP epsilon on the segments (default: none)")
    parser.add_argument("--skip-splink", action="store_true")
    parser.add_argument("--segments", metavar="SCHEMA.json",
                        help="take the per-field segments from this schema's fieldSegments "
                             "(default: linkage/encoding/schemas/person_segments.json)")
    parser.add_argument("--match-share", choices=("blocks", "record-level"), default="blocks",
                        help="P(match) of random records: estimated from the training blocks "
                             "(the core's default) or from the record-level score model")
    parser.add_argument("--no-term-frequencies", action="store_true",
                        help="leave out the term-frequency adjustment of exact agreements")
    args = parser.parse_args(argv)
    schema = load_schema(PERSON_SCHEMA.read_text("utf-8"))
    segments_path = Path(args.segments) if args.segments else SEGMENTS_SCHEMA
    segments_schema = load_schema(segments_path.read_text("utf-8"))
    layout = segments_schema.segments
    if layout is None:
        parser.error(f"{segments_path} has no fieldSegments section")
    if tuple(segments_schema.feature_names) != tuple(schema.feature_names):
        parser.error(f"{segments_path} must have the person schema's features "
                     f"{', '.join(schema.feature_names)}")
    summary = ["| data set | ours record-level auto | ours field-wise FS | Splink 5 (plaintext) "
               "| candidate recall at floor |", "|---|---|---|---|---|"]
    for name in args.datasets:
        data = _load(name, args.corruption, args.seed, args.records)
        truth = true_links(data)
        print(f"# {data.name}: {len(data)} records, {len(truth)} true pairs", file=sys.stderr,
              flush=True)
        ours = run_ours(data, schema)
        record_level = measure(truth, links_from_labels(ours.result.grouping.labels),
                               data.owners)["all"]
        values, _ = encode_ours(data, schema)
        # Segments are hashed as the segments schema says (its bits per token), as
        # `linkage encode` does with it; the values are normalised alike.
        fieldwise = run_fieldwise(data, segments_schema, values, blip_epsilon=args.blip,
                                  term_frequencies=not args.no_term_frequencies,
                                  match_share=args.match_share, layout=layout)
        quality = measure(truth, links_from_labels(fieldwise["labels"]), data.owners)
        codes = pd.factorize(data.entities)[0]
        pairs = fieldwise["pairs"]
        is_true = codes[pairs.left] == codes[pairs.right]
        reference = truth if not data.one_to_one else truth
        visible = int(is_true.sum()) / max(len(reference), 1)
        splink = None
        if not args.skip_splink:
            from .quality_splink import run_splink

            splink = measure(truth, run_splink(values, schema.feature_names, data.owners,
                                               one_to_one=data.one_to_one), data.owners)["all"]
        print(f"### {data.name}: {len(data)} records; field-wise CLKs of {fieldwise['bits']} "
              f"bits, floor {fieldwise['floor']:.2f}, {len(pairs.left)} candidate pairs, "
              f"EM sessions per field {fieldwise['model'].sessions}, match share among all pairs "
              f"{fieldwise['model'].match_share:.2e}, auto cut-off (best expected F1) "
              f"{fieldwise['cutoff']:g}\n")
        print("| method | P | R | F1 | within-owner F1 |\n|---|---|---|---|---|")
        for label, q in (("ours record-level auto", measure(
                truth, links_from_labels(ours.result.grouping.labels), data.owners)),
                         ("ours field-wise FS", quality)):
            within = q["within"]
            print(f"| {label} | {q['all'].precision:.4f} | {q['all'].recall:.4f} | "
                  f"{q['all'].f1:.4f} | {within.f1 if within else float('nan'):.4f} |")
        if splink is not None:
            print(f"| Splink 5 (plaintext) | {splink.precision:.4f} | {splink.recall:.4f} | "
                  f"{splink.f1:.4f} | - |")
        print("\nPair match probability against truth (candidate pairs; 'within the bin' = "
              "the observed share of true matches lies within 0.05 of the bin's range; "
              "Wilson 95% interval of the observed share):\n\n"
              "| bin | pairs | mean predicted | observed | Wilson 95% | within 0.05 of the bin | "
              "observed - predicted |\n|---|---|---|---|---|---|---|")
        for low, high, count, mean, observed in calibration(fieldwise["probability"], is_true):
            within = low - 0.05 <= observed <= high + 0.05
            lower, upper = wilson_interval(observed, count)
            print(f"| [{low:.3f}, {high:.3f}) | {count} | {mean:.4f} | {observed:.4f} | "
                  f"[{lower:.3f}, {upper:.3f}] | {'yes' if within else 'no'} | "
                  f"{observed - mean:+.4f} |")
        print("\nGroup confidence (the probability of its weakest linked pair) against the "
              "share of groups whose records are one entity:\n\n"
              "| bin | groups | mean confidence | pure | within 0.05 of the bin |\n"
              "|---|---|---|---|---|")
        confidence, pure = group_confidence(fieldwise, codes)
        for low, high, count, mean, observed in calibration(confidence, pure):
            within = low - 0.05 <= observed <= high + 0.05
            print(f"| [{low:.3f}, {high:.3f}) | {count} | {mean:.4f} | {observed:.4f} | "
                  f"{'yes' if within else 'no'} |")
        weights = fieldwise["model"].weights
        print("\nMatch weights log2(m/u) per field and level (0 = best; non-increasing):\n\n"
              "| field | " + " | ".join(f"level {i}" for i in range(weights.shape[1]))
              + " |\n|---|" + "---|" * weights.shape[1])
        for fname, row in zip(schema.feature_names, weights):
            print(f"| {fname} | " + " | ".join(f"{w:+.2f}" for w in row) + " |")
        print(flush=True)
        summary.append(f"| {data.name} | {record_level.f1:.4f} | {quality['all'].f1:.4f} | "
                       f"{splink.f1 if splink else float('nan'):.4f} | {visible:.4f} |")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
