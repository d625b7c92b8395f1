"""The client side of two-server mode: what an agency and the coordinator's client do.

* an agency splits its CLKs locally (``linkage.mpc.split_clks``, fresh randomness from the
  OS each time) and sends share 0 to server 0 and share 1 to server 1: neither gets a CLK;
* the coordinator creates the project on both servers (server 0 issues the agency tokens,
  server 1 stores their hashes), and ``run`` plans on server 0, then **deals**: a fresh
  ``linkage.mpc.Dealer`` per agency pair, server 0's seed to server 0, server 1's seed and
  corrections to server 1 (with ``auto`` also a ``BandDealer`` per pair for the sample
  histogram), and mid-run a ``HitDealer`` per agency pair for its hits' bands, when server 0
  asks for it. The coordinator's client is the dealer because it is neither
  server and already talks to both; what it makes is random and independent of the data
  (docs/privacy.md says what that trusts it with).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator

import grpc
import numpy as np

from linkage.batch import EncodedBatch, content_hash, upload_batch_id
from linkage.errors import PeerError
from linkage.mpc import BandDealer, Dealer, HitDealer, Plan, split_clks
from linkage.mpc.field_dealer import BitDealer, FieldDealer
from linkage.mpc.fieldwise import name_swap_products
from linkage_service.protos.linkage.v1 import linkage_pb2 as pb
from linkage_service.protos.linkage.v1 import shares_pb2 as spb
from linkage_service.protos.linkage.v1 import shares_pb2_grpc as spb_grpc

from .api import CHUNK_BYTES, LinkageClient, Receipt, _summary_dict

__all__ = ["create_share_project", "run_shares", "submit_shares"]

#: How often a mid-run delivery refused as too many calls at once is tried again.
_BUSY_RETRIES = 6


def _stub(client: LinkageClient) -> spb_grpc.ShareServiceStub:
    return spb_grpc.ShareServiceStub(client._channel)


def create_share_project(first: LinkageClient, second: LinkageClient, name: str,
                         schema_json: str, agencies: list[str],
                         stages: list[str] | None = None) -> dict[str, str]:
    """Create a two-server project on server 0 and then server 1; returns {agency: token}.

    Server 1 gets only the SHA-256 of each token, so an agency uses one token for both.
    """
    project = pb.CreateProjectRequest(name=name, schema_json=schema_json, agencies=agencies,
                                      stages=stages or [])
    response = first._call(_stub(first).CreateShareProject,
                           spb.CreateShareProjectRequest(project=project, role=0))
    tokens = {t.agency: t.token for t in response.tokens}
    hashes = [spb.AgencyTokenHash(agency=a, token_hash=hashlib.sha256(t.encode()).hexdigest())
              for a, t in tokens.items()]
    second._call(_stub(second).CreateShareProject, spb.CreateShareProjectRequest(
        project=project, role=1, agency_token_hashes=hashes))
    return tokens


def _share_bytes(share: np.ndarray) -> list[bytes]:
    rows = np.ascontiguousarray(share.astype("<u4"))
    return [row.tobytes() for row in rows]


def submit_shares(first: LinkageClient, second: LinkageClient, project: str,
                  batch: EncodedBatch, *, deduplicated: bool = False,
                  on_progress: Callable[[int], None] | None = None) -> tuple[Receipt, Receipt]:
    """Split the batch's CLKs and upload one share to each server; returns both receipts.

    The records' attributes (entity type, case reference, stage) go to server 0 only, as a
    normal batch sends them: server 0 groups the hits, stores the run and draws the report's
    network from them. Server 1 only compares shares and stores nothing of a run, so it gets
    the batch's entity type (in the header, to check the schema) and nothing more.

    Raises:
        ClkError: an empty CLK (it encodes nothing; leave the record out).
    """
    shares = split_clks(batch.clks, batch.clk_bits)
    batch_id = upload_batch_id(project, content_hash(batch.record_ids,
                                                     _share_bytes(shares[0])))
    receipts = []
    for role, client in ((0, first), (1, second)):
        values = _share_bytes(shares[role])
        attributes = batch.attributes if role == 0 else None
        header = pb.BatchHeader(
            project=project, schema_fingerprint=batch.schema_fingerprint or "",
            key_check=batch.key_check or "", clk_bits=batch.clk_bits, record_count=len(batch),
            batch_id=batch_id, content_hash=content_hash(batch.record_ids, values, attributes),
            entity_type=batch.entity_type, deduplicated=deduplicated)
        per_chunk = max(1, CHUNK_BYTES // (4 * batch.clk_bits + 64 + (64 if attributes else 0)))

        def messages(header=header, values=values, role=role, attributes=attributes):
            yield spb.SubmitSharesRequest(header=spb.ShareHeader(batch=header, share=role))
            for start in range(0, len(values), per_chunk):
                stop = start + per_chunk
                yield spb.SubmitSharesRequest(chunk=spb.ShareChunk(
                    first_record=start, record_ids=batch.record_ids[start:stop],
                    shares=values[start:stop],
                    attributes=[pb.RecordAttributes(entity_type=a.entity_type,
                                                    case_ref=a.case_ref, stage=a.stage)
                                for a in (attributes or [])[start:stop]]))

        response = client._call(_stub(client).SubmitShares, messages())
        if on_progress:
            on_progress(len(batch) if role == 1 else 0)
        receipts.append(Receipt(response.batch_id, response.records_accepted, response.agency,
                                response.already_stored))
    return receipts[0], receipts[1]


def _corrections_chunks(index: int, corrections, field: str) -> Iterator[spb.MaterialPart]:
    """Server 1's corrections as chunks of ``CHUNK_BYTES`` (the last one shorter) in
    ``field``. Each chunk is sliced from the serialized part once: cutting chunks off the
    front of one growing buffer moved the rest of it every time (a quarter of the dealer's
    CPU in a field-wise run, whose parts are tens of megabytes)."""
    def chunk(data: bytes) -> spb.MaterialPart:
        return spb.MaterialPart(chunk=spb.MaterialChunk(pair=index, **{field: data}))

    pending = bytearray()
    for correction in corrections:
        for name in correction.__dataclass_fields__:
            part = getattr(correction, name)
            data = memoryview(np.ascontiguousarray(part).astype(
                part.dtype.newbyteorder("<")).tobytes())
            start = 0
            if pending:
                start = min(len(data), CHUNK_BYTES - len(pending))
                pending.extend(data[:start])
                if len(pending) < CHUNK_BYTES:
                    continue
                yield chunk(bytes(pending))
                pending = bytearray()
            while len(data) - start >= CHUNK_BYTES:
                yield chunk(bytes(data[start:start + CHUNK_BYTES]))
                start += CHUNK_BYTES
            pending.extend(data[start:])
    if pending:
        yield chunk(bytes(pending))


def _material(plan: spb.ShareRunPlan, party: int, dealers: list[Dealer],
              samples: list[BandDealer] | None = None) -> Iterator[spb.MaterialPart]:
    yield spb.MaterialPart(header=spb.MaterialHeader(run=plan.run, party=party))
    for index, dealer in enumerate(dealers):
        sample = samples[index] if samples else None
        yield spb.MaterialPart(chunk=spb.MaterialChunk(
            pair=index, seed=dealer.seeds[party],
            sample_seed=sample.seeds[party] if sample else b""))
        if party == 0:
            continue
        yield from _corrections_chunks(index, dealer.corrections(), "corrections")
        if sample is not None:
            yield from _corrections_chunks(index, sample.corrections(), "sample_corrections")


def _hit_material(plan: spb.ShareRunPlan, party: int, request: spb.HitMaterialRequest,
                  dealer: HitDealer) -> Iterator[spb.MaterialPart]:
    yield spb.MaterialPart(header=spb.MaterialHeader(run=plan.run, party=party, hits=request))
    yield spb.MaterialPart(chunk=spb.MaterialChunk(pair=request.pair, seed=dealer.seeds[party]))
    if party == 1:
        yield from _corrections_chunks(request.pair, [dealer.correction()], "corrections")


def _field_dealers(plan: spb.ShareRunPlan) -> tuple[list[FieldDealer], list]:
    """A field-wise plan's scan dealers: each pair's links, and its sample where it has one
    (cross pairs: sampled rows x the right agency; within: drawn rows x the agency's rest)."""
    columns = tuple((int(c.start), int(c.stop)) for c in plan.field_columns)
    crossed = name_swap_products(list(plan.field_names))
    links, samples = [], []
    for p in plan.pairs:
        links.append(FieldDealer(Plan(p.left_rows, p.right_rows, plan.clk_bits, p.block_rows),
                                 columns, crossed=crossed))
        right = p.right_rows - (p.sample_rows if p.left_agency == p.right_agency else 0)
        samples.append(FieldDealer(Plan(p.sample_rows, right, plan.clk_bits,
                                        p.sample_block_rows), columns, crossed=crossed)
                       if p.sample_rows else None)
    return links, samples


def _later_material(plan: spb.ShareRunPlan, party: int, made: list
                    ) -> Iterator[spb.MaterialPart]:
    """One delivery stream of several later materials: (request, dealer, correction) each."""
    for request, dealer, correction in made:
        yield spb.MaterialPart(header=spb.MaterialHeader(run=plan.run, party=party,
                                                         later=request))
        yield spb.MaterialPart(chunk=spb.MaterialChunk(pair=0, seed=dealer.seeds[party]))
        if party == 1:
            yield from _corrections_chunks(0, [correction], "corrections")


def run_shares(first: LinkageClient, second: LinkageClient, project: str, threshold: str,
               on_progress: Callable[[str, int, int], None] | None = None,
               on_plan: Callable[[spb.ShareRunPlan], None] | None = None) -> dict:
    """Plan on server 0, deal to both servers, run on server 0; returns the run summary.

    While the run goes on, server 0 asks for each agency pair's hit material once its hit
    graph is open (how many hits it has is known only then), or a field-wise run for each
    material made for counts only: this deals it to both servers. ``on_plan`` sees the plan
    (public: what is compared, and the samples' coin) before the dealing.

    Raises:
        grpc.RpcError: a server refused (e.g. 'auto' with too few pairs) or failed; a
            failure of server 1 mid-run reaches here as UNAVAILABLE from server 0, with
            nothing stored.
    """
    report = on_progress or (lambda stage, done, total: None)
    plan = first._call(_stub(first).PlanShareRun,
                       spb.PlanShareRunRequest(project=project, threshold=threshold))
    if on_plan is not None:
        on_plan(plan)
    report("dealing", 0, len(plan.pairs))
    if plan.fieldwise:
        dealers, samples = _field_dealers(plan)
    else:
        dealers = [Dealer(Plan(p.left_rows, p.right_rows, plan.clk_bits, p.block_rows))
                   for p in plan.pairs]
        # an agency's pairs with itself (left = right agency) are not in auto's sample
        samples = [BandDealer(Plan(p.sample_rows, p.right_rows, plan.clk_bits,
                                   p.sample_block_rows), len(plan.band_edges))
                   if p.sample_rows else None
                   for p in plan.pairs] if plan.band_edges else None
    for party, client in ((0, first), (1, second)):
        client._call(_stub(client).DeliverMaterial, _material(plan, party, dealers, samples))
    report("dealing", len(plan.pairs), len(plan.pairs))
    summary = None
    failed: dict[int, grpc.RpcError] = {}

    def deliver(parts) -> None:
        """Deal mid-run material to both servers. A server that refuses or has gone gets no
        more, and the run's stream goes on being read: if server 1 has gone, server 0 still
        gets its part, reaches its next exchange with server 1, finds it gone and fails the
        run with its own clear error (instead of waiting for material); that error ends the
        stream, and it is what the caller gets."""
        for party, client in ((0, first), (1, second)):
            if party in failed:
                continue
            for attempt in range(_BUSY_RETRIES + 1):
                try:
                    client._call(_stub(client).DeliverMaterial, parts(party))
                    break
                except grpc.RpcError as error:
                    code = error.code()
                    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and attempt < _BUSY_RETRIES:
                        time.sleep(0.1 * 2 ** attempt)  # the server's call rate: wait, again
                        continue
                    if code not in (grpc.StatusCode.UNAVAILABLE,
                                    grpc.StatusCode.FAILED_PRECONDITION):
                        raise  # refused: the run cannot go on, and the caller learns why
                    failed[party] = error  # gone, or its run ended: its stream says why
                    break

    for event in first._call(_stub(first).RunShares, spb.RunSharesRequest(run=plan.run)):
        if event.HasField("hit_material"):
            request = event.hit_material
            dealer = HitDealer(int(request.hits), int(request.thresholds))
            deliver(lambda party: _hit_material(plan, party, request, dealer))
        elif event.HasField("later_material"):
            made = [(request, dealer, dealer.correction()) for request, dealer in
                    ((r, BitDealer(int(r.words), int(r.dabits)) if r.bits
                      else HitDealer(int(r.count), int(r.thresholds),
                                     plane_bits=int(r.plane_bits)))
                     for r in event.later_material.requests)]
            deliver(lambda party: _later_material(plan, party, made))
        elif event.progress.HasField("summary"):
            summary = event.progress.summary
        else:
            report(event.progress.stage, event.progress.done, event.progress.total)
    if failed:
        raise failed[min(failed)]
    if summary is None:
        raise PeerError("Server 0 ended the two-server run without a summary.")
    return _summary_dict(summary)
