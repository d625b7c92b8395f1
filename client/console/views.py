"""What each page shows, shaped from what ``LinkageClient`` returns: plain dicts in, dicts out.

No Flask and no gRPC here, so the shaping is easy to test and the routes stay
a few lines each. Everything comes from the coordinator's report or the
agency's own results: group ids, agency names, counts, confidences and
pseudonymous case references, never another agency's record ids.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["HitFilter", "NetworkIndex", "all_follow_ups", "hits_csv", "review_queue",
           "split_follow_ups"]


def uncertainty(confidence: float) -> float:
    """1 where the model cannot tell (confidence 0.5), 0 where it is sure either way."""
    return round(1.0 - 2.0 * abs(confidence - 0.5), 6)


class NetworkIndex:
    """The report's entity-case network, indexed for look-ups by node."""

    def __init__(self, network: dict | None):
        network = network or {}
        self.stages: list[str] = list(network.get("stages") or [])
        self.nodes: dict[str, dict] = {n["id"]: n for n in network.get("nodes", [])}
        self.brokers: dict[str, dict] = {b["group"]: b for b in network.get("brokers", [])}
        self.edges: dict[str, list[dict]] = {}
        for edge in network.get("edges", []):
            self.edges.setdefault(edge["source"], []).append(edge)
            self.edges.setdefault(edge["target"], []).append(edge)

    def _other(self, edge: dict, node: str) -> str:
        return edge["target"] if edge["source"] == node else edge["source"]

    def evidence(self, group: str) -> dict:
        """What the network says about a group: entity type, stages, its cases per agency and
        its broker rank (empty where the group has no case references)."""
        node = self.nodes.get(group)
        broker = self.brokers.get(group)
        cases_by_agency: dict[str, int] = {}
        for edge in self.edges.get(group, []):
            cases_by_agency[edge["agency"]] = cases_by_agency.get(edge["agency"], 0) + 1
        return {
            "entity_type": node["entity_type"] if node else None,
            "stages": node["stages"] if node else [],
            "cases_by_agency": dict(sorted(cases_by_agency.items())),
            "broker_rank": broker["rank"] if broker else None,
            "broker_explanation": broker["explanation"] if broker else None,
        }

    def neighbourhood(self, group: str) -> dict | None:
        """A broker's cases (agency, stages), its cases counted by agency and stage, and the
        other entities of those cases; None for an unknown node."""
        node = self.nodes.get(group)
        if node is None or node["kind"] != "entity":
            return None
        cases = []
        by_agency_stage: dict[str, dict[str, int]] = {}
        neighbours: dict[str, dict] = {}
        for edge in sorted(self.edges.get(group, []), key=lambda e: self._other(e, group)):
            case = self._other(edge, group)
            stages = edge.get("stages") or []
            cases.append({"id": case, "agency": edge["agency"], "stages": stages})
            per_stage = by_agency_stage.setdefault(edge["agency"], {})
            for stage in stages or ["(no stage)"]:
                per_stage[stage] = per_stage.get(stage, 0) + 1
            for other_edge in self.edges.get(case, []):
                other = self._other(other_edge, case)
                if other != group and other in self.nodes:
                    entry = neighbours.setdefault(other, {
                        "id": other, "entity_type": self.nodes[other]["entity_type"],
                        "agencies": self.nodes[other]["agencies"], "shared_cases": 0,
                        "broker_rank": self.brokers.get(other, {}).get("rank")})
                    entry["shared_cases"] += 1
        broker = self.brokers.get(group, {})
        stage_order = {s: i for i, s in enumerate(self.stages)}
        stages_seen = sorted({s for per in by_agency_stage.values() for s in per},
                             key=lambda s: (stage_order.get(s, len(stage_order)), s))
        return {
            "group": group,
            "entity_type": node["entity_type"],
            "agencies": node["agencies"],
            "stages": node["stages"],
            "rank": broker.get("rank"),
            "explanation": broker.get("explanation"),
            "betweenness": broker.get("betweenness"),
            "cases": cases,
            "stage_columns": stages_seen,
            "cases_by_agency_stage": {a: by_agency_stage[a] for a in sorted(by_agency_stage)},
            "neighbours": sorted(neighbours.values(),
                                 key=lambda n: (-n["shared_cases"], n["broker_rank"] or 10**9,
                                                n["id"])),
        }


def review_queue(report: dict, index: NetworkIndex) -> tuple[list[dict], list[dict]]:
    """(groups waiting for a decision, most uncertain first; groups decided), each with the
    evidence the report holds for it."""
    waiting, decided = [], []
    for group in report["groups"]:
        if not (group["needs_review"] or group["review"]):
            continue
        item = {**group, "uncertainty": uncertainty(group["confidence"]),
                "evidence": index.evidence(group["id"])}
        (decided if group["review"] else waiting).append(item)
    waiting.sort(key=lambda g: (-g["uncertainty"], g["id"]))
    decided.sort(key=lambda g: g["id"])
    return waiting, decided


def all_follow_ups(report: dict) -> list[dict]:
    """Every follow-up on the report's groups, newest first, with the group's agencies."""
    rows = []
    for group in report["groups"]:
        for follow_up in group.get("follow_ups", []):
            rows.append({**follow_up, "group_agencies": sorted(group["agencies"]),
                         "confidence": group["confidence"]})
    return _newest_first(rows)


def _follow_up_number(follow_up_id: str) -> int:
    digits = follow_up_id.partition("-")[2]
    return int(digits) if digits.isdigit() else 0


def split_follow_ups(hits: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """(follow-ups the agency was asked to answer, follow-ups it asked for itself).

    A hit lists the *other* agencies of its group, so a follow-up addressed to an agency not
    among them is addressed to the caller; one requested by an agency not among them (and not
    by the coordinator) was requested by the caller.
    """
    asked: dict[str, dict] = {}
    requested: dict[str, dict] = {}
    for hit in hits:
        others = set(hit["agencies"])
        for follow_up in hit["follow_ups"]:
            row = {**follow_up, "group_agencies": sorted(others)}
            if follow_up["agency"] not in others:
                asked.setdefault(follow_up["id"], row)
            elif follow_up["requested_by"] not in others | {"coordinator"}:
                requested.setdefault(follow_up["id"], row)
    return _newest_first(asked.values()), _newest_first(requested.values())


def _newest_first(rows: Iterable[dict]) -> list[dict]:
    return sorted(rows, key=lambda f: -_follow_up_number(f["id"]))


@dataclass(frozen=True)
class HitFilter:
    """The agency's filters on its hits, from the page's query string."""

    agency: str = ""
    min_confidence: float = 0.0
    text: str = ""
    cross_agency_only: bool = True
    with_follow_ups: bool = False
    problems: list[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, args) -> "HitFilter":
        """Read the filters from a query string; a bad number becomes a problem, not a crash."""
        problems = []
        try:
            min_confidence = float(args.get("min_confidence") or 0.0)
        except ValueError:
            problems.append(f"'{args.get('min_confidence')}' is not a number: give the lowest "
                            "confidence as a number between 0 and 1, e.g. 0.5.")
            min_confidence = 0.0
        return cls(agency=(args.get("agency") or "").strip(), min_confidence=min_confidence,
                   text=(args.get("q") or "").strip(),
                   cross_agency_only=args.get("all") != "1",
                   with_follow_ups=args.get("follow_ups") == "1", problems=problems)

    def keep(self, hit: dict) -> bool:
        if self.cross_agency_only and not hit["agencies"]:
            return False
        if self.agency and self.agency not in hit["agencies"]:
            return False
        if hit["confidence"] < self.min_confidence:
            return False
        if self.text and self.text.lower() not in (hit["record"] + " " + hit["group"]).lower():
            return False
        return not (self.with_follow_ups and not hit["follow_ups"])


def _cell(value: str) -> str:
    """A spreadsheet cell that cannot run as a formula (CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def hits_csv(hits: Iterable[dict]) -> str:
    """The agency's hits as CSV: own record id, group, other agencies, confidence."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["record", "group", "other_agencies", "confidence",
                     "duplicate_in_own_agency", "follow_ups"])
    for hit in hits:
        writer.writerow([_cell(hit["record"]), _cell(hit["group"]),
                         _cell(";".join(hit["agencies"])), f"{hit['confidence']:.1f}",
                         "yes" if hit["duplicate_in_own_agency"] else "no",
                         _cell(";".join(f"{f['id']}:{f['status']}" for f in hit["follow_ups"]))])
    return buffer.getvalue()
