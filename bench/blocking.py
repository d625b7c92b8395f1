"""LSH blocking against exhaustive comparison, on the same CLKs.

    python -m bench.blocking --n 300000 1000000 --exhaustive-up-to 300000

Builds N x N random 1024-bit CLKs (35% of bits set) with N/100 planted true
pairs (the second record a copy of the first with 2-8% of its bits flipped,
Dice about 0.85-0.96), plans Hamming-LSH blocking for threshold 0.8 at 99.5%
expected completeness, and times it; up to ``--exhaustive-up-to`` it also runs
the exhaustive kernel on the same CLKs and reports pair completeness against
it (above that, completeness against the planted pairs). The expected
reduction ratio is 1 - tables x q^bits, with q = 0.545 the chance that two
unrelated CLKs of this density agree on a bit: the share of the N x N
comparisons blocking avoids. Peak memory is the process's own (each size runs
in a fresh process); "cores busy" is the LSH step's CPU time over its wall time
(200% = both cores of a 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CHILD = r"""
import json, resource, sys, time
import numpy as np
from linkage.matching.blocking import lsh_candidates, plan_lsh
from linkage.clks import popcounts
from linkage.matching.kernel import dice_candidates_native
n, threshold, exhaustive = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"
rng = np.random.default_rng(0)
def make(count):
    out = np.empty((count, 16), np.uint64)
    for start in range(0, count, 100_000):
        stop = min(count, start + 100_000)
        out[start:stop] = np.packbits(rng.random((stop - start, 1024), dtype=np.float32) < 0.35,
                                      axis=1).view("<u8")
    return out
left, right = make(n), make(n)
planted = n // 100
noise = rng.uniform(0.02, 0.08, size=(planted, 1)).astype(np.float32)
right[:planted] = left[:planted] ^ np.packbits(
    rng.random((planted, 1024), dtype=np.float32) < noise, axis=1).view("<u8")
sums = np.concatenate([popcounts(left), popcounts(right)])
plan = plan_lsh(1024, 2 * float(np.quantile(sums, 0.99)), threshold, records=n)
lsh_candidates(left[:1000], right[:1000], threshold, plan)  # compile outside the timing
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
started, cpu_before = time.perf_counter(), cpu()
blocked = lsh_candidates(left, right, threshold, plan)
lsh_seconds = time.perf_counter() - started
lsh_cpu = (cpu() - cpu_before) / lsh_seconds
found = set(zip(blocked.left.tolist(), blocked.right.tolist()))
result = {"n": n, "bits": plan.bits, "tables": plan.tables, "lsh_seconds": lsh_seconds,
          "lsh_pairs": len(found), "lsh_cpu": lsh_cpu}
if exhaustive:
    started = time.perf_counter()
    every = dice_candidates_native(left, right, threshold)
    result["exhaustive_seconds"] = time.perf_counter() - started
    truth = set(zip(every.left.tolist(), every.right.tolist()))
    result["completeness"] = len(truth & found) / max(len(truth), 1)
    result["against"] = "exhaustive"
else:
    truth = {(i, i) for i in range(planted)}
    result["completeness"] = len(truth & found) / planted
    result["against"] = "planted pairs"
result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(result))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LSH blocking benchmark.")
    parser.add_argument("--n", type=int, nargs="+", default=[300_000, 1_000_000])
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--exhaustive-up-to", type=int, default=300_000)
    args = parser.parse_args(argv)
    print("| N x N | LSH bits x tables | LSH s | LSH CPU (cores busy) | exhaustive s | "
          "completeness | against | expected reduction ratio | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.n:
        exhaustive = "1" if n <= args.exhaustive_up_to else "0"
        output = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(args.threshold),
                                 exhaustive], capture_output=True, text=True, check=True)
        row = json.loads(output.stdout.strip().splitlines()[-1])
        exhaustive_text = f"{row['exhaustive_seconds']:.1f}" if "exhaustive_seconds" in row else "-"
        print(f"| {n:,} x {n:,} | {row['bits']} x {row['tables']} | {row['lsh_seconds']:.1f} | "
              f"{row['lsh_cpu']:.0%} | "
              f"{exhaustive_text} | {row['completeness']:.4f} | {row['against']} | "
              f"{1 - row['tables'] * 0.545 ** row['bits']:.6f} | {row['peak_mib']:.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
