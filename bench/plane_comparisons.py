"""Secure comparisons on bit planes against the word layout, same values, same run.

    python -m bench.plane_comparisons                 # 2^20 values, medians of 3
    python -m bench.plane_comparisons --values 200000 --repeats 1

Why: the field-wise run on shares makes about 33 comparisons a pair; ``linkage.mpc.planes``
runs them on bit planes (mod 2^16 for the levels, mod 2^32 for the rest) where
``protocol._non_negative``'s word layout spends a 32-bit word and 5 AND rounds of two 64-bit
words on each. This times both servers of one comparison call in one process
(``run_locally``, CPU seconds halved: per server), counts the bytes server 0 sends and the
dealer's corrections to server 1, and checks that every layout decides every value as
plaintext does (exit 1 otherwise). Values are uniform in the range each ring allows
(|z| < 2^15 for mod 2^16, < 2^31 otherwise), as additive shares mod 2^32.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from linkage.mpc import HitDealer, hit_material, run_locally
from linkage.mpc.prg import new_seed, random_words
from linkage.mpc.protocol import _non_negative

LAYOUTS = (("word layout mod 2^32 (protocol)", 0, 31), ("bit planes mod 2^32", 32, 31),
           ("bit planes mod 2^16", 16, 15))


def _one(values: np.ndarray, plane_bits: int) -> tuple[float, float, int, int, bool]:
    """(dealer CPU s, per-server CPU s, bytes server 0 sent, correction bytes, exact)."""
    started = time.process_time()
    dealer = HitDealer(values.size, 1, plane_bits=plane_bits)
    correction = dealer.correction()
    dealt = time.process_time() - started
    mask = random_words(new_seed(), "values", values.shape, np.uint32)
    shares = (mask, values.astype(np.int64).astype(np.uint32) - mask)

    def side(party):
        material = hit_material(party, values.size, 1, dealer.seeds[party],
                                correction if party else None, plane_bits)
        bit = yield from _non_negative(party, shares[party][None], material)
        mine = np.packbits(bit.ravel())
        return np.unpackbits(mine ^ (yield mine), count=values.size)

    started = time.process_time()
    out, _, sent = run_locally(side(0), side(1))
    both = time.process_time() - started
    exact = bool(np.array_equal(out, (values >= 0).astype(np.uint8)))
    return dealt, both / 2, sent, correction.nbytes, exact


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=1 << 20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows, ok = [], True
    for name, plane_bits, magnitude in LAYOUTS:
        values = rng.integers(-(1 << magnitude), 1 << magnitude, args.values)
        runs = [_one(values, plane_bits) for _ in range(args.repeats)]
        ok = ok and all(run[4] for run in runs)
        rows.append((name, statistics.median(r[1] for r in runs),
                     statistics.median(r[0] for r in runs), runs[0][2], runs[0][3],
                     all(run[4] for run in runs)))
    reference = rows[0]
    print(f"{args.values:,} comparisons per call, medians of {args.repeats}\n")
    print("| layout | ns CPU per comparison per server | vs word layout | dealer ns per "
          "comparison | bytes sent per comparison | corrections per comparison (B) | "
          "exact |")
    print("|---|---|---|---|---|---|---|")
    for name, server, dealer, sent, corrections, exact in rows:
        print(f"| {name} | {1e9 * server / args.values:.1f} | "
              f"{reference[1] / server:.1f}x | {1e9 * dealer / args.values:.1f} | "
              f"{sent / args.values:.2f} | {corrections / args.values:.2f} | "
              f"{'yes' if exact else 'NO'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
