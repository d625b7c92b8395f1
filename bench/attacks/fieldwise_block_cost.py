"""CPU cost of ``fieldwise_links_party`` by block size, on the same data in one run.

    python -m bench.attacks.fieldwise_block_cost

Why: the per-block arrays are K x F x pairs; the default plan's 62,500-pair blocks (250 x
250) fall out of cache. Synthetic random segments (6 fields, 576 bits), one 250 x 250 agency
pair; CPU seconds (``process_time``, both servers in one process, halved) so that a loaded
machine moves the figures less than wall time.
"""
import time
import numpy as np
from linkage.encoding.field_segments import layout_for
from linkage.mpc import Plan, run_locally, split_clks
from linkage.mpc.field_dealer import FieldDealer, FieldMaterial
from linkage.mpc.fieldwise import LocalDealer, field_columns, field_weights, fieldwise_links_party

rng = np.random.default_rng(0)
bits = [128, 128, 64, 128, 64, 64]
layout = layout_for([f"f{i}" for i in range(6)], bits)
n = 250
words = layout.bits // 64
left = rng.integers(0, 2**63, (n, words), dtype=np.uint64) & rng.integers(0, 2**63, (n, words), dtype=np.uint64)
right = left ^ (rng.integers(0, 2**63, (n, words), dtype=np.uint64) & rng.integers(0, 2**63, (n, words), dtype=np.uint64) & rng.integers(0, 2**63, (n, words), dtype=np.uint64))
table = np.tile(np.array([4.0, 3.0, 1.0, -1.0, -3.0]), (6, 1))
weights = field_weights(table, 15.0)
columns = field_columns(layout.word_starts, layout.word_counts)
for block_rows in (250, 32, 8, 4, 2, 250, 4):
    plan = Plan(n, n, layout.bits, block_rows=block_rows)
    dealer, later = FieldDealer(plan, columns), LocalDealer()
    corr = list(dealer.corrections())
    l0, l1 = split_clks(left, layout.bits); r0, r1 = split_clks(right, layout.bits)
    t = time.process_time()
    out, _, _ = run_locally(
        fieldwise_links_party(0, l0, r0, weights, FieldMaterial(0, plan, columns, dealer.seeds[0]), later.for_party(0)),
        fieldwise_links_party(1, l1, r1, weights, FieldMaterial(1, plan, columns, dealer.seeds[1], iter(corr)), later.for_party(1)))
    s = (time.process_time() - t) / 2
    print(block_rows, plan.block_rows, len(out), f"{1e6 * s / plan.pairs:.2f} us CPU/pair/server", flush=True)
