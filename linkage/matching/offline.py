"""Offline 1-to-1 linkage of two encoded files, with the server's engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from linkage.batch import EncodedBatch
from linkage.errors import SchemaError, SecretError
from linkage.matching.executor import PreparedSides, plan_owner_tasks

if TYPE_CHECKING:
    from linkage.matching.engine import Executor, ProgressCallback
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
    prepared = None
    if executor is None:
        # numpy alone: done while numba loads (executor.load_kernels_in_background)
        prepared = PreparedSides(clks)
        for task in plan_owner_tasks(owners, cross_owner_only=True):
            prepared.side(task.left)
            prepared.side(task.right)
    from linkage.matching.engine import link_records  # numba: waits for that load
    result = link_records(clks, owners, threshold=threshold, max_per_owner=1,
                          cross_owner_only=True, estimates=estimates, on_progress=on_progress,
                          executor=executor, prepared=prepared)
    rows = _rows(result.grouping.labels, len(left), left.record_ids, right.record_ids,
                 result.confidence)
    return rows, result.choice


def _rows(labels: np.ndarray, left_count: int, left_ids: list[str], right_ids: list[str],
          confidence: np.ndarray) -> list[tuple[str, str, float]]:
    """(left id, right id, confidence) of each group, sorted; without a Python step per record
    (a 1-to-1 group is one left record and one right record)."""
    groups = confidence.shape[0]
    left_rows, right_rows = np.flatnonzero(labels[:left_count] >= 0), \
        np.flatnonzero(labels[left_count:] >= 0)
    if left_rows.size != groups or right_rows.size != groups:
        raise RuntimeError("a 1-to-1 group holds one record of each file")  # grouping's promise
    left_of = np.empty(groups, np.int64)
    right_of = np.empty(groups, np.int64)
    left_of[labels[left_rows]] = left_rows
    right_of[labels[left_count + right_rows]] = right_rows
    rows = list(zip(map(left_ids.__getitem__, left_of.tolist()),
                    map(right_ids.__getitem__, right_of.tolist()), confidence.tolist()))
    rows.sort()
    return rows
