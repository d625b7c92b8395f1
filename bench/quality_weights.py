"""How the person schema's per-field weights were chosen: field statistics and a search.

    python -m bench.quality_weights                  # person: statistics, then the search
    python -m bench.quality_weights --kind company   # company schema, synthetic companies
    python -m bench.quality_weights --stats-only

Why this exists: a Dice score weighs each field by the number of bits it sets,
so ``bitsPerToken`` decides how much a disagreement in that field costs. This
script measures, on tuning data (the generators with seed 1, not the seed 7
the quality tables use; for persons also FEBRL3, which the tables show too):

1. per field, the Fellegi-Sunter weight of exact agreement, log2(m/u), where m
   is the share of true pairs that agree and u the share of random pairs, and
   the mean bigram Dice of true and of random pairs: how much the field tells;
2. for each candidate weighting, the best pairwise F1 over candidate pairs (the
   separation the encoding gives, before any threshold choice) and the F1 of
   the whole pipeline with the auto threshold, by coordinate search from the
   schema's current weights.

The schema's ``hardening`` section is kept as it is, so the figures are those
of the CLKs that actually travel.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from linkage.matching.engine import choose_floor, compare_new_records, link_records
from linkage.encoding.schema import load_schema

from .quality import (
    COMPANY_SCHEMA,
    PERSON_SCHEMA,
    _limits,
    encode_ours,
    links_from_labels,
    measure,
    true_links,
)
from .quality_company import load_companies
from .quality_data import LabelledData, load_febrl3, load_synthetic

__all__ = ["evaluate", "field_statistics", "main"]

#: Values tried per setting: bitsPerToken per field, and for "<field>:style" the
#: normaliser and comparison (see ``STYLES``).
CHOICES = {
    "person": {
        "given_name": (6, 8, 10, 12, 15, 18),
        "family_name": (6, 8, 10, 12, 15, 18),
        "date_of_birth": (10, 12, 15, 18, 22, 26, 30),
        "address": (3, 4, 5, 6, 8, 10),
        "city": (2, 3, 4, 5, 6, 8),
        "phone": (4, 6, 8, 10, 12, 15, 18),
    },
    "company": {
        "company_name": (6, 8, 10, 12, 15, 18, 22),
        "registration_number:style": ("text-positional", "name-positional", "name-bigram"),
        "registration_number": (6, 8, 10, 12, 15, 18, 22),
        "address": (3, 4, 5, 6, 8, 10),
        "city": (2, 3, 4, 5, 6, 8),
    },
}
#: style -> (normaliser, clkhash comparison).
STYLES = {
    "text-positional": ("text", {"type": "ngram", "n": 1, "positional": True}),
    "name-positional": ("name", {"type": "ngram", "n": 1, "positional": True}),
    "name-bigram": ("name", {"type": "ngram", "n": 2}),
}


def _bigrams(text: str) -> set[str]:
    padded = f" {text} "
    return {padded[i:i + 2] for i in range(len(padded) - 1)} if text else set()


def _dice(first: str, second: str) -> float:
    a, b = _bigrams(first), _bigrams(second)
    return 2 * len(a & b) / max(len(a) + len(b), 1)


def field_statistics(data: LabelledData, values: list[list[str]], features: list[str],
                     seed: int = 0) -> list[dict]:
    """Per field: missing share, m, u, log2(m/u), mean bigram Dice of true and random pairs."""
    table = np.array(values, dtype=object)
    truth = true_links(data)
    first, second = truth.get_level_values(0).to_numpy(), truth.get_level_values(1).to_numpy()
    rng = np.random.default_rng(seed)
    random_first = rng.integers(0, len(table), 20_000)
    random_second = rng.integers(0, len(table), 20_000)
    rows = []
    for index, feature in enumerate(features):
        column = table[:, index]
        stats = {"field": feature, "missing": float(np.mean(column == ""))}
        for label, (a, b) in (("m", (first, second)), ("u", (random_first, random_second))):
            both = (column[a] != "") & (column[b] != "") & (a != b)
            stats[label] = float(np.mean(column[a][both] == column[b][both])) if both.any() \
                else float("nan")
            stats[f"{label}_pairs"] = int(both.sum())
            sample = list(zip(column[a][both][:3000], column[b][both][:3000]))
            stats[f"dice_{label}"] = float(np.mean([_dice(x, y) for x, y in sample])) \
                if sample else float("nan")
        # No agreeing random pair: u is below 1 / pairs compared, the weight at least this.
        floor = 1 / max(stats["u_pairs"], 1)
        stats["weight"] = float(np.log2(stats["m"] / max(stats["u"], floor))) \
            if stats["m"] == stats["m"] else float("nan")
        stats["tokens"] = float(np.mean([len(v) + 1 for v in column if v])) if \
            (column != "").any() else 0.0
        rows.append(stats)
    return rows


def _schema_with(document: dict, weights: dict) -> dict:
    """The schema with the given bitsPerToken and styles."""
    changed = copy.deepcopy(document)
    for feature in changed["features"]:
        name = feature["identifier"]
        if name in weights:
            feature["hashing"]["strategy"] = {"bitsPerToken": int(weights[name])}
        if f"{name}:style" in weights:
            normaliser, comparison = STYLES[weights[f"{name}:style"]]
            changed.setdefault("normalisation", {})[name] = normaliser
            feature["hashing"]["comparison"] = dict(comparison)
    return changed


def _current(document: dict, choices: dict) -> dict:
    """The schema's own settings for every key of ``choices``."""
    out = {}
    for feature in document["features"]:
        name = feature["identifier"]
        if name in choices:
            out[name] = feature["hashing"]["strategy"].get("bitsPerToken")
        if f"{name}:style" in choices:
            kind = document.get("normalisation", {}).get(name, "text")
            comparison = feature["hashing"]["comparison"]
            out[f"{name}:style"] = next(
                (style for style, (normaliser, spec) in STYLES.items()
                 if normaliser == kind and spec == comparison), choices[f"{name}:style"][0])
    return out


def evaluate(document: dict, data: LabelledData) -> dict:
    """Best pairwise F1 over candidate pairs, and the pipeline's auto-threshold F1 (all pairs)."""
    schema = load_schema(json.dumps(document))
    _, clks = encode_ours(data, schema)
    floor = choose_floor(clks)
    pairs = compare_new_records(clks, np.ones(len(data), bool), floor)
    codes = pd.factorize(data.entities)[0]
    if data.one_to_one:
        cross = data.owners[pairs.left] != data.owners[pairs.right]
        pairs = type(pairs)(pairs.left[cross], pairs.right[cross], pairs.score[cross])
    truth = true_links(data)
    is_true = codes[pairs.left] == codes[pairs.right]
    order = np.argsort(-pairs.score, kind="stable")
    hits = np.cumsum(is_true[order])
    f1 = 2 * hits / (np.arange(1, order.size + 1) + len(truth))
    best = int(np.argmax(f1)) if f1.size else 0
    result = link_records(clks, data.owners, threshold=None, **_limits(data))
    quality = measure(truth, links_from_labels(result.grouping.labels), data.owners)["all"]
    return {"pair_f1": float(f1[best]) if f1.size else 0.0,
            "pair_threshold": float(pairs.score[order[best]]) if f1.size else None,
            "auto_f1": quality.f1 if quality else 0.0,
            "auto_threshold": result.choice.threshold}


def _objective(scores: list[dict]) -> float:
    """Mean of best pairwise F1 and auto F1 over the tuning data sets."""
    return float(np.mean([(s["pair_f1"] + s["auto_f1"]) / 2 for s in scores]))


def search(document: dict, datasets: list[LabelledData], choices: dict, rounds: int = 2,
           log=print) -> tuple:
    """Coordinate search over ``choices`` from the schema's current settings."""
    current = _current(document, choices)
    seen: dict[tuple, tuple[float, list[dict]]] = {}

    def score(weights):
        key = tuple(sorted(weights.items()))
        if key not in seen:
            started = time.perf_counter()
            results = [evaluate(_schema_with(document, weights), d) for d in datasets]
            seen[key] = (_objective(results), results)
            log(f"{json.dumps(weights)}  objective {seen[key][0]:.4f}  " + "  ".join(
                f"{d.name}: pair {r['pair_f1']:.4f} auto {r['auto_f1']:.4f}"
                for d, r in zip(datasets, results)) + f"  ({time.perf_counter() - started:.0f}s)")
        return seen[key][0]

    best = score(current)
    for _ in range(rounds):
        improved = False
        for field in choices:
            for value in choices[field]:
                if value == current[field]:
                    continue
                trial = dict(current, **{field: value})
                value_score = score(trial)
                if value_score > best + 1e-4:
                    best, current, improved = value_score, trial, True
        if not improved:
            break
    return current, best, seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["person", "company"], default="person")
    parser.add_argument("--schema", type=Path,
                        help="the schema to start from (default: the shipped one of --kind)")
    parser.add_argument("--stats-only", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the statistics and every trial here")
    args = parser.parse_args(argv)
    path = args.schema or (PERSON_SCHEMA if args.kind == "person" else COMPANY_SCHEMA)
    document = json.loads(path.read_text("utf-8"))
    schema = load_schema(path.read_text("utf-8"))
    if args.kind == "person":
        datasets = [load_synthetic(0.2, seed=1), load_synthetic(0.4, seed=1), load_febrl3()]
    else:
        datasets = [load_companies(0.2, seed=1), load_companies(0.4, seed=1)]
    out: dict = {"statistics": {}}
    for data in datasets:
        values, _ = encode_ours(data, schema)
        rows = field_statistics(data, values, schema.feature_names)
        out["statistics"][data.name] = rows
        print(f"\n{data.name} (seed 1 for synthetic): field statistics\n")
        print("| field | missing | m | u | log2(m/u) | bigram Dice, true pairs | random pairs "
              "| tokens |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            bound = ">= " if r["u"] == 0 else ""
            print(f"| {r['field']} | {r['missing']:.3f} | {r['m']:.3f} | {r['u']:.5f} "
                  f"| {bound}{r['weight']:.1f} | {r['dice_m']:.3f} | {r['dice_u']:.3f} "
                  f"| {r['tokens']:.1f} |")
    if not args.stats_only:
        print("\nCoordinate search (objective: mean over data sets of (best pair F1 + auto F1)/2)",
              flush=True)
        weights, best, seen = search(document, datasets, CHOICES[args.kind], args.rounds,
                                     log=lambda text: print(text, flush=True))
        print(f"\nbest weights {json.dumps(weights)} objective {best:.4f}")
        out["search"] = [{"weights": dict(k), "objective": v[0], "results": v[1]}
                         for k, v in seen.items()]
        out["best"] = weights
    if args.json:
        args.json.write_text(json.dumps(out, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
