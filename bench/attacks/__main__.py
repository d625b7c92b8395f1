"""Command line: ``python -m bench.attacks {graph,frequency,table} ...``.

    python -m bench.attacks graph --records 2000 --seeds 0 10 50
    python -m bench.attacks graph --hardening '{"diffusion": {"t": 5}}' --overlap 0.5
    python -m bench.attacks frequency --records 1000
    python -m bench.attacks table                  # every option, 1k and 2k, 3 runs
    python -m bench.attacks table --quick          # 1k records, one run
    python -m bench.attacks table --only none "shipped: balancing+blip(eps=4)" --sizes 2000
    python -m bench.attacks shared --records 1000 2000   # secret-shared Dice, cost
    python -m bench.attacks learned --records 2000       # attacks on a two-server server's view
    python -m bench.attacks banded --dataset febrl4      # auto and 1-to-1 on Dice bands
    python -m bench.attacks table --render a.json b.json --quality-cache q.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from . import table
from .frequency import frequency_attack
from .graph import graph_attack
from .population import make_world, schema_with


def _single(args) -> int:
    schema = schema_with(json.loads(args.hardening))
    rows = []
    for run in range(args.runs):
        world = make_world(schema, args.records, run, overlap=args.overlap,
                           attacker_secrets=args.attacker_secrets)
        if args.command == "graph":
            row = [graph_attack(world, seeds=k, seed_rng=run).success for k in args.seeds]
        else:
            result = frequency_attack(world)
            print(f"run {run}: {result}", file=sys.stderr)
            row = [result.success]
        print(f"run {run}: " + ", ".join(f"{100 * v:.1f}%" for v in row), flush=True)
        rows.append(row)
    labels = [f"k={k}" for k in args.seeds] if args.command == "graph" else ["frequency"]
    print("median: " + ", ".join(f"{label} {100 * statistics.median(c):.1f}%"
                                 for label, c in zip(labels, zip(*rows))))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attacks",
                                     description="Re-identification attacks on our CLKs.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("graph", "frequency"):
        sub = commands.add_parser(name, help=f"the {name} attack on one encoding")
        sub.add_argument("--hardening", default="{}", help="the schema's hardening section, JSON")
        sub.add_argument("--records", type=int, default=1000)
        sub.add_argument("--runs", type=int, default=3)
        sub.add_argument("--overlap", type=float, default=1.0,
                         help="share of the agency's people in the attacker's register")
        sub.add_argument("--attacker-secrets", type=int, default=3,
                         help="secrets the attacker encodes her register under (averaged)")
        if name == "graph":
            sub.add_argument("--seeds", type=int, nargs="+", default=[0, 10, 50],
                             help="true pairs the attacker knows (0: unseeded)")
    sub = commands.add_parser("table", help="every option x every attack, with quality")
    sub.add_argument("--quick", action="store_true", help="1000 records, one run")
    sub.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000])
    sub.add_argument("--runs", type=int, default=3)
    sub.add_argument("--attacker-secrets", type=int, default=3)
    sub.add_argument("--first-run", type=int, default=0,
                     help="number of the first run (to split runs over processes)")
    sub.add_argument("--only", nargs="+", choices=[o.name for o in table.OPTIONS])
    sub.add_argument("--skip-quality", action="store_true")
    sub.add_argument("--quality-only", action="store_true",
                     help="only the quality figures (into --quality-cache), no attacks")
    sub.add_argument("--quality-cache", help="JSON file that keeps quality figures between runs")
    sub.add_argument("--json", help="also write every figure to this file")
    sub.add_argument("--render", nargs="+", metavar="JSON",
                     help="only print the table from these --json files (merged)")
    sub = commands.add_parser("learned", help="the attacks on what a server learns in "
                              "two-server mode")
    sub.add_argument("--records", type=int, default=2000, help="records per agency")
    sub.add_argument("--runs", type=int, default=3)
    sub.add_argument("--first-run", type=int, default=0)
    sub.add_argument("--threshold", type=float, default=0.8)
    sub.add_argument("--seeds", type=int, nargs="+", default=[0, 50])
    sub.add_argument("--hardening", default="{}", help="the schema's hardening section, JSON")
    sub.add_argument("--skip-baseline", action="store_true")
    sub.add_argument("--bands", type=float, default=0.0, metavar="SAMPLE",
                     help="also attack the banded graph auto opens (histogram on this share)")
    sub.add_argument("--bands-only", action="store_true", help="only the banded graph attacks")
    sub.add_argument("--within", type=float, default=0.0, metavar="SHARE",
                     help="each file also holds duplicates of this share of its people, and "
                          "the servers compare each file's own pairs too")
    sub.add_argument("--band-edges", type=float, nargs="+",
                     help="the band edges (default: bench.attacks.banded.DEFAULT_EDGES)")
    sub.add_argument("--json", help="also write every figure to this file")
    sub = commands.add_parser("shared", help="cost of two-server mode (the whole protocol, "
                              "one process)")
    sub.add_argument("--records", type=int, nargs="+", default=[1000, 2000])
    sub.add_argument("--bits", type=int, default=1024)
    sub.add_argument("--runs", type=int, default=3)
    sub = commands.add_parser("banded", help="auto and 1-to-1 in two-server mode: Dice bands "
                              "on shares, cost and quality")
    from .banded import add_arguments
    add_arguments(sub)
    args = parser.parse_args(argv)
    if args.command == "banded":
        from . import banded
        return banded.main(args)
    if args.command == "shared":
        from . import secret_shared
        return secret_shared.main(args)
    if args.command == "learned":
        from . import learned
        return learned.main(args)
    if args.command == "table":
        return table.main(args)
    return _single(args)


if __name__ == "__main__":
    raise SystemExit(main())
