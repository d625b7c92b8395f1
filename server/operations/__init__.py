"""What the server does, in plain Python: no protobuf here, one module per use case.

Servicers convert requests into calls of these functions and their results
back into messages (``server/convert.py``). Every function takes the store and
the caller's identity explicitly.

* ``projects``: create, stages, tokens, delete, purge (the coordinator);
* ``uploads``: header checks, resumable uploads, withdrawals (agencies);
* ``runs``: the incremental run (the algorithm itself is ``linkage.matching.run``);
* ``reports``: the coordinator's report and the agencies' hit/no-hit results;
* ``reviews``: review decisions and follow-up requests.
"""

from __future__ import annotations

from .common import (
    MAX_AGENCIES,
    MAX_ENTITY_TYPES,
    MAX_FOLLOW_UPS_IN_REPORT,
    MAX_FOLLOW_UPS_PER_GROUP_AGENCY,
    MAX_NOTE_CHARS,
    MAX_STAGES,
    RESERVED_NAMES,
    FollowUpView,
    bounded_note,
    shortened,
)
from .projects import (
    create_project,
    delete_project,
    purge_project,
    reissue_agency_token,
    set_project_stages,
)
from .reports import (
    AgencyReport,
    GroupReport,
    ProjectReport,
    RecordHit,
    agency_results,
    project_report,
)
from .reviews import answer_follow_up, list_follow_ups, open_follow_up, review_group
from .runs import GROUP_KEY_SETTING, run_linkage
from .uploads import (
    MAX_RECORDS_PER_BATCH,
    BatchHeaderInfo,
    SubmitOutcome,
    UploadProgress,
    Withdrawal,
    check_header,
    submit_batch,
    upload_status,
    withdraw_batch,
)

__all__ = [
    "AgencyReport",
    "BatchHeaderInfo",
    "FollowUpView",
    "GROUP_KEY_SETTING",
    "GroupReport",
    "MAX_AGENCIES",
    "MAX_ENTITY_TYPES",
    "MAX_FOLLOW_UPS_IN_REPORT",
    "MAX_FOLLOW_UPS_PER_GROUP_AGENCY",
    "MAX_NOTE_CHARS",
    "MAX_RECORDS_PER_BATCH",
    "MAX_STAGES",
    "ProjectReport",
    "RESERVED_NAMES",
    "RecordHit",
    "SubmitOutcome",
    "UploadProgress",
    "Withdrawal",
    "agency_results",
    "answer_follow_up",
    "bounded_note",
    "check_header",
    "create_project",
    "delete_project",
    "list_follow_ups",
    "open_follow_up",
    "project_report",
    "purge_project",
    "reissue_agency_token",
    "review_group",
    "run_linkage",
    "set_project_stages",
    "shortened",
    "submit_batch",
    "upload_status",
    "withdraw_batch",
]
