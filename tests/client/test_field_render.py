"""The text and HTML reports list what the summary counts (issue 15)."""

from __future__ import annotations

from linkage_service.client.render import member_text, render_report
from linkage_service.client.report_html import packed_layout, render_html

import networkx as nx


def _report() -> dict:
    group = {"review": None, "review_note": None, "size": 2, "follow_ups": []}
    return {
        "project": "p", "run": 1, "threshold": 0.8, "threshold_reason": "auto",
        "estimated_precision": 0.0, "estimated_recall": 0.0,
        "summary": {"records": 10, "candidate_pairs": 4, "groups": 3, "cross_agency_groups": 1,
                    "seconds": 0.1, "groups_to_review": 2},
        "agencies": {"be-police": {"records": 5, "batches": 1, "records_with_hits": 2,
                                   "duplicate_records": 2},
                     "se-police": {"records": 5, "batches": 1, "records_with_hits": 1,
                                   "duplicate_records": 0}},
        "agency_pairs": {"be-police|se-police": 1},
        "groups": [
            {**group, "id": "g-cross000000000001", "agencies": {"be-police": 1,
                                                                "se-police": 2},
             "size": 3, "confidence": 0.5, "needs_review": True,
             "follow_ups": [{"id": "f-1", "group": "g-cross000000000001",
                             "requested_by": "be-police", "agency": "se-police",
                             "status": "approved", "note": "port query",
                             "answer_note": "via liaison"}]},
            {**group, "id": "g-within00000000002", "agencies": {"be-police": 2},
             "confidence": 0.4, "needs_review": True},
            {**group, "id": "g-within00000000003", "agencies": {"be-police": 2},
             "confidence": 0.99, "needs_review": False},
        ],
        "histogram": [{"low": 0.6 + i / 100, "high": 0.61 + i / 100, "count": 5 - i // 10}
                      for i in range(40)],
        "network": None,
    }


def test_text_report_lists_within_agency_groups_that_need_review_and_follow_ups():
    text = render_report(_report())
    assert "Groups within one agency that need review: 1" in text
    assert "g-within00000000002" in text and "g-within00000000003" not in text
    assert "be-police, se-police ×2" in text
    assert "Follow-ups: 1" in text and "via liaison" in text


def test_html_report_lists_within_agency_groups_that_need_review():
    page = render_html(_report())
    assert "g-within00000000002" in page and "(within one agency)" in page
    assert "g-within00000000003" not in page
    assert "se-police ×2" in page
    assert "<td class='gid'>g-cross000000000001</td>" in page


def test_member_text_puts_a_space_before_the_count():
    assert member_text({"be-police": 1, "se-police": 2}) == "be-police, se-police ×2"


def test_packed_layout_fills_the_frame_for_many_small_components():
    graph = nx.Graph()
    for index in range(30):
        graph.add_edge(f"e{index}", f"c{index}")
        graph.add_edge(f"e{index}", f"d{index}")
    graph.add_nodes_from(f"lone{index}" for index in range(5))
    positions = packed_layout(graph)
    xs = [x for x, _ in positions.values()]
    ys = [y for _, y in positions.values()]
    assert min(xs) < 50 and max(xs) > 950 and min(ys) < 50 and max(ys) > 950
    assert len({(round(x), round(y)) for x, y in positions.values()}) == len(graph)
