"""A small client library over the gRPC stubs: what the CLI and the demo use.

Proto messages stop here: callers get plain dicts and dataclasses.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from linkage.audit import AuditEntry
from linkage.batch import EncodedBatch, content_hash, upload_batch_id
from linkage.clks import clks_to_bytes
from linkage.errors import InvalidRequestError, NotFoundError
from linkage.matching.run_summary import RunSummary
from linkage_service.protos.linkage.v1 import linkage_pb2 as pb
from linkage_service.protos.linkage.v1 import linkage_pb2_grpc as pb_grpc

__all__ = ["CHUNK_BYTES", "LinkageClient", "PemSource", "Receipt", "ServerUnreachable"]

CHUNK_BYTES = 1024 * 1024  # well under gRPC's 4 MiB message limit
DEFAULT_TIMEOUT = 600.0
RETRIES = 8
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
PemSource = str | Path | bytes  # a PEM file's path, or its content
CONNECT_TIMEOUT = 5.0  # how long the first call waits for a connection before giving up


class ServerUnreachable(grpc.RpcError):
    """No connection could be made within the connect deadline (status UNAVAILABLE).

    Raised by the first call instead of letting it (and ``submit``'s retries) wait for
    the call deadline, so every command fails within seconds with one message.
    """

    def __init__(self, server: str, seconds: float):
        super().__init__()
        self._details = (f"no connection to {server} within {seconds:g} s (nothing listening, "
                         "a firewall, or a TLS handshake that failed)")

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return self._details

    def __str__(self) -> str:
        return self._details


@dataclass(frozen=True)
class Receipt:
    """What the server stored."""

    batch_id: str
    records_accepted: int
    agency: str
    already_stored: bool = False
    resumed_from: int = 0


class LinkageClient:
    """Talks to one linkage server with one bearer token.

    With ``ca`` (the server's CA) the channel is TLS; ``cert`` and ``key`` (the caller's client
    certificate and key, required by a mutual-TLS server) go with it. Each is a path or PEM
    bytes. Without ``ca`` the channel is plaintext, which the server accepts on loopback only.
    Calls raise ``grpc.RpcError`` carrying the server's status and message.

    Raises:
        InvalidRequestError: ``cert`` without ``key`` (or the reverse), either without ``ca``,
            or a file that cannot be read.
    """

    def __init__(self, server: str, token: str, *, timeout: float = DEFAULT_TIMEOUT,
                 ca: PemSource | None = None, cert: PemSource | None = None,
                 key: PemSource | None = None, connect_timeout: float = CONNECT_TIMEOUT):
        self._channel = _open_channel(server, ca, cert, key)
        self._server = server
        self._connect_timeout = connect_timeout
        self._connected = False
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._timeout = timeout
        self.agency = pb_grpc.AgencyServiceStub(self._channel)
        self.coordinator = pb_grpc.CoordinatorServiceStub(self._channel)
        self.operator = pb_grpc.OperatorServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "LinkageClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _call(self, method, request):
        self._ensure_connected()
        return method(request, metadata=self._metadata, timeout=self._timeout)

    def _ensure_connected(self) -> None:
        """Before the first call, wait up to the connect deadline for the channel to connect
        or fail. A failed connection (refused, TLS handshake rejected) lets the call fail at
        once with gRPC's own reason; a connection still pending at the deadline (an address
        that drops packets) raises ServerUnreachable instead of waiting for the call
        deadline."""
        if self._connected:
            return
        settled = threading.Event()
        seen: list[grpc.ChannelConnectivity] = []

        def watch(state: grpc.ChannelConnectivity) -> None:
            seen.append(state)
            if state in (grpc.ChannelConnectivity.READY,
                         grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                         grpc.ChannelConnectivity.SHUTDOWN):
                settled.set()

        self._channel.subscribe(watch, try_to_connect=True)
        try:
            settled.wait(self._connect_timeout)
        finally:
            self._channel.unsubscribe(watch)
        if not settled.is_set():
            raise ServerUnreachable(self._server, self._connect_timeout)
        self._connected = seen[-1] == grpc.ChannelConnectivity.READY

    # -- agency ---------------------------------------------------------------------------------

    def submit(self, project: str, batch: EncodedBatch,
               on_progress: Callable[[int], None] | None = None, *,
               retries: int = RETRIES, backoff: float = 0.5,
               chunk_records: int | None = None, deduplicated: bool = False) -> Receipt:
        """Upload a batch in chunks, resuming where the server's holdings end.

        The batch id is derived from the project and the content hash, so submitting the same
        batch again (after a dropped connection, a server restart or by
        mistake) resumes or finds it stored. RESOURCE_EXHAUSTED and UNAVAILABLE
        are retried with exponential backoff. ``on_progress(n)`` reports n more
        records held by the server; ``chunk_records`` overrides the chunk size;
        ``deduplicated`` states that the agency's file holds each entity once.
        """
        clks = clks_to_bytes(batch.clks)
        digest = content_hash(batch.record_ids, clks, batch.attributes)
        batch_id = upload_batch_id(project, digest)
        header = pb.BatchHeader(
            project=project, schema_fingerprint=batch.schema_fingerprint or "",
            key_check=batch.key_check or "", clk_bits=batch.clk_bits, record_count=len(batch),
            batch_id=batch_id, content_hash=digest, entity_type=batch.entity_type,
            deduplicated=deduplicated)
        per_chunk = chunk_records or max(1, CHUNK_BYTES // (batch.clk_bits // 8 + 64))
        reported = 0

        def advance(held: int) -> None:
            nonlocal reported
            if on_progress and held > reported:
                on_progress(held - reported)
            reported = max(reported, held)

        def messages(start: int):
            yield pb.SubmitBatchRequest(header=header)
            for first in range(start, len(batch), per_chunk):
                stop = min(first + per_chunk, len(batch))
                attributes = [pb.RecordAttributes(entity_type=a.entity_type, case_ref=a.case_ref,
                                                  stage=a.stage)
                              for a in (batch.attributes or [])[first:stop]]
                yield pb.SubmitBatchRequest(chunk=pb.RecordChunk(
                    record_ids=batch.record_ids[first:stop], clks=clks[first:stop],
                    first_record=first, attributes=attributes))
                advance(stop)

        attempt = 0
        while True:
            try:
                status = self._call(self.agency.GetUploadStatus, pb.GetUploadStatusRequest(
                    project=project, batch_id=batch_id))
                start = int(status.records_received)
                advance(start)
                if status.committed:
                    return Receipt(batch_id, start, status.agency, already_stored=True)
                response = self._call(self.agency.SubmitBatch, messages(start))
                advance(len(batch))
                return Receipt(response.batch_id, response.records_accepted, response.agency,
                               response.already_stored, start)
            except grpc.RpcError as error:
                never_connected = (error.code() == grpc.StatusCode.UNAVAILABLE
                                   and not self._connected)
                if never_connected or error.code() not in RETRYABLE or attempt >= retries:
                    raise  # retries are for a server that was reached, then went away
                time.sleep(min(backoff * 2 ** attempt, 30.0) * (0.5 + random.random()))
                attempt += 1

    def results(self, project: str) -> Iterator[dict]:
        """The caller's own records with hits, as dicts in the documented JSON shape."""
        for result in self._call(self.agency.GetResults, pb.GetResultsRequest(project=project)):
            yield {
                "record": result.record,
                "group": result.group,
                "agencies": list(result.agencies),
                "confidence": round(result.confidence, 6),
                "duplicate_in_own_agency": result.duplicate_in_own_agency,
                "follow_ups": [_follow_up_dict(f) for f in result.follow_ups],
            }

    def open_follow_up(self, project: str, group: str, note: str = "", *,
                       role: str = "agency") -> list[dict]:
        """Ask the other agencies of a group for a follow-up, through the service of the
        caller's ``role`` ("agency" or "coordinator"): the caller knows its role, so no call
        is made to a service it may not use."""
        request = pb.OpenFollowUpRequest(project=project, group=group, note=note)
        service = self.coordinator if role == "coordinator" else self.agency
        return [_follow_up_dict(f) for f in self._call(service.OpenFollowUp, request).follow_ups]

    def list_follow_ups(self, project: str, *, role: str = "agency") -> list[dict]:
        """Follow-ups with their answers: an agency's own (asked by or addressed to it), or
        every one of the project for a coordinator."""
        service = self.coordinator if role == "coordinator" else self.agency
        response = self._call(service.ListFollowUps, pb.ListFollowUpsRequest(project=project))
        return [_follow_up_dict(f) for f in response.follow_ups]

    def answer_follow_up(self, project: str, follow_up: str, decision: str,
                         note: str = "") -> dict:
        """Approve or decline a follow-up request addressed to the caller's agency."""
        return _follow_up_dict(self._call(self.agency.AnswerFollowUp, pb.AnswerFollowUpRequest(
            project=project, follow_up=follow_up, decision=decision, note=note)))

    # -- coordinator ----------------------------------------------------------------------------

    def create_project(self, name: str, schema_json: str, agencies: list[str],
                       stages: list[str] | None = None,
                       entity_schemas: dict[str, str] | None = None) -> dict[str, str]:
        """Create a project; returns {agency: token}. ``schema_json`` is the person schema;
        ``entity_schemas`` maps further entity types to their schemas."""
        response = self._call(self.coordinator.CreateProject, pb.CreateProjectRequest(
            name=name, schema_json=schema_json, agencies=agencies, stages=stages or [],
            entity_schemas=[pb.EntitySchema(entity_type=t, schema_json=text)
                            for t, text in (entity_schemas or {}).items()]))
        return {t.agency: t.token for t in response.tokens}

    def list_projects(self) -> list[dict]:
        response = self._call(self.coordinator.ListProjects, pb.ListProjectsRequest())
        return [{"name": p.name, "schema_fingerprint": p.schema_fingerprint,
                 "agencies": list(p.agencies), "batches": p.batches, "records": p.records,
                 "stages": list(p.stages)}
                for p in response.projects]

    def run(self, project: str, threshold: str = "auto",
            on_progress: Callable[[str, int, int], None] | None = None,
            blocking: str = "auto", *, estimates: bool = False) -> dict:
        """Run linkage; returns the run summary as a dict."""
        summary = None
        for event in self._call(self.coordinator.RunLinkage,
                                pb.RunLinkageRequest(project=project, threshold=threshold,
                                                     blocking=blocking, estimates=estimates)):
            if event.HasField("summary"):
                summary = event.summary
            elif on_progress:
                on_progress(event.stage, event.done, event.total)
        if summary is None:
            raise RuntimeError("The server ended the run without a summary.")
        return _summary_dict(summary)

    def report(self, project: str) -> dict:
        """The coordinator report in the documented JSON shape."""
        report = self._call(self.coordinator.GetReport, pb.GetReportRequest(project=project))
        token = report.next_page_token
        network = [report.network_json]
        while token:  # the server pages the report so no reply outgrows the message limit
            page = self._call(self.coordinator.GetReport,
                              pb.GetReportRequest(project=project, page_token=token))
            report.groups.extend(page.groups)
            network.append(page.network_json)
            token = page.next_page_token
        report.network_json = "".join(network)
        summary = _summary_dict(report.summary)
        pairs = {f"{p.agency_a}|{p.agency_b}": p.shared_groups for p in report.agency_pairs}
        return {
            "project": report.project,
            "run": summary["run"],
            "threshold": summary["threshold"],
            "threshold_reason": summary["threshold_reason"],
            "estimated_precision": round(report.estimated_precision, 4),
            "estimated_recall": round(report.estimated_recall, 4),
            "summary": summary,
            "agencies": {a.agency: {"records": a.records, "batches": a.batches,
                                    "records_with_hits": a.records_with_hits,
                                    "duplicate_records": a.duplicate_records}
                         for a in report.agencies},
            "agency_pairs": pairs,
            "groups": [{"id": g.id, "agencies": dict(sorted(g.agencies.items())), "size": g.size,
                        "confidence": round(g.confidence, 6), "review": g.review or None,
                        "review_note": g.review_note or None,
                        "needs_review": g.needs_review,
                        "follow_ups": [_follow_up_dict(f) for f in g.follow_ups]}
                       for g in report.groups],
            "histogram": [{"low": round(b.low, 4), "high": round(b.high, 4), "count": b.count}
                          for b in report.histogram],
            "network": json.loads(report.network_json) if report.network_json else None,
        }

    def review(self, project: str, group: str, decision: str, note: str = "") -> str:
        response = self._call(self.coordinator.ReviewGroup, pb.ReviewGroupRequest(
            project=project, group=group, decision=decision, note=note))
        return response.decision

    def withdraw_batch(self, project: str, batch_id: str, *, role: str = "agency") -> dict:
        """Withdraw a batch no run has used yet (agency: its own; ``role="coordinator"``: any);
        returns what was removed."""
        service = self.coordinator if role == "coordinator" else self.agency
        response = self._call(service.WithdrawBatch, pb.WithdrawBatchRequest(
            project=project, batch_id=batch_id))
        return {"batch_id": response.batch_id, "records_withdrawn": response.records_withdrawn,
                "unfinished_upload": response.unfinished_upload}

    def purge(self, project: str) -> dict:
        """Delete a linked project's CLKs on the server; reports and results stay."""
        response = self._call(self.coordinator.PurgeProject,
                              pb.PurgeProjectRequest(project=project))
        return {"project": response.project, "records_deleted": response.records_deleted,
                "pair_blocks_deleted": response.pair_blocks_deleted}

    def set_stages(self, project: str, stages: list[str]) -> list[str]:
        """Replace a project's stage vocabulary; returns the stages now in force."""
        response = self._call(self.coordinator.SetProjectStages, pb.SetProjectStagesRequest(
            project=project, stages=stages))
        return list(response.stages)

    def project_stages(self, project: str) -> list[str]:
        """A project's stage vocabulary (from the project list)."""
        for item in self.list_projects():
            if item["name"] == project:
                return item["stages"]
        raise NotFoundError(f"No project named {project!r}; 'linkage project list' shows them.")

    def delete_project(self, project: str) -> dict:
        """Delete a project no run has touched (a misconfigured one)."""
        response = self._call(self.coordinator.DeleteProject,
                              pb.DeleteProjectRequest(project=project))
        return {"project": response.project, "batches_deleted": response.batches_deleted,
                "records_deleted": response.records_deleted}

    def reissue_token(self, project: str, agency: str) -> str:
        """A new token for one agency; the old one stops working at once."""
        return self._call(self.coordinator.ReissueAgencyToken, pb.ReissueAgencyTokenRequest(
            project=project, agency=agency)).token

    # -- operator -------------------------------------------------------------------------------

    def metrics(self) -> dict:
        """Server counts (operator token)."""
        response = self._call(self.operator.GetMetrics, pb.GetMetricsRequest())
        return {"projects": response.projects, "batches": response.batches,
                "records": response.records, "runs": response.runs,
                "audit_entries": response.audit_entries, "calls": dict(sorted(
                    response.calls.items())),
                "uptime_seconds": round(response.uptime_seconds, 1),
                "unfinished_uploads": response.unfinished_uploads,
                "unfinished_upload_bytes": response.unfinished_upload_bytes}

    def audit_log(self, *, role: str = "operator", **filters) -> Iterator[AuditEntry]:
        """Audit entries, oldest first; ``filters`` are ReadAuditLogRequest fields. Operators
        and coordinators may read it, each through their own service (``role``)."""
        service = self.coordinator if role == "coordinator" else self.operator
        for entry in self._call(service.ReadAuditLog, pb.ReadAuditLogRequest(**filters)):
            yield AuditEntry(entry.sequence, entry.time, entry.caller, entry.role,
                             entry.project, entry.method, entry.outcome, entry.counts_json,
                             entry.previous_hash, entry.entry_hash)


def _follow_up_dict(follow_up: pb.FollowUp) -> dict:
    return {"id": follow_up.id, "group": follow_up.group, "requested_by": follow_up.requested_by,
            "agency": follow_up.agency, "status": follow_up.status, "note": follow_up.note,
            "answer_note": follow_up.answer_note}


def _summary_dict(summary: pb.RunSummary) -> dict:
    """The run summary as clients show it: read through the one ``RunSummary`` type."""
    return RunSummary.from_contract_values(
        {name: getattr(summary, name) for name in RunSummary.CONTRACT_FIELDS}).client_view()


def _open_channel(server: str, ca: PemSource | None, cert: PemSource | None,
                  key: PemSource | None) -> grpc.Channel:
    """A TLS channel when ``ca`` is given (with the client certificate if any), else plaintext."""
    if (cert is None) != (key is None):
        raise InvalidRequestError("A client certificate needs its key: give both cert and key "
                                  "(--cert and --key), or neither.")
    if ca is None:
        if cert is not None:
            raise InvalidRequestError("A client certificate needs the server's CA too (--ca).")
        return grpc.insecure_channel(server)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_pem(ca, "CA"), private_key=_pem(key, "client key"),
        certificate_chain=_pem(cert, "client certificate"))
    return grpc.secure_channel(server, credentials)


def _pem(source: PemSource | None, what: str) -> bytes | None:
    if source is None or isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as error:
        raise InvalidRequestError(f"Cannot read the {what} file {source}: "
                                  f"{error.strerror}.") from None
