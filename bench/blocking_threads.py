"""LSH blocking wall time at 1 and 2 kernel threads, median of 3, for the code at a path.

    python bench/blocking_threads.py <code dir> <N>

<code dir> goes first on sys.path (e.g. a `git archive` of an older commit, to compare
before/after in one session); prints wall, cores busy, efficiency and a digest of the pairs.
"""
import sys, time, json, resource, statistics, hashlib
sys.path.insert(0, sys.argv[1])
import numba, numpy as np
from bench.distributed import _random_job
from linkage.matching import blocking as B
from linkage.clks import popcounts
n = int(sys.argv[2])
clks, _ = _random_job(n, 1)
left, right = clks[:n], clks[n:]
plan = B.plan_lsh(1024, 2 * float(np.quantile(popcounts(clks), 0.99)), 0.8, records=n)
B.lsh_candidates(left[:2000], right[:2000], 0.8, plan)
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF); return u.ru_utime + u.ru_stime
out = {"code": sys.argv[1], "n": n, "plan": f"{plan.bits}x{plan.tables}"}
for threads in (1, 2):
    numba.set_num_threads(threads)
    walls, busy = [], []
    for _ in range(3):
        s, c = time.perf_counter(), cpu()
        r = B.lsh_candidates(left, right, 0.8, plan)
        walls.append(time.perf_counter() - s); busy.append((cpu() - c) / walls[-1])
    out[f"t{threads}"] = round(statistics.median(walls), 2)
    out[f"busy{threads}"] = round(statistics.median(busy), 2)
out["efficiency"] = round(out["t1"] / (2 * out["t2"]), 2)
out["pairs"] = len(r)
out["digest"] = hashlib.sha1(r.left.tobytes() + r.right.tobytes() + r.score.tobytes()).hexdigest()[:12]
print(json.dumps(out), flush=True)
