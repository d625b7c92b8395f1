"""What a run found, as one typed value: stored as JSON, sent as the contract's message.

``RunSummary`` is the only shape of a run summary. The store keeps
``to_json()`` and reads it back with ``from_json()``, which also reads the
dictionaries earlier versions stored (missing keys take their defaults, keys
no longer used are ignored), so existing projects keep their reports. The
contract's ``RunSummary`` message carries ``CONTRACT_FIELDS``: the server
fills it from ``contract_values()`` and the client reads it back with
``from_contract_values()`` (this module imports no protobuf, so the core
stays free of it); ``client_view()`` is the dictionary the CLI prints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = ["EntityTypeSummary", "RunSummary"]


@dataclass(frozen=True)
class EntityTypeSummary:
    """One entity type's part of a run: each type has its own threshold and model."""

    records: int = 0
    threshold: float = 0.0
    threshold_reason: str = ""
    groups: int = 0
    reviews_used_accepted: int = 0
    reviews_used_rejected: int = 0
    #: The type's confidences are match probabilities (a score model was fitted); else
    #: they are weakest Dice scores (see ``linkage.matching.review``).
    modelled: bool = False
    groups_to_review: int = 0

    @classmethod
    def from_json(cls, document: Mapping[str, Any], modelled_by_default: bool
                  ) -> EntityTypeSummary:
        """Read a stored entry; entries before ``modelled`` was kept take the run's answer."""
        return cls(records=int(document.get("records", 0)),
                   threshold=float(document.get("threshold", 0.0)),
                   threshold_reason=str(document.get("threshold_reason", "")),
                   groups=int(document.get("groups", 0)),
                   reviews_used_accepted=int(document.get("reviews_used_accepted", 0)),
                   reviews_used_rejected=int(document.get("reviews_used_rejected", 0)),
                   modelled=bool(document.get("modelled", modelled_by_default)),
                   groups_to_review=int(document.get("groups_to_review", 0)))


@dataclass(frozen=True)
class RunSummary:
    """A finished run: its settings, what it found, and the report's score data.

    Agencies are named by their store ids (the report turns them into names).
    """

    threshold: float = 0.0
    threshold_reason: str = ""
    records: int = 0
    candidate_pairs: int = 0
    groups: int = 0
    cross_agency_groups: int = 0
    seconds: float = 0.0
    new_records: int = 0
    blocking: str = ""
    groups_to_review: int = 0
    reviews_used_accepted: int = 0
    reviews_used_rejected: int = 0
    #: The run's number in its project (0 until the store numbers it).
    run: int = 0
    #: The latest run stood: nothing new, same settings and reviews, no work done.
    reused: bool = False
    # -- what decides whether a later run may reuse this one
    threshold_setting: str = "auto"
    blocking_setting: str = "auto"
    estimates_setting: bool = False
    reviews_digest: str = ""
    # -- the report's data
    estimated_precision: float = 0.0
    estimated_recall: float = 0.0
    entity_types: Mapping[str, EntityTypeSummary] = field(default_factory=dict)
    records_by_agency: Mapping[int, int] = field(default_factory=dict)
    batches_by_agency: Mapping[int, int] = field(default_factory=dict)
    rejected_links_broken: int = 0
    deduplicated_agencies: tuple[int, ...] = ()
    #: (low, high, count) bins of the primary type's candidate scores.
    histogram: tuple[tuple[float, float, int], ...] = ()
    #: (threshold, expected precision, expected recall) of the primary type's model.
    quality_curve: tuple[tuple[float, float, float], ...] = ()
    #: Per group key of a field-wise type, why it was linked (``linkage.analysis.explain``).
    waterfalls: Mapping[str, dict] = field(default_factory=dict)
    #: (probability cut-off, expected precision, expected recall) when the primary type is
    #: field-wise (its threshold is a probability, not a point on the Dice axis).
    probability_curve: tuple[tuple[float, float, float], ...] = ()

    #: The fields the contract's RunSummary message carries (same names there).
    CONTRACT_FIELDS: ClassVar[tuple[str, ...]] = (
        "run", "threshold", "threshold_reason", "records", "candidate_pairs", "groups",
        "cross_agency_groups", "seconds", "new_records", "reused", "blocking",
        "groups_to_review", "reviews_used_accepted", "reviews_used_rejected")

    def replace(self, **changes) -> RunSummary:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    # -- the store's JSON -------------------------------------------------------------------

    def to_json(self) -> dict:
        """A JSON-ready dictionary (what the store keeps); ``from_json`` reads it back.

        ``run`` and ``reused`` are left out: the store numbers its runs, and a reuse is
        a property of one reply, not of the stored run.
        """
        return {
            "threshold": self.threshold, "threshold_reason": self.threshold_reason,
            "records": self.records, "candidate_pairs": self.candidate_pairs,
            "groups": self.groups, "cross_agency_groups": self.cross_agency_groups,
            "seconds": self.seconds, "new_records": self.new_records,
            "blocking": self.blocking, "groups_to_review": self.groups_to_review,
            "reviews_used_accepted": self.reviews_used_accepted,
            "reviews_used_rejected": self.reviews_used_rejected,
            "threshold_setting": self.threshold_setting,
            "blocking_setting": self.blocking_setting,
            "estimates_setting": self.estimates_setting,
            "reviews_digest": self.reviews_digest,
            "estimated_precision": self.estimated_precision,
            "estimated_recall": self.estimated_recall,
            "entity_types": {name: dataclasses.asdict(entry)
                             for name, entry in self.entity_types.items()},
            "records_by_agency": {str(a): n for a, n in self.records_by_agency.items()},
            "batches_by_agency": {str(a): n for a, n in self.batches_by_agency.items()},
            "rejected_links_broken": self.rejected_links_broken,
            "deduplicated_agencies": [str(a) for a in self.deduplicated_agencies],
            "histogram": [list(b) for b in self.histogram],
            "quality_curve": [list(p) for p in self.quality_curve],
            "waterfalls": dict(self.waterfalls),
            "probability_curve": [list(p) for p in self.probability_curve],
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> RunSummary:
        """Read a stored summary, this version's or an earlier one's.

        Earlier versions kept no ``modelled`` per entity type and decided "needs
        review" from the estimated precision alone; their types count as modelled
        exactly when that precision is set, so their reports flag what they flagged.
        """
        modelled = bool(document.get("estimated_precision"))
        return cls(
            threshold=float(document.get("threshold", 0.0)),
            threshold_reason=str(document.get("threshold_reason", "")),
            records=int(document.get("records", 0)),
            candidate_pairs=int(document.get("candidate_pairs", 0)),
            groups=int(document.get("groups", 0)),
            cross_agency_groups=int(document.get("cross_agency_groups", 0)),
            seconds=float(document.get("seconds", 0.0)),
            new_records=int(document.get("new_records", 0)),
            blocking=str(document.get("blocking", "")),
            groups_to_review=int(document.get("groups_to_review", 0)),
            reviews_used_accepted=int(document.get("reviews_used_accepted", 0)),
            reviews_used_rejected=int(document.get("reviews_used_rejected", 0)),
            run=int(document.get("run", 0)),
            reused=bool(document.get("reused", False)),
            threshold_setting=str(document.get("threshold_setting", "auto")),
            blocking_setting=str(document.get("blocking_setting", "auto")),
            estimates_setting=bool(document.get("estimates_setting", False)),
            reviews_digest=str(document.get("reviews_digest", "")),
            estimated_precision=float(document.get("estimated_precision") or 0.0),
            estimated_recall=float(document.get("estimated_recall") or 0.0),
            entity_types={name: EntityTypeSummary.from_json(entry, modelled)
                          for name, entry in (document.get("entity_types") or {}).items()},
            records_by_agency={int(a): int(n) for a, n in
                               (document.get("records_by_agency") or {}).items()},
            batches_by_agency={int(a): int(n) for a, n in
                               (document.get("batches_by_agency") or {}).items()},
            rejected_links_broken=int(document.get("rejected_links_broken", 0)),
            deduplicated_agencies=tuple(int(a) for a in
                                        document.get("deduplicated_agencies") or ()),
            histogram=tuple((float(low), float(high), int(count))
                            for low, high, count in document.get("histogram") or ()),
            quality_curve=tuple((float(t), float(p), float(r))
                                for t, p, r in document.get("quality_curve") or ()),
            waterfalls=dict(document.get("waterfalls") or {}),
            probability_curve=tuple((float(t), float(p), float(r))
                                    for t, p, r in document.get("probability_curve") or ()),
        )

    # -- the contract's message ---------------------------------------------------------------

    def contract_values(self) -> dict[str, Any]:
        """The values of the contract's RunSummary message, by field name."""
        return {name: getattr(self, name) for name in self.CONTRACT_FIELDS}

    @classmethod
    def from_contract_values(cls, values: Mapping[str, Any]) -> RunSummary:
        """A summary from the contract's fields (the rest take their defaults)."""
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        converters = {"int": int, "float": float, "str": str, "bool": bool}
        return cls(**{name: converters[kinds[name]](values[name])
                      for name in cls.CONTRACT_FIELDS if name in values})

    def client_view(self) -> dict:
        """The dictionary clients show and print (``linkage run`` writes it as JSON)."""
        return {"run": self.run, "threshold": round(self.threshold, 4),
                "threshold_reason": self.threshold_reason, "records": self.records,
                "candidate_pairs": self.candidate_pairs, "groups": self.groups,
                "cross_agency_groups": self.cross_agency_groups,
                "seconds": round(self.seconds, 3), "new_records": self.new_records,
                "reused": self.reused, "blocking": self.blocking,
                "groups_to_review": self.groups_to_review,
                "reviews_used": {"accepted": self.reviews_used_accepted,
                                 "rejected": self.reviews_used_rejected}}
