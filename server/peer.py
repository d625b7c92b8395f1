"""The channel between the two matching servers of two-server mode, and the runs they hold.

Server 0 dials server 1 over mutual TLS with its own client certificate (CN ``server-0``, OU
``server``, from the project's CA; ``linkage pki issue --role server``) and checks server 1's
server certificate against the same CA; server 1's guard refuses any other caller of
``PeerService`` (``server.auth``). On that channel the generators of
``linkage.mpc.banded_run.run_party`` exchange their messages in lock-step: server 0 sends its
opening, server 1 answers with its own. An opening larger than one gRPC message is sent in
parts. Every failure of the peer becomes a ``PeerError`` here, the one place that reads
``grpc.RpcError`` of the peer.
"""

from __future__ import annotations

import hashlib
import queue
from collections import deque
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from linkage.errors import InvalidRequestError, PeerError, RunStateError
from linkage.mpc import (BandCorrection, BandMaterial, Correction, HitCorrection,
                         PartyMaterial, Plan, hit_material)
from linkage.mpc.banded_run import BandedRun, PairShares, run_party, sample_rows
from linkage.mpc.dealer import AND_ROUNDS
from linkage.mpc.field_dealer import BitCorrection, FieldCorrection, FieldMaterial, bit_material
from linkage.mpc.fieldwise import LaterMaterial, kind_plane_bits, name_swap_products
from linkage.mpc.planes import PlaneCorrection, plane_correction_bytes, plane_words
from linkage_service.protos.linkage.v1 import shares_pb2 as spb
from linkage_service.protos.linkage.v1 import shares_pb2_grpc as spb_grpc

__all__ = ["PART_BYTES", "PeerLink", "ShareSession", "Sessions", "band_correction_bytes",
           "correction_bytes", "field_correction_bytes", "field_sample_plan",
           "hit_correction_bytes", "later_correction_bytes", "opening_parts", "peer_name",
           "plan_hash", "read_opening", "sample_plan"]

PART_BYTES = 1024 * 1024  # one Opening's data, well under the 4 MiB message limit
_MOST_SESSIONS = 8
_SESSION_SECONDS = 3600.0
_PLAN_TIMEOUT = 120.0
_RUN_TIMEOUT = 23 * 3600.0
#: How long a run waits for the dealer's hit material once it asked for it.
HIT_WAIT_SECONDS = 600.0
#: How many deliveries of a field-wise run server 0 keeps asked for before they are used
#: (four blocks of ``LINK_PAIRS_PER_BLOCK`` pairs: about 85 MB held by server 1 at most); it
#: asks again, for up to half of them at once, when half are used. 32 ran no faster.
LATER_AHEAD = 12


def peer_name(role: int) -> str:
    """The certificate CN of the server in ``role``."""
    return f"server-{role}"


def plan_hash(plan: spb.ShareRunPlan) -> str:
    return hashlib.sha256(plan.SerializeToString(deterministic=True)).hexdigest()


def correction_bytes(plan: Plan) -> int:
    """What server 1's corrections for one plan weigh (48 bytes per pair)."""
    return plan.pairs * (4 + 4 + 8 * AND_ROUNDS)


def band_correction_bytes(plan: Plan, thresholds: int) -> int:
    """Server 1's sample band corrections for one plan (4 + 48 bytes per threshold per pair)."""
    return plan.pairs * (4 + thresholds * (4 + 8 * AND_ROUNDS + 4))


def hit_correction_bytes(hits: int, thresholds: int, plane_bits: int = 0) -> int:
    """Server 1's hit corrections: 44 bytes per hit pair and threshold in the word layout;
    on bit planes ``planes.plane_correction_bytes``."""
    if plane_bits:
        return plane_correction_bytes(hits * thresholds, plane_bits)
    return hits * thresholds * (4 + 8 * AND_ROUNDS)


def field_correction_bytes(plan: Plan, products: int) -> int:
    """Server 1's field scan corrections for one plan (``4 (F + X) + 44`` bytes per pair:
    the fields' and the crossed names' products)."""
    return plan.pairs * (4 * products + 4 + 8 * AND_ROUNDS)


def later_correction_bytes(request: spb.LaterMaterialRequest) -> int:
    """Server 1's corrections for one field-wise later delivery."""
    if request.bits:
        return 8 * int(request.words) + 4 * int(request.dabits)
    return hit_correction_bytes(int(request.count), int(request.thresholds),
                                int(request.plane_bits))


def is_within(pair: spb.AgencyPairPlan) -> bool:
    """An agency's records against themselves (its within-agency pairs), not a cross pair."""
    return pair.left_agency == pair.right_agency


def sample_plan(plan: spb.ShareRunPlan, index: int) -> Plan:
    """The band plan of agency pair ``index``'s sample (``auto`` plans only)."""
    pair = plan.pairs[index]
    return Plan(int(pair.sample_rows), int(pair.right_rows), int(plan.clk_bits),
                int(pair.sample_block_rows))


def field_sample_plan(plan: spb.ShareRunPlan, index: int) -> Plan:
    """A field-wise plan's sample of pair ``index``: its sampled left rows x all right rows
    across agencies, the drawn rows x the agency's other rows within one."""
    pair = plan.pairs[index]
    right = int(pair.right_rows) - (int(pair.sample_rows) if is_within(pair) else 0)
    return Plan(int(pair.sample_rows), right, int(plan.clk_bits), int(pair.sample_block_rows))


def field_columns_of(plan: spb.ShareRunPlan) -> tuple[tuple[int, int], ...]:
    return tuple((int(c.start), int(c.stop)) for c in plan.field_columns)


def mpc_plan(plan: spb.ShareRunPlan, index: int) -> Plan:
    pair = plan.pairs[index]
    return Plan(int(pair.left_rows), int(pair.right_rows), int(plan.clk_bits),
                int(pair.block_rows))


class _Reader:
    """Little-endian arrays one after another from the dealer's bytes."""

    def __init__(self, data: bytes):
        self.view, self.offset = memoryview(data), 0

    def take(self, dtype, shape) -> np.ndarray:
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        array = np.frombuffer(self.view[self.offset:self.offset + size],
                              dtype=np.dtype(dtype).newbyteorder("<"))
        self.offset += size
        return array.astype(dtype).reshape(shape)


def _band_corrections(plan: Plan, thresholds: int, data: bytes) -> Iterator[BandCorrection]:
    """Server 1's sample band corrections from the dealer's bytes, block by block."""
    take = _Reader(data).take
    for lo, hi in plan.blocks():
        shape = (thresholds, hi - lo, plan.right_rows)
        yield BandCorrection(take(np.uint32, shape[1:]), take(np.uint32, shape),
                             take(np.uint64, (AND_ROUNDS, *shape)), take(np.uint32, shape))


def _field_corrections(plan: Plan, products: int, data: bytes) -> Iterator[FieldCorrection]:
    """Server 1's field scan corrections from the dealer's bytes, block by block (``products``:
    the fields and the crossed pairs)."""
    take = _Reader(data).take
    for lo, hi in plan.blocks():
        shape = (hi - lo, plan.right_rows)
        yield FieldCorrection(take(np.uint32, (products, *shape)), take(np.uint32, shape),
                              take(np.uint64, (AND_ROUNDS, *shape)))


def _corrections(plan: Plan, data: bytes) -> Iterator[Correction]:
    """Server 1's corrections for ``plan`` from the dealer's bytes, block by block."""
    view, offset = memoryview(data), 0

    def take(dtype, shape):
        nonlocal offset
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        array = np.frombuffer(view[offset:offset + size], dtype=np.dtype(dtype).newbyteorder("<"))
        offset += size
        return array.astype(dtype).reshape(shape)

    for lo, hi in plan.blocks():
        shape = (hi - lo, plan.right_rows)
        yield Correction(take(np.uint32, shape), take(np.uint32, shape),
                         take(np.uint64, (AND_ROUNDS, *shape)))


@dataclass
class ShareSession:
    """A planned two-server run held in memory until it runs: the plan, this server's shares
    of each agency, and the dealer's material as it arrives."""

    role: int
    plan: spb.ShareRunPlan
    shares: dict[str, np.ndarray]          # agency name -> records x clk_bits uint32
    positions: dict[str, np.ndarray]       # agency name -> positions in the loaded records
    created: float = field(default_factory=time.monotonic)
    seeds: dict[int, bytes] = field(default_factory=dict)
    corrections: dict[int, bytearray] = field(default_factory=dict)
    material_complete: bool = False
    #: Server 0 only: every loaded record's agency id and record id, by position.
    record_agency: np.ndarray | None = None
    record_ids: list[str] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)
    #: ``auto``: the sample band material's seeds and (server 1) corrections, per pair.
    sample_seeds: dict[int, bytes] = field(default_factory=dict)
    sample_corrections: dict[int, bytearray] = field(default_factory=dict)
    #: Hit material as delivered mid-run: pair -> (hits, thresholds, seed, corrections).
    hit_deliveries: dict[int, tuple[int, int, bytes, bytes]] = field(default_factory=dict)
    #: A field-wise run's later material as delivered: sequence -> (request, seed, corrections).
    later_deliveries: dict[int, tuple[spb.LaterMaterialRequest, bytes, bytes]] = field(
        default_factory=dict)
    started: bool = False
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def auto(self) -> bool:
        return len(self.plan.band_edges) > 0

    def start(self) -> None:
        """Mark the run begun (material is used once). Raises RunStateError if it was."""
        with self._arrived:
            if self.started:
                raise RunStateError(f"Run {self.plan.run} is already running or ran: dealer "
                                    "material is used once; run 'linkage run' again.")
            self.started = True

    def deliver_hits(self, pair: int, hits: int, thresholds: int, seed: bytes,
                     corrections: bytes) -> None:
        with self._arrived:
            if pair in self.hit_deliveries:
                raise InvalidRequestError(f"Hit material for agency pair {pair} came twice.")
            self.hit_deliveries[pair] = (hits, thresholds, seed, corrections)
            self._arrived.notify_all()

    def hit_block(self, pair: int, hits: int, thresholds: int,
                  timeout: float = HIT_WAIT_SECONDS):
        """This server's hit material for ``pair`` once the dealer delivered it.

        Raises:
            RunStateError: it did not arrive in time. PeerError: it is for another count.
        """
        with self._arrived:
            if not self._arrived.wait_for(lambda: pair in self.hit_deliveries, timeout):
                raise RunStateError(f"The dealer (the coordinator's client) did not deliver "
                                    f"the hit material of agency pair {pair} within "
                                    f"{timeout:.0f} s; nothing of this run was stored.")
            count, higher, seed, data = self.hit_deliveries[pair]
        if (count, higher) != (hits, thresholds):
            raise PeerError(f"The hit material of agency pair {pair} is for {count} hits x "
                            f"{higher} thresholds; this server found {hits} x {thresholds}.")
        return self._hit_material(hits, thresholds, seed, data)

    def _hit_material(self, count: int, thresholds: int, seed: bytes, data: bytes,
                      plane_bits: int = 0):
        """This server's comparison material for ``count`` values x ``thresholds`` from a
        delivery (server 1 parses its corrections: mask bits, then AND products)."""
        correction = None
        if self.role == 1 and plane_bits:
            take, words = _Reader(data).take, plane_words(count * thresholds)
            correction = PlaneCorrection(take(np.uint64, (plane_bits, words)),
                                         take(np.uint64, (2, plane_bits - 1, words)))
        elif self.role == 1:
            take = _Reader(data).take
            correction = HitCorrection(take(np.uint32, (thresholds, count)),
                                       take(np.uint64, (AND_ROUNDS, thresholds, count)))
        return hit_material(self.role, count, thresholds, seed, correction, plane_bits)

    def deliver_later(self, request: spb.LaterMaterialRequest, seed: bytes,
                      corrections: bytes) -> None:
        with self._arrived:
            if int(request.sequence) in self.later_deliveries:
                raise InvalidRequestError(f"Material {request.sequence} of this run came twice.")
            self.later_deliveries[int(request.sequence)] = (request, seed, corrections)
            self._arrived.notify_all()

    def _later(self, request: spb.LaterMaterialRequest, timeout: float):
        """This server's share of later delivery ``request.sequence`` once it arrived."""
        sequence = int(request.sequence)
        with self._arrived:
            if not self._arrived.wait_for(lambda: sequence in self.later_deliveries, timeout):
                raise RunStateError(f"The dealer (the coordinator's client) did not deliver "
                                    f"material {sequence} of this field-wise run within "
                                    f"{timeout:.0f} s; nothing of this run was stored.")
            delivered, seed, data = self.later_deliveries.pop(sequence)
        fields = ("bits", "count", "thresholds", "words", "dabits", "plane_bits")
        if any(getattr(delivered, name) != getattr(request, name) for name in fields):
            raise PeerError(f"Material {sequence} of this field-wise run was made for other "
                            "counts than this server needs.")
        if not request.bits:
            return self._hit_material(int(request.count), int(request.thresholds), seed, data,
                                      int(request.plane_bits))
        words, dabits = int(request.words), int(request.dabits)
        correction = None
        if self.role == 1:
            take = _Reader(data).take
            correction = BitCorrection(take(np.uint64, (words,)), take(np.uint32, (dabits,)))
        return bit_material(self.role, words, dabits, seed, correction)

    def later_material(self, ask=None, timeout: float = HIT_WAIT_SECONDS) -> LaterMaterial:
        """The run's ``LaterMaterial`` (``_RunLater``): each call is the next delivery in
        order; server 0 asks the dealer for it (``ask(request)``), ahead where it can."""
        later = _RunLater(self, ask, timeout)
        return LaterMaterial(
            lambda count, thresholds, plane_bits=0: later.take(**_comparisons(
                count, thresholds, plane_bits)),
            lambda words, dabits: later.take(bits=True, words=words, dabits=dabits),
            later.expect)

    def check_material(self) -> None:
        """Raises RunStateError unless the dealer delivered all of this server's material."""
        if not self.material_complete:
            raise RunStateError(f"Server {self.role} has no complete dealer material for run "
                                f"{self.plan.run}: deliver it again (linkage run does this).")

    def material(self, index: int) -> PartyMaterial:
        plan = mpc_plan(self.plan, index)
        corrections = (_corrections(plan, bytes(self.corrections[index]))
                       if self.role == 1 else None)
        return PartyMaterial(self.role, plan, self.seeds[index], corrections)

    def protocol(self, choose=None, ask=None, on_pair=None):
        """This server's generator for the whole run (``linkage.mpc.banded_run.run_party``).

        ``choose``: server 0's ``auto`` rule; ``ask(pair, hits, thresholds)``: server 0 asks
        the dealer for hit material, which both servers then wait for.
        """
        pairs = []
        for index, pair in enumerate(self.plan.pairs):
            left, right = self.shares[pair.left_agency], self.shares[pair.right_agency]
            rows = sample = None
            if self.auto and not is_within(pair):
                rows = sample_rows(int(pair.left_rows), self.plan.sample_seed, index)
                thresholds = len(self.plan.band_edges)
                corrections = (_band_corrections(sample_plan(self.plan, index), thresholds,
                                                 bytes(self.sample_corrections[index]))
                               if self.role == 1 else None)
                sample = BandMaterial(self.role, sample_plan(self.plan, index), thresholds,
                                      self.sample_seeds[index], corrections)
            pairs.append(PairShares(left, right, self.material(index), rows, sample,
                                    sampled=not is_within(pair)))

        def hit_block(index, hits, thresholds):
            if ask is not None:
                ask(index, hits, thresholds)
            return self.hit_block(index, hits, thresholds)

        threshold = None if self.auto else float(self.plan.threshold)
        return run_party(self.role, pairs, int(self.plan.clk_bits), threshold, choose,
                         hit_block, on_pair)

    def field_protocol(self, ask=None, on_progress=None):
        """This server's generator for a field-wise run (``linkage.mpc.field_run``); ``ask``:
        server 0 asks the dealer for each later delivery, which both servers then wait for;
        ``on_progress`` as ``field_run_party``'s."""
        from linkage.mpc.banded_run import MATCHES_PER_SAMPLED_RECORD, SERVICE_EDGES
        from linkage.mpc.bands import band_thresholds
        from linkage.mpc.field_run import (FieldRunShares, LinkShares, field_run_party,
                                           own_sample)
        from linkage.mpc.field_train import SamplePair

        columns = field_columns_of(self.plan)
        crossed = name_swap_products(list(self.plan.field_names))
        products = len(columns) + len(crossed)
        later = self.later_material(ask)
        samples, own, links = [], {}, []
        cross, sampled = 0, 0
        order = [a.agency for a in self.plan.agencies]

        def material(plan, seed, data):
            corrections = (_field_corrections(plan, products, bytes(data))
                           if self.role == 1 else None)
            return FieldMaterial(self.role, plan, columns, seed, corrections, crossed)

        for index, pair in enumerate(self.plan.pairs):
            left, right = self.shares[pair.left_agency], self.shares[pair.right_agency]
            within = is_within(pair)
            if within:
                drawn = own_sample(int(pair.left_rows), int(self.plan.sample_seed),
                                   order.index(pair.left_agency))
                rows, rest = drawn if drawn is not None else (np.zeros(0, np.int64),) * 2
            else:
                rows = sample_rows(int(pair.left_rows), int(self.plan.sample_seed), index)
                cross += int(pair.left_rows) * int(pair.right_rows)
                sampled += rows.size
            if pair.sample_rows:
                sample = SamplePair(left[rows], right[rest] if within else right,
                                    material(field_sample_plan(self.plan, index),
                                             self.sample_seeds[index],
                                             self.sample_corrections.get(index, b"")), later)
                if within:
                    own[pair.left_agency] = sample
                else:
                    samples.append(sample)
            links.append(LinkShares(left, right, material(mpc_plan(self.plan, index),
                                                          self.seeds[index],
                                                          self.corrections.get(index, b"")),
                                    later, pair.left_agency if within else None))
        # the threshold of a field-wise run is a match probability ("auto": the model's cut)
        cutoff = None if self.plan.threshold == "auto" else float(self.plan.threshold)
        shares = FieldRunShares(samples, own, links, tuple(self.plan.field_names), cross,
                                MATCHES_PER_SAMPLED_RECORD * sampled, cutoff)
        return _one_blas_thread(field_run_party(
            self.role, shares, band_thresholds(list(self.plan.band_edges) or SERVICE_EDGES,
                                               int(self.plan.clk_bits)),
            on_progress=on_progress))


def _one_blas_thread(protocol):
    """``protocol`` with BLAS on one thread while it runs.

    Why: a field-wise run's Beaver products are small (a block of a few rows against one
    agency's records, per field), where BLAS threads cost more than they give; with both
    servers of a test or a small deployment on one machine they also fight for its cores.
    Measured (held-out seed 101, 1.37 M pairs, two servers on 2 cores): 106.9 s with
    OpenBLAS's default threads, 68.7 s with one.
    """
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        return (yield from protocol)


def _comparisons(count: int, thresholds: int, plane_bits: int) -> dict:
    """A comparisons request's fields (``plane_bits`` left unset for the word layout)."""
    counts = {"count": count, "thresholds": thresholds}
    return {**counts, "plane_bits": plane_bits} if plane_bits else counts


class _RunLater:
    """A field-wise run's later deliveries, numbered in the order the run uses them.

    Why ahead: a request answered one at a time costs a round trip through the dealer for
    every block of pairs; the links protocol says what its blocks will need
    (``LaterMaterial.expect``), so server 0 keeps up to ``LATER_AHEAD`` requests asked before
    they are used, and the dealer works while the servers compute. Both servers number the
    requests the same way; server 1 only waits for them.
    """

    def __init__(self, session: ShareSession, ask, timeout: float):
        self._session, self._ask, self._timeout = session, ask, timeout
        self._planned: deque[dict] = deque()   # expected, not yet numbered
        self._pending: deque[spb.LaterMaterialRequest] = deque()  # numbered, not yet used
        self._numbered = 0

    def _number(self, counts: dict) -> spb.LaterMaterialRequest:
        request = spb.LaterMaterialRequest(sequence=self._numbered, **counts)
        self._numbered += 1
        return request

    def _asked(self, requests: list[spb.LaterMaterialRequest]) -> None:
        if self._ask is not None and requests:
            self._ask(spb.LaterMaterialBatch(requests=requests))

    def _top_up(self) -> None:
        """Ask in batches (one event, and one delivery per server, for up to half the
        window): the servers take a bounded number of calls a second from one caller."""
        if not self._planned or len(self._pending) > LATER_AHEAD // 2:
            return
        asked = []
        while self._planned and len(self._pending) < LATER_AHEAD:
            asked.append(self._number(self._planned.popleft()))
            self._pending.append(asked[-1])
        self._asked(asked)

    def expect(self, calls: list[tuple[str, int, int]]) -> None:
        for kind, first, second in calls:
            if kind == "bits":
                self._planned.append({"bits": True, "words": first, "dabits": second})
            else:
                self._planned.append(_comparisons(first, second, kind_plane_bits(kind)))
        self._top_up()

    def take(self, **counts):
        if self._pending or self._planned:
            if not self._pending:
                self._top_up()
            request = self._pending.popleft()
            wanted = spb.LaterMaterialRequest(sequence=request.sequence, **counts)
            if wanted != request:
                raise PeerError("A field-wise run asked for other material than it said it "
                                "would: the two servers do not run the same protocol.")
        else:
            request = self._number(counts)
            self._asked([request])
        material = self._session._later(request, self._timeout)
        self._top_up()
        return material


class Sessions:
    """The planned runs a server holds (a few, for an hour at most)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._held: dict[str, ShareSession] = {}

    def add(self, session: ShareSession) -> None:
        with self._lock:
            now = time.monotonic()
            for run in [r for r, s in self._held.items() if now - s.created > _SESSION_SECONDS]:
                del self._held[run]
            if len(self._held) >= _MOST_SESSIONS:
                oldest = min(self._held, key=lambda r: self._held[r].created)
                del self._held[oldest]
            self._held[session.plan.run] = session

    def get(self, run: str) -> ShareSession:
        with self._lock:
            session = self._held.get(run)
        if session is None:
            raise RunStateError(f"No planned two-server run {run!r} on this server (it ran, "
                                "expired, or the server restarted): run 'linkage run' again.")
        return session

    def take(self, run: str) -> ShareSession:
        session = self.get(run)
        with self._lock:
            self._held.pop(run, None)
        return session

    def discard(self, run: str) -> None:
        with self._lock:
            self._held.pop(run, None)


def opening_parts(message: np.ndarray) -> Iterator[spb.PeerMessage]:
    """One protocol message as PeerMessages of at most ``PART_BYTES``."""
    data = np.ascontiguousarray(message).astype(message.dtype.newbyteorder("<")).tobytes()
    for start in range(0, max(len(data), 1), PART_BYTES):
        yield spb.PeerMessage(opening=spb.Opening(data=data[start:start + PART_BYTES],
                                                  last=start + PART_BYTES >= len(data)))


def read_opening(messages: Iterator[spb.PeerMessage], like: np.ndarray) -> np.ndarray:
    """The other server's message answering ``like`` (same dtype and shape).

    Raises:
        PeerError: the stream ended, broke or sent the wrong size.
    """
    parts = []
    while True:
        try:
            message = next(messages)
        except StopIteration:
            raise PeerError("The other server ended the comparison early.") from None
        if message.WhichOneof("part") != "opening":
            raise PeerError("The other server sent something other than an opening.")
        parts.append(message.opening.data)
        if message.opening.last:
            break
    data = b"".join(parts)
    if len(data) != like.nbytes:
        raise PeerError(f"The other server's opening has {len(data)} bytes, not {like.nbytes}: "
                        "the two servers do not run the same plan.")
    return np.frombuffer(data, like.dtype.newbyteorder("<")).astype(like.dtype).reshape(
        like.shape)


class PeerLink:
    """Server 0's client of server 1's ``PeerService`` (mutual TLS)."""

    def __init__(self, address: str, ca: Path, cert: Path, key: Path):
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(ca).read_bytes(), private_key=Path(key).read_bytes(),
            certificate_chain=Path(cert).read_bytes())
        self.address = address
        self._channel = grpc.secure_channel(address, credentials, options=[
            ("grpc.max_receive_message_length", 4 * PART_BYTES),
            ("grpc.max_send_message_length", 4 * PART_BYTES)])
        self._stub = spb_grpc.PeerServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _failed(self, error: grpc.RpcError, doing: str) -> PeerError:
        return PeerError(f"Server 1 ({self.address}) failed while {doing}: "
                         f"{error.code().name}: {error.details()}. Nothing of this run was "
                         "stored; check that server is running with this server's peer "
                         "certificate trusted, then run again.")

    def agree(self, plan: spb.ShareRunPlan) -> None:
        """Have server 1 check the plan against its own shares and hold it.

        Raises:
            PeerError: server 1 refused the plan or cannot be reached.
        """
        try:
            self._stub.AgreePlan(plan, timeout=_PLAN_TIMEOUT)
        except grpc.RpcError as error:
            raise self._failed(error, "agreeing the run plan") from None

    def compare(self, session: ShareSession, on_progress: Callable[[str, int, int], None],
                choose=None, ask=None) -> BandedRun:
        """Run the whole protocol with server 1; returns what it opened (``BandedRun``).

        Raises:
            PeerError: server 1 failed, was killed or refused mid-run.
        """
        outgoing: queue.Queue = queue.Queue()

        def requests():
            while (item := outgoing.get()) is not None:
                yield item

        responses = self._stub.Compare(requests(), timeout=_RUN_TIMEOUT)
        outgoing.put(spb.PeerMessage(handshake=spb.PeerHandshake(
            project=session.plan.project, run=session.plan.run,
            plan_hash=plan_hash(session.plan))))
        total = len(session.plan.pairs)
        if session.plan.fieldwise:
            # ``ask(request)``: each later delivery (``LaterMaterialRequest``)
            protocol = session.field_protocol(ask, on_progress)
        else:
            if session.auto:
                on_progress("histogram of a sample, on shares", 0, total)
            protocol = session.protocol(choose, ask, lambda index: on_progress(
                "comparing on shares", index, total))
        try:
            message = next(protocol)
            while True:
                for part in opening_parts(message):
                    outgoing.put(part)
                theirs = read_opening(responses, message)
                try:
                    message = protocol.send(theirs)
                except StopIteration as stop:
                    result = stop.value
                    break
            outgoing.put(None)
            for _ in responses:  # server 1 ends its side once ours has ended
                raise PeerError("Server 1 sent more than the protocol has.")
            on_progress("comparing on shares", total, total)
        except grpc.RpcError as error:
            outgoing.put(None)
            raise self._failed(error, "comparing") from None
        except BaseException as error:
            outgoing.put(None)
            responses.cancel()
            if isinstance(error, InvalidRequestError):
                raise PeerError(f"The two servers' material does not fit: {error}") from None
            raise
        return result
