"""Offline 1-to-1 linkage of two encoded files, with the server's engine."""

from __future__ import annotations

import numpy as np

from linkage.batch import EncodedBatch
from linkage.matching.engine import Executor, ProgressCallback, link_records
from linkage.errors import SchemaError, SecretError
from linkage.matching.threshold import ThresholdChoice

__all__ = ["check_compatible", "match_batches"]


def check_compatible(left: EncodedBatch, right: EncodedBatch) -> None:
    """Refuse to compare batches encoded under different schemas or secrets.

    Raises:
        SchemaError: different CLK lengths or schema fingerprints.
        SecretError: different key check values.
    """
    if left.clk_bits != right.clk_bits:
        raise SchemaError(f"The files hold CLKs of different lengths ({left.clk_bits} and "
                          f"{right.clk_bits} bits): they were encoded with different schemas.")
    if left.schema_fingerprint and right.schema_fingerprint and \
            left.schema_fingerprint != right.schema_fingerprint:
        raise SchemaError("The files were encoded with different linkage schemas.")
    if left.key_check and right.key_check and left.key_check != right.key_check:
        raise SecretError("The files were encoded with different secrets; they cannot match.")


def match_batches(left: EncodedBatch, right: EncodedBatch, threshold: float | None, *,
                  estimates: bool = False, on_progress: ProgressCallback | None = None,
                  executor: Executor | None = None
                  ) -> tuple[list[tuple[str, str, float]], ThresholdChoice]:
    """Link two batches 1-to-1; returns (left id, right id, confidence) rows and the threshold.

    With a numeric ``threshold`` and no ``estimates`` no score model is fitted
    and a row's confidence is its Dice score; otherwise it is the model's match
    probability. ``executor`` says where the comparisons run (``None``: in this
    process; e.g. a ``DaskExecutor``): every executor gives the same rows.
    """
    check_compatible(left, right)
    clks = np.concatenate([left.clks, right.clks])
    owners = np.concatenate([np.zeros(len(left), np.int64), np.ones(len(right), np.int64)])
    result = link_records(clks, owners, threshold=threshold, max_per_owner=1,
                          cross_owner_only=True, estimates=estimates, on_progress=on_progress,
                          executor=executor)
    rows = []
    for label, members in enumerate(result.grouping.members()):
        first, second = sorted(members.tolist())
        rows.append((left.record_ids[first], right.record_ids[second - len(left)],
                     float(result.confidence[label])))
    rows.sort()
    return rows, result.choice
