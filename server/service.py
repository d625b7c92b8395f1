"""gRPC servicers: each method adapts a request to a function in ``operations``."""

from __future__ import annotations

import queue
import threading
import time

from linkage.errors import BatchFormatError, ServerBusyError
from linkage_service.protos.linkage.v1 import linkage_pb2 as pb
from linkage_service.protos.linkage.v1 import linkage_pb2_grpc as pb_grpc

from . import operations
from .auth import audit_note, current_identity
from .convert import (
    follow_up_to_proto,
    header_from_proto,
    hit_to_proto,
    report_page,
    report_to_proto,
    summary_to_proto,
)
from .storage import Store

__all__ = ["AgencyServicer", "CoordinatorServicer", "OperatorServicer"]



def stream_run(context, run, wrap=None):
    """Call ``run(progress)`` on a worker thread; yield its progress events as
    ``RunProgress`` messages while it works, then its summary (audited) or its error.

    The worker thread lets a run outlive a slow reader: events queue up, and a client that
    went away stops receiving them while the run still finishes and is stored. With
    ``wrap`` (a stream of another message type, e.g. two-server mode's), each RunProgress
    is yielded as ``wrap(progress)``, and ``run(progress, send)`` may also queue messages of
    that type with ``send``.
    """
    events: queue.Queue = queue.Queue()
    outcome: dict = {}

    def work():
        def progress(stage, done, total):
            events.put((stage, done, total))
        try:
            outcome["summary"] = (run(progress) if wrap is None
                                  else run(progress, lambda message: events.put([message])))
        except BaseException as error:  # handed to the RPC thread below
            outcome["error"] = error
        finally:
            events.put(None)

    out = wrap or (lambda message: message)
    worker = threading.Thread(target=work, name="linkage-run", daemon=True)
    worker.start()
    while (event := events.get()) is not None:
        if context.is_active():
            yield (event[0] if isinstance(event, list) else
                   out(pb.RunProgress(stage=event[0], done=event[1], total=event[2])))
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    summary = outcome["summary"]
    audit_note(records=summary.records, groups=summary.groups)
    yield out(pb.RunProgress(stage="done", summary=summary_to_proto(summary)))


class AgencyServicer(pb_grpc.AgencyServiceServicer):
    def __init__(self, store: Store, max_concurrent_uploads: int, *,
                 allow_secret_reuse: bool = False, uploads_per_agency: int = 2,
                 unfinished_per_agency: int = 4, upload_expiry_seconds: float = 7 * 86400.0):
        self._store = store
        self._unfinished_per_agency = unfinished_per_agency
        self._upload_expiry_seconds = upload_expiry_seconds
        self._uploads_per_agency = uploads_per_agency
        self._agency_uploads: dict[int, int] = {}
        self._agency_uploads_lock = threading.Lock()
        self._allow_secret_reuse = allow_secret_reuse
        self._upload_slots = threading.BoundedSemaphore(max_concurrent_uploads)
        self._max_uploads = max_concurrent_uploads

    def SubmitBatch(self, request_iterator, context):
        agency = current_identity().agency_id
        with self._agency_uploads_lock:
            if self._agency_uploads.get(agency, 0) >= self._uploads_per_agency:
                raise ServerBusyError(
                    f"This agency is sending {self._uploads_per_agency} uploads already, the "
                    "most one agency may send at once; retry when one has finished.")
            self._agency_uploads[agency] = self._agency_uploads.get(agency, 0) + 1
        try:
            return self._submit_batch(request_iterator)
        finally:
            with self._agency_uploads_lock:
                self._agency_uploads[agency] -= 1

    def _submit_batch(self, request_iterator):
        if not self._upload_slots.acquire(blocking=False):
            raise ServerBusyError(f"The server is receiving {self._max_uploads} uploads already; "
                                  "retry in a few seconds ('linkage submit' does so itself).")
        try:
            first = next(request_iterator, None)
            if first is None or first.WhichOneof("part") != "header":
                raise BatchFormatError("An upload must start with its header message.")
            header = header_from_proto(first.header)
            audit_note(project=header.project)

            def chunks():
                for message in request_iterator:
                    if message.WhichOneof("part") != "chunk":
                        raise BatchFormatError("Only one header is allowed per upload.")
                    chunk = message.chunk
                    attributes = [(a.entity_type, a.case_ref, a.stage)
                                  for a in chunk.attributes] or None
                    yield (int(chunk.first_record), list(chunk.record_ids), list(chunk.clks),
                           attributes)

            outcome = operations.submit_batch(
                self._store, current_identity(), header, chunks(),
                allow_secret_reuse=self._allow_secret_reuse,
                unfinished_per_agency=self._unfinished_per_agency,
                upload_expiry_seconds=self._upload_expiry_seconds)
        finally:
            self._upload_slots.release()
        audit_note(records=outcome.records, already_stored=int(outcome.already_stored))
        return pb.SubmitBatchResponse(batch_id=outcome.batch_id, records_accepted=outcome.records,
                                      agency=current_identity().name,
                                      already_stored=outcome.already_stored)

    def GetUploadStatus(self, request, context):
        progress = operations.upload_status(self._store, current_identity(), request.project,
                                            request.batch_id)
        return pb.UploadStatus(batch_id=progress.batch_id,
                               records_received=progress.records_received,
                               committed=progress.committed, agency=current_identity().name)

    def GetResults(self, request, context):
        for hit in operations.agency_results(self._store, current_identity(), request.project):
            yield hit_to_proto(hit)

    def OpenFollowUp(self, request, context):
        return _open_follow_up(self._store, request)

    def AnswerFollowUp(self, request, context):
        return follow_up_to_proto(operations.answer_follow_up(
            self._store, current_identity(), request.project, request.follow_up,
            request.decision, request.note))

    def ListFollowUps(self, request, context):
        return _list_follow_ups(self._store, request)

    def WithdrawBatch(self, request, context):
        return _withdraw_batch(self._store, request)


def _list_follow_ups(store: Store, request) -> pb.ListFollowUpsResponse:
    views = operations.list_follow_ups(store, current_identity(), request.project)
    audit_note(project=request.project, follow_ups=len(views))
    return pb.ListFollowUpsResponse(follow_ups=[follow_up_to_proto(v) for v in views])


def _withdraw_batch(store: Store, request) -> pb.WithdrawBatchResponse:
    withdrawn = operations.withdraw_batch(store, current_identity(), request.project,
                                          request.batch_id)
    audit_note(records=withdrawn.records)
    return pb.WithdrawBatchResponse(batch_id=withdrawn.batch_id,
                                    records_withdrawn=withdrawn.records,
                                    unfinished_upload=withdrawn.unfinished_upload)


def _open_follow_up(store: Store, request) -> pb.OpenFollowUpResponse:
    views = operations.open_follow_up(store, current_identity(), request.project, request.group,
                                      request.note)
    return pb.OpenFollowUpResponse(follow_ups=[follow_up_to_proto(v) for v in views])


class CoordinatorServicer(pb_grpc.CoordinatorServiceServicer):
    def __init__(self, store: Store, *, page_bytes: int = 1024 * 1024, executor=None):
        self._store = store
        self._page_bytes = page_bytes
        self._executor = executor  # where runs compare CLKs; None: in this process

    def CreateProject(self, request, context):
        audit_note(project=request.name)
        project, tokens = operations.create_project(
            self._store, request.name, request.schema_json, list(request.agencies),
            list(request.stages), {e.entity_type: e.schema_json for e in request.entity_schemas})
        return pb.CreateProjectResponse(
            name=project.name, schema_fingerprint=project.schema_fingerprint,
            tokens=[pb.AgencyToken(agency=a, token=t) for a, t in tokens.items()])

    def ListProjects(self, request, context):
        summaries = []
        for project in self._store.projects():
            batches = self._store.batches(project.id)
            summaries.append(pb.ProjectSummary(
                name=project.name, schema_fingerprint=project.schema_fingerprint,
                agencies=[a.name for a in self._store.agencies(project.id)],
                batches=len(batches), records=sum(b.record_count for b in batches),
                stages=project.stages))
        return pb.ListProjectsResponse(projects=summaries)

    def RunLinkage(self, request, context):
        """Run in a worker thread and stream its progress events as they come."""
        yield from stream_run(context, lambda progress: operations.run_linkage(
            self._store, request.project, request.threshold, progress, request.blocking,
            estimates=request.estimates, executor=self._executor))

    def GetReport(self, request, context):
        report = report_to_proto(operations.project_report(self._store, request.project))
        return report_page(report, request.page_token, self._page_bytes)

    def OpenFollowUp(self, request, context):
        return _open_follow_up(self._store, request)

    def WithdrawBatch(self, request, context):
        return _withdraw_batch(self._store, request)

    def PurgeProject(self, request, context):
        records, blocks = operations.purge_project(self._store, request.project)
        audit_note(records=records)
        return pb.PurgeProjectResponse(project=request.project, records_deleted=records,
                                       pair_blocks_deleted=blocks)

    def ReadAuditLog(self, request, context):
        yield from _audit_entries(self._store, request)

    def ReviewGroup(self, request, context):
        decision = operations.review_group(self._store, request.project, request.group,
                                           request.decision, request.note)
        return pb.ReviewGroupResponse(group=request.group, decision=decision)

    def SetProjectStages(self, request, context):
        audit_note(project=request.project)
        stages = operations.set_project_stages(self._store, request.project,
                                               list(request.stages))
        return pb.SetProjectStagesResponse(project=request.project, stages=stages)

    def DeleteProject(self, request, context):
        audit_note(project=request.project)
        batches, records = operations.delete_project(self._store, request.project)
        audit_note(batches=batches, records=records)
        return pb.DeleteProjectResponse(project=request.project, batches_deleted=batches,
                                        records_deleted=records)

    def ReissueAgencyToken(self, request, context):
        audit_note(project=request.project)
        token = operations.reissue_agency_token(self._store, request.project, request.agency)
        return pb.AgencyToken(agency=request.agency, token=token)

    def ListFollowUps(self, request, context):
        return _list_follow_ups(self._store, request)


class OperatorServicer(pb_grpc.OperatorServiceServicer):
    def __init__(self, store: Store):
        self._store = store
        self._started = time.monotonic()

    def GetMetrics(self, request, context):
        counts = self._store.metrics()
        return pb.Metrics(uptime_seconds=time.monotonic() - self._started, **counts)

    def ReadAuditLog(self, request, context):
        yield from _audit_entries(self._store, request)


def _audit_entries(store: Store, request):
    for entry in store.audit_entries(project=request.project, caller=request.caller,
                                     method=request.method, outcome=request.outcome,
                                     since=request.since, from_sequence=request.from_sequence):
        yield pb.AuditEntry(**vars(entry))
