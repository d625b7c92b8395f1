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
import statistics
import sys
import time

import numpy as np

from linkage.matching.candidates import CandidatePairs
from linkage.matching.field_aggregates import model_from_counts, refined_model, within_model
from linkage.mpc import Plan, run_locally, split_clks
from linkage.mpc.banded_run import MATCHES_PER_SAMPLED_RECORD, SERVICE_EDGES, sample_rows
from linkage.mpc.bands import band_thresholds
from linkage.mpc.field_dealer import FieldMaterial
from linkage.mpc.field_run import own_sample
from linkage.mpc.field_train import SamplePair, field_totals_party, field_train_party
from linkage.mpc.fieldwise import LocalDealer, field_columns, field_weights, name_swap_products

from bench.quality_fieldwise import wilson_interval
from bench.two_server_quality import calibration

from .fieldwise_shares import (_agency_pairs, _banded_record_level, _cross_truth, _plain_levels,
                               deal_fields, share_links)

__all__ = ["train_design_c", "main_quality", "main_privacy"]


def train_design_c(clks, owners, layout, seed: int, *, min_pairs: int = 10) -> dict:
    """The training run (both servers in this process): the first model from its counts,
    then, on the same shared bits, the refinement step and the refined model."""
    columns = field_columns(layout.word_starts, layout.word_counts)
    crossed = name_swap_products(layout.fields)
    bits = layout.bits
    bands = band_thresholds(SERVICE_EDGES, bits)
    sides, dealers, dealer_bytes, sampled_rows, cross = ([], []), [], 0, 0, 0
    dealer_s = 0.0
    for index, (a_rows, b_rows) in enumerate(_agency_pairs(owners)):
        cross += a_rows.size * b_rows.size
        rows = sample_rows(a_rows.size, seed, index)
        sampled_rows += rows.size
        side0, side1, later, seconds, dealt = _sample_sides(clks[a_rows][rows], clks[b_rows],
                                                            columns, bits, crossed)
        dealer_s += seconds
        dealer_bytes += dealt
        dealers.append(later)
        sides[0].append(side0)
        sides[1].append(side1)
    first: dict = {}

    def rule(counts):
        """The first model and its rule, from the opened counts (each server the same)."""
        band_pairs, band_levels = counts.band_level_counts()
        fitted = model_from_counts(layout.fields, counts.edges, counts.at_least, counts.kept,
                                   band_pairs, band_levels, all_pairs=cross,
                                   max_matches=MATCHES_PER_SAMPLED_RECORD * sampled_rows)
        first.update(fitted=fitted, weights=field_weights(fitted.model.weights,
                                                          fitted.cut_bits))
        return first["weights"]

    counts, online, cpu, sent = _train(sides, bands, min_pairs, rule)
    dealer_bytes += sum(d.bytes_to_server_1 for d in dealers)
    _, band_levels = counts.band_level_counts()
    refined = refined_model(first["fitted"], counts.linked.pairs, counts.linked.level_counts(),
                            band_levels.sum(axis=0), counts.pairs, all_pairs=cross)
    return {"counts": counts, "fitted": first["fitted"], "weights": first["weights"],
            "refined": refined,
            "refined_weights": field_weights(refined.model.weights, refined.cut_bits),
            "online_s": online, "cpu_s": cpu, "sent": sent, "dealer_bytes": dealer_bytes,
            "dealer_s": dealer_s, "sample_pairs": counts.pairs, "cross_pairs": cross}


def _sample_sides(left, right, columns, bits, crossed=()):
    """Both servers' ``SamplePair`` of one sample (left rows x right rows), its later-phase
    dealer, and the field dealer's seconds and bytes."""
    plan = Plan(left.shape[0], right.shape[0], bits)
    dealer, corrections, seconds, dealt = deal_fields(plan, columns, crossed)
    later = LocalDealer()
    l0, l1 = split_clks(left, bits)
    r0, r1 = split_clks(right, bits)
    side0 = SamplePair(l0, r0, FieldMaterial(0, plan, columns, dealer.seeds[0],
                                             crossed=crossed), later.for_party(0))
    side1 = SamplePair(l1, r1, FieldMaterial(1, plan, columns, dealer.seeds[1],
                                             iter(corrections), crossed), later.for_party(1))
    return side0, side1, later, seconds, dealt


def _train(sides, bands, min_pairs, refine):
    """One training run, both servers in this process: counts, wall and CPU s per server,
    bytes sent."""
    started, cpu_started = time.perf_counter(), time.process_time()
    counts, _, sent = run_locally(field_train_party(0, sides[0], bands, min_pairs, refine),
                                  field_train_party(1, sides[1], bands, min_pairs, refine))
    return (counts, (time.perf_counter() - started) / 2,
            (time.process_time() - cpu_started) / 2, sent)


def train_within(clks, owners, layout, seed: int) -> dict:
    """Per agency, a run on a sample of its own pairs (sampled rows x its other rows: no
    record against itself) that opens only each field's level sums
    (``field_totals_party``); the agency's model is ``within_model`` of them. Returns
    {"levels": {agency: fields x levels}, ...cost}; ``within_rules`` makes the models."""
    columns = field_columns(layout.word_starts, layout.word_counts)
    crossed = name_swap_products(layout.fields)
    bits = layout.bits
    bands = band_thresholds(SERVICE_EDGES, bits)
    levels, opened, online, cpu, pairs, dealer_bytes = {}, 0, 0.0, 0.0, 0, 0
    for index, owner in enumerate(np.unique(owners).tolist()):
        rows = np.flatnonzero(owners == owner)
        sample = own_sample(rows.size, seed, index)
        if sample is None:
            continue  # an agency of MIN_SAMPLE_ROWS or fewer: its pairs keep the cross model
        drawn, rest = sample
        side0, side1, later, _, dealt = _sample_sides(clks[rows[drawn]], clks[rows[rest]],
                                                      columns, bits, crossed)
        started, cpu_started = time.perf_counter(), time.process_time()
        totals, _, _ = run_locally(field_totals_party(0, [side0], bands),
                                   field_totals_party(1, [side1], bands))
        online += (time.perf_counter() - started) / 2
        cpu += (time.process_time() - cpu_started) / 2
        pairs += totals.pairs
        dealer_bytes += dealt + later.bytes_to_server_1
        opened += totals.totals.size
        levels[owner] = totals.level_counts()
    return {"levels": levels, "online_s": online, "cpu_s": cpu, "sample_pairs": pairs,
            "opened_values": opened, "dealer_bytes": dealer_bytes}


def within_rules(fitted, levels: dict) -> dict:
    """{agency: (model, weights)}: ``within_model`` of its level counts, cut as ``fitted``."""
    out = {}
    for owner, counts in levels.items():
        model = within_model(fitted, counts)
        out[owner] = (model, field_weights(model.weights, fitted.cut_bits))
    return out


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

    def c_labels_of(*parts):
        """Groups of the links of every (links, match probabilities) part."""
        linked = CandidatePairs(np.concatenate([p.pairs.left for p, _ in parts]),
                                np.concatenate([p.pairs.right for p, _ in parts]),
                                np.concatenate([probability for _, probability in parts]))
        labels = greedy_groups(linked, len(data), owners, max_per_owner=limit).labels
        # a group's confidence, as the service gives it: its weakest link's probability
        inside = (labels[linked.left] >= 0) & (labels[linked.left] == labels[linked.right])
        confidence: dict[int, float] = {}
        for group, value in zip(labels[linked.left[inside]].tolist(),
                                linked.score[inside].tolist()):
            confidence[group] = min(value, confidence.get(group, 1.0))
        calibrations.append(calibration(labels, confidence, np.asarray(data.entities)))
        return labels

    calibrations: list = []

    def own_within(first, levels):
        """Within links on shares by each agency's own rule, and their probabilities."""
        models = within_rules(first, levels)
        rules = {o: models[o][1] if o in models else field_weights(first.model.weights,
                                                                    first.cut_bits)
                 for o in np.unique(owners).tolist()}
        found = share_links(clks, owners, layout, rules, check=args.check, within=True)
        owner_of = owners[found.pairs.left]
        probability = np.empty(len(found.pairs))
        for o in np.unique(owner_of).tolist():
            model = models[o][0] if o in models else first.model
            probability[owner_of == o] = model.match_probability(found.levels[owner_of == o])
        return found, probability

    cross_part = (links, fitted.model.match_probability(links.levels))
    refined = trained["refined"]
    refined_links = share_links(clks, owners, layout, trained["refined_weights"],
                                check=args.check)
    refined_part = (refined_links, refined.model.match_probability(refined_links.levels))
    pairs, c_rows, within_cost = [refined_links], [], None
    if args.within:
        # the cross model's weights for every pair (what design C did first), then each
        # agency's own u for its pairs, then the refined model with own u: one run, on shares
        same = share_links(clks, owners, layout, weights, check=args.check, within=True)
        trained_within = train_within(clks, owners, layout, seed)
        own = own_within(fitted, trained_within["levels"])
        refined_own = own_within(refined, trained_within["levels"])
        c_rows = [("C: trained on aggregates, links on shares (cross + within)",
                   links_from_labels(c_labels_of(
                       cross_part, (same, fitted.model.match_probability(same.levels))))),
                  ("C, each agency's own u for its pairs (cross + within)",
                   links_from_labels(c_labels_of(cross_part, own))),
                  ("C refined (a second step on the sample's links), own u (cross + within)",
                   links_from_labels(c_labels_of(refined_part, refined_own)))]
        pairs.append(refined_own[0])
        within_cost = {"train_us_per_sample_pair": 1e6 * trained_within["online_s"]
                       / max(trained_within["sample_pairs"], 1),
                       "train_s": trained_within["online_s"],
                       "sample_pairs": trained_within["sample_pairs"],
                       "opened_values": trained_within["opened_values"],
                       "links_cross_u": len(same.pairs), "links_own_u": len(own[0].pairs),
                       "links_refined_own_u": len(refined_own[0].pairs)}
    else:
        c_rows = [("C: trained on aggregates, links on shares (cross only)",
                   links_from_labels(c_labels_of(cross_part))),
                  ("C refined (a second step on the sample's links; cross only)",
                   links_from_labels(c_labels_of(refined_part)))]
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
            *c_rows,
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
           "opened": _opened_cells(trained["counts"]), "within": within_cost,
           "refined": {"linked_in_sample": trained["counts"].linked.pairs,
                       "opened_values": 1 + trained["counts"].linked.totals.size,
                       "cut_bits": refined.cut_bits, "expected_f1": refined.expected_f1,
                       "links_cross": len(refined_links.pairs)},
           "calibration": calibrations[-1] if args.within else None,
           "systems": {}}
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
          f"banded auto chose {out['banded_thresholds']}")
    if out["within"]:
        w = out["within"]
        print(f"within-agency training: {w['sample_pairs']} sampled pairs of the agencies' own "
              f"records, {w['opened_values']} values opened (each field's level sums per agency), "
              f"{w['train_s']:.1f} s ({w['train_us_per_sample_pair']:.1f} µs per sampled pair "
              f"per server); within links: {w['links_cross_u']} with the cross model's weights, "
              f"{w['links_own_u']} with each agency's own u, {w['links_refined_own_u']} "
              f"refined with own u")
    r = out["refined"]
    print(f"refinement step: {r['linked_in_sample']} sampled pairs linked by the first model; "
          f"{r['opened_values']} values opened; cut {r['cut_bits']:.2f} bits (expected F1 "
          f"{r['expected_f1']:.4f}); {r['links_cross']} cross links (first model "
          f"{out['links_cross']}); in the training run, on its shared bits")
    print()
    print("| system | P all | R all | F1 all | P cross | R cross | F1 cross | F1 within |\n"
          "|---|---|---|---|---|---|---|---|")
    for label, q in out["systems"].items():
        within = q["within"]["f1"] if q["within"] else float("nan")
        print(f"| {label} | {q['all']['p']:.4f} | {q['all']['r']:.4f} | {q['all']['f1']:.4f} "
              f"| {q['cross']['p']:.4f} | {q['cross']['r']:.4f} | {q['cross']['f1']:.4f} | "
              f"{within:.4f} |")
    if out.get("calibration"):
        print("\ncalibration of C refined, own u: groups by their weakest link's probability\n\n"
              "| probability | groups | mean probability | share of pure groups | 95% interval "
              "| within 0.05 |\n|---|---|---|---|---|---|")
        for low, high, count, mean, share in out["calibration"]:
            lo, hi = wilson_interval(share, count)
            print(f"| [{low:g}, {high:g}) | {count} | {mean:.4f} | {share:.4f} | "
                  f"{lo:.2f}-{hi:.2f} | {'yes' if abs(share - mean) <= 0.05 else 'no'} |")
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
    a, b = world["attacker_a"], world["attacker_b"]
    every_left, every_right = np.divmod(np.arange(records * records), records)
    # the attacker knows the rule, the swapped names' included
    attacker_levels = _plain_levels(a, b, layout, every_left, every_right,
                                    name_swap_products(layout.fields))
    out = {"run": run, "records": records, "opened": _opened_cells(trained["counts"]),
           "refinement_opened": 1 + trained["counts"].linked.totals.size}
    # the first model's rule, then the refined one's (what the service would open)
    rules = (("first", trained["weights"], trained["fitted"]),
             ("refined", trained["refined_weights"], trained["refined"]))
    for name, weights, fitted in rules:
        links = share_links(clks, owners, layout, weights, check=False)
        ours = _weighted_graph(records, records, links.pairs.left,
                               links.pairs.right - records, links.levels)
        # The attacker: every pair of her own encoding, the same public rule.
        mine = weights.link(attacker_levels)
        theirs = _weighted_graph(records, records, every_left[mine], every_right[mine],
                                 attacker_levels[mine])
        out[name] = {"links": len(links.pairs), "attacker_links": int(mine.sum()),
                     "cut_bits": fitted.cut_bits}
        for k in seeds:
            result = learned_graph_attack(ours, theirs, world["truth"], seeds=k, seed_rng=run)
            out[name][f"graph k={k}"] = result.success
            out[name][f"partners k={k}"] = result.partner_share
    return out


def main_privacy(args) -> int:
    rows = []
    for records in args.records:
        for run in range(args.first_run, args.first_run + args.runs):
            row = privacy_run(records, run, args.seeds)
            print(json.dumps(row), flush=True)
            rows.append(row)
    keys = [f"graph k={k}" for k in args.seeds] + [f"partners k={k}" for k in args.seeds]
    print("\n| records | rule | worlds | links (median) | " + " | ".join(keys) + " |\n"
          + "|---" * (4 + len(keys)) + "|")
    for records in args.records:
        for name in ("first", "refined"):
            mine = [row[name] for row in rows if row["records"] == records]
            cells = [f"{100 * statistics.median(r[key] for r in mine):.2f}%" for key in keys]
            print(f"| {records} | {name} | {len(mine)} | "
                  f"{statistics.median(r['links'] for r in mine):.0f} | " + " | ".join(cells) + " |")
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
