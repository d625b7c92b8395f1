"""Proto messages <-> domain values: the only module in server/ that builds messages."""

from __future__ import annotations

import json
import re

from linkage.errors import InvalidRequestError, RunStateError
from linkage.matching.run_summary import RunSummary
from linkage_service.protos.linkage.v1 import linkage_pb2 as pb

from .operations import BatchHeaderInfo, FollowUpView, ProjectReport, RecordHit

__all__ = [
    "follow_up_to_proto",
    "header_from_proto",
    "hit_to_proto",
    "report_page",
    "report_to_proto",
    "summary_to_proto",
]


def header_from_proto(header: pb.BatchHeader) -> BatchHeaderInfo:
    return BatchHeaderInfo(header.project, header.schema_fingerprint, header.key_check,
                           int(header.clk_bits), int(header.record_count), header.batch_id,
                           header.content_hash, header.entity_type, header.deduplicated)


def summary_to_proto(summary: RunSummary) -> pb.RunSummary:
    """The contract's message of a summary (its fields are ``RunSummary.CONTRACT_FIELDS``)."""
    return pb.RunSummary(**summary.contract_values())


def follow_up_to_proto(view: FollowUpView) -> pb.FollowUp:
    return pb.FollowUp(id=view.id, group=view.group, requested_by=view.requested_by,
                       agency=view.agency, status=view.status, note=view.note,
                       answer_note=view.answer_note)


def hit_to_proto(hit: RecordHit) -> pb.RecordResult:
    return pb.RecordResult(record=hit.record, group=hit.group, agencies=hit.agencies,
                           confidence=hit.confidence,
                           duplicate_in_own_agency=hit.duplicate_in_own_agency,
                           follow_ups=[follow_up_to_proto(f) for f in hit.follow_ups])


def report_to_proto(report: ProjectReport) -> pb.Report:
    return pb.Report(
        project=report.project,
        summary=summary_to_proto(report.summary),
        agencies=[pb.AgencyStats(agency=a.agency, records=a.records, batches=a.batches,
                                 records_with_hits=a.records_with_hits,
                                 duplicate_records=a.duplicate_records)
                  for a in report.agencies],
        agency_pairs=[pb.AgencyPairStats(agency_a=a, agency_b=b, shared_groups=n)
                      for a, b, n in report.agency_pairs],
        groups=[pb.GroupSummary(id=g.id, agencies=g.agencies, size=g.size,
                                confidence=g.confidence, review=g.review,
                                review_note=g.review_note, needs_review=g.needs_review,
                                follow_ups=[follow_up_to_proto(f) for f in g.follow_ups])
                for g in report.groups],
        histogram=[pb.HistogramBin(low=low, high=high, count=count)
                   for low, high, count in report.histogram],
        estimated_precision=report.estimated_precision,
        estimated_recall=report.estimated_recall,
        network_json=json.dumps(report.network),
    )


def report_page(report: pb.Report, page_token: str, page_bytes: int) -> pb.Report:
    """One page of a report, so no reply outgrows the message limit: the groups from the
    token's offset as many as fit in ``page_bytes`` (at least one), then as much of
    ``network_json`` as still fits (clients concatenate the pieces). The first page carries
    everything else too; later pages only the project, the run, the groups and the piece.

    Raises:
        InvalidRequestError: a malformed token. RunStateError: a new run has replaced the one
            the token was issued for (start again from the first page).
    """
    run = report.summary.run
    group_offset = network_offset = 0
    if page_token:
        found = re.fullmatch(r"(\d{1,12}):(\d{1,12}):(\d{1,15})", page_token)
        if found is None:
            raise InvalidRequestError("The page token is not one this server issued; leave it "
                                      "empty for the first page.")
        if int(found.group(1)) != run:
            raise RunStateError(f"Run #{run} replaced the run this page token belongs to; "
                                "read the report again from the first page.")
        group_offset, network_offset = int(found.group(2)), int(found.group(3))
    groups, network = list(report.groups), report.network_json
    page = pb.Report()
    if not page_token:
        page.CopyFrom(report)
        del page.groups[:]
        page.network_json = ""
    else:
        page.project = report.project
        page.summary.run = run
    page.groups_total = len(groups)
    used = page.ByteSize() + 64
    end = group_offset
    while end < len(groups):
        size = groups[end].ByteSize() + 8
        if used + size > page_bytes and (end > group_offset or used > page_bytes // 2):
            break
        used += size
        end += 1
    page.groups.extend(groups[group_offset:end])
    network_end = network_offset
    if end == len(groups):
        network_end = min(len(network), network_offset + max(page_bytes - used, 1024))
        page.network_json = network[network_offset:network_end]
    if end < len(groups) or network_end < len(network):
        page.next_page_token = f"{run}:{end}:{network_end}"
    return page
