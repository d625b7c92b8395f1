"""Design C of field-wise scoring on shares: trained on aggregates, links decided on shares.

    python -m bench.attacks.fieldwise_shares design-c --records 250 --seeds 101 103
    python -m bench.attacks.fieldwise_shares design-c-privacy --records 1000 --runs 1

Why: designs A and B open pairs' levels to train and fail the privacy target; here each
server learns only sums over the service's public sample (``linkage.mpc.field_train``) and
each pair's link bit (``fieldwise_links_party``; a linked pair's levels are opened too, as
B does). Quality and cost in one run beside plaintext field-wise, record-level banded
``auto`` on shares and plaintext Splink; privacy: the graph attack on the opened link graph.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from linkage.matching.candidates import CandidatePairs
from linkage.matching.field_aggregates import model_from_counts
from linkage.mpc import Plan, run_locally, split_clks
from linkage.mpc.banded_run import MATCHES_PER_SAMPLED_RECORD, SERVICE_EDGES, sample_rows
from linkage.mpc.bands import band_thresholds
from linkage.mpc.field_dealer import FieldMaterial
from linkage.mpc.field_train import SamplePair, field_train_party
from linkage.mpc.fieldwise import LocalDealer, field_columns, field_weights

from .fieldwise_shares import (_agency_pairs, _banded_record_level, _cross_truth, _plain_levels,
                               deal_fields, share_links)

__all__ = ["train_design_c", "main_quality", "main_privacy"]


def train_design_c(clks, owners, layout, seed: int, *, min_pairs: int = 10) -> dict:
    """The training run (both servers in this process) and the model from its counts."""
    columns = field_columns(layout.word_starts, layout.word_counts)
    bits = layout.bits
    bands = band_thresholds(SERVICE_EDGES, bits)
    sides, dealers, dealer_bytes, sampled_rows, cross = ([], []), [], 0, 0, 0
    dealer_s = 0.0
    for index, (a_rows, b_rows) in enumerate(_agency_pairs(owners)):
        cross += a_rows.size * b_rows.size
        rows = sample_rows(a_rows.size, seed, index)
        sampled_rows += rows.size
        left, right = clks[a_rows][rows], clks[b_rows]
        plan = Plan(left.shape[0], right.shape[0], bits)
        dealer, corrections, seconds, dealt = deal_fields(plan, columns)
        dealer_s += seconds
        dealer_bytes += dealt
        later = LocalDealer()
        dealers.append(later)
        l0, l1 = split_clks(left, bits)
        r0, r1 = split_clks(right, bits)
        sides[0].append(SamplePair(l0, r0, FieldMaterial(0, plan, columns, dealer.seeds[0]),
                                   later.for_party(0)))
        sides[1].append(SamplePair(l1, r1, FieldMaterial(1, plan, columns, dealer.seeds[1],
                                                         iter(corrections)),
                                   later.for_party(1)))
    started, cpu_started = time.perf_counter(), time.process_time()
    counts, _, sent = run_locally(field_train_party(0, sides[0], bands, min_pairs),
                                  field_train_party(1, sides[1], bands, min_pairs))
    online = (time.perf_counter() - started) / 2
    cpu = (time.process_time() - cpu_started) / 2
    dealer_bytes += sum(d.bytes_to_server_1 for d in dealers)
    band_pairs, band_levels = counts.band_level_counts()
    fitted = model_from_counts(layout.fields, counts.edges, counts.at_least, counts.kept,
                               band_pairs, band_levels, all_pairs=cross,
                               max_matches=MATCHES_PER_SAMPLED_RECORD * sampled_rows)
    weights = field_weights(fitted.model.weights, fitted.cut_bits)
    return {"counts": counts, "fitted": fitted, "weights": weights, "online_s": online, "cpu_s": cpu,
            "sent": sent, "dealer_bytes": dealer_bytes, "dealer_s": dealer_s,
            "sample_pairs": counts.pairs, "cross_pairs": cross}


def _opened_cells(counts) -> dict:
    """How many values the training run opened, and the smallest pair count a cell sums."""
    band_pairs, _ = counts.band_level_counts()
    return {"histogram_values": int(counts.at_least.size),
            "cell_values": int(counts.cells.size + counts.totals.size),
            "kept_edges": [float(counts.edges[j]) for j in counts.kept],
            "smallest_band_pairs": int(band_pairs.min()), "sample_pairs": int(counts.pairs)}


def _quality_one(args, seed: int) -> dict:
    from bench.quality import (PERSON_SCHEMA, _load, encode_ours, links_from_labels, measure,
                               true_links)
    from bench.quality_fieldwise import SEGMENTS_SCHEMA, _limits, run_fieldwise
    from linkage.encoding.schema import load_schema
    from linkage.matching.grouping import greedy_groups

    schema = load_schema(PERSON_SCHEMA.read_text("utf-8"))
    layout = load_schema(SEGMENTS_SCHEMA.read_text("utf-8")).segments
    data = _load("heldout", args.corruption, seed, args.records)
    truth = true_links(data)
    owners = data.owners
    values, record_clks = encode_ours(data, schema)
    print(f"# held-out seed {seed}: {len(data)} records, {np.unique(owners).size} agencies, "
          f"{len(truth)} true pairs ({_cross_truth(truth, owners)} cross-agency)",
          file=sys.stderr, flush=True)
    plain = run_fieldwise(data, schema, values, layout=layout)
    clks = plain["clks"]
    trained = train_design_c(clks, owners, layout, seed, min_pairs=args.min_pairs)
    fitted, weights = trained["fitted"], trained["weights"]
    limit = _limits(data)["max_per_owner"]
    links = share_links(clks, owners, layout, weights, check=args.check)
    pairs = [links]
    if args.within:
        pairs.append(share_links(clks, owners, layout, weights, check=args.check, within=True))
    left = np.concatenate([p.pairs.left for p in pairs])
    right = np.concatenate([p.pairs.right for p in pairs])
    levels = np.concatenate([p.levels for p in pairs])
    linked = CandidatePairs(left, right, fitted.model.match_probability(levels))
    c_labels = greedy_groups(linked, len(data), owners, max_per_owner=limit).labels
    b_row = []
    if args.with_b:
        from .fieldwise_shares import share_levels, train_on_shares

        training = share_levels(clks, owners, layout, args.train, 20_000, seed=seed)
        b_model, b_weights, _, _ = train_on_shares(training, layout.fields)
        b_links = share_links(clks, owners, layout, b_weights, check=args.check)
        b_pairs = CandidatePairs(b_links.pairs.left, b_links.pairs.right,
                                 b_model.match_probability(b_links.levels))
        b_labels = greedy_groups(b_pairs, len(data), owners).labels
        b_row = [(f"B: trained on the levels of pairs >= {args.train} (cross only)",
                  links_from_labels(b_labels))]
        b_cost = {"b_train_us_per_cross_pair": 1e6 * training.online_s / training.cross_pairs,
                  "b_links_us_per_pair": 1e6 * b_links.online_s / training.cross_pairs,
                  "b_links_cpu_us_per_pair": 1e6 * b_links.cpu_s / training.cross_pairs,
                  "b_dealer_bytes_per_pair": (training.dealer_bytes + b_links.dealer_bytes)
                  / training.cross_pairs}
    banded, chosen = _banded_record_level(record_clks, owners, schema.clk_bits, 0.05, seed)
    banded_labels = greedy_groups(banded, len(data), owners).labels
    rows = [("plaintext field-wise (one server holds the CLKs)",
             links_from_labels(plain["labels"])),
            ("C: trained on aggregates, links on shares"
             + (" (cross + within)" if args.within else " (cross only)"),
             links_from_labels(c_labels)),
            *b_row,
            ("record-level shares, banded auto (cross only)", links_from_labels(banded_labels))]
    if args.splink:
        from bench.quality_splink import run_splink

        started = time.perf_counter()
        rows.append(("plaintext Splink 5 EM", run_splink(values, schema.feature_names, owners,
                                                          one_to_one=data.one_to_one)))
        print(f"# splink {time.perf_counter() - started:.1f} s", file=sys.stderr)
    out = {"seed": seed, "records": len(data), "true_pairs": len(truth),
           "cross_true": _cross_truth(truth, owners), "banded_thresholds": sorted(set(chosen)),
           "cut_bits": fitted.cut_bits, "expected_f1": fitted.expected_f1,
           "sample_matches": fitted.sample_matches, "links_cross": len(links.pairs),
           "opened": _opened_cells(trained["counts"]), "systems": {}}
    for label, found in rows:
        q = measure(truth, found, owners)
        out["systems"][label] = {
            part: None if q[part] is None else
            {"p": q[part].precision, "r": q[part].recall, "f1": q[part].f1}
            for part in ("all", "cross", "within")}
    pair_count = sum(a.size * b.size for a, b in _agency_pairs(owners))
    within_pairs = sum(int((owners == o).sum()) ** 2 for o in np.unique(owners)) \
        if args.within else 0
    online = sum(p.online_s for p in pairs)
    out["cost"] = {
        "train_us_per_cross_pair": 1e6 * trained["online_s"] / pair_count,
        "train_us_per_sample_pair": 1e6 * trained["online_s"] / trained["sample_pairs"],
        "links_us_per_pair": 1e6 * online / (pair_count + within_pairs),
        "train_cpu_us_per_cross_pair": 1e6 * trained["cpu_s"] / pair_count,
        "links_cpu_us_per_pair": 1e6 * sum(p.cpu_s for p in pairs) / (pair_count + within_pairs),
        "links_pairs": pair_count + within_pairs,
        "train_dealer_bytes_per_cross_pair": trained["dealer_bytes"] / pair_count,
        "links_dealer_bytes_per_pair": sum(p.dealer_bytes for p in pairs)
        / (pair_count + within_pairs),
        "train_sent_bytes": trained["sent"],
        "links_sent_bytes_per_pair": sum(p.sent_bytes for p in pairs)
        / (pair_count + within_pairs)}
    if args.with_b:
        out["cost"].update(b_cost)
    return out


def _print_quality(out) -> None:
    o = out["opened"]
    print(f"\n### held-out seed {out['seed']}, {out['records']} records, {out['true_pairs']} "
          f"true pairs ({out['cross_true']} cross); training opened {o['histogram_values']} "
          f"histogram + {o['cell_values']} cell sums over {o['sample_pairs']} sampled pairs "
          f"(kept edges {o['kept_edges']}, smallest band {o['smallest_band_pairs']} pairs); "
          f"cut {out['cut_bits']:.2f} bits (expected F1 {out['expected_f1']:.4f}); "
          f"banded auto chose {out['banded_thresholds']}\n")
    print("| system | P all | R all | F1 all | P cross | R cross | F1 cross | F1 within |\n"
          "|---|---|---|---|---|---|---|---|")
    for label, q in out["systems"].items():
        within = q["within"]["f1"] if q["within"] else float("nan")
        print(f"| {label} | {q['all']['p']:.4f} | {q['all']['r']:.4f} | {q['all']['f1']:.4f} "
              f"| {q['cross']['p']:.4f} | {q['cross']['r']:.4f} | {q['cross']['f1']:.4f} | "
              f"{within:.4f} |")
    c = out["cost"]
    print(f"\ncost: training {c['train_us_per_cross_pair']:.2f} µs per cross pair per server "
          f"({c['train_us_per_sample_pair']:.1f} µs per sampled pair), dealer "
          f"{c['train_dealer_bytes_per_cross_pair']:.1f} B per cross pair; links "
          f"{c['links_us_per_pair']:.1f} µs per pair per server over {c['links_pairs']} pairs, "
          f"dealer {c['links_dealer_bytes_per_pair']:.1f} B per pair, sent "
          f"{c['links_sent_bytes_per_pair']:.1f} B per pair per server; CPU: training "
          f"{c['train_cpu_us_per_cross_pair']:.2f} µs per cross pair, links "
          f"{c['links_cpu_us_per_pair']:.2f} µs per pair", flush=True)
    if "b_links_us_per_pair" in c:
        print(f"cost B (same run): training {c['b_train_us_per_cross_pair']:.2f} + links "
              f"{c['b_links_us_per_pair']:.2f} µs per cross pair per server, dealer "
              f"{c['b_dealer_bytes_per_pair']:.1f} B per cross pair; links CPU "
              f"{c['b_links_cpu_us_per_pair']:.2f} µs per cross pair", flush=True)


def main_quality(args) -> int:
    results = []
    for seed in args.seeds:
        out = _quality_one(args, seed)
        _print_quality(out)
        results.append(out)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1, default=float)
    return 0


# -- privacy ---------------------------------------------------------------------------------

def privacy_run(records: int, run: int, seeds: list[int]) -> dict:
    """One attack world: design C's real view (link graph + the links' levels), attacked."""
    from .fieldwise_shares import _segmented_linkage_world, _weighted_graph
    from .learned import learned_graph_attack

    world = _segmented_linkage_world(records, run)
    layout = world["layout"]
    owners = np.r_[np.zeros(records, np.int64), np.ones(records, np.int64)]
    clks = np.concatenate([world["a"], world["b"]])
    trained = train_design_c(clks, owners, layout, run)
    weights = trained["weights"]
    links = share_links(clks, owners, layout, weights, check=False)
    left, right = links.pairs.left, links.pairs.right - records
    ours = _weighted_graph(records, records, left, right, links.levels)
    # The attacker: every pair of her own encoding, the same public rule.
    a, b = world["attacker_a"], world["attacker_b"]
    every_left, every_right = np.divmod(np.arange(records * records), records)
    levels = _plain_levels(a, b, layout, every_left, every_right)
    mine = weights.link(levels)
    theirs = _weighted_graph(records, records, every_left[mine], every_right[mine],
                             levels[mine])
    out = {"run": run, "records": records, "links": len(links.pairs),
           "attacker_links": int(mine.sum()), "cut_bits": trained["fitted"].cut_bits,
           "opened": _opened_cells(trained["counts"])}
    for k in seeds:
        result = learned_graph_attack(ours, theirs, world["truth"], seeds=k, seed_rng=run)
        out[f"graph k={k}"] = result.success
        out[f"partners k={k}"] = result.partner_share
    return out


def main_privacy(args) -> int:
    rows = []
    for records in args.records:
        for run in range(args.first_run, args.first_run + args.runs):
            row = privacy_run(records, run, args.seeds)
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    return 0


def add_commands(commands) -> None:
    """The ``design-c`` and ``design-c-privacy`` subcommands of ``fieldwise_shares``."""
    sub = commands.add_parser("design-c", help="design C: quality and cost, in one run")
    sub.add_argument("--records", type=int, default=250, help="records per agency (6 agencies)")
    sub.add_argument("--seeds", type=int, nargs="+", default=[101, 103])
    sub.add_argument("--corruption", type=float, default=0.25)
    sub.add_argument("--min-pairs", type=int, default=10,
                     help="fewest sampled pairs an opened band may sum")
    sub.add_argument("--no-within", dest="within", action="store_false",
                     help="compare cross-agency pairs only on shares")
    sub.add_argument("--no-b", dest="with_b", action="store_false",
                     help="leave out design B (training opens the levels of pairs >= --train)")
    sub.add_argument("--train", type=float, default=0.7)
    sub.add_argument("--no-splink", dest="splink", action="store_false")
    sub.add_argument("--no-check", dest="check", action="store_false",
                     help="skip checking every link against the plaintext rule")
    sub.add_argument("--json")
    sub = commands.add_parser("design-c-privacy", help="design C: attacks on the view")
    sub.add_argument("--records", type=int, nargs="+", default=[1000])
    sub.add_argument("--runs", type=int, default=1)
    sub.add_argument("--first-run", type=int, default=0, help="worlds first-run .. +runs-1")
    sub.add_argument("--seeds", type=int, nargs="+", default=[0, 50])
    sub.add_argument("--json")
