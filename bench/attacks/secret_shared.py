"""What two-server mode costs as the files grow: the whole protocol, in one process.

    python -m bench.attacks shared --records 1000 2000 4000

Runs ``linkage.mpc`` end to end on two files of random CLKs (density 0.3, every right CLK
a noisy copy of a left one, so some pairs pass): the dealer's offline phase, then both
servers' online phases (``run_locally`` runs them one after the other in this process, so
one server's online time is half the measured time), and the plaintext kernel on the same
pairs at the same threshold, checked to give the same pairs. The real two-process run,
with sockets, is ``python -m bench.attacks.two_server bench``.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from linkage.matching.kernel import dice_candidates_native
from linkage.mpc import (Dealer, PartyMaterial, Plan, rational_threshold, run_locally,
                         split_clks, threshold_party)

__all__ = ["shared_cost"]


def _clks(records: int, bits: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    left = rng.random((records, bits)) < 0.3
    right = left[rng.permutation(records)] ^ (rng.random((records, bits)) < 0.05)
    return _pack(left), _pack(right)


def _pack(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits, axis=1, bitorder="little").view("<u8").astype(np.uint64)


def shared_cost(records: int, bits: int = 1024, threshold: float = 0.8, seed: int = 0) -> dict:
    """One run: dealer and online seconds, bytes, and the kernel on the same pairs."""
    left, right = _clks(records, bits, np.random.default_rng(seed))
    plan = Plan(records, records, bits)
    started = time.perf_counter()
    dealer = Dealer(plan)
    corrections = list(dealer.corrections())
    dealer_s = time.perf_counter() - started
    l0, l1 = split_clks(left, bits)
    r0, r1 = split_clks(right, bits)
    rational = rational_threshold(threshold, bits)
    started = time.perf_counter()
    hits, _, sent = run_locally(
        threshold_party(0, l0, r0, rational, PartyMaterial(0, plan, dealer.seeds[0])),
        threshold_party(1, l1, r1, rational,
                        PartyMaterial(1, plan, dealer.seeds[1], iter(corrections))))
    online = (time.perf_counter() - started) / 2
    dice_candidates_native(left[:64], right[:64], 0.5)  # compiled before timing
    started = time.perf_counter()
    plain = dice_candidates_native(left, right, threshold)
    kernel_s = time.perf_counter() - started
    order = np.lexsort((plain.right, plain.left))
    if not (np.array_equal(hits.left, plain.left[order])
            and np.array_equal(hits.right, plain.right[order])):
        raise AssertionError("shared pairs differ from the kernel's")
    pairs = plan.pairs
    return {"pairs": pairs, "hits": len(hits), "dealer_s": dealer_s, "online_s": online,
            "kernel_s": kernel_s, "us_per_pair": 1e6 * online / pairs,
            "bytes_per_pair": sent / pairs,
            "dealer_bytes_per_pair": sum(c.nbytes for c in corrections) / pairs}


def main(args) -> int:
    print("| records per agency | cross pairs | dealer s | online s / server | µs / pair / server "
          "| plaintext kernel s | ratio | sent / pair / server | dealer B / pair |")
    print("|---|---|---|---|---|---|---|---|---|")
    for records in args.records:
        runs = [shared_cost(records, args.bits, seed=run) for run in range(args.runs)]
        median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(f"| {records} | {median['pairs']:,.0f} | {median['dealer_s']:.2f} "
              f"| {median['online_s']:.2f} | {median['us_per_pair']:.2f} "
              f"| {median['kernel_s']:.3f} | {median['online_s'] / median['kernel_s']:.0f}x "
              f"| {median['bytes_per_pair']:.1f} B | {median['dealer_bytes_per_pair']:.1f} |",
              flush=True)
    return 0
