"""Dice candidate generation: our native kernel against anonlink, on the same CLKs, in one run.

    python -m bench.engine --n 30000 --threshold 0.8 --repeats 5

Builds N x N random 1024-bit CLKs (35% of bits set) with 1% planted near
duplicates, runs our kernel with one and two threads and anonlink 0.15.3's
C++ Dice (``dice_coefficient_accelerated``, single-threaded) in its own
virtual environment (it needs numpy<2 and setuptools<81, so it cannot live in
ours), checks both return the same candidate pairs, and prints a table. Each
implementation runs in a fresh process so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ANONLINK_VENV = ROOT / ".bench-venv"
ANONLINK_REQUIREMENTS = ["anonlink==0.15.3", "numpy<2", "setuptools<81"]

_OURS = r"""
import json, resource, sys, time
import numba, numpy as np
from linkage.kernel import dice_candidates_native
left, right = np.load(sys.argv[1]), np.load(sys.argv[2])
threshold, threads, repeats = float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
numba.set_num_threads(threads)
dice_candidates_native(left[:64], right[:64], threshold)  # compile outside the timing
times = []
for _ in range(repeats):
    started = time.perf_counter()
    pairs = dice_candidates_native(left, right, threshold)
    times.append(time.perf_counter() - started)
np.savez(sys.argv[6], left=pairs.left, right=pairs.right, score=pairs.score)
print(json.dumps({"times": times, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

_ANONLINK = r"""
import json, resource, sys, time
import numpy as np
from bitarray import bitarray
from anonlink.similarities import dice_coefficient_accelerated
def as_bitarrays(matrix):
    out = []
    for row in matrix:
        bits = bitarray(endian="big")
        bits.frombytes(row.astype("<u8").tobytes())
        out.append(bits)
    return out
left, right = as_bitarrays(np.load(sys.argv[1])), as_bitarrays(np.load(sys.argv[2]))
threshold, repeats = float(sys.argv[3]), int(sys.argv[5])
times = []
for _ in range(repeats):
    started = time.perf_counter()
    scores, (lefts, rights) = dice_coefficient_accelerated([left, right], threshold)
    times.append(time.perf_counter() - started)
np.savez(sys.argv[6], left=np.asarray(lefts), right=np.asarray(rights), score=np.asarray(scores))
print(json.dumps({"times": times, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def make_clks(count: int, seed: int, density: float = 0.35) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bits = rng.random((count, 1024), dtype=np.float32) < density
    return np.packbits(bits, axis=1).view("<u8")


def plant_duplicates(left: np.ndarray, right: np.ndarray, fraction: float, seed: int) -> None:
    """Overwrite the first rows of ``right`` with noisy copies of ``left``'s (3% bits flipped)."""
    rng = np.random.default_rng(seed)
    count = int(len(left) * fraction)
    noise = np.packbits(rng.random((count, 1024), dtype=np.float32) < 0.03, axis=1).view("<u8")
    right[:count] = left[:count] ^ noise


def anonlink_python() -> Path:
    """The interpreter of the anonlink virtual environment, created on first use."""
    python = ANONLINK_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {ANONLINK_VENV} with {' '.join(ANONLINK_REQUIREMENTS)} ...", flush=True)
        venv.create(ANONLINK_VENV, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *ANONLINK_REQUIREMENTS],
                       check=True)
    return python


def run(python: str, script: str, files: list[str], threshold: float, threads: int,
        repeats: int, output: str, env: dict | None = None) -> dict:
    result = subprocess.run([python, "-c", script, *files, str(threshold), str(threads),
                             str(repeats), output], capture_output=True, text=True, cwd=ROOT,
                            env=env, check=False)
    if result.returncode:
        raise SystemExit(f"benchmark child failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def same_pairs(first: str, second: str) -> bool:
    a, b = np.load(first), np.load(second)
    key_a = sorted(zip(a["left"].tolist(), a["right"].tolist()))
    key_b = sorted(zip(b["left"].tolist(), b["right"].tolist()))
    return key_a == key_b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Dice candidate generation benchmark.")
    parser.add_argument("--n", type=int, nargs="+", default=[30000])
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-anonlink", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n in args.n:
            left, right = make_clks(n, 1), make_clks(n, 2)
            plant_duplicates(left, right, 0.01, 3)
            files = [os.path.join(folder, f"{side}-{n}.npy") for side in ("left", "right")]
            np.save(files[0], left)
            np.save(files[1], right)
            results = {}
            for threads in (1, 2):
                out = os.path.join(folder, f"ours-{n}-{threads}.npz")
                results[("linkage", threads)] = (run(sys.executable, _OURS, files, args.threshold,
                                                     threads, args.repeats, out), out)
            if not args.skip_anonlink:
                out = os.path.join(folder, f"anonlink-{n}.npz")
                env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
                results[("anonlink", 1)] = (run(str(anonlink_python()), _ANONLINK, files,
                                                args.threshold, 1, args.repeats, out, env), out)
            reference = results.get(("anonlink", 1))
            base = statistics.median(reference[0]["times"]) if reference else None
            for (name, threads), (measured, out) in results.items():
                wall = statistics.median(measured["times"])
                agree = same_pairs(out, reference[1]) if reference else None
                rows.append((n, name, threads, wall, n * n / wall, n * n / wall / threads,
                             len(np.load(out)["left"]), agree, measured["peak_kib"] / 1024,
                             base / wall if base else None))
    print(f"\nDice candidates at threshold {args.threshold}, 1024-bit CLKs, median of "
          f"{args.repeats} runs\n")
    print("| N x N | implementation | threads | wall s | comparisons/s | per core | candidates | "
          "same as anonlink | peak MiB | speed-up vs anonlink |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, name, threads, wall, rate, per_core, found, agree, peak, ratio in rows:
        print(f"| {n:,} | {name} | {threads} | {wall:.3f} | {rate:.2e} | {per_core:.2e} | {found} | "
              f"{'-' if agree is None else ('yes' if agree else 'NO')} | {peak:.0f} | "
              f"{'-' if ratio is None else f'{ratio:.1f}x'} |")
    return 0 if all(row[7] in (None, True) for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
