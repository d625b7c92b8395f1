"""What the protocol change costs: Dice on CLKs secret-shared between two non-colluding servers.

    python -m bench.attacks shared --records 1000 2000

Every transformation an agency applies to all of its records alike keeps
their mutual similarities, and the similarity graph is all the graph attack
needs. So the fix has to take the graph away from the server: each agency
splits every CLK bit vector ``x`` into two additive shares in Z_{2^16}
(``x = x0 + x1``; each share alone is uniformly random) and sends one to each
of two matching servers run by different operators who do not collude.
Inner products (common bits) are computed only for the pairs linkage needs
(records of *different* agencies) with Beaver's multiplication triples, in
the matrix form: a dealer (a third, offline party, or an oblivious-transfer
or HE offline phase) hands out shares of random ``A`` (n x L), ``B``
(m x L) and ``C = A B^T``; the servers open ``E = X - A`` and ``F = Y - B``
once per record (uniform, so they reveal nothing), and each computes its
share of ``X Y^T = C + E B^T + A F^T + E F^T`` locally. Popcounts are linear
in the bit shares, so ``2 q <x,y> - p (|x| + |y|) >= 0`` (Dice >= p/q) is a
shared value whose sign a secure comparison turns into the hit/no-hit bit,
the only thing revealed.

This prototype measures the multiplication (the dominant, quadratic part) in
numpy: exact integer matrix products through float64 BLAS (entries < 2^16
and L <= 2048 keep every partial sum below 2^53), the check that the two
shares add up to the true common-bit counts, the bytes each server receives,
and the plaintext kernel on the same pairs for comparison (at threshold 0.7:
every pair is compared, few are reported, as in a real run). The secure
comparison is **not** implemented or measured here.
"""

from __future__ import annotations

import time

import numpy as np

from linkage.kernel import dice_candidates_native

__all__ = ["beaver_products", "share", "shared_cost"]

_RING = 1 << 16


def share(bits: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Additive shares in Z_{2^16} of a 0/1 matrix: each share alone is uniform."""
    first = rng.integers(0, _RING, size=bits.shape, dtype=np.uint16)
    return first, (bits.astype(np.uint16) - first)


def _product_mod(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left @ right.T`` mod 2^16, exact: float64 BLAS with every partial sum below 2^53."""
    if left.shape[1] > 2048:
        raise ValueError("more than 2048 bits would overflow float64's exact integers")
    product = left.astype(np.float64) @ right.astype(np.float64).T
    return np.mod(product, _RING).astype(np.uint16)


def beaver_products(x_shares, y_shares, rng: np.random.Generator):
    """Both servers' shares of ``X Y^T`` (common bits of every cross pair), and the traffic.

    Returns ``(z0, z1, seconds_dealer, seconds_online, bytes_per_server)``: the
    online seconds are for *one* server (both do the same work in parallel).
    """
    (x0, x1), (y0, y1) = x_shares, y_shares
    started = time.perf_counter()
    a = rng.integers(0, _RING, size=x0.shape, dtype=np.uint16)
    b = rng.integers(0, _RING, size=y0.shape, dtype=np.uint16)
    c = _product_mod(a, b)
    a0, a1 = _share_ring(a, rng)
    b0, b1 = _share_ring(b, rng)
    c0, c1 = _share_ring(c, rng)
    dealer = time.perf_counter() - started
    # Opening: each server sends its shares of E = X - A and F = Y - B to the other.
    e = (x0 - a0) + (x1 - a1)
    f = (y0 - b0) + (y1 - b1)
    started = time.perf_counter()
    z0 = c0 + _product_mod(e, b0) + _product_mod(a0, f) + _product_mod(e, f)
    online = time.perf_counter() - started
    z1 = c1 + _product_mod(e, b1) + _product_mod(a1, f)
    received = 2 * (e.size + f.size) + 2 * c0.size + 2 * (a0.size + b0.size)
    return z0, z1, dealer, online, received


def _share_ring(values: np.ndarray, rng: np.random.Generator):
    """Additive shares of ring elements."""
    first = rng.integers(0, _RING, size=values.shape, dtype=np.uint16)
    return first, values - first


def shared_cost(records: int, bits: int = 1024, seed: int = 0) -> dict:
    """Two agencies of ``records`` random CLKs: shared products, checked, timed."""
    rng = np.random.default_rng(seed)
    left = (rng.random((records, bits)) < 0.3).astype(np.uint8)
    right = (rng.random((records, bits)) < 0.3).astype(np.uint8)
    z0, z1, dealer, online, received = beaver_products(share(left, rng), share(right, rng), rng)
    common = (z0 + z1).astype(np.int64)
    assert np.array_equal(common, left.astype(np.int64) @ right.astype(np.int64).T)
    packed_l = np.packbits(left, axis=1, bitorder="little").view("<u8")
    packed_r = np.packbits(right, axis=1, bitorder="little").view("<u8")
    dice_candidates_native(packed_l[:64], packed_r[:64], 0.0)  # compile before timing
    started = time.perf_counter()
    dice_candidates_native(packed_l, packed_r, 0.7)  # every pair compared, few reported
    plain = time.perf_counter() - started
    pairs = records * records
    return {"records": records, "bits": bits, "pairs": pairs,
            "online_s_per_server": online, "dealer_s": dealer, "plaintext_kernel_s": plain,
            "MB_per_server": received / 1e6, "bytes_per_pair": received / pairs}


def main(args) -> int:
    print("| records per agency | cross pairs | online s / server | dealer s "
          "| plaintext kernel s | MB received / server | bytes / pair |")
    print("|---|---|---|---|---|---|---|")
    for records in args.records:
        r = shared_cost(records, args.bits)
        print(f"| {records} | {r['pairs']:,} | {r['online_s_per_server']:.2f} "
              f"| {r['dealer_s']:.2f} | {r['plaintext_kernel_s']:.3f} "
              f"| {r['MB_per_server']:.1f} | {r['bytes_per_pair']:.1f} |", flush=True)
    return 0
