"""The pure core of the linkage service: arrays and dataclasses in, arrays and dataclasses out.

Nothing here talks to the network, a database or a terminal; ``server`` and
``client`` are the edges that do.
"""

from .batch import EncodedBatch, read_batch, write_batch
from .candidates import CandidatePairs, candidate_pairs, candidates_reference, dice
from .engine import LinkageResult, link_records
from .errors import LinkageError
from .grouping import Grouping, greedy_groups
from .schema import LinkageSchema, load_schema

__all__ = [
    "CandidatePairs",
    "EncodedBatch",
    "Grouping",
    "LinkageError",
    "LinkageResult",
    "LinkageSchema",
    "candidate_pairs",
    "candidates_reference",
    "dice",
    "greedy_groups",
    "link_records",
    "load_schema",
    "read_batch",
    "write_batch",
]
