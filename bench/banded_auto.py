"""Which band edge two-server ``auto`` picks, on the values the service's protocol opens.

    python -m bench.banded_auto --data synthetic:500:101 synthetic:500:7 heldout:500:101

For each data set (name:records per agency:seed; ``febrl4`` alone): encodes with the shipped
schema unless ``--schema``, computes with the plaintext kernel the banded histogram of the
public sample the service would draw (``linkage.mpc.banded_run.sample_rows``, every agency
pair, the service's edges; the protocol's histogram is tested equal to the kernel's), and
prints the edge ``choose_banded_threshold`` picks with the fit from the upper tail and at
most 1.5 matches per sampled record (today's rule, as the service calls it) and from the
lowest edge (the rule before 2026-12-03), with the pairwise F1 of the
cross-agency pairs at each and at the best edge in hindsight. No 1-to-1 rule, no grouping.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _load(spec: str):
    from bench.quality_data import load_febrl4, load_synthetic
    from bench.quality_heldout import load_heldout

    name, _, rest = spec.partition(":")
    if name == "febrl4":
        return load_febrl4()
    records, _, seed = rest.partition(":")
    loader = {"synthetic": load_synthetic, "heldout": load_heldout}[name]
    return loader(records_per_agency=int(records or 500), seed=int(seed or 101))


def measure(data, schema, sample_seed: int = 0) -> dict:
    """The banded choice, old and new, against the truth of one data set."""
    from bench.quality import encode_ours
    from linkage.matching import threshold as rules
    from linkage.matching.kernel import dice_candidates_native
    from linkage.mpc.banded_run import MATCHES_PER_SAMPLED_RECORD, SERVICE_EDGES, sample_rows

    _, clks = encode_ours(data, schema)
    owners, entities = data.owners, data.entities
    edges = np.asarray(SERVICE_EDGES)
    counts = np.zeros(edges.size)
    scores, matches, true_pairs, pair, sampled = [], [], 0, 0, 0
    for a in range(int(owners.max()) + 1):
        for b in range(a + 1, int(owners.max()) + 1):
            left, right = np.flatnonzero(owners == a), np.flatnonzero(owners == b)
            found = dice_candidates_native(clks[left], clks[right], float(edges[0]))
            sample = sample_rows(left.size, sample_seed, pair)
            pair += 1
            sampled += sample.size
            counts += np.histogram(found.score[np.isin(found.left, sample)],
                                   bins=np.append(edges, 1.0 + 1e-12))[0]
            scores.append(found.score)
            matches.append(entities[left][found.left] == entities[right][found.right])
            true_pairs += int((entities[left][:, None] == entities[right][None, :]).sum())
    score, match = np.concatenate(scores), np.concatenate(matches)

    def f1(threshold: float) -> float:
        linked = score >= threshold
        return 2 * float((linked & match).sum()) / (float(linked.sum()) + true_pairs)

    now = rules.choose_banded_threshold(
        edges, counts, max_matches=MATCHES_PER_SAMPLED_RECORD * sampled).threshold
    before = rules.choose_banded_threshold(edges, counts, tail_share=1.0).threshold  # lowest edge
    best = max(edges, key=f1)
    return {"before": (before, f1(before)), "now": (now, f1(now)), "best": (best, f1(best))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.banded_auto")
    parser.add_argument("--data", nargs="+", default=["synthetic:500:101", "synthetic:500:7",
                                                      "heldout:500:101", "heldout:500:102",
                                                      "synthetic:1000:5", "heldout:1000:103"])
    parser.add_argument("--schema", type=Path, default=None)
    parser.add_argument("--sample-seed", type=int, default=0)
    args = parser.parse_args(argv)

    from linkage.encoding.schema import default_schema_text, load_schema

    schema = load_schema(args.schema.read_text("utf-8") if args.schema
                         else default_schema_text())
    print("| data | fit from the lowest edge: auto / F1 | from the upper tail: auto / F1 "
          "| best edge / F1 |")
    print("|---|---|---|---|")
    for spec in args.data:
        out = measure(_load(spec), schema, args.sample_seed)
        print(f"| {spec} | " + " | ".join(f"{out[k][0]:.2f} / {out[k][1]:.4f}"
                                          for k in ("before", "now", "best")) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
