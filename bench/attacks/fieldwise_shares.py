"""Field-wise scoring on secret shares: quality, cost, and what the two servers learn.

    python -m bench.attacks.fieldwise_shares quality --records 250 --candidate 0.5
    python -m bench.attacks.fieldwise_shares privacy --records 1000 2000 --runs 3
    python -m bench.attacks.fieldwise_shares design-c --records 250 --seeds 101 103
    python -m bench.attacks.fieldwise_shares design-c-privacy --records 1000 --runs 3

Why: two-server mode hides the similarity graph but scores record-level only (held-out
F1 0.885); field-wise Fellegi-Sunter reaches 0.988 but, with one server holding the CLKs,
its segments are 100% re-identified. ``linkage.mpc.fieldwise`` computes the per-field levels
on shares; this measures the whole design in one run:

* **quality** (held-out generator data, every agency pair): the candidate graph is the
  record-level protocol at a public ``--candidate`` Dice on the concatenated segments; the
  candidates' levels and a random sample's level counts come from the protocol (checked
  equal to the plaintext levels in the run); ``score_levels`` scores them, grouped as the
  plaintext bench groups. Beside it, in the same run: plaintext field-wise
  (``bench.quality_fieldwise``: kernel at the floor + exact-segment blocking, swapped names,
  term frequencies, within-agency pairs) and record-level shares with banded ``auto``
  (``bench.attacks.banded``, the shipped record-level schema). Cost per pair against the
  record-level threshold protocol at the same candidate threshold on the same CLKs.
* **privacy**: two agencies of the attack world (``bench.attacks.learned``: B holds half of
  A's people, 30% with a name typo), encoded as per-field segments of the attack features.
  The server's view is the candidate graph with each edge's opened levels (from the real
  protocol); the attacker builds the same from her own encoding (her secret, the schema
  known) and aligns (graph attack, unseeded and seeded). The **level-frequency attack**:
  records joined by level-0 edges of one field share the value (nearly), so the components
  of those edges, ranked by size, are named after the register's values ranked by
  frequency (``segments.value_frequency_attack`` on what the view gives instead of
  identical segments).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from linkage.encoding.field_segments import FieldLayout
from linkage.matching.candidates import CandidatePairs
from linkage.matching.fellegi_sunter import score_levels
from linkage.mpc import (Dealer, PartyMaterial, Plan, rational_threshold, run_locally,
                         split_clks, threshold_party)
from linkage.mpc.field_dealer import FieldDealer, FieldMaterial
from linkage.mpc.fieldwise import (FieldWeights, LocalDealer, field_columns, field_weights,
                                   fieldwise_links_party, fieldwise_party, links_plan,
                                   name_swap_products, plain_levels)

__all__ = ["SharedFieldwise", "main", "share_levels"]


@dataclass(frozen=True)
class SharedFieldwise:
    """The opened values of field-wise runs over every agency pair, and their cost.

    ``pairs``: candidates in global rows (``left < right``); ``levels`` parallel to them;
    ``random_counts`` (fields x levels) over ``random_pairs`` sampled cross pairs.
    """

    pairs: CandidatePairs
    levels: np.ndarray
    random_counts: np.ndarray
    random_pairs: int
    cross_pairs: int
    online_s: float      # per server
    sent_bytes: int      # by one server to the other
    dealer_bytes: int    # to server 1
    dealer_s: float


def deal_fields(plan, columns, crossed=()) -> tuple[FieldDealer, list, float, int]:
    """The field dealer of one agency pair, its corrections (what it sends server 1), the
    seconds it took to deal them and their bytes."""
    started = time.perf_counter()
    dealer = FieldDealer(plan, columns, crossed=crossed)
    corrections = list(dealer.corrections())
    return (dealer, corrections, time.perf_counter() - started,
            sum(c.nbytes for c in corrections))


def _agency_pairs(owners: np.ndarray):
    codes = np.unique(owners)
    for i, a in enumerate(codes.tolist()):
        for b in codes[i + 1:].tolist():
            yield np.flatnonzero(owners == a), np.flatnonzero(owners == b)


def share_levels(clks: np.ndarray, owners: np.ndarray, layout: FieldLayout, candidate: float,
                 random_pairs: int, *, seed: int = 0, check: bool = True) -> SharedFieldwise:
    """Run ``fieldwise_party`` for every agency pair (both servers in this process).

    ``random_pairs`` cross pairs in all, spread over agency pairs by their pair counts, drawn
    with a public ``seed``. ``check``: compare every opened value with the plaintext's.
    """
    columns = field_columns(layout.word_starts, layout.word_counts)
    bits = layout.bits
    rational = rational_threshold(candidate, bits)
    rng = np.random.default_rng(seed)
    cross = sum(a.size * b.size for a, b in _agency_pairs(owners))
    lefts, rights, levels = [], [], []
    counts = np.zeros((len(layout.fields), 5), np.int64)
    sampled = online = dealer_s = 0.0
    sent = dealer_bytes = 0
    for a_rows, b_rows in _agency_pairs(owners):
        left, right = clks[a_rows], clks[b_rows]
        plan = Plan(left.shape[0], right.shape[0], bits)
        dealer, corrections, seconds, dealt = deal_fields(plan, columns)
        dealer_s += seconds
        dealer_bytes += dealt
        count = max(1, round(random_pairs * plan.pairs / cross))
        random_left = rng.integers(0, left.shape[0], count)
        random_right = rng.integers(0, right.shape[0], count)
        later = LocalDealer()
        l0, l1 = split_clks(left, bits)
        r0, r1 = split_clks(right, bits)
        started = time.perf_counter()
        out, _, sent_here = run_locally(
            fieldwise_party(0, l0, r0, rational, FieldMaterial(0, plan, columns,
                                                                dealer.seeds[0]),
                            later.for_party(0), random_left, random_right),
            fieldwise_party(1, l1, r1, rational,
                            FieldMaterial(1, plan, columns, dealer.seeds[1], iter(corrections)),
                            later.for_party(1), random_left, random_right))
        online += (time.perf_counter() - started) / 2
        sent += sent_here
        dealer_bytes += later.bytes_to_server_1
        if check:
            _check(left, right, layout, candidate, out, random_left, random_right)
        lefts.append(a_rows[out.left])
        rights.append(b_rows[out.right])
        levels.append(out.levels)
        counts += out.random_level_counts
        sampled += out.random_pairs
    left, right = np.concatenate(lefts), np.concatenate(rights)
    pairs = CandidatePairs(np.minimum(left, right), np.maximum(left, right),
                           np.zeros(left.size))
    return SharedFieldwise(pairs, np.concatenate(levels), counts, int(sampled), cross, online,
                           sent, dealer_bytes, dealer_s)


@dataclass(frozen=True)
class SharedLinks:
    """Links decided on shares over every agency pair, their levels, and the cost."""

    pairs: CandidatePairs
    levels: np.ndarray
    online_s: float
    sent_bytes: int
    dealer_bytes: int
    dealer_s: float
    cpu_s: float = 0.0   # per server: CPU seconds of both in this process, halved


def share_links(clks: np.ndarray, owners: np.ndarray, layout: FieldLayout,
                weights: FieldWeights | Mapping[int, FieldWeights], *, check: bool = True,
                within: bool = False
                ) -> SharedLinks:
    """Run ``fieldwise_links_party`` for every agency pair (both servers in this process).

    ``within``: instead, every agency against itself (all its ordered pairs compared on
    shares; the pairs ``left < right`` kept); ``weights`` may then map each agency to its own.
    """
    columns = field_columns(layout.word_starts, layout.word_counts)
    crossed = name_swap_products(layout.fields)
    bits = layout.bits
    lefts, rights, levels = [], [], []
    online = dealer_s = cpu = 0.0
    sent = dealer_bytes = 0
    groups = ([(o, *(np.flatnonzero(owners == o),) * 2) for o in np.unique(owners).tolist()]
              if within else [(None, a, b) for a, b in _agency_pairs(owners)])
    rules = weights
    for owner, a_rows, b_rows in groups:
        weights = rules[owner] if isinstance(rules, Mapping) else rules
        left, right = clks[a_rows], clks[b_rows]
        plan = links_plan(left.shape[0], right.shape[0], bits)
        dealer, corrections, seconds, dealt = deal_fields(plan, columns, crossed)
        dealer_s += seconds
        dealer_bytes += dealt
        later = LocalDealer()
        l0, l1 = split_clks(left, bits)
        r0, r1 = split_clks(right, bits)
        started, cpu_started = time.perf_counter(), time.process_time()
        out, _, sent_here = run_locally(
            fieldwise_links_party(0, l0, r0, weights,
                                  FieldMaterial(0, plan, columns, dealer.seeds[0],
                                                crossed=crossed), later.for_party(0)),
            fieldwise_links_party(1, l1, r1, weights,
                                  FieldMaterial(1, plan, columns, dealer.seeds[1],
                                                iter(corrections), crossed),
                                  later.for_party(1)))
        online += (time.perf_counter() - started) / 2
        cpu += (time.process_time() - cpu_started) / 2
        sent += sent_here
        dealer_bytes += later.bytes_to_server_1
        if check:
            every_left, every_right = np.divmod(np.arange(plan.pairs), plan.right_rows)
            every = _plain_levels(left, right, layout, every_left, every_right, crossed)
            expected = np.flatnonzero(weights.link(every))
            if not (np.array_equal(out.left * plan.right_rows + out.right, expected)
                    and np.array_equal(out.levels, every[expected])):
                raise AssertionError("links on shares differ from the plaintext rule's")
        keep = a_rows[out.left] < b_rows[out.right] if within else slice(None)
        lefts.append(a_rows[out.left][keep])
        rights.append(b_rows[out.right][keep])
        levels.append(out.levels[keep])
    left, right = np.concatenate(lefts), np.concatenate(rights)
    pairs = CandidatePairs(np.minimum(left, right), np.maximum(left, right),
                           np.zeros(left.size))
    return SharedLinks(pairs, np.concatenate(levels), online, sent, dealer_bytes, dealer_s,
                       cpu)


def train_on_shares(shared: SharedFieldwise, fields):
    """The public model from a training run's opened values, its weight rule and cut."""
    from linkage.matching.fellegi_sunter import model_cut

    model = score_levels(fields, shared.levels, shared.random_counts, shared.random_pairs,
                         all_pairs=shared.cross_pairs).model
    present = shared.random_counts.sum(axis=1) / max(shared.random_pairs, 1)
    cut, expected_f1 = model_cut(model, present, shared.cross_pairs)
    return model, field_weights(model.weights, cut), cut, expected_f1


def _plain_levels(left, right, layout, lefts, rights, crossed=()) -> np.ndarray:
    """What the protocols compute on shares (``crossed``: names compared crosswise too)."""
    both = np.concatenate([left, right])
    pairs = CandidatePairs(lefts.astype(np.int64), rights.astype(np.int64) + left.shape[0],
                           np.zeros(lefts.size))
    return plain_levels(both, layout, pairs, crossed)


def _check(left, right, layout, candidate, out, random_left, random_right) -> None:
    from linkage.matching.kernel import dice_candidates_native

    kernel = dice_candidates_native(left, right, candidate)
    order = np.lexsort((kernel.right, kernel.left))
    sampled = _plain_levels(left, right, layout, random_left, random_right)
    counts = np.stack([(sampled == level).sum(axis=0) for level in range(5)], axis=1)
    if not (np.array_equal(out.left, kernel.left[order])
            and np.array_equal(out.right, kernel.right[order])
            and np.array_equal(out.levels, _plain_levels(left, right, layout, out.left,
                                                         out.right))
            and np.array_equal(out.random_level_counts, counts)):
        raise AssertionError("field-wise protocol's opened values differ from the plaintext's")


def _single_cost(clks, owners, bits, candidate) -> tuple[float, int, int]:
    """The record-level threshold protocol at the same threshold on the same CLKs."""
    rational = rational_threshold(candidate, bits)
    online, sent, dealer_bytes = 0.0, 0, 0
    for a_rows, b_rows in _agency_pairs(owners):
        left, right = clks[a_rows], clks[b_rows]
        plan = Plan(left.shape[0], right.shape[0], bits)
        dealer = Dealer(plan)
        corrections = list(dealer.corrections())
        dealer_bytes += sum(c.nbytes for c in corrections)
        l0, l1 = split_clks(left, bits)
        r0, r1 = split_clks(right, bits)
        started = time.perf_counter()
        _, _, sent_here = run_locally(
            threshold_party(0, l0, r0, rational, PartyMaterial(0, plan, dealer.seeds[0])),
            threshold_party(1, l1, r1, rational,
                            PartyMaterial(1, plan, dealer.seeds[1], iter(corrections))))
        online += (time.perf_counter() - started) / 2
        sent += sent_here
    return online, sent, dealer_bytes


def _banded_record_level(clks, owners, bits, sample, seed):
    """Record-level shares with banded ``auto`` for every agency pair: hit pairs and scores."""
    from .banded import DEFAULT_EDGES, banded_link

    lefts, rights, scores, chosen = [], [], [], []
    for a_rows, b_rows in _agency_pairs(owners):
        run = banded_link(clks[a_rows], clks[b_rows], bits, DEFAULT_EDGES, sample=sample,
                          sample_seed=seed)
        lefts.append(a_rows[run.hits.left])
        rights.append(b_rows[run.hits.right])
        scores.append(run.hits.score)
        chosen.append(run.threshold)
    left, right = np.concatenate(lefts), np.concatenate(rights)
    return CandidatePairs(np.minimum(left, right), np.maximum(left, right),
                          np.concatenate(scores)), chosen


def _cross_truth(truth, owners):
    first, second = truth.get_level_values(0), truth.get_level_values(1)
    return int((owners[first] != owners[second]).sum())


def quality_main(args) -> int:
    from bench.quality import (PERSON_SCHEMA, _load, encode_ours, links_from_labels, measure,
                               true_links)
    from bench.quality_fieldwise import SEGMENTS_SCHEMA, link_fieldwise, run_fieldwise
    from linkage.encoding.schema import load_schema
    from linkage.matching.grouping import greedy_groups

    schema = load_schema(PERSON_SCHEMA.read_text("utf-8"))
    layout = load_schema(SEGMENTS_SCHEMA.read_text("utf-8")).segments
    data = _load("heldout", args.corruption, args.seed, args.records)
    truth = true_links(data)
    owners = data.owners
    codes = np.unique(data.entities, return_inverse=True)[1]
    values, record_clks = encode_ours(data, schema)
    print(f"# held-out seed {args.seed}: {len(data)} records, {np.unique(owners).size} "
          f"agencies, {len(truth)} true pairs ({_cross_truth(truth, owners)} cross-agency)",
          file=sys.stderr, flush=True)
    plain = run_fieldwise(data, schema, values, layout=layout)
    clks = plain["clks"]
    shared = share_levels(clks, owners, layout, args.candidate, args.random_pairs,
                          seed=args.seed)
    scores = score_levels(layout.fields, shared.levels, shared.random_counts,
                          shared.random_pairs, all_pairs=shared.cross_pairs)
    cutoff = scores.best_cutoff()[0]
    share_labels = link_fieldwise(scores, shared.pairs, data, cutoff)
    banded, chosen = _banded_record_level(record_clks, owners, schema.clk_bits, args.sample,
                                          args.seed)
    banded_labels = greedy_groups(banded, len(data), owners).labels
    single_s, single_sent, single_dealer = _single_cost(clks, owners, layout.bits,
                                                        args.candidate)
    training = share_levels(clks, owners, layout, args.train, args.random_pairs,
                            seed=args.seed)
    model, weights, cut_bits, expected_f1 = train_on_shares(training, layout.fields)
    links = share_links(clks, owners, layout, weights)
    linked = CandidatePairs(links.pairs.left, links.pairs.right,
                            model.match_probability(links.levels))
    links_labels = greedy_groups(linked, len(data), owners).labels
    rows = [("plaintext field-wise (one server holds the CLKs)", plain["labels"]),
            (f"A: candidates >= {args.candidate} opened with levels", share_labels),
            (f"B: trained on pairs >= {args.train}, links decided on shares", links_labels),
            ("record-level shares, banded auto", banded_labels)]
    cross_true = _cross_truth(truth, owners)

    def recall(pairs):
        cross = owners[pairs.left] != owners[pairs.right]
        return float((codes[pairs.left] == codes[pairs.right])[cross].sum()) / cross_true

    out = {"records": len(data), "seed": args.seed, "candidate": args.candidate,
           "candidates": len(shared.pairs), "cross_pairs": shared.cross_pairs,
           "candidate_recall_shares": recall(shared.pairs),
           "candidate_recall_plaintext": recall(plain["pairs"]),
           "fieldwise_cutoff": cutoff, "banded_thresholds": chosen,
           "training_pairs": len(training.pairs), "links": len(links.pairs),
           "weight_cut_bits": cut_bits, "model_expected_f1": expected_f1,
           "match_share": scores.model.match_share}
    print(f"\n### held-out seed {args.seed}, {len(data)} records; candidates: record-level "
          f"Dice >= {args.candidate} on shares, {len(shared.pairs)} of {shared.cross_pairs} "
          f"cross pairs; cross-agency candidate recall {out['candidate_recall_shares']:.4f} "
          f"(plaintext kernel at floor {plain['floor']:.2f} + blocking: "
          f"{out['candidate_recall_plaintext']:.4f}); cut-off {cutoff:g}; banded auto chose "
          f"{sorted(set(chosen))}; B: {len(training.pairs)} training pairs opened, weight cut "
          f"{cut_bits:.2f} bits (model's expected F1 {expected_f1:.4f}), {len(links.pairs)} "
          "links\n")
    print("| system | P all | R all | F1 all | F1 cross-agency | F1 within-agency |\n"
          "|---|---|---|---|---|---|")
    for label, labels in rows:
        q = measure(truth, links_from_labels(labels), owners)
        within = q["within"].f1 if q["within"] else float("nan")
        print(f"| {label} | {q['all'].precision:.4f} | {q['all'].recall:.4f} | "
              f"{q['all'].f1:.4f} | {q['cross'].f1:.4f} | {within:.4f} |")
        out[label] = {"f1": q["all"].f1, "cross_f1": q["cross"].f1, "within_f1": within}
    pairs = shared.cross_pairs
    cost = {"us_per_pair_per_server": 1e6 * shared.online_s / pairs,
            "us_per_pair_single": 1e6 * single_s / pairs,
            "ratio": shared.online_s / single_s,
            "bytes_per_pair": shared.sent_bytes / pairs,
            "bytes_per_pair_single": single_sent / pairs,
            "dealer_bytes_per_pair": shared.dealer_bytes / pairs,
            "dealer_bytes_per_pair_single": single_dealer / pairs,
            "dealer_s": shared.dealer_s, "online_s": shared.online_s, "single_s": single_s}
    b_online = training.online_s + links.online_s
    cost.update({"b_us_per_pair": 1e6 * b_online / pairs, "b_ratio": b_online / single_s,
                 "b_train_us_per_pair": 1e6 * training.online_s / pairs,
                 "b_links_us_per_pair": 1e6 * links.online_s / pairs,
                 "b_bytes_per_pair": (training.sent_bytes + links.sent_bytes) / pairs,
                 "b_dealer_bytes_per_pair": (training.dealer_bytes + links.dealer_bytes) / pairs,
                 "b_dealer_s": training.dealer_s + links.dealer_s})
    out["cost"] = cost
    print(f"\n| cost per cross pair ({pairs} pairs, {layout.bits}-bit segment CLKs) | A | B "
          "(training run + links run) | record-level threshold protocol at "
          f"{args.candidate}, same CLKs |\n|---|---|---|---|")
    print(f"| online µs / pair / server | {cost['us_per_pair_per_server']:.2f} | "
          f"{cost['b_us_per_pair']:.2f} ({cost['b_train_us_per_pair']:.2f} + "
          f"{cost['b_links_us_per_pair']:.2f}) | {cost['us_per_pair_single']:.2f} |")
    print(f"| ratio to the threshold protocol, same run | {cost['ratio']:.2f} | "
          f"{cost['b_ratio']:.2f} | 1 |")
    print(f"| bytes sent / pair / server | {cost['bytes_per_pair']:.1f} | "
          f"{cost['b_bytes_per_pair']:.1f} | {cost['bytes_per_pair_single']:.1f} |")
    print(f"| dealer material / pair | {cost['dealer_bytes_per_pair']:.1f} B | "
          f"{cost['b_dealer_bytes_per_pair']:.1f} B | "
          f"{cost['dealer_bytes_per_pair_single']:.1f} B |")
    print(f"| dealer compute | {shared.dealer_s:.2f} s | {cost['b_dealer_s']:.2f} s | - |",
          flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(out, handle, indent=1)
    return 0


# -- privacy ---------------------------------------------------------------------------------

_ATTACK_BITS = (256, 256, 128)


def _segmented_linkage_world(records: int, run: int):
    """``learned.make_linkage_world``'s two agencies, encoded as per-field segments."""
    import random

    from linkage.encoding.field_segments import encode_field_segments, layout_for

    from .learned import _typo
    from .population import ATTACK_FEATURES, _secret, people, schema_with
    from .segments import _schema_text

    schema = schema_with({})
    fields = list(ATTACK_FEATURES)
    layout = layout_for(fields, list(_ATTACK_BITS))
    columns = [schema.feature_names.index(f) for f in fields]
    text = _schema_text(schema, fields)
    shared = records // 2
    population = people(2 * records - shared, seed=2000 + run)
    a_rows = population[:records]
    b_people = list(range(records - shared, 2 * records - shared))
    rng = random.Random(run)
    names = (schema.feature_names.index("given_name"), schema.feature_names.index("family_name"))
    b_rows = [_typo(population[p], rng, names) if p < records and rng.random() < 0.3
              else population[p] for p in b_people]

    def encode(rows, secret):
        return encode_field_segments([[row[c] for c in columns] for row in rows], text, secret,
                                     layout)

    a_order, b_order = list(range(records)), list(range(records))
    rng.shuffle(a_order)
    rng.shuffle(b_order)
    own = _secret("attacker 0", run)
    world = {"layout": layout, "a": encode(a_rows, _secret("agency", run)),
             "b": encode(b_rows, _secret("agency", run)),
             "attacker_a": encode([a_rows[i] for i in a_order], own),
             "attacker_b": encode([population[b_people[j]] for j in b_order], own),
             "truth": np.concatenate([np.argsort(a_order), records + np.argsort(b_order)]),
             "register": [a_rows[i] for i in a_order] + [population[b_people[j]]
                                                         for j in b_order],
             "columns": columns}
    return world


def _weighted_graph(n, m, left, right, levels) -> np.ndarray:
    """The bipartite candidate graph, each edge weighted by its levels (better = heavier)."""
    from .learned import _bipartite

    passed = np.where(levels >= 0, 4 - levels, 0).sum(axis=1)
    weight = (1.0 + passed) / (1.0 + 4 * levels.shape[1])
    return _bipartite(n, m, left, right, weight.astype(np.float32))


def _attacker_view(world, candidate):
    """What the attacker computes on her own encoding: the same candidates, the same levels."""
    from linkage.matching.kernel import dice_candidates_native

    left, right = world["attacker_a"], world["attacker_b"]
    pairs = dice_candidates_native(left, right, candidate)
    levels = _plain_levels(left, right, world["layout"], pairs.left, pairs.right)
    return pairs.left, pairs.right, levels


def level_frequency_attack(n: int, left, right, levels, register, columns, truth) -> float:
    """Share of records whose three values are read off the level-0 components right."""
    from collections import Counter

    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    guessed = []
    for field, column in enumerate(columns):
        exact = levels[:, field] == 0
        graph = coo_matrix((np.ones(int(exact.sum())), (left[exact], right[exact])),
                           shape=(n, n))
        _, component = connected_components(graph, directed=False)
        sizes = np.bincount(component)
        rank = np.empty(sizes.size, np.int64)
        rank[np.argsort(-sizes, kind="stable")] = np.arange(sizes.size)
        ranked = [value for value, _ in Counter(row[column] for row in register).most_common()]
        guessed.append([ranked[rank[c]] if rank[c] < len(ranked) else None for c in component])
    people = {tuple(row[c] for c in columns): i for i, row in enumerate(register)}
    correct = sum(1 for record, person in enumerate(truth.tolist())
                  if people.get(tuple(g[record] for g in guessed)) == person)
    return correct / n


def privacy_run(records: int, run: int, candidate: float, seeds: list[int]) -> dict:
    """One world: the real protocol's view, attacked."""
    from .learned import learned_graph_attack

    world = _segmented_linkage_world(records, run)
    layout = world["layout"]
    owners = np.r_[np.zeros(records, np.int64), np.ones(records, np.int64)]
    clks = np.concatenate([world["a"], world["b"]])
    started = time.perf_counter()
    shared = share_levels(clks, owners, layout, candidate, 2000, seed=run, check=False)
    protocol_s = time.perf_counter() - started
    left, right = shared.pairs.left, shared.pairs.right - records
    ours = _weighted_graph(records, records, left, right, shared.levels)
    theirs_left, theirs_right, theirs_levels = _attacker_view(world, candidate)
    theirs = _weighted_graph(records, records, theirs_left, theirs_right, theirs_levels)
    truth = world["truth"]
    out = {"run": run, "records": records, "candidate": candidate,
           "candidate_edges": len(shared.pairs), "protocol_s_per_server": protocol_s / 2}
    for k in seeds:
        result = learned_graph_attack(ours, theirs, truth, seeds=k, seed_rng=run)
        out[f"graph k={k}"] = result.success
        out[f"partners k={k}"] = result.partner_share
    # The level-0 components read on the server's view, named from the attacker's register.
    out["level frequency"] = level_frequency_attack(
        2 * records, shared.pairs.left, shared.pairs.right, shared.levels, world["register"],
        world["columns"], truth)
    return out


def privacy_main(args) -> int:
    table = []
    for records in args.records:
        for candidate in args.candidate:
            rows = []
            for run in range(args.runs):
                row = privacy_run(records, run, candidate, args.seeds)
                print(json.dumps(row), flush=True)
                rows.append(row)
            table.append(rows)
    keys = [f"graph k={k}" for k in args.seeds] + [f"partners k={k}" for k in args.seeds
                                                  if k] + ["level frequency"]
    print("\n| records per agency | candidate Dice | candidate edges | "
          + " | ".join(keys) + " |\n|---|---|---|" + "---|" * len(keys))
    for rows in table:
        cells = [f"{100 * statistics.median(r[k] for r in rows):.2f}% "
                 f"({', '.join(f'{100 * r[k]:.2f}' for r in rows)})" for k in keys]
        print(f"| {rows[0]['records']} | {rows[0]['candidate']} | "
              f"{statistics.median(r['candidate_edges'] for r in rows):.0f} | "
              + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(table, handle, indent=1)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attacks.fieldwise_shares",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("quality", help="F1 and cost on held-out data, in one run")
    sub.add_argument("--records", type=int, default=250, help="records per agency (6 agencies)")
    sub.add_argument("--seed", type=int, default=101)
    sub.add_argument("--corruption", type=float, default=0.25)
    sub.add_argument("--candidate", type=float, default=0.5,
                     help="record-level Dice at or above which a cross pair is a candidate")
    sub.add_argument("--train", type=float, default=0.7,
                     help="design B: record-level Dice of the training pairs whose levels open")
    sub.add_argument("--random-pairs", type=int, default=20_000,
                     help="random cross pairs whose level counts give u")
    sub.add_argument("--sample", type=float, default=0.05,
                     help="banded auto's sample of left records (record-level baseline)")
    sub.add_argument("--json")
    sub = commands.add_parser("privacy", help="attacks on the servers' view")
    sub.add_argument("--records", type=int, nargs="+", default=[1000, 2000])
    sub.add_argument("--candidate", type=float, nargs="+", default=[0.5])
    sub.add_argument("--runs", type=int, default=3)
    sub.add_argument("--seeds", type=int, nargs="+", default=[0, 10, 50])
    sub.add_argument("--json")
    from .fieldwise_c import add_commands, main_privacy, main_quality

    add_commands(commands)
    args = parser.parse_args(argv)
    return {"quality": quality_main, "privacy": privacy_main, "design-c": main_quality,
            "design-c-privacy": main_privacy}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
