"""Linkage on secret-shared CLKs: two non-colluding servers learn only "Dice >= t" per cross pair.

Pure functions and generators, arrays in and arrays out; the transport is at the edge
(``bench/attacks/two_server.py``). Modules:

* ``ring``: additive sharing in Z_{2^32}, the agency-side splitter, exact products mod 2^32;
* ``prg``: seed expansion (AES-CTR) for shares and the dealer's seeded randomness;
* ``dealer``: the offline phase (matrix Beaver triples, comparison masks, AND triples);
* ``protocol``: one server's side of Dice-on-shares plus the secure comparison;
* ``planes``: the secure comparison on bit planes (mod 2^16 or 2^32), for the field-wise run;
* ``band_dealer`` and ``bands``: K comparisons per pair, an opened histogram of Dice bands
  and the band of linked pairs only (for ``auto`` and the 1-to-1 rule).

See docs/privacy.md ("Two-server mode") for the trust assumptions and the measurements.
"""

from .band_dealer import (BandCorrection, BandDealer, BandMaterial, HitCorrection, HitDealer,
                          band_plan, hit_material)
from .bands import (BandHits, BandThresholds, band_thresholds, bands_party, hits_party,
                    sampled_auto_party)
from .dealer import AND_ROUNDS, BlockMaterial, Correction, Dealer, PartyMaterial, Plan
from .protocol import HitPairs, RationalThreshold, rational_threshold, run_locally, threshold_party
from .ring import RING_BITS, RightOperand, matmul_mod, reconstruct, split_clks, unpack_bits

__all__ = [
    "AND_ROUNDS",
    "BandCorrection",
    "BandDealer",
    "BandHits",
    "BandMaterial",
    "BandThresholds",
    "BlockMaterial",
    "Correction",
    "Dealer",
    "HitCorrection",
    "HitDealer",
    "HitPairs",
    "PartyMaterial",
    "Plan",
    "RING_BITS",
    "RationalThreshold",
    "RightOperand",
    "band_plan",
    "band_thresholds",
    "bands_party",
    "hit_material",
    "hits_party",
    "matmul_mod",
    "rational_threshold",
    "reconstruct",
    "run_locally",
    "sampled_auto_party",
    "split_clks",
    "threshold_party",
    "unpack_bits",
]
