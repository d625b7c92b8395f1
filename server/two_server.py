"""Two-server mode on one server: share projects and uploads, planning, dealer material, runs.

Who does what (docs/privacy.md, "Two-server mode"):

* agencies split every CLK (``linkage.mpc.split_clks``) and send share s to server s;
* the coordinator's client asks server 0 to plan a run (``plan_share_run``): every
  cross-agency pair of agencies and every agency not declared deduplicated with itself,
  the records each covers; server 0 agrees the plan with
  server 1 (``agree_plan``) over the peer channel;
* the coordinator's client deals: a fresh ``linkage.mpc.Dealer`` per agency pair, seeds to
  both servers and server 1's corrections to server 1 only (``receive_material``). It is
  neither server, and what it makes is independent of the data;
* server 0 runs the comparison with server 1 (``run_shares`` / ``compare_as_second``):
  with ``auto`` first the banded histogram of a public sample, from which server 0 chooses
  the threshold; then the hit graph, and for the hits only their Dice bands, on material
  the dealer makes once the number of hits is known (server 0 asks for it in the run's
  stream, both servers wait for it). It groups the hit pairs by band
  (``linkage.mpc.linking``) and stores the run as a normal run, so results and reports work
  unchanged. Server 1 stores nothing of a run.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from linkage.batch import RecordAttributes, record_id_problem, update_content_hash
from linkage.errors import (
    BatchFormatError,
    ClkError,
    DuplicateRecordError,
    InvalidRequestError,
    PeerError,
    RunStateError,
    ShareModeError,
)
from linkage.matching.threshold import MIN_PAIRS_FOR_MODEL, choose_banded_threshold
from linkage.mpc import Plan, band_plan, band_thresholds, rational_threshold
from linkage.mpc.banded_run import MATCHES_PER_SAMPLED_RECORD, SERVICE_EDGES, sample_rows
from linkage.mpc.fieldwise import name_swap_products
from linkage.mpc.prg import SEED_BYTES
from linkage_service.protos.linkage.v1 import shares_pb2 as spb

from .auth import Identity
from .operations.common import _check_not_purged, _owned, _project_for
from .operations.projects import create_project
from .operations.runs import _group_key_secret, finish_run
from .operations.uploads import (
    MAX_RECORDS_PER_BATCH,
    BatchHeaderInfo,
    check_attributes,
    check_header,
)
from .peer import (
    PeerLink,
    ShareSession,
    Sessions,
    band_correction_bytes,
    correction_bytes,
    field_correction_bytes,
    field_sample_plan,
    hit_correction_bytes,
    later_correction_bytes,
    is_within,
    mpc_plan,
    opening_parts,
    plan_hash,
    read_opening,
    sample_plan,
)
from .storage import Store
from .storage.shares import require_share_role

__all__ = ["agree_plan", "compare_as_second", "create_share_project", "plan_share_run",
           "receive_material", "run_shares", "submit_shares"]

_BATCH_ID = re.compile(r"^b-[0-9a-f]{16}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _this_role(role: int | None, needed: int | None = None) -> int:
    if role is None:
        raise ShareModeError("This server is not in two-server mode: start it with "
                             "--two-server-role 0|1 --peer HOST:PORT.")
    if needed is not None and role != needed:
        raise ShareModeError(f"This is server {role}; this call is for server {needed}.")
    return role


def create_share_project(store: Store, role: int | None, name: str, schema_json: str,
                         agencies: list[str], stages: list[str],
                         token_hashes: dict[str, str], requested_role: int):
    """Create a two-server project; returns (project, {agency: token}) (no tokens on server 1,
    where the agencies' token hashes from server 0 are stored instead).

    Raises:
        ShareModeError: the server is not in two-server mode or has the other role.
        InvalidRequestError: server 1 without a hash for every agency (or with one on server 0).
    """
    _this_role(role, requested_role)
    if role == 1 and sorted(token_hashes) != sorted(agencies):
        raise InvalidRequestError("Server 1 needs server 0's token hash of every agency, and "
                                  "only those ('linkage project create --server-1' sends them).")
    if role == 0 and token_hashes:
        raise InvalidRequestError("Server 0 issues the agency tokens; send no hashes to it.")
    for token_hash in token_hashes.values():
        if not _HEX64.match(token_hash):
            raise InvalidRequestError("A token hash is 64 lowercase hex digits (SHA-256).")
    project, tokens = create_project(store, name, schema_json, agencies, stages)
    store.set_share_role(project.id, role)
    if role == 1:
        for agency in store.agencies(project.id):
            store.set_agency_token(agency.id, token_hashes[agency.name])
        tokens = {}
    return project, tokens


def submit_shares(store: Store, identity: Identity, role: int | None,
                  header: BatchHeaderInfo, share: int,
                  chunks: Iterable[tuple[int, list[str], list[bytes], list[tuple] | None]]
                  ) -> tuple[str, int, bool]:
    """Receive one agency's share batch and store it atomically; returns (batch id, records,
    already stored). A chunk is (first record, record ids, shares, attributes or None).

    Server 0 stores the records' attributes (entity type, case reference, stage) as a normal
    batch's, for the report; server 1 refuses them: it stores nothing of a run.

    Raises:
        ShareModeError: not a two-server project, or share 1 sent to server 0 (or the reverse).
        SchemaError, SecretError, BatchFormatError, ClkError, DuplicateRecordError: as for
            CLK uploads (attributes are checked as for them).
    """
    project = _project_for(store, identity, header.project)  # the caller's project first
    _this_role(role)
    if share != role:
        raise ShareModeError(f"This is server {role}; it takes share {role}, not share {share}.")
    require_share_role(store, project.id, project.name, role)
    check_header(store, identity, header)
    _check_not_purged(project)
    if not _BATCH_ID.match(header.batch_id) or not _HEX64.match(header.content_hash):
        raise InvalidRequestError("The batch id must be 'b-' and 16 hex digits, the content hash "
                                  "64 hex digits.")
    if header.record_count > MAX_RECORDS_PER_BATCH:
        raise BatchFormatError(f"One batch holds at most {MAX_RECORDS_PER_BATCH} records.")
    held = store.batch(header.batch_id)
    if held is not None:
        if _owned(held.agency_id, identity):
            return held.id, held.record_count, True
        raise InvalidRequestError("Another agency submitted a batch with this id; encode your "
                                  "own export again.")
    share_bytes = 4 * header.clk_bits
    record_ids: list[str] = []
    shares: list[bytes] = []
    attributes: list[tuple[str, str, str]] = []
    with_attributes: bool | None = None
    entity_type = header.entity_type or "person"
    digest = hashlib.sha256()
    for first, ids, values, chunk_attributes in chunks:
        if first != len(record_ids):
            raise BatchFormatError(f"A share chunk starts at record {first}, expected "
                                   f"{len(record_ids)}; send the batch again from the start.")
        if len(ids) != len(values):
            raise BatchFormatError(f"A chunk has {len(ids)} record ids but {len(values)} shares.")
        for offset, (record_id, value) in enumerate(zip(ids, values)):
            if len(value) != share_bytes:
                raise ClkError(f"Share #{first + offset} is {len(value)} bytes; a share of a "
                               f"{header.clk_bits}-bit CLK is {share_bytes} bytes.")
            if (problem := record_id_problem(record_id)) is not None or not record_id:
                raise BatchFormatError(f"Record #{first + offset}: its record id "
                                       f"{problem or 'is empty'}.")
        if len(record_ids) + len(ids) > header.record_count:
            raise BatchFormatError("The upload sent more records than its header announced.")
        if chunk_attributes is not None and role != 0:
            raise ShareModeError("Server 1 takes no record attributes (entity type, case "
                                 "reference, stage): send them to server 0 only.")
        if with_attributes is not None and with_attributes != (chunk_attributes is not None):
            raise BatchFormatError("Some chunks of the batch carry attributes and some do not; "
                                   "send them with every record or with none.")
        with_attributes = chunk_attributes is not None
        check_attributes(chunk_attributes, ids, set(project.stages), entity_type,
                         project.name, first)
        update_content_hash(digest, ids, values, None if chunk_attributes is None else
                            [RecordAttributes(*a) for a in chunk_attributes])
        record_ids.extend(ids)
        shares.extend(values)
        attributes.extend((header.entity_type or a[0], a[1], a[2])
                          for a in chunk_attributes or ())
    if len(record_ids) != header.record_count:
        raise BatchFormatError(f"The upload is truncated: {len(record_ids)} of "
                               f"{header.record_count} records arrived; nothing was stored. "
                               "Submit again.")
    if len(set(record_ids)) != len(record_ids):
        raise DuplicateRecordError("A record id appears more than once in the batch.")
    if digest.hexdigest() != header.content_hash:
        raise BatchFormatError("What arrived does not match the batch's content hash; nothing "
                               "was stored. Submit again.")
    store.add_share_batch(project.id, identity.agency_id, header.batch_id, header.content_hash,
                          header.key_check, header.deduplicated, record_ids, shares,
                          attributes if with_attributes else None, header.entity_type)
    return header.batch_id, len(record_ids), False


def _threshold(text: str) -> float | None:
    """The numeric threshold, or ``None`` for ``auto``. Raises InvalidRequestError."""
    from linkage.matching.run import RunSettings
    return RunSettings.parse(text, "exhaustive").requested


def _load(store: Store, project_id: int, clk_bits: int):
    """This server's shares by agency name, their positions, and every record's agency/id."""
    loaded = store.load_shares(project_id)
    names = {a.id: a.name for a in store.agencies(project_id)}
    order = [a.id for a in store.agencies(project_id)]
    agency_ids = np.asarray(loaded.agency_ids, np.int64)
    shares, positions, records = {}, {}, []
    for agency_id in order:
        rows = np.flatnonzero(agency_ids == agency_id)
        if rows.size == 0:
            continue
        data = b"".join(loaded.shares[i] for i in rows)
        shares[names[agency_id]] = np.frombuffer(data, "<u4").astype(np.uint32).reshape(
            rows.size, clk_bits)
        positions[names[agency_id]] = rows
        ids_hash = hashlib.sha256("".join(loaded.record_ids[i] + "\x00" for i in rows)
                                  .encode("utf-8")).hexdigest()
        records.append(spb.AgencyRecords(agency=names[agency_id], records=int(rows.size),
                                         record_ids_hash=ids_hash))
    return shares, positions, records, loaded


def _open_agencies(store: Store, project_id: int, shares: dict) -> list[str]:
    """Agencies whose records are compared with each other: those that did not declare a
    batch deduplicated, as in a normal run, and that hold two records or more."""
    closed = store.deduplicated_agencies(project_id)
    named = {a.name: a.id for a in store.agencies(project_id)}
    return [name for name, held in shares.items()
            if named[name] not in closed and held.shape[0] >= 2]


def _within_pairs(store: Store, project_id: int, shares: dict,
                  clk_bits: int) -> list[spb.AgencyPairPlan]:
    """One pair per open agency, its records against themselves (``is_within``).

    The protocol compares the whole square; only hits above the diagonal are kept (a record
    with itself always reaches the threshold, and (i, j) is (j, i)), so the servers open
    each within-agency pair's bit twice and nothing more. Within pairs are not sampled for
    ``auto``: the threshold comes from the cross-agency sample, as the hits of one square
    would count every pair twice and every record once with itself.
    """
    out = []
    for name in _open_agencies(store, project_id, shares):
        rows = int(shares[name].shape[0])
        plan = Plan(rows, rows, clk_bits)
        out.append(spb.AgencyPairPlan(left_agency=name, right_agency=name, left_rows=rows,
                                      right_rows=rows, block_rows=plan.block_rows))
    return out


def _field_layout(store: Store, project_id: int):
    """The person schema's per-field layout (``fieldSegments``), or ``None``: record-level."""
    from linkage.encoding.schema import load_schema  # jsonschema: not imported at start-up
    row = next(e for e in store.entity_schemas(project_id) if e.entity_type == "person")
    return load_schema(row.schema_json).segments


def _field_plan_parts(layout, clk_bits: int) -> dict:
    """The plan's field-wise parts (``ShareRunPlan.fieldwise`` ...) for ``layout``."""
    from linkage.mpc.fieldwise import field_columns
    columns = field_columns(layout.word_starts, layout.word_counts)
    if columns[-1][1] > clk_bits:
        raise RunStateError("The schema's field segments do not fit its CLK length.")
    return {"fieldwise": True, "field_names": list(layout.fields),
            "field_columns": [spb.FieldColumns(start=a, stop=b) for a, b in columns]}


def _field_pairs(store: Store, project_id: int, shares: dict, clk_bits: int, seed: int
                 ) -> list[spb.AgencyPairPlan]:
    """A field-wise plan's pairs: every cross pair with its training sample, then each open
    agency against itself with a sample of its own pairs (``field_run.own_sample``); every
    pair's links in ``links_plan`` blocks."""
    from linkage.mpc.field_run import own_sample
    from linkage.mpc.fieldwise import links_plan
    names = list(shares)
    out = []

    def plan_of(left: str, right: str, sample: int, sample_right: int):
        links = links_plan(int(shares[left].shape[0]), int(shares[right].shape[0]), clk_bits)
        pair = spb.AgencyPairPlan(left_agency=left, right_agency=right,
                                  left_rows=links.left_rows, right_rows=links.right_rows,
                                  block_rows=links.block_rows)
        if sample:
            pair.sample_rows = sample
            pair.sample_block_rows = Plan(sample, sample_right, clk_bits).block_rows
        return pair

    for i, left in enumerate(names):
        for right in names[i + 1:]:
            rows = sample_rows(int(shares[left].shape[0]), seed, len(out)).size
            out.append(plan_of(left, right, rows, int(shares[right].shape[0])))
    for name in _open_agencies(store, project_id, shares):
        drawn = own_sample(int(shares[name].shape[0]), seed, names.index(name))
        count = 0 if drawn is None else drawn[0].size
        out.append(plan_of(name, name, count, int(shares[name].shape[0]) - count))
    return out


def plan_share_run(store: Store, sessions: Sessions, link: PeerLink | None, role: int | None,
                   project_name: str, threshold_text: str) -> spb.ShareRunPlan:
    """Server 0: plan a run over every cross-agency pair (and each open agency's own
    pairs, ``_within_pairs``) and agree it with server 1.

    Raises:
        ShareModeError: not server 0, or not a two-server project.
        InvalidRequestError: a malformed threshold, or 'auto' with too few cross-agency
            pairs for the sample histogram.
        RunStateError: fewer than two agencies have submitted, or the project was purged.
        PeerError: server 1 cannot be reached or holds other batches.
    """
    _this_role(role, 0)
    threshold = _threshold(threshold_text)
    project = store.project(project_name)
    _check_not_purged(project)
    require_share_role(store, project.id, project.name, 0)
    clk_bits = next(e.clk_bits for e in store.entity_schemas(project.id)
                    if e.entity_type == "person")
    if threshold is not None:
        rational_threshold(threshold, clk_bits)  # refuses a threshold with no exact fraction
    shares, positions, records, loaded = _load(store, project.id, clk_bits)
    if len(shares) < 2:
        raise RunStateError(f"Project {project_name!r} needs share batches of at least two "
                            "agencies before a run ('linkage submit --server-1').")
    names = list(shares)
    seed = secrets.randbits(63)  # the public coin of the samples: independent of the data
    layout = _field_layout(store, project.id)
    if layout is not None:
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise InvalidRequestError("A field-wise project's threshold is a match probability "
                                      f"between 0 and 1 (exclusive), not {threshold:g}; or "
                                      "'auto'.")
        pairs = _field_pairs(store, project.id, shares, clk_bits, seed)
        sampled = sum(p.sample_rows * p.right_rows for p in pairs if not is_within(p))
        if sampled < MIN_PAIRS_FOR_MODEL:
            raise InvalidRequestError(
                f"Field-wise scoring on shares trains on a sample of at least "
                f"{MIN_PAIRS_FOR_MODEL} cross-agency pairs; project {project_name!r} has "
                f"{sampled}.")
        plan = spb.ShareRunPlan(project=project.name, run=secrets.token_hex(16),
                                threshold=threshold_text.strip().lower(), clk_bits=clk_bits,
                                pairs=pairs, agencies=records, band_edges=SERVICE_EDGES, sample_seed=seed,
                                **_field_plan_parts(layout, clk_bits))
        return _agree_and_hold(sessions, link, plan, shares, positions, loaded)
    pairs = []
    for i, left in enumerate(names):
        for right in names[i + 1:]:
            plan = Plan(int(shares[left].shape[0]), int(shares[right].shape[0]), clk_bits)
            pair = spb.AgencyPairPlan(left_agency=left, right_agency=right,
                                      left_rows=plan.left_rows, right_rows=plan.right_rows,
                                      block_rows=plan.block_rows)
            if threshold is None:
                rows = sample_rows(plan.left_rows, seed, len(pairs)).size
                pair.sample_rows = rows
                pair.sample_block_rows = band_plan(rows, plan.right_rows, clk_bits,
                                                   len(SERVICE_EDGES)).block_rows
            pairs.append(pair)
    pairs.extend(_within_pairs(store, project.id, shares, clk_bits))
    sampled = sum(p.sample_rows * p.right_rows for p in pairs)
    if threshold is None and sampled < MIN_PAIRS_FOR_MODEL:
        raise InvalidRequestError(
            f"'auto' needs at least {MIN_PAIRS_FOR_MODEL} cross-agency pairs in its sample to "
            f"fit a score model; project {project_name!r} has {sampled}. Run with a numeric "
            "threshold (e.g. --threshold 0.8).")
    plan = spb.ShareRunPlan(project=project.name, run=secrets.token_hex(16),
                            threshold=threshold_text.strip().lower(), clk_bits=clk_bits,
                            pairs=pairs, agencies=records,
                            band_edges=SERVICE_EDGES if threshold is None else (),
                            sample_seed=seed if threshold is None else 0)
    return _agree_and_hold(sessions, link, plan, shares, positions, loaded)


def _agree_and_hold(sessions: Sessions, link: PeerLink | None, plan: spb.ShareRunPlan,
                    shares: dict, positions: dict, loaded) -> spb.ShareRunPlan:
    """Server 0: have server 1 agree the plan, then hold it until it runs."""
    if link is None:
        raise PeerError("Server 0 has no peer configured (--peer).")
    link.agree(plan)
    sessions.add(ShareSession(0, plan, shares, positions,
                              record_agency=np.asarray(loaded.agency_ids, np.int64),
                              record_ids=loaded.record_ids, batch_ids=loaded.batch_ids))
    return plan


def agree_plan(store: Store, sessions: Sessions, role: int | None,
               plan: spb.ShareRunPlan) -> str:
    """Server 1: check server 0's plan against this server's shares and hold it.

    Raises:
        RunStateError: this server holds other batches than the plan covers.
    """
    _this_role(role, 1)
    project = store.project(plan.project)
    _check_not_purged(project)
    require_share_role(store, project.id, project.name, 1)
    clk_bits = next(e.clk_bits for e in store.entity_schemas(project.id)
                    if e.entity_type == "person")
    if plan.clk_bits != clk_bits:
        raise RunStateError("Server 0's plan has another CLK length than this server's project.")
    threshold = _threshold(plan.threshold)
    layout = _field_layout(store, project.id)
    if plan.fieldwise != (layout is not None):
        raise RunStateError("Server 0's plan is field-wise exactly when the project's schema "
                            "has field segments; this server's schema says otherwise.")
    if plan.fieldwise:
        return _agree_field_plan(store, sessions, project, plan, layout, clk_bits)
    if (threshold is None) != bool(plan.band_edges):
        raise RunStateError("Server 0's plan has band edges exactly when it is 'auto'.")
    if threshold is None:
        band_thresholds(list(plan.band_edges), clk_bits)  # refuses edges with no exact fraction
    shares, positions, records, _ = _load(store, project.id, clk_bits)
    _same_records(plan, records)
    open_agencies = set(_open_agencies(store, project.id, shares))
    for index, pair in enumerate(plan.pairs):
        if is_within(pair) and pair.left_agency not in open_agencies:
            raise RunStateError(f"Server 0's plan compares {pair.left_agency!r} with itself; on "
                                "this server that agency declared its batches deduplicated.")
        expected = mpc_plan(plan, index)
        if (pair.left_rows, pair.right_rows) != (shares[pair.left_agency].shape[0],
                                                 shares[pair.right_agency].shape[0]) \
                or expected.block_rows < 1:
            raise RunStateError("Server 0's plan does not fit this server's shares.")
        if threshold is None and not is_within(pair) and (
                pair.sample_rows != sample_rows(pair.left_rows, plan.sample_seed, index).size
                or sample_plan(plan, index).block_rows < 1):
            raise RunStateError("Server 0's plan has another sample than its coin gives.")
        if is_within(pair) and (pair.sample_rows or pair.sample_block_rows):
            raise RunStateError("Server 0's plan samples an agency's pairs with itself; auto "
                                "samples cross-agency pairs only.")
    sessions.add(ShareSession(1, plan, shares, positions))
    return plan.run


def _agree_field_plan(store: Store, sessions: Sessions, project, plan: spb.ShareRunPlan,
                      layout, clk_bits: int) -> str:
    """Server 1's checks of a field-wise plan: the same fields, pairs and samples as this
    server's shares and the public coin give."""
    shares, positions, records, _ = _load(store, project.id, clk_bits)
    _same_records(plan, records)
    parts = _field_plan_parts(layout, clk_bits)
    if list(plan.field_names) != parts["field_names"] or list(plan.field_columns) != \
            parts["field_columns"] or list(plan.band_edges) != list(SERVICE_EDGES):
        raise RunStateError("Server 0's field-wise plan has other fields or band edges than "
                            "this server's schema gives.")
    if list(plan.pairs) != _field_pairs(store, project.id, shares, clk_bits,
                                        int(plan.sample_seed)):
        raise RunStateError("Server 0's field-wise plan has other pairs or samples than this "
                            "server's shares and the plan's coin give.")
    sessions.add(ShareSession(1, plan, shares, positions))
    return plan.run


def _same_records(plan: spb.ShareRunPlan, records) -> None:
    mine = [(r.agency, r.records, r.record_ids_hash) for r in records]
    theirs = [(r.agency, r.records, r.record_ids_hash) for r in plan.agencies]
    if mine != theirs:
        raise RunStateError(f"Server 1 holds other share batches of {plan.project!r} than "
                            "server 0: every agency must submit each batch to both servers "
                            "('linkage submit --server-1'), then run again.")


def receive_material(sessions: Sessions, role: int | None,
                     parts: Iterator[spb.MaterialPart]) -> tuple[str, int]:
    """Take the dealer's material for one planned run; returns (run, bytes received).

    Raises:
        ShareModeError: material for the other server. BatchFormatError: material that does
            not fit the plan (a wrong seed length, corrections of the wrong size).
    """
    _this_role(role)
    first = next(parts, None)
    if first is None or first.WhichOneof("part") != "header":
        raise BatchFormatError("Dealer material starts with its header.")
    if first.header.party != role:
        raise ShareModeError(f"This is server {role}; the material is for server "
                             f"{first.header.party}.")
    session = sessions.get(first.header.run)
    if first.header.HasField("hits"):
        return session.plan.run, _receive_hits(session, role, first.header.hits, parts)
    if first.header.HasField("later"):
        return session.plan.run, _receive_later(session, role, first.header.later, parts)
    if session.started:
        raise RunStateError("This run has started; its material was delivered already.")
    session.material_complete = False
    for held in (session.seeds, session.corrections, session.sample_seeds,
                 session.sample_corrections):
        held.clear()
    received = 0
    count = len(session.plan.pairs)
    for part in parts:
        if part.WhichOneof("part") != "chunk":
            raise BatchFormatError("Only one material header is allowed.")
        chunk = part.chunk
        if chunk.pair >= count:
            raise BatchFormatError(f"Material for agency pair {chunk.pair}; the plan has {count}.")
        main_bytes, sample_bytes = _material_bytes(session.plan, int(chunk.pair))
        if (chunk.sample_seed or chunk.sample_corrections) and sample_bytes is None:
            raise BatchFormatError("Sample material is for the cross-agency pairs of 'auto' "
                                   "runs, and the sampled pairs of field-wise runs, only.")
        for seed, seeds in ((chunk.seed, session.seeds),
                            (chunk.sample_seed, session.sample_seeds)):
            if seed:
                if len(seed) != SEED_BYTES or chunk.pair in seeds:
                    raise BatchFormatError(f"A pair's seed is sent once, {SEED_BYTES} bytes.")
                seeds[chunk.pair] = bytes(seed)
        for data, kept, limit in ((chunk.corrections, session.corrections, main_bytes),
                                  (chunk.sample_corrections, session.sample_corrections,
                                   sample_bytes)):
            if not data:
                continue
            if role == 0:
                raise BatchFormatError("Server 0 takes only seeds; corrections are server 1's.")
            held = kept.setdefault(chunk.pair, bytearray())
            if len(held) + len(data) > limit:
                raise BatchFormatError("More corrections than the plan needs.")
            held.extend(data)
        received += (len(chunk.seed) + len(chunk.corrections) + len(chunk.sample_seed)
                     + len(chunk.sample_corrections))
    for index in range(count):
        main_bytes, sample_bytes = _material_bytes(session.plan, index)
        sampled = sample_bytes is not None
        if index not in session.seeds or (sampled and index not in session.sample_seeds):
            raise BatchFormatError(f"No seed for agency pair {index}: the delivery is incomplete.")
        if role == 1 and len(session.corrections.get(index, b"")) != main_bytes:
            raise BatchFormatError(f"The corrections of agency pair {index} are incomplete.")
        if role == 1 and sampled and len(session.sample_corrections.get(
                index, b"")) != sample_bytes:
            raise BatchFormatError(f"The sample corrections of agency pair {index} are "
                                   "incomplete.")
    session.material_complete = True
    return session.plan.run, received


def _material_bytes(plan: spb.ShareRunPlan, index: int) -> tuple[int, int | None]:
    """Server 1's correction bytes for pair ``index``: its comparison, and its sample
    (``None``: the pair has no sample)."""
    pair = plan.pairs[index]
    if plan.fieldwise:
        products = len(plan.field_columns) + len(name_swap_products(list(plan.field_names)))
        sample = (field_correction_bytes(field_sample_plan(plan, index), products)
                  if pair.sample_rows else None)
        return field_correction_bytes(mpc_plan(plan, index), products), sample
    sample = (band_correction_bytes(sample_plan(plan, index), len(plan.band_edges))
              if plan.band_edges and not is_within(pair) else None)
    return correction_bytes(mpc_plan(plan, index)), sample


def _receive_later(session: ShareSession, role: int, request: spb.LaterMaterialRequest,
                   parts: Iterator[spb.MaterialPart]) -> int:
    """A field-wise run's next materials, delivered while the run waits for them: each
    header (``later``) starts one, its chunks carry its seed and (server 1) corrections."""
    if not session.plan.fieldwise or not session.started:
        raise BatchFormatError("Later material is for a running field-wise run only.")
    received = 0
    while request is not None:
        if max(request.count * max(request.thresholds, 1), request.words,
               request.dabits) > 1 << 34:
            raise BatchFormatError("Later material for more values than a run needs.")
        expected = later_correction_bytes(request) if role == 1 else 0
        seed, data, following = b"", bytearray(), None
        for part in parts:
            if part.WhichOneof("part") == "header":
                if not part.header.HasField("later") or part.header.party != role \
                        or part.header.run != session.plan.run:
                    raise BatchFormatError("A later delivery's next header is for the same "
                                           "run, server and kind.")
                following = part.header.later
                break
            seed = _add_chunk(part.chunk, seed, data, expected, "later")
        if not seed or len(data) != expected:
            raise BatchFormatError(f"Later material {request.sequence} is incomplete.")
        session.deliver_later(request, seed, bytes(data))
        received += len(seed) + len(data)
        request = following
    return received


def _add_chunk(chunk: spb.MaterialChunk, seed: bytes, data: bytearray, expected: int,
               what: str) -> bytes:
    """One chunk of a mid-run delivery: its seed (sent once) and the next slice of its
    corrections (``data``, at most ``expected`` bytes); returns the seed so far."""
    if chunk.seed:
        if seed or len(chunk.seed) != SEED_BYTES:
            raise BatchFormatError(f"A delivery's seed is sent once, {SEED_BYTES} bytes.")
        seed = bytes(chunk.seed)
    if len(data) + len(chunk.corrections) > expected:
        raise BatchFormatError(f"More {what} corrections than the request needs (server 0 "
                               "takes only its seed).")
    data.extend(chunk.corrections)
    return seed


def _receive_hits(session: ShareSession, role: int, request: spb.HitMaterialRequest,
                  parts: Iterator[spb.MaterialPart]) -> int:
    """The second phase: one agency pair's hit material, delivered while the run waits."""
    if request.pair >= len(session.plan.pairs) or not session.started:
        raise BatchFormatError("Hit material for no agency pair of a running plan.")
    plan = mpc_plan(session.plan, request.pair)
    if request.hits > plan.pairs or request.thresholds > 64:
        raise BatchFormatError("Hit material for more hits or thresholds than a plan has.")
    expected = hit_correction_bytes(request.hits, request.thresholds) if role == 1 else 0
    seed, data = b"", bytearray()
    for part in parts:
        if part.WhichOneof("part") != "chunk" or part.chunk.pair != request.pair:
            raise BatchFormatError("Hit material chunks are for the pair their header names.")
        seed = _add_chunk(part.chunk, seed, data, expected, "hit")
    if not seed or len(data) != expected:
        raise BatchFormatError(f"The hit material of agency pair {request.pair} is "
                               "incomplete.")
    session.deliver_hits(int(request.pair), int(request.hits), int(request.thresholds), seed,
                         bytes(data))
    return len(seed) + len(data)


def run_shares(store: Store, sessions: Sessions, link: PeerLink | None, role: int | None,
               run: str, on_progress: Callable[[str, int, int], None] | None = None,
               ask: Callable[[spb.HitMaterialRequest], None] | None = None):
    """Server 0: run the planned comparison with server 1 and store the run; returns its
    summary. A failure of server 1 fails the run and stores nothing of it.

    ``ask`` passes each agency pair's request for hit material to the dealer (the run's
    stream); the run then waits until the dealer delivered it to both servers.

    Raises:
        RunStateError: no such planned run, its material is incomplete, or the dealer did
            not deliver the hit material in time.
        PeerError: server 1 failed, refused or was killed.
    """
    from linkage.matching.run import RunSettings  # the run's core: not imported at start-up
    from linkage.mpc.linking import group_hits
    _this_role(role, 0)
    report = on_progress or (lambda stage, done, total: None)
    session = sessions.get(run)
    session.check_material()
    if link is None:
        raise PeerError("Server 0 has no peer configured (--peer).")
    session.start()
    plan = session.plan
    project = store.project(plan.project)
    settings = RunSettings.parse(plan.threshold, "exhaustive")
    run_id = store.start_run(project.id)
    started = time.monotonic()
    chosen = []

    most_matches = MATCHES_PER_SAMPLED_RECORD * sum(int(pair.sample_rows) for pair in plan.pairs)

    def choose(edges, counts):
        chosen.append(choose_banded_threshold(edges, counts, max_matches=most_matches))
        return chosen[-1].threshold

    def request(pair, hits, thresholds):
        if ask is None:
            raise RunStateError("This run needs hit material and has no dealer to ask.")
        ask(spb.HitMaterialRequest(pair=pair, hits=hits, thresholds=thresholds))

    if plan.fieldwise:
        return _run_field_shares(store, sessions, link, session, project, settings, run_id,
                                 started, report, ask)

    def outcome():
        opened = link.compare(session, report, choose, request)
        lefts, rights, bands = [], [], []
        for pair, found in zip(plan.pairs, opened.hits):
            keep = found.left < found.right if is_within(pair) else slice(None)
            lefts.append(session.positions[pair.left_agency][found.left[keep]])
            rights.append(session.positions[pair.right_agency][found.right[keep]])
            bands.append(found.band[keep])
        report("grouping", 0, 1)
        histogram = (None if opened.histogram_edges is None
                     else (opened.histogram_edges, opened.histogram_counts))
        grouped = group_hits(session.record_agency, session.record_ids,
                             np.concatenate(lefts), np.concatenate(rights), settings,
                             _group_key_secret(store),
                             frozenset(store.deduplicated_agencies(project.id)),
                             edges=opened.edges, band=np.concatenate(bands),
                             choice=chosen[-1] if chosen else None, histogram=histogram)
        report("grouping", 1, 1)
        return grouped

    return _store_run(store, sessions, session, project.id, run_id, started, outcome)


def _store_run(store: Store, sessions: Sessions, session: ShareSession, project_id: int,
               run_id: int, started: float, outcome: Callable[[], object]):
    """Store what ``outcome()`` computes as the project's run and return its summary; if it
    fails, the run is marked failed with nothing of it stored. The session ends either way."""
    try:
        summary = finish_run(store, project_id, run_id, outcome(), started)
    except BaseException as error:
        store.fail_run(run_id, f"{type(error).__name__}: the two-server run did not finish")
        raise
    finally:
        sessions.discard(session.plan.run)
    store.mark_compared(session.batch_ids)  # its groups name them: no withdrawing now
    return summary.replace(run=store.latest_run(project_id).number, reused=False)


def _run_field_shares(store: Store, sessions: Sessions, link: PeerLink, session: ShareSession,
                      project, settings, run_id: int, started: float, report, ask):
    """Server 0's field-wise run (``linkage.mpc.field_run``): compare, group, store."""
    from linkage.matching.fellegi_sunter import model_quality
    from linkage.mpc.linking import group_field_links
    plan = session.plan

    def outcome():
        if ask is None:
            raise RunStateError("A field-wise run needs material as it goes and has no dealer "
                                "to ask.")
        result = link.compare(session, report, None, ask)
        lefts, rights, levels, weights = [], [], [], []
        for pair, found in zip(plan.pairs, result.links):
            model = result.model_for(pair.left_agency if is_within(pair) else None)
            lefts.append(session.positions[pair.left_agency][found.left])
            rights.append(session.positions[pair.right_agency][found.right])
            levels.append(found.levels)
            weights.append(model.field_weights(found.levels))
        fields = len(plan.field_names)
        refined = result.refined
        prior = refined.model.prior_weight()
        cutoff = 1.0 / (1.0 + 2.0 ** -(prior + result.cut_bits))
        grid = np.round(np.arange(0.02, 0.99, 0.02), 2)
        precision, recall = model_quality(refined.model, refined.present_share,
                                          result.cross_pairs,
                                          np.log2(grid / (1 - grid)) - prior)
        expected = model_quality(refined.model, refined.present_share,
                                 result.cross_pairs, [result.cut_bits])
        requested = settings.requested
        reason = (f"two-server mode, field-wise on shares: match probability >= "
                  f"{requested if requested is not None else cutoff:.4g} "
                  + ("(set by the coordinator)" if requested is not None else
                     f"(auto: the best expected F1, {refined.expected_f1:.3f}, of a model "
                     "trained on opened sums only)"))
        report("grouping", 0, 1)
        grouped = group_field_links(
            session.record_agency, session.record_ids, np.concatenate(lefts),
            np.concatenate(rights), np.concatenate(levels).reshape(-1, fields),
            np.concatenate(weights).reshape(-1, fields),
            np.concatenate(result.probabilities), refined.model, settings,
            _group_key_secret(store), frozenset(store.deduplicated_agencies(project.id)),
            cutoff=requested if requested is not None else cutoff, reason=reason,
            expected=(float(expected[0][0]), float(expected[1][0])),
            curve=[(float(g), float(p), float(r)) for g, p, r in zip(grid, precision, recall)])
        report("grouping", 1, 1)
        return grouped

    return _store_run(store, sessions, session, project.id, run_id, started, outcome)


def compare_as_second(sessions: Sessions, role: int | None,
                      requests: Iterator[spb.PeerMessage]) -> Iterator[spb.PeerMessage]:
    """Server 1's side of a run: answer server 0's openings with its own, pair by pair.

    Raises:
        RunStateError: no such planned run, or material missing. PeerError: server 0's
            handshake names another plan, or it ended early.
    """
    _this_role(role, 1)
    first = next(requests, None)
    if first is None or first.WhichOneof("part") != "handshake":
        raise PeerError("A comparison starts with its handshake.")
    session = sessions.get(first.handshake.run)
    if (first.handshake.project != session.plan.project
            or first.handshake.plan_hash != plan_hash(session.plan)):
        raise PeerError("Server 0's handshake names another plan than the one agreed.")
    session.check_material()
    session.start()
    try:
        protocol = session.field_protocol() if session.plan.fieldwise else session.protocol()
        message = next(protocol)
        while True:
            theirs = read_opening(requests, message)
            yield from opening_parts(message)
            try:
                message = protocol.send(theirs)
            except StopIteration:
                break
    finally:
        sessions.discard(session.plan.run)
