"""The attacks against exactly what a server learns in two-server mode.

    python -m bench.attacks learned --records 2000 --runs 3 --seeds 0 50

In two-server mode (``linkage.mpc``) a matching server holds one additive share of every
CLK bit and, at the end, the above-threshold bit of every *cross-agency* pair: a bipartite
threshold graph between the two agencies' records, with no similarity inside one agency's
file and no score on any edge. This runs our attacks on that and nothing else:

* **graph attack on the learned graph**: the server's bipartite hit graph, from the real
  protocol (``run_locally``: both servers' generators, the dealer, the comparison) against
  the attacker's own bipartite hit graph at the same threshold, built from her register
  encoded with our encoder and the public schema under her own secret. She is given more
  than a real attacker has: the plaintext of every person of both files and which file each
  is in. Aligned with ``bench.attacks.align`` (unseeded, and seeded with k true pairs).
  Success = correct re-identifications / records of both files she did not know.
  ``partners``: records linked to a seed, an upper bound on what the linkage *result*
  gives her on its own (she knows the seed's person, and a hit partner is often that
  person too: nearly always with plain CLKs, far less often where many pairs pass).
* **graph and frequency attacks on a share**: the server's share of an agency's file,
  read as a CLK (each share's lowest bit, the only bit correlated with anything: it is
  the CLK bit XOR a uniform bit), given to the single-server attacks of the main table.
* **graph attack on the banded graph** (``--bands S``): what a server learns with
  ``auto`` (``bench.attacks.banded``, the real band protocol): the hit graph at the
  threshold ``auto`` chose from the opened histogram (computed on a sample ``S`` of the
  records), each edge weighted by its opened band; the attacker's graph at the same
  threshold, weighted by the same bands. The histogram itself is a count per band over all
  sampled pairs, nothing per record, so it adds nothing to align on.
* **baseline**: the graph attack on the same agency's plain CLKs (what a single server
  holds today), in the same run, to show the attack works on this world.
* **quality** of the same view, on the same records (``link_quality``): the attacked
  graph's edges scored as links against the world's people, pairwise precision, recall
  and F1 over cross-agency pairs and over all pairs (within-agency ones with ``--within``).
  Privacy and linkage quality of one encoding come from one run.

Agency B holds ``overlap`` of agency A's people (one name typo in ``corruption`` of
them) and as many others; both files encode with the schema's hardening (default: none,
which two-server mode makes unnecessary).
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import dataclass

import numpy as np

from linkage.encoding.encoder import encode_values
from linkage.mpc import Dealer, PartyMaterial, Plan, rational_threshold, run_locally, split_clks
from linkage.mpc import threshold_party

from .align import align
from .frequency import frequency_attack
from .graph import graph_attack
from .population import World, _secret, make_world, people, schema_with

__all__ = ["LinkageWorld", "learned_graph_attack", "main", "make_linkage_world",
           "server_band_graph", "server_hit_graph", "share_world"]

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class LinkageWorld:
    """Two agencies' CLKs and the attacker's encoding of both files' people.

    ``a_truth[i]`` / ``b_truth[j]``: the attacker's node of agency A's record ``i`` / B's
    record ``j``; her nodes are her A-people (``attacker_a``) then her B-people
    (``attacker_b``), each list in her own (shuffled) order.
    """

    a_clks: np.ndarray
    b_clks: np.ndarray
    attacker_a: np.ndarray
    attacker_b: np.ndarray
    a_truth: np.ndarray
    b_truth: np.ndarray
    true_links: int
    a_person: np.ndarray | None = None
    b_person: np.ndarray | None = None


def _typo(record: list[str], rng: random.Random, positions: tuple[int, int]) -> list[str]:
    out = list(record)
    field = rng.choice(positions)
    value = out[field]
    if len(value) > 1:
        at = rng.randrange(len(value))
        out[field] = value[:at] + rng.choice(_LETTERS) + value[at + 1:]
    return out


def make_linkage_world(schema, records: int, run: int, *, overlap: float = 0.5,
                       corruption: float = 0.3, within: float = 0.0) -> LinkageWorld:
    """Agencies A and B of ``records`` people each, ``overlap`` of them shared (see module).

    ``within``: each file also holds a second record (one name typo) of this share of its
    people, its within-agency duplicates; the attacker holds one clean record per record
    (a duplicate's is its person's again), so her graph has their within edges too.
    """
    shared = round(records * overlap)
    population = people(2 * records - shared, seed=2000 + run)
    b_people = list(range(records - shared, 2 * records - shared))
    rng = random.Random(run)
    names = (schema.feature_names.index("given_name"), schema.feature_names.index("family_name"))
    b_rows = [_typo(population[p], rng, names) if p < records and rng.random() < corruption
              else population[p] for p in b_people]
    # every record's person (an index into the population) and its row
    a_persons = list(range(records))
    b_persons = list(b_people)
    a_rows = [population[p] for p in a_persons]
    duplicates = round(within * records)
    for persons, rows in ((a_persons, a_rows), (b_persons, b_rows)):
        for index in rng.sample(range(records), duplicates):
            persons.append(persons[index])
            rows.append(_typo(rows[index], rng, names))
    secret = _secret("agency", run)
    a_clks = encode_values(a_rows, schema, secret, rng=np.random.default_rng([run, 2]), workers=1)
    b_clks = encode_values(b_rows, schema, secret, rng=np.random.default_rng([run, 3]), workers=1)
    a_order = list(range(len(a_rows)))
    b_order = list(range(len(b_rows)))
    rng.shuffle(a_order)
    rng.shuffle(b_order)
    own = _secret("attacker 0", run)
    attacker_a = encode_values([population[a_persons[i]] for i in a_order], schema, own,
                               rng=np.random.default_rng([run, 4]), workers=1)
    attacker_b = encode_values([population[b_persons[j]] for j in b_order], schema, own,
                               rng=np.random.default_rng([run, 5]), workers=1)
    return LinkageWorld(a_clks, b_clks, attacker_a, attacker_b,
                        np.argsort(a_order), len(a_rows) + np.argsort(b_order), shared,
                        np.asarray(a_persons), np.asarray(b_persons))


def link_quality(graph: np.ndarray, world: LinkageWorld) -> dict[str, float]:
    """Pairwise precision, recall and F1 of a server graph's edges as links, against the
    world's people: cross-agency pairs, and all pairs (within-agency ones too). The
    quality of exactly what the attacked view opens, on the same records."""
    n = world.a_clks.shape[0]
    person = np.concatenate([world.a_person, world.b_person])
    same = person[:, None] == person[None, :]
    upper = np.triu(np.ones(same.shape, bool), 1)
    cross = np.zeros(same.shape, bool)
    cross[:n, n:] = True
    out = {}
    for name, scope in (("cross", cross), ("all", upper)):
        found, true = (graph > 0) & scope, same & scope
        hits = int((found & true).sum())
        precision = hits / max(int(found.sum()), 1)
        recall = hits / max(int(true.sum()), 1)
        out[f"quality {name} precision"] = precision
        out[f"quality {name} recall"] = recall
        out[f"quality {name} F1"] = 2 * precision * recall / max(precision + recall, 1e-12)
    return out


def add_within_edges(graph: np.ndarray, left: np.ndarray, right: np.ndarray,
                     threshold: float, edges=None) -> np.ndarray:
    """``graph`` (left nodes, then right) with each file's own pairs at ``threshold`` added,
    weighted by band where ``edges`` are given (else 1).

    Two-server mode opens exactly the kernel's within-agency pairs at the threshold (the
    service's tests check it, ``tests/server/test_two_server.py``), so the kernel gives
    them here for the server's graph as for the attacker's.
    """
    from linkage.matching.kernel import dice_candidates_native

    out = graph.copy()
    for offset, clks in ((0, left), (left.shape[0], right)):
        pairs = dice_candidates_native(clks, clks, threshold, same=True)
        keep = pairs.left < pairs.right
        weight = (np.asarray(edges)[np.searchsorted(edges, pairs.score[keep], side="right") - 1]
                  if edges is not None else 1.0)
        out[offset + pairs.left[keep], offset + pairs.right[keep]] = weight
        out[offset + pairs.right[keep], offset + pairs.left[keep]] = weight
    return out


def server_hit_graph(left: np.ndarray, right: np.ndarray, threshold: float,
                     clk_bits: int) -> tuple[np.ndarray, int]:
    """The hit graph a server learns, from the real two-party protocol, as an adjacency matrix.

    Nodes: left records, then right records. Returns it and the bytes one server sent.
    """
    plan = Plan(left.shape[0], right.shape[0], clk_bits)
    dealer = Dealer(plan)
    l0, l1 = split_clks(left, clk_bits)
    r0, r1 = split_clks(right, clk_bits)
    rational = rational_threshold(threshold, clk_bits)
    hits, _, sent = run_locally(
        threshold_party(0, l0, r0, rational, PartyMaterial(0, plan, dealer.seeds[0])),
        threshold_party(1, l1, r1, rational,
                        PartyMaterial(1, plan, dealer.seeds[1], dealer.corrections())))
    return _bipartite(left.shape[0], right.shape[0], hits.left, hits.right), sent


def _bipartite(n: int, m: int, lefts: np.ndarray, rights: np.ndarray,
               weights: np.ndarray | float = 1.0) -> np.ndarray:
    graph = np.zeros((n + m, n + m), dtype=np.float32)
    graph[lefts, n + rights] = weights
    graph[n + rights, lefts] = weights
    return graph


def server_band_graph(left: np.ndarray, right: np.ndarray, clk_bits: int, *, sample: float,
                      run: int, edges=None) -> tuple[np.ndarray, dict]:
    """What a server learns with ``auto`` in two-server mode, from the real band protocol.

    The hit graph at the threshold ``auto`` chose, each edge weighted by its band's lower
    edge (the coarse score it opened), and the opened histogram of the sample
    (``bench.attacks.banded``). Returns the graph and the run's opened figures.
    """
    from .banded import DEFAULT_EDGES, banded_link

    banded = banded_link(left, right, clk_bits, edges or DEFAULT_EDGES, sample=sample,
                         sample_seed=run)
    hits = banded.hits
    graph = _bipartite(left.shape[0], right.shape[0], hits.left, hits.right, hits.score)
    return graph, {"auto_threshold": banded.threshold, "auto_reason": banded.reason,
                   "hits": len(hits),
                   "histogram": banded.sample_at_least.tolist(),
                   "band_online_s_per_server": banded.online_s,
                   "band_bytes_per_pair": banded.sent_bytes / hits.pairs}


def _attacker_band_graph(world: LinkageWorld, threshold: float, edges=None) -> np.ndarray:
    """The attacker's own hit graph at the same threshold, weighted by the same bands."""
    from linkage.matching.kernel import dice_candidates_native

    from .banded import DEFAULT_EDGES

    edges = np.asarray(edges or DEFAULT_EDGES)
    pairs = dice_candidates_native(world.attacker_a, world.attacker_b, threshold)
    band = edges[np.searchsorted(edges, pairs.score, side="right") - 1]
    return _bipartite(len(world.attacker_a), len(world.attacker_b), pairs.left, pairs.right,
                      band)


def _attacker_graph(world: LinkageWorld, threshold: float) -> np.ndarray:
    from linkage.matching.kernel import dice_candidates_native

    pairs = dice_candidates_native(world.attacker_a, world.attacker_b, threshold)
    return _bipartite(len(world.attacker_a), len(world.attacker_b), pairs.left, pairs.right)


@dataclass(frozen=True)
class LearnedResult:
    seeds: int
    correct: int
    nodes: int
    partners: int

    @property
    def success(self) -> float:
        return self.correct / (self.nodes - self.seeds)

    @property
    def partner_share(self) -> float:
        return self.partners / (self.nodes - self.seeds)


def learned_graph_attack(server_graph: np.ndarray, attacker_graph: np.ndarray,
                         truth: np.ndarray, *, seeds: int = 0, seed_rng: int = 0
                         ) -> LearnedResult:
    """Align the server's hit graph onto the attacker's; count right re-identifications."""
    known = None
    seed_rows = np.zeros(0, dtype=np.int64)
    if seeds:
        seed_rows = np.random.default_rng(seed_rng).choice(len(truth), seeds, replace=False)
        known = (seed_rows, truth[seed_rows])
    result = align(server_graph, attacker_graph, seeds=known)
    found = result.mapping == truth
    found[seed_rows] = False
    partners = np.zeros(len(truth), bool)
    partners[np.flatnonzero(server_graph[seed_rows].any(axis=0))] = True
    partners[seed_rows] = False
    return LearnedResult(seeds, int(found.sum()), len(truth), int(partners.sum()))


def share_world(world: World, party: int = 1) -> World:
    """The single-agency world with the agency's CLKs replaced by one server's share, as bits."""
    bits = world.schema.clk_bits
    share = split_clks(world.agency_clks, bits)[party]
    lowest = np.packbits((share & 1).astype(bool), axis=1, bitorder="little")
    return World(world.schema, lowest.view("<u8").astype(np.uint64), world.plaintext,
                 world.attacker_clks, world.truth)


def one_run(schema, records: int, run: int, threshold: float, seeds: list[int],
            *, baseline: bool = True, bands: float = 0.0, bands_only: bool = False,
            band_edges=None, within: float = 0.0) -> dict:
    """Every attack of this module on one fresh world; figures as shares of records.

    ``bands``: also attack what a server learns with ``auto`` (the band protocol, its
    histogram on this share of the records); ``bands_only``: only that. ``within``: each
    file holds within-agency duplicates of this share of its people, and the servers
    compare each file's own pairs too (``add_within_edges``).
    """
    out: dict = {"run": run, "records": records}
    started = time.perf_counter()
    world = make_linkage_world(schema, records, run, within=within)
    truth = np.concatenate([world.a_truth, world.b_truth])
    if bands:
        graph, opened = server_band_graph(world.a_clks, world.b_clks, schema.clk_bits,
                                          sample=bands, run=run, edges=band_edges)
        out.update({key: value for key, value in opened.items() if key != "histogram"})
        theirs = _attacker_band_graph(world, opened["auto_threshold"], band_edges)
        if within:
            from .banded import DEFAULT_EDGES

            cut = opened["auto_threshold"]
            graph = add_within_edges(graph, world.a_clks, world.b_clks, cut,
                                     band_edges or DEFAULT_EDGES)
            theirs = add_within_edges(theirs, world.attacker_a, world.attacker_b, cut,
                                      band_edges or DEFAULT_EDGES)
        out["band_edges"] = int((graph > 0).sum() // 2)
        out.update({f"banded {key}": value for key, value in link_quality(graph, world).items()})
        for k in seeds:
            result = learned_graph_attack(graph, theirs, truth, seeds=k, seed_rng=run)
            out[f"banded k={k}"] = result.success
            out[f"banded partners k={k}"] = result.partner_share
            # The same hit graph without its band labels: what the labels add.
            plain = learned_graph_attack((graph > 0).astype(np.float32),
                                         (theirs > 0).astype(np.float32), truth, seeds=k,
                                         seed_rng=run)
            out[f"banded unlabelled k={k}"] = plain.success
        if bands_only:
            out["seconds"] = time.perf_counter() - started
            return out
    graph, sent = server_hit_graph(world.a_clks, world.b_clks, threshold, schema.clk_bits)
    out["mpc_seconds_both_servers"] = time.perf_counter() - started
    out["bytes_per_pair_per_server"] = sent / (len(world.a_clks) * len(world.b_clks))
    theirs = _attacker_graph(world, threshold)
    if within:
        graph = add_within_edges(graph, world.a_clks, world.b_clks, threshold)
        theirs = add_within_edges(theirs, world.attacker_a, world.attacker_b, threshold)
    out["edges"] = int(graph.sum() // 2)
    out.update(link_quality(graph, world))
    for k in seeds:
        result = learned_graph_attack(graph, theirs, truth, seeds=k, seed_rng=run)
        out[f"learned k={k}"] = result.success
        out[f"partners k={k}"] = result.partner_share
    single = make_world(schema, records, run, attacker_secrets=1)
    shared = share_world(single)
    out["share graph"] = graph_attack(shared).success
    out["share frequency"] = frequency_attack(shared).success
    if baseline:
        out["baseline plain graph"] = graph_attack(single).success
    out["seconds"] = time.perf_counter() - started
    return out


def main(args) -> int:
    schema = schema_with(json.loads(args.hardening))
    rows = []
    for run in range(args.first_run, args.first_run + args.runs):
        row = one_run(schema, args.records, run, args.threshold, args.seeds,
                      baseline=not args.skip_baseline, bands=args.bands,
                      bands_only=args.bands_only, band_edges=args.band_edges,
                      within=args.within)
        print(json.dumps(row), flush=True)
        rows.append(row)
    keys = [k for k in rows[0] if k not in ("run", "records")
            and isinstance(rows[0][k], (int, float))]
    print(f"| figure ({args.records} records per agency, median of {len(rows)}) | value |")
    print("|---|---|")
    for key in keys:
        values = [r[key] for r in rows]
        median = statistics.median(values)
        shown = f"{median:.4f}" if "quality" in key else f"{100 * median:.2f}%" \
            if key.startswith(("learned", "partners", "share", "baseline", "banded")) \
            else f"{median:.3g}"
        print(f"| {key} | {shown} (runs: {', '.join(f'{v:.4g}' for v in values)}) |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    return 0
