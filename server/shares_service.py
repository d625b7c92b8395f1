"""gRPC servicers of two-server mode: each method adapts a request to ``server.two_server``."""

from __future__ import annotations


from linkage.errors import BatchFormatError
from linkage_service.protos.linkage.v1 import linkage_pb2 as pb
from linkage_service.protos.linkage.v1 import shares_pb2 as spb
from linkage_service.protos.linkage.v1 import shares_pb2_grpc as spb_grpc

from . import two_server
from .auth import audit_note, current_identity
from .convert import header_from_proto
from .peer import PeerLink, Sessions
from .service import stream_run
from .storage import Store

__all__ = ["PeerServicer", "ShareServicer"]


class ShareServicer(spb_grpc.ShareServiceServicer):
    def __init__(self, store: Store, role: int | None, sessions: Sessions,
                 link: PeerLink | None):
        self._store, self._role, self._sessions, self._link = store, role, sessions, link

    def CreateShareProject(self, request, context):
        audit_note(project=request.project.name)
        wanted = request.project
        project, tokens = two_server.create_share_project(
            self._store, self._role, wanted.name, wanted.schema_json, list(wanted.agencies),
            list(wanted.stages), {h.agency: h.token_hash for h in request.agency_token_hashes},
            int(request.role))
        return pb.CreateProjectResponse(
            name=project.name, schema_fingerprint=project.schema_fingerprint,
            tokens=[pb.AgencyToken(agency=a, token=t) for a, t in tokens.items()])

    def SubmitShares(self, request_iterator, context):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise BatchFormatError("A share upload must start with its header message.")
        header = header_from_proto(first.header.batch)
        audit_note(project=header.project)

        def chunks():
            for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise BatchFormatError("Only one header is allowed per upload.")
                chunk = message.chunk
                yield (int(chunk.first_record), list(chunk.record_ids), list(chunk.shares),
                       [(a.entity_type, a.case_ref, a.stage) for a in chunk.attributes]
                       or None)

        batch_id, records, already = two_server.submit_shares(
            self._store, current_identity(), self._role, header, int(first.header.share),
            chunks())
        audit_note(records=records, already_stored=int(already))
        return pb.SubmitBatchResponse(batch_id=batch_id, records_accepted=records,
                                      agency=current_identity().name, already_stored=already)

    def PlanShareRun(self, request, context):
        plan = two_server.plan_share_run(self._store, self._sessions, self._link, self._role,
                                         request.project, request.threshold)
        audit_note(pairs=sum(p.left_rows * p.right_rows for p in plan.pairs))
        return plan

    def DeliverMaterial(self, request_iterator, context):
        run, received = two_server.receive_material(self._sessions, self._role,
                                                    request_iterator)
        audit_note(material_bytes=received)
        return spb.MaterialReceipt(run=run, bytes=received)

    def RunShares(self, request, context):
        """Run in a worker thread and stream its progress, as ``RunLinkage`` does, and the
        run's requests for hit material to the dealer."""
        def asking(send):
            def ask(wanted):
                if isinstance(wanted, spb.LaterMaterialBatch):  # a field-wise run's
                    send(spb.ShareRunEvent(later_material=wanted))
                else:
                    send(spb.ShareRunEvent(hit_material=wanted))
            return ask

        yield from stream_run(context, lambda progress, send: two_server.run_shares(
            self._store, self._sessions, self._link, self._role, request.run, progress,
            asking(send)), wrap=lambda progress: spb.ShareRunEvent(progress=progress))


class PeerServicer(spb_grpc.PeerServiceServicer):
    def __init__(self, store: Store, role: int | None, sessions: Sessions):
        self._store, self._role, self._sessions = store, role, sessions

    def AgreePlan(self, request, context):
        audit_note(project=request.project)
        return spb.PlanAgreed(run=two_server.agree_plan(self._store, self._sessions,
                                                        self._role, request))

    def Compare(self, request_iterator, context):
        yield from two_server.compare_as_second(self._sessions, self._role, request_iterator)
