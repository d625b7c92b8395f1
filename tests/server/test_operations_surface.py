"""The use-case package's public names: sorted, and each one importable from it."""

from __future__ import annotations

import server.operations as operations


def test_the_public_names_are_sorted_and_resolve():
    assert operations.__all__ == sorted(operations.__all__)
    for name in operations.__all__:
        assert getattr(operations, name) is not None, name
    # what the servicers call is all here
    for name in ("submit_batch", "upload_status", "run_linkage", "project_report",
                 "agency_results", "review_group", "open_follow_up", "withdraw_batch"):
        assert callable(getattr(operations, name))
