"""Dice candidate generation: ``linkage.matching.kernel`` against anonlink 0.15 on the same CLKs.

    python -m bench.dice                      # N = 30000, threshold 0.8, 5 runs each
    python -m bench.dice --n 5000 30000 --repeats 3 --skip-anonlink

Why this exists: the server runs the Dice kernel for every linkage, and the
issue sets a bar relative to anonlink (the de facto PPRL library, ~2e8
comparisons/s/core). The data mimics real CLKs: 1024 bits, each record 30-50%
full, plus 1% planted near duplicates (Dice > 0.9) so there are candidates to
return. anonlink needs numpy<2, so it runs in its own virtualenv
(``.bench-venv``, created on first use) in a subprocess that reads the same
CLKs from ``.npy`` files and writes its candidates back; the script checks both
found the same pairs with the same scores.

"comparisons/s" counts all N x N pairs, the figure anonlink's own benchmark
reports, although both implementations skip pairs whose popcounts rule them
out (and ours also abandons blocks part-way); "per core" divides by threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

from linkage.matching.kernel import dice_candidates_native

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / ".bench-venv"
ANONLINK_REQUIREMENTS = ["anonlink==0.15.3", "numpy<2", "setuptools<81"]
BITS = 1024

# Runs inside .bench-venv: argv = left.npy right.npy threshold repeats out.npz
_ANONLINK_CHILD = r"""
import json, sys, time
import numpy as np
from bitarray import bitarray
from anonlink.candidate_generation import find_candidate_pairs
from anonlink.similarities import dice_coefficient_accelerated

def bitarrays(path):
    out = []
    for row in np.load(path):
        bits = bitarray(endian="big")
        bits.frombytes(row.tobytes())
        out.append(bits)
    return out

left, right = bitarrays(sys.argv[1]), bitarrays(sys.argv[2])
threshold, repeats = float(sys.argv[3]), int(sys.argv[4])
times = []
for _ in range(repeats):
    started = time.perf_counter()
    sims, _datasets, (rec0, rec1) = find_candidate_pairs(
        [left, right], dice_coefficient_accelerated, threshold)
    times.append(time.perf_counter() - started)
np.savez(sys.argv[5], left=np.asarray(rec0, np.int64), right=np.asarray(rec1, np.int64),
         score=np.asarray(sims, np.float64))
print(json.dumps({"times": times}))
"""


def make_clks(count: int, seed: int, bits: int = BITS) -> tuple[np.ndarray, np.ndarray, int]:
    """Two batches of ``count`` CLKs; 1% of right rows are noisy copies of left rows.

    Returns (left, right, planted). Each record sets 30-50% of its bits; a
    planted copy flips 1-3% of the bits, which keeps its Dice above 0.9.
    """
    rng = np.random.default_rng(seed)

    def batch(rows: int, density: np.ndarray) -> np.ndarray:
        out = np.empty((rows, bits // 64), np.uint64)
        for start in range(0, rows, 4096):
            stop = min(start + 4096, rows)
            drawn = rng.random((stop - start, bits), dtype=np.float32) < density[start:stop, None]
            out[start:stop] = np.packbits(drawn, axis=1).view("<u8")
        return out

    left = batch(count, rng.uniform(0.3, 0.5, count))
    right = batch(count, rng.uniform(0.3, 0.5, count))
    planted = count // 100
    sources = rng.choice(count, planted, replace=False)
    targets = rng.choice(count, planted, replace=False)
    right[targets] = left[sources] ^ batch(planted, rng.uniform(0.01, 0.03, planted))
    common = np.bitwise_count(left[sources] & right[targets]).sum(1)
    total = np.bitwise_count(left[sources]).sum(1) + np.bitwise_count(right[targets]).sum(1)
    assert np.all(2.0 * common / total > 0.9), "a planted pair is not a near duplicate"
    return left, right, planted


def anonlink_python() -> Path:
    """The interpreter of ``.bench-venv``, creating the venv (with anonlink) if missing."""
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        print(
            f"{BENCH_VENV} is missing: creating it and installing "
            f"{' '.join(ANONLINK_REQUIREMENTS)} (anonlink needs numpy<2, so it cannot share "
            "our virtualenv; this takes a minute, once) ...",
            file=sys.stderr,
            flush=True,
        )
        subprocess.run(["python3", "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *ANONLINK_REQUIREMENTS], check=True
        )
    return python


def time_ours(left, right, threshold: float, thread_counts: list[int], repeats: int):
    """Wall times of ``dice_candidates_native`` per thread count, and its result.

    Thread counts alternate run by run, so load from other processes on a
    shared machine hits all of them alike rather than whichever ran last.
    """
    previous = numba.get_num_threads()
    times: dict[int, list[float]] = {threads: [] for threads in thread_counts}
    pairs = {}
    try:
        dice_candidates_native(left[:256], right[:256], threshold)  # JIT/cache load, untimed
        for _ in range(repeats):
            for threads in thread_counts:
                numba.set_num_threads(threads)
                started = time.perf_counter()
                pairs[threads] = dice_candidates_native(left, right, threshold)
                times[threads].append(time.perf_counter() - started)
    finally:
        numba.set_num_threads(previous)
    return {
        threads: (statistics.median(times[threads]), times[threads],
                  (pairs[threads].left, pairs[threads].right, pairs[threads].score))
        for threads in thread_counts
    }


def time_anonlink(left, right, threshold: float, repeats: int, folder: str):
    """Median wall time of anonlink's ``find_candidate_pairs`` (in .bench-venv), and its pairs."""
    files = [os.path.join(folder, name) for name in ("left.npy", "right.npy", "anonlink.npz")]
    np.save(files[0], left)
    np.save(files[1], right)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(anonlink_python()), "-c", _ANONLINK_CHILD, files[0], files[1], str(threshold),
         str(repeats), files[2]],
        capture_output=True, text=True, env=env, cwd=folder, check=False,
    )
    if done.returncode:
        raise SystemExit(f"anonlink run failed:\n{done.stderr}")
    times = json.loads(done.stdout.strip().splitlines()[-1])["times"]
    found = np.load(files[2])
    return statistics.median(times), times, (found["left"], found["right"], found["score"])


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _as_set(left, right, score) -> dict[tuple[int, int], float]:
    return dict(zip(zip(np.asarray(left).tolist(), np.asarray(right).tolist()),
                    np.asarray(score).tolist()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[30000], help="records per side")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (median)")
    parser.add_argument("--skip-anonlink", action="store_true")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--bits", type=int, default=BITS,
                        help="CLK length (the shipped schemas' balanced CLKs are 2048)")
    args = parser.parse_args(argv)

    print(f"# {_cpu_name()}, {os.cpu_count()} CPUs, numba {numba.__version__}, {args.bits}-bit "
          "CLKs, "
          f"threshold {args.threshold}, median of {args.repeats} runs")
    rows, ok = [], True
    for n in args.n:
        left, right, planted = make_clks(n, args.seed, args.bits)
        thread_counts = [1, 2] if numba.config.NUMBA_NUM_THREADS >= 2 else [1]
        ours = time_ours(left, right, args.threshold, thread_counts, args.repeats)
        results = {("linkage.matching.kernel", threads): ours[threads] for threads in thread_counts}
        if not args.skip_anonlink:
            with tempfile.TemporaryDirectory() as folder:
                results[("anonlink 0.15.3", 1)] = time_anonlink(
                    left, right, args.threshold, args.repeats, folder)
        base = results.get(("anonlink 0.15.3", 1))
        for (name, threads), (wall, times, found) in results.items():
            agree = "-"
            if base is not None:
                mine, theirs = _as_set(*found), _as_set(*base[2])
                same = mine == theirs
                agree = "yes" if same else (
                    f"NO ({len(mine.keys() - theirs.keys())} extra, "
                    f"{len(theirs.keys() - mine.keys())} missing)")
                ok &= same
            rows.append((n, name, threads, wall, n * n / wall, n * n / wall / threads,
                         len(found[0]), agree, base[0] / wall if base else None, times))
        print(f"# N={n}: {planted} planted near duplicates", flush=True)

    print()
    print("| N x N | implementation | threads | wall s (median) | comparisons/s | per core "
          "| candidates | same pairs+scores as anonlink | speed-up vs anonlink |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, name, threads, wall, rate, per_core, found, agree, ratio, _ in rows:
        print(f"| {n:,} x {n:,} | {name} | {threads} | {wall:.3f} | {rate:.2e} | {per_core:.2e} "
              f"| {found} | {agree} | {'-' if ratio is None else f'{ratio:.1f}x'} |")
    print(f"\n# numba threading layer: {numba.threading_layer()}")
    for n, name, threads, *_, times in rows:
        print(f"# runs, {name}, {threads} thread(s), N={n}: "
              + " ".join(f"{t:.3f}" for t in times))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
