from . import linkage_pb2 as _linkage_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateShareProjectRequest(_message.Message):
    __slots__ = ("project", "role", "agency_token_hashes")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    AGENCY_TOKEN_HASHES_FIELD_NUMBER: _ClassVar[int]
    project: _linkage_pb2.CreateProjectRequest
    role: int
    agency_token_hashes: _containers.RepeatedCompositeFieldContainer[AgencyTokenHash]
    def __init__(self, project: _Optional[_Union[_linkage_pb2.CreateProjectRequest, _Mapping]] = ..., role: _Optional[int] = ..., agency_token_hashes: _Optional[_Iterable[_Union[AgencyTokenHash, _Mapping]]] = ...) -> None: ...

class AgencyTokenHash(_message.Message):
    __slots__ = ("agency", "token_hash")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    TOKEN_HASH_FIELD_NUMBER: _ClassVar[int]
    agency: str
    token_hash: str
    def __init__(self, agency: _Optional[str] = ..., token_hash: _Optional[str] = ...) -> None: ...

class SubmitSharesRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: ShareHeader
    chunk: ShareChunk
    def __init__(self, header: _Optional[_Union[ShareHeader, _Mapping]] = ..., chunk: _Optional[_Union[ShareChunk, _Mapping]] = ...) -> None: ...

class ShareHeader(_message.Message):
    __slots__ = ("batch", "share")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    batch: _linkage_pb2.BatchHeader
    share: int
    def __init__(self, batch: _Optional[_Union[_linkage_pb2.BatchHeader, _Mapping]] = ..., share: _Optional[int] = ...) -> None: ...

class ShareChunk(_message.Message):
    __slots__ = ("first_record", "record_ids", "shares", "attributes")
    FIRST_RECORD_FIELD_NUMBER: _ClassVar[int]
    RECORD_IDS_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    first_record: int
    record_ids: _containers.RepeatedScalarFieldContainer[str]
    shares: _containers.RepeatedScalarFieldContainer[bytes]
    attributes: _containers.RepeatedCompositeFieldContainer[_linkage_pb2.RecordAttributes]
    def __init__(self, first_record: _Optional[int] = ..., record_ids: _Optional[_Iterable[str]] = ..., shares: _Optional[_Iterable[bytes]] = ..., attributes: _Optional[_Iterable[_Union[_linkage_pb2.RecordAttributes, _Mapping]]] = ...) -> None: ...

class PlanShareRunRequest(_message.Message):
    __slots__ = ("project", "threshold")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    project: str
    threshold: str
    def __init__(self, project: _Optional[str] = ..., threshold: _Optional[str] = ...) -> None: ...

class ShareRunPlan(_message.Message):
    __slots__ = ("project", "run", "threshold", "clk_bits", "pairs", "agencies", "band_edges", "sample_seed", "fieldwise", "field_columns", "field_names")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CLK_BITS_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    AGENCIES_FIELD_NUMBER: _ClassVar[int]
    BAND_EDGES_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SEED_FIELD_NUMBER: _ClassVar[int]
    FIELDWISE_FIELD_NUMBER: _ClassVar[int]
    FIELD_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    FIELD_NAMES_FIELD_NUMBER: _ClassVar[int]
    project: str
    run: str
    threshold: str
    clk_bits: int
    pairs: _containers.RepeatedCompositeFieldContainer[AgencyPairPlan]
    agencies: _containers.RepeatedCompositeFieldContainer[AgencyRecords]
    band_edges: _containers.RepeatedScalarFieldContainer[float]
    sample_seed: int
    fieldwise: bool
    field_columns: _containers.RepeatedCompositeFieldContainer[FieldColumns]
    field_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, project: _Optional[str] = ..., run: _Optional[str] = ..., threshold: _Optional[str] = ..., clk_bits: _Optional[int] = ..., pairs: _Optional[_Iterable[_Union[AgencyPairPlan, _Mapping]]] = ..., agencies: _Optional[_Iterable[_Union[AgencyRecords, _Mapping]]] = ..., band_edges: _Optional[_Iterable[float]] = ..., sample_seed: _Optional[int] = ..., fieldwise: _Optional[bool] = ..., field_columns: _Optional[_Iterable[_Union[FieldColumns, _Mapping]]] = ..., field_names: _Optional[_Iterable[str]] = ...) -> None: ...

class FieldColumns(_message.Message):
    __slots__ = ("start", "stop")
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    start: int
    stop: int
    def __init__(self, start: _Optional[int] = ..., stop: _Optional[int] = ...) -> None: ...

class AgencyPairPlan(_message.Message):
    __slots__ = ("left_agency", "right_agency", "left_rows", "right_rows", "block_rows", "sample_rows", "sample_block_rows")
    LEFT_AGENCY_FIELD_NUMBER: _ClassVar[int]
    RIGHT_AGENCY_FIELD_NUMBER: _ClassVar[int]
    LEFT_ROWS_FIELD_NUMBER: _ClassVar[int]
    RIGHT_ROWS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_ROWS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ROWS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_BLOCK_ROWS_FIELD_NUMBER: _ClassVar[int]
    left_agency: str
    right_agency: str
    left_rows: int
    right_rows: int
    block_rows: int
    sample_rows: int
    sample_block_rows: int
    def __init__(self, left_agency: _Optional[str] = ..., right_agency: _Optional[str] = ..., left_rows: _Optional[int] = ..., right_rows: _Optional[int] = ..., block_rows: _Optional[int] = ..., sample_rows: _Optional[int] = ..., sample_block_rows: _Optional[int] = ...) -> None: ...

class AgencyRecords(_message.Message):
    __slots__ = ("agency", "records", "record_ids_hash")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    RECORD_IDS_HASH_FIELD_NUMBER: _ClassVar[int]
    agency: str
    records: int
    record_ids_hash: str
    def __init__(self, agency: _Optional[str] = ..., records: _Optional[int] = ..., record_ids_hash: _Optional[str] = ...) -> None: ...

class PlanAgreed(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: str
    def __init__(self, run: _Optional[str] = ...) -> None: ...

class MaterialPart(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: MaterialHeader
    chunk: MaterialChunk
    def __init__(self, header: _Optional[_Union[MaterialHeader, _Mapping]] = ..., chunk: _Optional[_Union[MaterialChunk, _Mapping]] = ...) -> None: ...

class MaterialHeader(_message.Message):
    __slots__ = ("run", "party", "hits", "later")
    RUN_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    LATER_FIELD_NUMBER: _ClassVar[int]
    run: str
    party: int
    hits: HitMaterialRequest
    later: LaterMaterialRequest
    def __init__(self, run: _Optional[str] = ..., party: _Optional[int] = ..., hits: _Optional[_Union[HitMaterialRequest, _Mapping]] = ..., later: _Optional[_Union[LaterMaterialRequest, _Mapping]] = ...) -> None: ...

class LaterMaterialBatch(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[LaterMaterialRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[LaterMaterialRequest, _Mapping]]] = ...) -> None: ...

class LaterMaterialRequest(_message.Message):
    __slots__ = ("sequence", "bits", "count", "thresholds", "words", "dabits", "plane_bits")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    DABITS_FIELD_NUMBER: _ClassVar[int]
    PLANE_BITS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    bits: bool
    count: int
    thresholds: int
    words: int
    dabits: int
    plane_bits: int
    def __init__(self, sequence: _Optional[int] = ..., bits: _Optional[bool] = ..., count: _Optional[int] = ..., thresholds: _Optional[int] = ..., words: _Optional[int] = ..., dabits: _Optional[int] = ..., plane_bits: _Optional[int] = ...) -> None: ...

class HitMaterialRequest(_message.Message):
    __slots__ = ("pair", "hits", "thresholds")
    PAIR_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    pair: int
    hits: int
    thresholds: int
    def __init__(self, pair: _Optional[int] = ..., hits: _Optional[int] = ..., thresholds: _Optional[int] = ...) -> None: ...

class ShareRunEvent(_message.Message):
    __slots__ = ("progress", "hit_material", "later_material")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    HIT_MATERIAL_FIELD_NUMBER: _ClassVar[int]
    LATER_MATERIAL_FIELD_NUMBER: _ClassVar[int]
    progress: _linkage_pb2.RunProgress
    hit_material: HitMaterialRequest
    later_material: LaterMaterialBatch
    def __init__(self, progress: _Optional[_Union[_linkage_pb2.RunProgress, _Mapping]] = ..., hit_material: _Optional[_Union[HitMaterialRequest, _Mapping]] = ..., later_material: _Optional[_Union[LaterMaterialBatch, _Mapping]] = ...) -> None: ...

class MaterialChunk(_message.Message):
    __slots__ = ("pair", "seed", "corrections", "sample_seed", "sample_corrections")
    PAIR_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CORRECTIONS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SEED_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_CORRECTIONS_FIELD_NUMBER: _ClassVar[int]
    pair: int
    seed: bytes
    corrections: bytes
    sample_seed: bytes
    sample_corrections: bytes
    def __init__(self, pair: _Optional[int] = ..., seed: _Optional[bytes] = ..., corrections: _Optional[bytes] = ..., sample_seed: _Optional[bytes] = ..., sample_corrections: _Optional[bytes] = ...) -> None: ...

class MaterialReceipt(_message.Message):
    __slots__ = ("run", "bytes")
    RUN_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    run: str
    bytes: int
    def __init__(self, run: _Optional[str] = ..., bytes: _Optional[int] = ...) -> None: ...

class RunSharesRequest(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: str
    def __init__(self, run: _Optional[str] = ...) -> None: ...

class PeerMessage(_message.Message):
    __slots__ = ("handshake", "opening")
    HANDSHAKE_FIELD_NUMBER: _ClassVar[int]
    OPENING_FIELD_NUMBER: _ClassVar[int]
    handshake: PeerHandshake
    opening: Opening
    def __init__(self, handshake: _Optional[_Union[PeerHandshake, _Mapping]] = ..., opening: _Optional[_Union[Opening, _Mapping]] = ...) -> None: ...

class PeerHandshake(_message.Message):
    __slots__ = ("project", "run", "plan_hash")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    PLAN_HASH_FIELD_NUMBER: _ClassVar[int]
    project: str
    run: str
    plan_hash: str
    def __init__(self, project: _Optional[str] = ..., run: _Optional[str] = ..., plan_hash: _Optional[str] = ...) -> None: ...

class Opening(_message.Message):
    __slots__ = ("data", "last")
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    last: bool
    def __init__(self, data: _Optional[bytes] = ..., last: _Optional[bool] = ...) -> None: ...
