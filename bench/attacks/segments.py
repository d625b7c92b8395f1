"""The attacks on per-field segments (``linkage.encoding.field_segments``), and one made for them.

    python -m bench.attacks.segments --records 1000 --runs 3

Why: field-aware scoring needs one Bloom filter per field, and a filter of one
field is what the early frequency attacks on Bloom filters were made for. This
runs the repository's graph and pattern-mining attacks on the segmented
encoding the field-aware prototype uses (``bench.quality_fieldwise``: 256 bits
for each name, 128 for the date, unhardened or with BLIP), under the same
world as ``bench.attacks.table`` (the attacker holds the register, knows the
layout and encodes under secrets of her own), and adds the attack a segmented
encoding invites:

**Value frequency.** Unhardened segments are deterministic per value, so
records with identical segments share the value. The attacker ranks the
agency's identical-segment groups of one field by size and her register's
values of that field by frequency, and names each group of the i-th largest
size with the i-th most frequent value (ties broken by her own order). A record
counts as re-identified when the (given name, family name, date of birth) she
reads off its three segments is a person of her register and the right one.
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter

import numpy as np

from linkage.encoding.field_segments import encode_field_segments, layout_for

from .align import dice_matrix
from .frequency import frequency_attack
from .graph import graph_attack
from .population import ATTACK_FEATURES, World, _secret, make_world, schema_with

__all__ = ["segmented_world", "value_frequency_attack"]

SEGMENT_BITS = {"given_name": 256, "family_name": 256, "date_of_birth": 128}


def segmented_world(records: int, run: int, *, blip_epsilon: float | None = None,
                    attacker_secrets: int = 3) -> World:
    """``make_world``'s people and truth, encoded as per-field segments of the attack features."""
    schema = schema_with({})
    plain = make_world(schema, records, run, attacker_secrets=1)
    fields = list(ATTACK_FEATURES)
    layout = layout_for(fields, [SEGMENT_BITS[f] for f in fields])
    columns = [schema.feature_names.index(f) for f in fields]

    def encode(rows, secret, coins):
        values = [[row[c] for c in columns] for row in rows]
        text = _schema_text(schema, fields)
        return encode_field_segments(values, text, secret, layout, blip_epsilon=blip_epsilon,
                                     rng=np.random.default_rng(coins))

    agency_rows = [plain.plaintext[t] for t in plain.truth]  # full overlap: every row known
    agency = encode(agency_rows, _secret("agency", run), [run, 0])
    attacker = tuple(encode(plain.plaintext, _secret(f"attacker {copy}", run), [run, copy, 1])
                     for copy in range(attacker_secrets))
    return World(schema, agency, plain.plaintext, attacker, plain.truth)


def _schema_text(schema, fields) -> str:
    """The person schema with only ``fields``, hashed as the shipped segments schema hashes them."""
    import json
    from importlib import resources

    document = json.loads(schema.text)
    segments = json.loads(resources.files("linkage.encoding").joinpath(
        "schemas/person_segments.json").read_text("utf-8"))
    document["features"] = [f for f in segments["features"] if f["identifier"] in fields]
    return json.dumps(document)


def value_frequency_attack(world: World) -> float:
    """Share of records whose three values are read off their segments right (see above)."""
    fields = list(ATTACK_FEATURES)
    layout = layout_for(fields, [SEGMENT_BITS[f] for f in fields])
    columns = [world.schema.feature_names.index(f) for f in fields]
    guessed = []
    for field, column in zip(fields, columns):
        segment = np.ascontiguousarray(layout.segment(world.agency_clks, field))
        keys = segment.view(np.dtype((np.void, segment.shape[1] * 8))).ravel()
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        group_rank = np.argsort(-counts, kind="stable")
        rank_of = np.empty_like(group_rank)
        rank_of[group_rank] = np.arange(group_rank.size)
        ranked_values = [v for v, _ in Counter(row[column] for row in world.plaintext)
                         .most_common()]
        guessed.append([ranked_values[rank_of[g]] if rank_of[g] < len(ranked_values) else None
                        for g in inverse])
    people = {tuple(row[c] for c in columns): i for i, row in enumerate(world.plaintext)}
    correct = sum(1 for record, truth in enumerate(world.truth.tolist())
                  if people.get(tuple(g[record] for g in guessed)) == truth >= 0)
    return correct / world.records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--blip", type=float, nargs="*", default=[None],
                        help="BLIP epsilons to try on the segments (default: unhardened)")
    args = parser.parse_args(argv)
    print("| segments | records | graph | graph k=10 | graph k=50 | frequency (pattern mining) "
          "| value frequency |\n|---|---|---|---|---|---|---|")
    for epsilon in args.blip:
        cells = {name: [] for name in ("graph", "k10", "k50", "frequency", "value")}
        for run in range(args.runs):
            world = segmented_world(args.records, run, blip_epsilon=epsilon)
            agency_sim = dice_matrix(world.agency_clks)
            attacker_sim = np.mean([dice_matrix(c) for c in world.attacker_clks], axis=0)
            for name, seeds in (("graph", 0), ("k10", 10), ("k50", 50)):
                cells[name].append(graph_attack(world, seeds=seeds, seed_rng=run,
                                                agency_sim=agency_sim,
                                                attacker_sim=attacker_sim).success)
            cells["frequency"].append(frequency_attack(world).success)
            cells["value"].append(value_frequency_attack(world))
            print(f"# run {run}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in cells.items()),
                  flush=True)
        label = "unhardened" if epsilon is None else f"BLIP eps={epsilon:g}"
        print(f"| {label} | {args.records} | "
              + " | ".join(f"{100 * statistics.median(cells[k]):.1f}%"
                           for k in ("graph", "k10", "k50", "frequency", "value")) + " |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
