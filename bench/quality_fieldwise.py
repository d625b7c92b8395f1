"""Field-aware scoring on encodings, measured: per-field segments + Fellegi-Sunter EM.

    python -m bench.quality_fieldwise --datasets heldout synthetic --corruption 0.25 --seed 101

Why: the record-level CLK loses recall that plaintext Splink keeps (issue:
quality close to plaintext). This runs the prototype of the field-aware path
on the same data as ``bench.quality``, beside our record-level ``auto`` and
plaintext Splink, in the same run:

1. the normalised values we encode are hashed into one Bloom filter per field
   (``linkage.field_segments``), concatenated;
2. the record-level kernel finds candidate pairs on the concatenation at the
   engine's floor (``linkage.engine.choose_floor``);
3. each candidate pair gets a per-field Dice and an agreement level per field;
   given and family names compared crosswise too, and taken crosswise when
   that agrees better (swapped names);
4. ``linkage.fellegi_sunter``: u from random pairs, m and the match share by
   EM; pairs with match probability >= 0.5 are grouped with our greedy
   complete-linkage grouping (one record per owner for one-to-one data).

It prints pairwise P/R/F1 per method, candidate recall at the floor, and the
calibration of the model's pair probabilities against truth.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

from linkage.candidates import CandidatePairs
from linkage.engine import choose_floor, compare_new_records, decide
from linkage.fellegi_sunter import fit_fellegi_sunter, levels_of
from linkage.field_segments import (
    DEFAULT_SEGMENT_BITS,
    encode_field_segments,
    exact_segment_pairs,
    field_similarities,
    layout_for,
    segment_frequencies,
    swapped_name_similarities,
)
from linkage.grouping import greedy_groups
from linkage.schema import LinkageSchema, load_schema

from .quality import (
    BLIP_SEED,
    PERSON_SCHEMA,
    SECRET,
    _bins,
    _limits,
    _load,
    encode_ours,
    links_from_labels,
    measure,
    run_ours,
    true_links,
)

__all__ = ["run_fieldwise"]

_RANDOM_PAIRS = 200_000
MATCH_PROBABILITY = 0.5


#: Blocking keys: records whose segments of these fields are identical are candidates too.
BLOCKING_KEYS = (("family_name",), ("given_name", "date_of_birth"), ("date_of_birth", "city"),
                 ("phone",), ("address",))


def _union(parts: list[CandidatePairs]) -> CandidatePairs:
    left = np.concatenate([p.left for p in parts])
    right = np.concatenate([p.right for p in parts])
    score = np.concatenate([p.score for p in parts])
    _, first = np.unique(left.astype(np.int64) * (1 << 32) + right, return_index=True)
    return CandidatePairs(left[first], right[first], score[first])


def _fieldwise_pairs(clks, layout, data, floor, blocking: bool = True):
    parts = [compare_new_records(clks, np.ones(len(data), bool), floor)]
    if blocking:
        parts += [exact_segment_pairs(clks, layout, key) for key in BLOCKING_KEYS
                  if all(f in layout.fields for f in key)]
    pairs = _union(parts)
    if data.one_to_one:
        keep = data.owners[pairs.left] != data.owners[pairs.right]
        pairs = CandidatePairs(pairs.left[keep], pairs.right[keep], pairs.score[keep])
    return pairs


def _similarities(clks, layout, pairs, fields):
    sims = field_similarities(clks, layout, pairs)
    if "given_name" in fields and "family_name" in fields:
        g, f = fields.index("given_name"), fields.index("family_name")
        crossed = swapped_name_similarities(clks, layout, pairs, "given_name", "family_name")
        straight = np.nan_to_num(sims[:, [g, f]], nan=0.0).sum(axis=1)
        across = np.nan_to_num(crossed, nan=0.0).sum(axis=1)
        swap = across > straight + 0.2
        sims[swap, g], sims[swap, f] = crossed[swap, 0], crossed[swap, 1]
    return sims


#: EM sessions: pairs blocked on these fields estimate the m of the other fields.
TRAINING_KEYS = (("date_of_birth",), ("given_name", "family_name"))
_TRAINING_PAIRS = 200_000


def _random_pairs(rng, count: int, size: int, owners, one_to_one: bool) -> CandidatePairs:
    first, second = rng.integers(0, count, size), rng.integers(0, count, size)
    keep = first != second
    if one_to_one:
        keep &= owners[first] != owners[second]
    low, high = np.minimum(first, second)[keep], np.maximum(first, second)[keep]
    return CandidatePairs(low, high, np.zeros(low.size))


def _sessions(clks, layout, fields, data, rng):
    from linkage.fellegi_sunter import TrainingSession

    sessions = []
    for key in TRAINING_KEYS:
        if not all(f in fields for f in key):
            continue
        pairs = exact_segment_pairs(clks, layout, key, max_block=1_000)
        if data.one_to_one:
            keep = data.owners[pairs.left] != data.owners[pairs.right]
            pairs = CandidatePairs(pairs.left[keep], pairs.right[keep], pairs.score[keep])
        if len(pairs.left) > _TRAINING_PAIRS:
            take = np.sort(rng.choice(len(pairs.left), _TRAINING_PAIRS, replace=False))
            pairs = CandidatePairs(pairs.left[take], pairs.right[take], pairs.score[take])
        sessions.append(TrainingSession(levels_of(_similarities(clks, layout, pairs, fields)),
                                        tuple(fields.index(f) for f in key)))
    return sessions


#: Fields whose exact agreements are adjusted for the value's frequency.
TF_FIELDS = ("given_name", "family_name", "city")


def run_fieldwise(data, schema: LinkageSchema, values, *, blip_epsilon: float | None = None,
                  term_frequencies: bool = True):
    """The field-aware prototype on one data set: labels, model, pairs and their probabilities."""
    fields = schema.feature_names
    bits = [DEFAULT_SEGMENT_BITS.get(f.kind, 128) for f in schema.features]
    layout = layout_for(fields, bits)
    started = time.perf_counter()
    clks = encode_field_segments(values, schema.text, SECRET, layout, blip_epsilon=blip_epsilon,
                                 rng=np.random.default_rng(BLIP_SEED))
    encoded = time.perf_counter()
    floor = choose_floor(clks)
    pairs = _fieldwise_pairs(clks, layout, data, floor)
    levels = levels_of(_similarities(clks, layout, pairs, fields))
    rng = np.random.default_rng(0)
    random_pairs = _random_pairs(rng, len(data), _RANDOM_PAIRS, data.owners, data.one_to_one)
    random_levels = levels_of(_similarities(clks, layout, random_pairs, fields))
    # The match share among all pairs, from the record-level score model's expected matches.
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
    fs = fit_fellegi_sunter(fields, _sessions(clks, layout, fields, data, rng), random_levels,
                            expected / all_pairs)
    value_share = None
    if term_frequencies:
        value_share = np.full(levels.shape, np.nan)
        for field in TF_FIELDS:
            if field in fields:
                column = fields.index(field)
                share = segment_frequencies(clks, layout, field)
                identical = np.all(layout.segment(clks, field)[pairs.left]
                                   == layout.segment(clks, field)[pairs.right], axis=1)
                value_share[identical, column] = share[pairs.left[identical]]
    probability = fs.match_probability(levels, value_share)
    take = probability >= MATCH_PROBABILITY
    kept = CandidatePairs(pairs.left[take], pairs.right[take], probability[take])
    labels = greedy_groups(kept, len(data), data.owners,
                           max_per_owner=_limits(data)["max_per_owner"]).labels
    return {"labels": labels, "model": fs, "pairs": pairs, "probability": probability,
            "floor": floor, "bits": layout.bits, "encode_s": encoded - started,
            "link_s": time.perf_counter() - encoded}


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
    parser.add_argument("--no-term-frequencies", action="store_true",
                        help="leave out the term-frequency adjustment of exact agreements")
    args = parser.parse_args(argv)
    schema = load_schema(PERSON_SCHEMA.read_text("utf-8"))
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
        fieldwise = run_fieldwise(data, schema, values, blip_epsilon=args.blip,
                                  term_frequencies=not args.no_term_frequencies)
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
              f"{fieldwise['model'].match_share:.2e}\n")
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
        print("\nPair match probability against truth (candidate pairs):\n\n"
              "| bin | pairs | mean predicted | observed |\n|---|---|---|---|")
        for low, high, count, mean, observed in _bins(fieldwise["probability"], is_true):
            print(f"| [{low:.3f}, {high:.3f}) | {count} | {mean:.4f} | {observed:.4f} |")
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
