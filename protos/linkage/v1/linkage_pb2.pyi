from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitBatchRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: BatchHeader
    chunk: RecordChunk
    def __init__(self, header: _Optional[_Union[BatchHeader, _Mapping]] = ..., chunk: _Optional[_Union[RecordChunk, _Mapping]] = ...) -> None: ...

class BatchHeader(_message.Message):
    __slots__ = ("project", "schema_fingerprint", "key_check", "clk_bits", "record_count", "batch_id", "content_hash", "entity_type", "deduplicated")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    KEY_CHECK_FIELD_NUMBER: _ClassVar[int]
    CLK_BITS_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    project: str
    schema_fingerprint: str
    key_check: str
    clk_bits: int
    record_count: int
    batch_id: str
    content_hash: str
    entity_type: str
    deduplicated: bool
    def __init__(self, project: _Optional[str] = ..., schema_fingerprint: _Optional[str] = ..., key_check: _Optional[str] = ..., clk_bits: _Optional[int] = ..., record_count: _Optional[int] = ..., batch_id: _Optional[str] = ..., content_hash: _Optional[str] = ..., entity_type: _Optional[str] = ..., deduplicated: _Optional[bool] = ...) -> None: ...

class RecordChunk(_message.Message):
    __slots__ = ("record_ids", "clks", "first_record", "attributes")
    RECORD_IDS_FIELD_NUMBER: _ClassVar[int]
    CLKS_FIELD_NUMBER: _ClassVar[int]
    FIRST_RECORD_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    record_ids: _containers.RepeatedScalarFieldContainer[str]
    clks: _containers.RepeatedScalarFieldContainer[bytes]
    first_record: int
    attributes: _containers.RepeatedCompositeFieldContainer[RecordAttributes]
    def __init__(self, record_ids: _Optional[_Iterable[str]] = ..., clks: _Optional[_Iterable[bytes]] = ..., first_record: _Optional[int] = ..., attributes: _Optional[_Iterable[_Union[RecordAttributes, _Mapping]]] = ...) -> None: ...

class RecordAttributes(_message.Message):
    __slots__ = ("entity_type", "case_ref", "stage")
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    CASE_REF_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    entity_type: str
    case_ref: str
    stage: str
    def __init__(self, entity_type: _Optional[str] = ..., case_ref: _Optional[str] = ..., stage: _Optional[str] = ...) -> None: ...

class SubmitBatchResponse(_message.Message):
    __slots__ = ("batch_id", "records_accepted", "agency", "already_stored")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    ALREADY_STORED_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    records_accepted: int
    agency: str
    already_stored: bool
    def __init__(self, batch_id: _Optional[str] = ..., records_accepted: _Optional[int] = ..., agency: _Optional[str] = ..., already_stored: _Optional[bool] = ...) -> None: ...

class GetUploadStatusRequest(_message.Message):
    __slots__ = ("project", "batch_id")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    project: str
    batch_id: str
    def __init__(self, project: _Optional[str] = ..., batch_id: _Optional[str] = ...) -> None: ...

class UploadStatus(_message.Message):
    __slots__ = ("batch_id", "records_received", "committed", "agency")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    records_received: int
    committed: bool
    agency: str
    def __init__(self, batch_id: _Optional[str] = ..., records_received: _Optional[int] = ..., committed: _Optional[bool] = ..., agency: _Optional[str] = ...) -> None: ...

class GetResultsRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class RecordResult(_message.Message):
    __slots__ = ("record", "group", "agencies", "confidence", "duplicate_in_own_agency", "follow_ups")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    AGENCIES_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_IN_OWN_AGENCY_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_UPS_FIELD_NUMBER: _ClassVar[int]
    record: str
    group: str
    agencies: _containers.RepeatedScalarFieldContainer[str]
    confidence: float
    duplicate_in_own_agency: bool
    follow_ups: _containers.RepeatedCompositeFieldContainer[FollowUp]
    def __init__(self, record: _Optional[str] = ..., group: _Optional[str] = ..., agencies: _Optional[_Iterable[str]] = ..., confidence: _Optional[float] = ..., duplicate_in_own_agency: _Optional[bool] = ..., follow_ups: _Optional[_Iterable[_Union[FollowUp, _Mapping]]] = ...) -> None: ...

class OpenFollowUpRequest(_message.Message):
    __slots__ = ("project", "group", "note")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    project: str
    group: str
    note: str
    def __init__(self, project: _Optional[str] = ..., group: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class OpenFollowUpResponse(_message.Message):
    __slots__ = ("follow_ups",)
    FOLLOW_UPS_FIELD_NUMBER: _ClassVar[int]
    follow_ups: _containers.RepeatedCompositeFieldContainer[FollowUp]
    def __init__(self, follow_ups: _Optional[_Iterable[_Union[FollowUp, _Mapping]]] = ...) -> None: ...

class AnswerFollowUpRequest(_message.Message):
    __slots__ = ("project", "follow_up", "decision", "note")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_UP_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    project: str
    follow_up: str
    decision: str
    note: str
    def __init__(self, project: _Optional[str] = ..., follow_up: _Optional[str] = ..., decision: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class FollowUp(_message.Message):
    __slots__ = ("id", "group", "requested_by", "agency", "status", "note", "answer_note")
    ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    ANSWER_NOTE_FIELD_NUMBER: _ClassVar[int]
    id: str
    group: str
    requested_by: str
    agency: str
    status: str
    note: str
    answer_note: str
    def __init__(self, id: _Optional[str] = ..., group: _Optional[str] = ..., requested_by: _Optional[str] = ..., agency: _Optional[str] = ..., status: _Optional[str] = ..., note: _Optional[str] = ..., answer_note: _Optional[str] = ...) -> None: ...

class CreateProjectRequest(_message.Message):
    __slots__ = ("name", "schema_json", "agencies", "stages", "entity_schemas")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    AGENCIES_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    ENTITY_SCHEMAS_FIELD_NUMBER: _ClassVar[int]
    name: str
    schema_json: str
    agencies: _containers.RepeatedScalarFieldContainer[str]
    stages: _containers.RepeatedScalarFieldContainer[str]
    entity_schemas: _containers.RepeatedCompositeFieldContainer[EntitySchema]
    def __init__(self, name: _Optional[str] = ..., schema_json: _Optional[str] = ..., agencies: _Optional[_Iterable[str]] = ..., stages: _Optional[_Iterable[str]] = ..., entity_schemas: _Optional[_Iterable[_Union[EntitySchema, _Mapping]]] = ...) -> None: ...

class EntitySchema(_message.Message):
    __slots__ = ("entity_type", "schema_json")
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    entity_type: str
    schema_json: str
    def __init__(self, entity_type: _Optional[str] = ..., schema_json: _Optional[str] = ...) -> None: ...

class CreateProjectResponse(_message.Message):
    __slots__ = ("name", "schema_fingerprint", "tokens")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    name: str
    schema_fingerprint: str
    tokens: _containers.RepeatedCompositeFieldContainer[AgencyToken]
    def __init__(self, name: _Optional[str] = ..., schema_fingerprint: _Optional[str] = ..., tokens: _Optional[_Iterable[_Union[AgencyToken, _Mapping]]] = ...) -> None: ...

class AgencyToken(_message.Message):
    __slots__ = ("agency", "token")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    agency: str
    token: str
    def __init__(self, agency: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...

class ListProjectsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProjectsResponse(_message.Message):
    __slots__ = ("projects",)
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    projects: _containers.RepeatedCompositeFieldContainer[ProjectSummary]
    def __init__(self, projects: _Optional[_Iterable[_Union[ProjectSummary, _Mapping]]] = ...) -> None: ...

class ProjectSummary(_message.Message):
    __slots__ = ("name", "schema_fingerprint", "agencies", "batches", "records", "stages")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    AGENCIES_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    name: str
    schema_fingerprint: str
    agencies: _containers.RepeatedScalarFieldContainer[str]
    batches: int
    records: int
    stages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., schema_fingerprint: _Optional[str] = ..., agencies: _Optional[_Iterable[str]] = ..., batches: _Optional[int] = ..., records: _Optional[int] = ..., stages: _Optional[_Iterable[str]] = ...) -> None: ...

class RunLinkageRequest(_message.Message):
    __slots__ = ("project", "threshold", "blocking", "estimates")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    BLOCKING_FIELD_NUMBER: _ClassVar[int]
    ESTIMATES_FIELD_NUMBER: _ClassVar[int]
    project: str
    threshold: str
    blocking: str
    estimates: bool
    def __init__(self, project: _Optional[str] = ..., threshold: _Optional[str] = ..., blocking: _Optional[str] = ..., estimates: _Optional[bool] = ...) -> None: ...

class RunProgress(_message.Message):
    __slots__ = ("stage", "done", "total", "summary")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    stage: str
    done: int
    total: int
    summary: RunSummary
    def __init__(self, stage: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., summary: _Optional[_Union[RunSummary, _Mapping]] = ...) -> None: ...

class RunSummary(_message.Message):
    __slots__ = ("run", "threshold", "threshold_reason", "records", "candidate_pairs", "groups", "cross_agency_groups", "seconds", "new_records", "reused", "blocking", "groups_to_review", "reviews_used_accepted", "reviews_used_rejected")
    RUN_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_REASON_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_PAIRS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    CROSS_AGENCY_GROUPS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    NEW_RECORDS_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    BLOCKING_FIELD_NUMBER: _ClassVar[int]
    GROUPS_TO_REVIEW_FIELD_NUMBER: _ClassVar[int]
    REVIEWS_USED_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REVIEWS_USED_REJECTED_FIELD_NUMBER: _ClassVar[int]
    run: int
    threshold: float
    threshold_reason: str
    records: int
    candidate_pairs: int
    groups: int
    cross_agency_groups: int
    seconds: float
    new_records: int
    reused: bool
    blocking: str
    groups_to_review: int
    reviews_used_accepted: int
    reviews_used_rejected: int
    def __init__(self, run: _Optional[int] = ..., threshold: _Optional[float] = ..., threshold_reason: _Optional[str] = ..., records: _Optional[int] = ..., candidate_pairs: _Optional[int] = ..., groups: _Optional[int] = ..., cross_agency_groups: _Optional[int] = ..., seconds: _Optional[float] = ..., new_records: _Optional[int] = ..., reused: _Optional[bool] = ..., blocking: _Optional[str] = ..., groups_to_review: _Optional[int] = ..., reviews_used_accepted: _Optional[int] = ..., reviews_used_rejected: _Optional[int] = ...) -> None: ...

class GetReportRequest(_message.Message):
    __slots__ = ("project", "page_token")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project: str
    page_token: str
    def __init__(self, project: _Optional[str] = ..., page_token: _Optional[str] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("project", "summary", "agencies", "agency_pairs", "groups", "histogram", "estimated_precision", "estimated_recall", "network_json", "next_page_token", "groups_total")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    AGENCIES_FIELD_NUMBER: _ClassVar[int]
    AGENCY_PAIRS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_PRECISION_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_RECALL_FIELD_NUMBER: _ClassVar[int]
    NETWORK_JSON_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    GROUPS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    project: str
    summary: RunSummary
    agencies: _containers.RepeatedCompositeFieldContainer[AgencyStats]
    agency_pairs: _containers.RepeatedCompositeFieldContainer[AgencyPairStats]
    groups: _containers.RepeatedCompositeFieldContainer[GroupSummary]
    histogram: _containers.RepeatedCompositeFieldContainer[HistogramBin]
    estimated_precision: float
    estimated_recall: float
    network_json: str
    next_page_token: str
    groups_total: int
    def __init__(self, project: _Optional[str] = ..., summary: _Optional[_Union[RunSummary, _Mapping]] = ..., agencies: _Optional[_Iterable[_Union[AgencyStats, _Mapping]]] = ..., agency_pairs: _Optional[_Iterable[_Union[AgencyPairStats, _Mapping]]] = ..., groups: _Optional[_Iterable[_Union[GroupSummary, _Mapping]]] = ..., histogram: _Optional[_Iterable[_Union[HistogramBin, _Mapping]]] = ..., estimated_precision: _Optional[float] = ..., estimated_recall: _Optional[float] = ..., network_json: _Optional[str] = ..., next_page_token: _Optional[str] = ..., groups_total: _Optional[int] = ...) -> None: ...

class AgencyStats(_message.Message):
    __slots__ = ("agency", "records", "batches", "records_with_hits", "duplicate_records")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    RECORDS_WITH_HITS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_RECORDS_FIELD_NUMBER: _ClassVar[int]
    agency: str
    records: int
    batches: int
    records_with_hits: int
    duplicate_records: int
    def __init__(self, agency: _Optional[str] = ..., records: _Optional[int] = ..., batches: _Optional[int] = ..., records_with_hits: _Optional[int] = ..., duplicate_records: _Optional[int] = ...) -> None: ...

class AgencyPairStats(_message.Message):
    __slots__ = ("agency_a", "agency_b", "shared_groups")
    AGENCY_A_FIELD_NUMBER: _ClassVar[int]
    AGENCY_B_FIELD_NUMBER: _ClassVar[int]
    SHARED_GROUPS_FIELD_NUMBER: _ClassVar[int]
    agency_a: str
    agency_b: str
    shared_groups: int
    def __init__(self, agency_a: _Optional[str] = ..., agency_b: _Optional[str] = ..., shared_groups: _Optional[int] = ...) -> None: ...

class GroupSummary(_message.Message):
    __slots__ = ("id", "agencies", "size", "confidence", "review", "review_note", "follow_ups", "needs_review")
    class AgenciesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    AGENCIES_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    REVIEW_NOTE_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_UPS_FIELD_NUMBER: _ClassVar[int]
    NEEDS_REVIEW_FIELD_NUMBER: _ClassVar[int]
    id: str
    agencies: _containers.ScalarMap[str, int]
    size: int
    confidence: float
    review: str
    review_note: str
    follow_ups: _containers.RepeatedCompositeFieldContainer[FollowUp]
    needs_review: bool
    def __init__(self, id: _Optional[str] = ..., agencies: _Optional[_Mapping[str, int]] = ..., size: _Optional[int] = ..., confidence: _Optional[float] = ..., review: _Optional[str] = ..., review_note: _Optional[str] = ..., follow_ups: _Optional[_Iterable[_Union[FollowUp, _Mapping]]] = ..., needs_review: _Optional[bool] = ...) -> None: ...

class HistogramBin(_message.Message):
    __slots__ = ("low", "high", "count")
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    low: float
    high: float
    count: int
    def __init__(self, low: _Optional[float] = ..., high: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class ReviewGroupRequest(_message.Message):
    __slots__ = ("project", "group", "decision", "note")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    project: str
    group: str
    decision: str
    note: str
    def __init__(self, project: _Optional[str] = ..., group: _Optional[str] = ..., decision: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ReviewGroupResponse(_message.Message):
    __slots__ = ("group", "decision")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    group: str
    decision: str
    def __init__(self, group: _Optional[str] = ..., decision: _Optional[str] = ...) -> None: ...

class PurgeProjectRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class PurgeProjectResponse(_message.Message):
    __slots__ = ("project", "records_deleted", "pair_blocks_deleted")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    RECORDS_DELETED_FIELD_NUMBER: _ClassVar[int]
    PAIR_BLOCKS_DELETED_FIELD_NUMBER: _ClassVar[int]
    project: str
    records_deleted: int
    pair_blocks_deleted: int
    def __init__(self, project: _Optional[str] = ..., records_deleted: _Optional[int] = ..., pair_blocks_deleted: _Optional[int] = ...) -> None: ...

class GetMetricsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Metrics(_message.Message):
    __slots__ = ("projects", "batches", "records", "runs", "audit_entries", "calls", "uptime_seconds", "unfinished_uploads", "unfinished_upload_bytes")
    class CallsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    UNFINISHED_UPLOADS_FIELD_NUMBER: _ClassVar[int]
    UNFINISHED_UPLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    projects: int
    batches: int
    records: int
    runs: int
    audit_entries: int
    calls: _containers.ScalarMap[str, int]
    uptime_seconds: float
    unfinished_uploads: int
    unfinished_upload_bytes: int
    def __init__(self, projects: _Optional[int] = ..., batches: _Optional[int] = ..., records: _Optional[int] = ..., runs: _Optional[int] = ..., audit_entries: _Optional[int] = ..., calls: _Optional[_Mapping[str, int]] = ..., uptime_seconds: _Optional[float] = ..., unfinished_uploads: _Optional[int] = ..., unfinished_upload_bytes: _Optional[int] = ...) -> None: ...

class ReadAuditLogRequest(_message.Message):
    __slots__ = ("project", "caller", "method", "outcome", "since", "from_sequence")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    project: str
    caller: str
    method: str
    outcome: str
    since: str
    from_sequence: int
    def __init__(self, project: _Optional[str] = ..., caller: _Optional[str] = ..., method: _Optional[str] = ..., outcome: _Optional[str] = ..., since: _Optional[str] = ..., from_sequence: _Optional[int] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("sequence", "time", "caller", "role", "project", "method", "outcome", "counts_json", "previous_hash", "entry_hash")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    COUNTS_JSON_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_HASH_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: str
    caller: str
    role: str
    project: str
    method: str
    outcome: str
    counts_json: str
    previous_hash: str
    entry_hash: str
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[str] = ..., caller: _Optional[str] = ..., role: _Optional[str] = ..., project: _Optional[str] = ..., method: _Optional[str] = ..., outcome: _Optional[str] = ..., counts_json: _Optional[str] = ..., previous_hash: _Optional[str] = ..., entry_hash: _Optional[str] = ...) -> None: ...

class ListFollowUpsRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class ListFollowUpsResponse(_message.Message):
    __slots__ = ("follow_ups",)
    FOLLOW_UPS_FIELD_NUMBER: _ClassVar[int]
    follow_ups: _containers.RepeatedCompositeFieldContainer[FollowUp]
    def __init__(self, follow_ups: _Optional[_Iterable[_Union[FollowUp, _Mapping]]] = ...) -> None: ...

class SetProjectStagesRequest(_message.Message):
    __slots__ = ("project", "stages")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    project: str
    stages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, project: _Optional[str] = ..., stages: _Optional[_Iterable[str]] = ...) -> None: ...

class SetProjectStagesResponse(_message.Message):
    __slots__ = ("project", "stages")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    project: str
    stages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, project: _Optional[str] = ..., stages: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteProjectRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class DeleteProjectResponse(_message.Message):
    __slots__ = ("project", "batches_deleted", "records_deleted")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    BATCHES_DELETED_FIELD_NUMBER: _ClassVar[int]
    RECORDS_DELETED_FIELD_NUMBER: _ClassVar[int]
    project: str
    batches_deleted: int
    records_deleted: int
    def __init__(self, project: _Optional[str] = ..., batches_deleted: _Optional[int] = ..., records_deleted: _Optional[int] = ...) -> None: ...

class ReissueAgencyTokenRequest(_message.Message):
    __slots__ = ("project", "agency")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    project: str
    agency: str
    def __init__(self, project: _Optional[str] = ..., agency: _Optional[str] = ...) -> None: ...

class WithdrawBatchRequest(_message.Message):
    __slots__ = ("project", "batch_id")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    project: str
    batch_id: str
    def __init__(self, project: _Optional[str] = ..., batch_id: _Optional[str] = ...) -> None: ...

class WithdrawBatchResponse(_message.Message):
    __slots__ = ("batch_id", "records_withdrawn", "unfinished_upload")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_WITHDRAWN_FIELD_NUMBER: _ClassVar[int]
    UNFINISHED_UPLOAD_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    records_withdrawn: int
    unfinished_upload: bool
    def __init__(self, batch_id: _Optional[str] = ..., records_withdrawn: _Optional[int] = ..., unfinished_upload: _Optional[bool] = ...) -> None: ...
