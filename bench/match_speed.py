"""What a user waits for: ``linkage match`` and a server run, against anonlink, same data.

    python -m bench.match_speed                      # 60k x 60k, threshold 0.8, medians of 3
    python -m bench.match_speed --n 20000 --repeats 1 --skip-server

``bench.dice`` times the Dice kernel alone; this times whole user paths on
N x N random 1024-bit CLKs (each record 30-50% of bits set) with N/2 planted
matches (a copy with 1-6% of its bits flipped):

* ``linkage match LEFT RIGHT --threshold T`` as a whole process (start-up,
  reading both files, comparing, the 1-to-1 solver, writing the CSV), and the
  same with ``--threshold auto`` (the score model, its tail from a sample);
* anonlink 0.15.3 (in ``.bench-venv``, see ``bench.dice``): the time of
  ``find_candidate_pairs`` plus ``greedy_solve`` inside its process, with the
  CLKs already loaded as bitarrays (start-up and loading not counted);
* a real ``linkage-server`` on loopback: both files submitted (agencies
  declared deduplicated, so the run is 1-to-1 too), then ``linkage run
  --threshold T`` timed as a whole process; every repeat uses a fresh project,
  so nothing is reused.

It fails (exit 1) unless ``linkage match``, anonlink and the server link the
same pairs. The machine may be shared: quote ratios from one run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BITS = 1024
#: CPU seconds of each ``time_match`` process, in call order: on a shared machine a steadier
#: measure of the work than wall time, which counts the waits for a core.
CPU_SECONDS: list[float] = []

# Runs inside .bench-venv: argv = left.npy right.npy threshold out.npz
_ANONLINK_CHILD = r"""
import json, sys, time
import numpy as np
from bitarray import bitarray
from anonlink.candidate_generation import find_candidate_pairs
from anonlink.similarities import dice_coefficient_accelerated
from anonlink.solving import greedy_solve

def bitarrays(path):
    out = []
    for row in np.load(path):
        bits = bitarray(endian="big")
        bits.frombytes(row.tobytes())
        out.append(bits)
    return out

left, right = bitarrays(sys.argv[1]), bitarrays(sys.argv[2])
started = time.perf_counter()
candidates = find_candidate_pairs([left, right], dice_coefficient_accelerated, float(sys.argv[3]))
groups = greedy_solve(candidates)
seconds = time.perf_counter() - started
pairs = sorted((dict(g)[0], dict(g)[1]) for g in groups if len(g) == 2)
np.savez(sys.argv[4], pairs=np.asarray(pairs, np.int64).reshape(-1, 2))
print(json.dumps({"seconds": seconds}))
"""


def make_clks(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two batches of ``count`` random CLKs; half the right rows are noisy copies of left rows."""
    rng = np.random.default_rng(seed)

    def batch(rows: int, density: np.ndarray) -> np.ndarray:
        out = np.empty((rows, BITS // 64), np.uint64)
        for start in range(0, rows, 4096):
            stop = min(start + 4096, rows)
            drawn = rng.random((stop - start, BITS), dtype=np.float32) < density[start:stop, None]
            out[start:stop] = np.packbits(drawn, axis=1).view("<u8")
        return out

    left = batch(count, rng.uniform(0.3, 0.5, count))
    right = batch(count, rng.uniform(0.3, 0.5, count))
    planted = count // 2
    sources = rng.choice(count, planted, replace=False)
    targets = rng.choice(count, planted, replace=False)
    right[targets] = left[sources] ^ batch(planted, rng.uniform(0.01, 0.06, planted))
    return left, right


def bench_schema_text() -> str:
    """The shipped person schema without hardening: 1024-bit CLKs, like the random ones."""
    from linkage.encoding.schema import default_schema_text
    document = json.loads(default_schema_text())
    document.pop("hardening", None)
    return json.dumps(document)


def write_batches(folder: Path, left: np.ndarray, right: np.ndarray) -> tuple[Path, Path]:
    from linkage.batch import EncodedBatch, write_batch
    from linkage.encoding.encoder import key_check_value
    from linkage.encoding.schema import load_schema
    schema = load_schema(bench_schema_text())
    assert schema.clk_bits == BITS
    paths = []
    for prefix, clks in (("l", left), ("r", right)):
        batch = EncodedBatch([f"{prefix}{i}" for i in range(clks.shape[0])], clks, BITS,
                             schema.fingerprint, key_check_value(b"k" * 32))
        path = folder / f"{prefix}.clk"
        path.write_bytes(write_batch(batch))
        paths.append(path)
    return paths[0], paths[1]


def _index_pairs(rows) -> set[tuple[int, int]]:
    return {(int(a[1:]), int(b[1:])) for a, b in rows}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_match(left: Path, right: Path, threshold: str, folder: Path
               ) -> tuple[float, set[tuple[int, int]], str]:
    """Wall time of one ``linkage match`` process, its pairs and its last line (its CPU
    seconds, user + system over all threads, go to ``CPU_SECONDS``)."""
    output = folder / "matches.csv"
    command = [str(Path(sys.executable).parent / "linkage"), "match", str(left), str(right),
               "--threshold", threshold, "-o", str(output)]
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    CPU_SECONDS.append(_children_cpu() - cpu)
    if done.returncode:
        raise SystemExit(f"linkage match failed:\n{done.stderr}")
    with open(output, newline="", encoding="utf-8") as handle:
        rows = [(row["left_record"], row["right_record"]) for row in csv.DictReader(handle)]
    return seconds, _index_pairs(rows), done.stderr.strip().splitlines()[-1]


def time_anonlink(left: np.ndarray, right: np.ndarray, threshold: float, folder: Path
                  ) -> tuple[float, set[tuple[int, int]]]:
    from .dice import anonlink_python
    files = [str(folder / name) for name in ("left.npy", "right.npy", "anonlink.npz")]
    np.save(files[0], left)
    np.save(files[1], right)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(anonlink_python()), "-c", _ANONLINK_CHILD, files[0], files[1],
                           str(threshold), files[2]],
                          capture_output=True, text=True, env=env, cwd=folder, check=False)
    if done.returncode:
        raise SystemExit(f"anonlink run failed:\n{done.stderr}")
    seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return seconds, {(int(a), int(b)) for a, b in np.load(files[2])["pairs"]}


def time_server(server, left: Path, right: Path, threshold: str, project: str, folder: Path
                ) -> tuple[float, float, set[tuple[int, int]]]:
    """Submit both files to a fresh project, then time ``linkage run`` as a process.

    Returns (submit seconds, run seconds, linked pairs from both agencies' results).
    """
    from linkage_service.client.api import LinkageClient
    from linkage.batch import read_batch
    with LinkageClient(server.address, server.coordinator_token, timeout=3600) as coordinator:
        tokens = coordinator.create_project(project, bench_schema_text(), ["left", "right"])
    started = time.perf_counter()
    for name, path in (("left", left), ("right", right)):
        with LinkageClient(server.address, tokens[name], timeout=3600) as agency:
            agency.submit(project, read_batch(path.read_bytes()), deduplicated=True)
    submitted = time.perf_counter() - started
    token_file = folder / "coordinator.token"
    token_file.write_text(server.coordinator_token + "\n", encoding="utf-8")
    command = [str(Path(sys.executable).parent / "linkage"), "run", "--project", project,
               "--threshold", threshold, "--server", server.address,
               "--token-file", str(token_file)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    run_seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"linkage run failed:\n{done.stderr}")
    groups: dict[str, dict[str, str]] = {}
    for name in ("left", "right"):
        with LinkageClient(server.address, tokens[name], timeout=3600) as agency:
            for result in agency.results(project):
                groups.setdefault(result["group"], {})[name] = result["record"]
    rows = [(g["left"], g["right"]) for g in groups.values() if len(g) == 2]
    return submitted, run_seconds, _index_pairs(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60_000, help="records per side")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-anonlink", action="store_true")
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--skip-auto", action="store_true")
    args = parser.parse_args(argv)
    threshold = f"{args.threshold:g}"
    print(f"building {args.n:,} x {args.n:,} random CLKs ...", file=sys.stderr, flush=True)
    left, right = make_clks(args.n, args.seed)
    failures = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        left_path, right_path = write_batches(folder, left, right)
        time_match(left_path, right_path, threshold, folder)  # untimed: page cache, numba cache
        timings: dict[str, list[float]] = {}
        found: dict[str, set] = {}
        notes: dict[str, str] = {}
        cpu: dict[str, list[float]] = {}
        server = None
        if not args.skip_server:
            from linkage_service.client.demo import ServerProcess
            # One random "secret" for every project: the server refuses that unless told.
            server = ServerProcess(folder / "server-data",
                                   extra_args=("--allow-secret-reuse",)).start()
        try:
            for repeat in range(args.repeats):
                seconds, pairs, line = time_match(left_path, right_path, threshold, folder)
                timings.setdefault(f"linkage match --threshold {threshold}", []).append(seconds)
                cpu.setdefault(f"linkage match --threshold {threshold}", []).append(
                    CPU_SECONDS[-1])
                found[f"linkage match --threshold {threshold}"] = pairs
                if not args.skip_auto:
                    seconds, pairs, line = time_match(left_path, right_path, "auto", folder)
                    timings.setdefault("linkage match --threshold auto", []).append(seconds)
                    cpu.setdefault("linkage match --threshold auto", []).append(CPU_SECONDS[-1])
                    found["linkage match --threshold auto"] = pairs
                    notes["linkage match --threshold auto"] = line
                if server is not None:
                    submit, seconds, pairs = time_server(server, left_path, right_path,
                                                         threshold, f"bench-{repeat}", folder)
                    timings.setdefault("linkage-server: submit both files", []).append(submit)
                    timings.setdefault(f"linkage-server: linkage run --threshold {threshold}",
                                       []).append(seconds)
                    found[f"linkage-server: linkage run --threshold {threshold}"] = pairs
                if not args.skip_anonlink:
                    seconds, pairs = time_anonlink(left, right, args.threshold, folder)
                    timings.setdefault("anonlink find_candidate_pairs + greedy_solve",
                                       []).append(seconds)
                    found["anonlink find_candidate_pairs + greedy_solve"] = pairs
                print(f"repeat {repeat + 1}/{args.repeats}: " + ", ".join(
                    f"{label} {values[-1]:.2f} s" for label, values in timings.items()),
                    file=sys.stderr, flush=True)
        finally:
            if server is not None:
                server.stop()
    reference_name = f"linkage match --threshold {threshold}"
    reference = found[reference_name]
    match_median = statistics.median(timings[reference_name])
    anonlink_name = "anonlink find_candidate_pairs + greedy_solve"
    anonlink_median = (statistics.median(timings[anonlink_name]) if anonlink_name in timings
                       else None)
    print(f"\n{args.n:,} x {args.n:,} random {BITS}-bit CLKs, {args.n // 2:,} planted matches, "
          f"threshold {threshold}; medians of {args.repeats}; {os.cpu_count()} CPUs "
          f"(load average at the end {os.getloadavg()[0]:.1f})\n")
    print("| path | median s | runs s | linked pairs | same pairs as match at "
          f"{threshold} | vs linkage match | anonlink / this |")
    print("|---|---|---|---|---|---|---|")
    for label, values in timings.items():
        median = statistics.median(values)
        pairs = found.get(label)
        same = "-" if pairs is None else ("yes" if pairs == reference else "NO")
        if pairs is not None and pairs != reference and "auto" not in label:
            failures.append(label)
        speed_up = (f"{anonlink_median / median:.1f}x" if anonlink_median and
                    label != anonlink_name else "-")
        print(f"| {label} | {median:.2f} | {', '.join(f'{v:.2f}' for v in values)} | "
              f"{len(pairs) if pairs is not None else '-'} | {same} | "
              f"{median / match_median:.2f}x | {speed_up} |")
    if cpu:
        print("\nCPU seconds of the `linkage match` processes (user + system, all threads; "
              "steadier than wall time when other jobs share the machine):\n")
        print("| path | median CPU s | runs CPU s | vs linkage match |")
        print("|---|---|---|---|")
        cpu_reference = statistics.median(cpu[reference_name])
        for label, values in cpu.items():
            median = statistics.median(values)
            print(f"| {label} | {median:.2f} | {', '.join(f'{v:.2f}' for v in values)} | "
                  f"{median / cpu_reference:.2f}x |")
    for label, line in notes.items():
        print(f"\n{label}: {line}")
    if failures:
        print(f"\nFAILED: {', '.join(failures)} linked other pairs than linkage match")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
