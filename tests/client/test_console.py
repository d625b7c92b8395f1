"""The console's access rules and page shaping, without a browser.

The browser test (test_console_browser.py) drives the whole console against a real server;
these check the gate itself through Flask's test client, where no page needs the server: the
client below points at a port nothing listens on and is never called.
"""

from __future__ import annotations

import csv
import io

import pytest
from click.testing import CliRunner

from linkage_service.client.api import LinkageClient
from linkage_service.client.cli import main
from linkage_service.client.console import OneTimeToken, check_bind, create_app
from linkage_service.client.console.views import HitFilter, NetworkIndex, hits_csv, review_queue, \
    split_follow_ups
from linkage.errors import InvalidRequestError


@pytest.fixture
def unreachable_client():
    with LinkageClient("127.0.0.1:9", "never-sent") as client:
        yield client


def _status(browser, path: str, **options) -> int:
    """A GET's status, closing the response (a file response holds the file open)."""
    with browser.get(path, **options) as response:
        return response.status_code


def _app(client, access: OneTimeToken, **options):
    app = create_app(client, role="coordinator", project="p", access=access, **options)
    app.config["TESTING"] = True
    return app


def test_the_one_time_token_cannot_be_reused():
    token = OneTimeToken()
    assert not token.redeem("wrong")
    assert not token.used  # a wrong guess does not burn the real link
    assert token.redeem(token.value)
    assert token.used
    assert not token.redeem(token.value)
    assert not OneTimeToken("a" * 43).redeem("")


def test_the_link_opens_one_session_with_a_strict_httponly_cookie(unreachable_client):
    access = OneTimeToken()
    app = _app(unreachable_client, access)
    first = app.test_client()
    response = first.get(f"/?token={access.value}")
    assert response.status_code == 303 and response.headers["Location"] == "/overview"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert _status(first, "/static/console.js") == 200

    second = app.test_client()
    refused = second.get(f"/?token={access.value}")
    assert refused.status_code == 403 and b"used already" in refused.data
    for path in ("/static/console.js", "/overview", "/api/runs/status"):
        assert _status(second, path) == 401, path
    assert second.post("/api/review", json={}).status_code == 401
    assert second.get("/").status_code == 401


def test_state_changing_requests_need_the_csrf_token(unreachable_client):
    access = OneTimeToken()
    app = _app(unreachable_client, access)
    browser = app.test_client()
    browser.get(f"/?token={access.value}")
    refused = browser.post("/api/review", json={"decision": "accepted", "group": "g-1"})
    assert refused.status_code == 400 and b"CSRF" in refused.data
    assert browser.post("/api/runs", json={"project": "p"},
                        headers={"X-CSRFToken": "forged"}).status_code == 400
    assert browser.post("/logout").status_code == 400
    assert _status(browser, "/static/console.js") == 200  # still signed in


def test_the_host_header_must_name_the_console(unreachable_client):
    access = OneTimeToken()
    app = _app(unreachable_client, access, allowed_hosts=("127.0.0.1:8765",))
    browser = app.test_client()
    assert browser.get(f"/?token={access.value}",
                       base_url="http://attacker.example").status_code == 403
    assert not access.used
    assert browser.get(f"/?token={access.value}",
                       base_url="http://127.0.0.1:8765").status_code == 303


def test_the_console_listens_on_loopback_only(tmp_path):
    with pytest.raises(InvalidRequestError, match="127.0.0.1 only"):
        check_bind("0.0.0.0")
    token_file = tmp_path / "token"
    token_file.write_text("t\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["console", "--bind", "0.0.0.0",
                                       "--token-file", str(token_file)])
    assert result.exit_code == 1 and "127.0.0.1 only" in result.output


def _group(group_id: str, confidence: float, *, needs_review=True, review=None) -> dict:
    return {"id": group_id, "agencies": {"a": 1, "b": 1}, "size": 2, "confidence": confidence,
            "review": review, "review_note": None, "needs_review": needs_review,
            "follow_ups": []}


def test_the_review_queue_puts_the_most_uncertain_first():
    report = {"groups": [_group("g-1", 0.75), _group("g-2", 0.52), _group("g-3", 0.3),
                         _group("g-4", 0.99, needs_review=False),
                         _group("g-5", 0.6, needs_review=False, review="accepted")]}
    waiting, decided = review_queue(report, NetworkIndex(None))
    assert [g["id"] for g in waiting] == ["g-2", "g-3", "g-1"]
    assert [g["id"] for g in decided] == ["g-5"]


def test_follow_ups_split_into_asked_of_me_and_asked_by_me():
    def follow_up(number, requested_by, agency):
        return {"id": f"f-{number}", "group": "g-1", "requested_by": requested_by,
                "agency": agency, "status": "open", "note": "", "answer_note": ""}

    hits = [{"record": "r1", "group": "g-1", "agencies": ["b", "c"],
             "follow_ups": [follow_up(1, "b", "a"), follow_up(2, "coordinator", "a"),
                            follow_up(3, "a", "b")]},
            {"record": "r2", "group": "g-1", "agencies": ["b", "c"],
             "follow_ups": [follow_up(1, "b", "a")]}]
    asked, requested = split_follow_ups(hits)
    assert [f["id"] for f in asked] == ["f-2", "f-1"]
    assert [f["id"] for f in requested] == ["f-3"]


def test_hits_filter_and_csv_export():
    hits = [{"record": "=HYPERLINK(1)", "group": "g-1", "agencies": ["b"], "confidence": 0.9,
             "duplicate_in_own_agency": False, "follow_ups": []},
            {"record": "r2", "group": "g-2", "agencies": [], "confidence": 0.5,
             "duplicate_in_own_agency": True, "follow_ups": []}]
    chosen = HitFilter.from_args({"min_confidence": "0.8"})
    assert [h["record"] for h in hits if chosen.keep(h)] == ["=HYPERLINK(1)"]
    assert HitFilter.from_args({"min_confidence": "lots"}).problems
    rows = list(csv.DictReader(io.StringIO(hits_csv(hits))))
    assert rows[0]["record"] == "'=HYPERLINK(1)" and rows[0]["other_agencies"] == "b"
    assert rows[1]["duplicate_in_own_agency"] == "yes"
