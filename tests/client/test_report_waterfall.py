"""The per-group explanation: computed from field-wise scores, drawn in the HTML report."""

from __future__ import annotations

import json
import re

from linkage_service.client.report_html import render_html
from linkage.analysis.explain import LEVEL_NAMES, group_waterfalls
from linkage.matching.fellegi_sunter import LINK_PROBABILITY, score_fieldwise
from linkage.matching.grouping import greedy_groups
from tests.client.test_field_render import _report
from tests.linkage.test_fellegi_sunter import FAMILY, GIVEN, scenario  # noqa: F401 (fixture)


def test_a_groups_waterfall_adds_up_and_is_drawn_without_values(scenario):  # noqa: F811
    layout, clks, owners, _, pairs = scenario
    scores = score_fieldwise(clks, layout, pairs, owners=owners, cross_owner_only=True)
    linked = scores.probability >= LINK_PROBABILITY
    labels = greedy_groups(type(pairs)(pairs.left[linked], pairs.right[linked],
                                       scores.probability[linked]),
                           clks.shape[0], owners, max_per_owner=1).labels
    waterfalls = group_waterfalls(scores, labels, pairs.left, pairs.right, linked)
    assert len(waterfalls) > 50
    text = json.dumps(waterfalls)                      # JSON-able as it is
    for name in GIVEN + FAMILY:
        assert f'"{name}"' not in text
    for group, waterfall in waterfalls.items():
        steps = waterfall["steps"]
        assert [s["field"] for s in steps] == ["prior", *layout.fields]
        assert abs(steps[-1]["cumulative"] - waterfall["match_weight"]) < 0.01
        assert waterfall["probability"] >= LINK_PROBABILITY
        assert all(s["label"].split(" ")[0] in (*LEVEL_NAMES, "missing")
                   for s in steps[1:])
    # A group with a missing field shows it as missing, weighing nothing.
    missing = [w for w in waterfalls.values() if any(s["level"] == -1 for s in w["steps"])]
    assert missing and all(s["weight"] == 0 for w in missing for s in w["steps"]
                           if s["level"] == -1)
    report = _report()
    shown = dict(list(waterfalls.items())[:3])
    report["waterfalls"] = {str(k): v for k, v in shown.items()}
    page = render_html(report)
    assert "Why groups were linked" in page
    figures = re.findall(r"<figure class='waterfall' data-group='(\d+)'>(.*?)</figure>", page,
                         re.S)
    assert [g for g, _ in figures] == [str(k) for k in shown]
    for (_, figure), waterfall in zip(figures, shown.values()):
        # One bar per step plus the total, and the total's weight printed.
        assert figure.count("<rect class='step'") == len(waterfall["steps"])
        assert f"{waterfall['match_weight']:+.1f}" in figure
    assert "Why groups were linked" not in render_html(_report())   # nothing to explain


def test_a_field_wise_runs_quality_curve_is_shown_in_text_and_html():
    from linkage_service.client.render import render_report

    report = _report()
    curve = [[c / 100, 0.9 + c / 1000, 1 - c / 200] for c in range(2, 100, 2)]
    report["network"] = {"probability_curve": curve}
    report["threshold"] = 0.36
    text = render_report(report)
    assert "Expected quality by match-probability cut-off" in text
    assert "this run: 0.36" in text
    row = next(line for line in text.splitlines() if line.strip().startswith("0.50"))
    precision, recall = 0.9 + 50 / 1000, 1 - 50 / 200
    assert row.split() == ["0.50", f"{precision:.4f}", f"{recall:.4f}",
                           f"{2 * precision * recall / (precision + recall):.4f}"]
    page = render_html(report)
    chart = re.search(r"<svg id='probability-curve'.*?</svg>", page, re.S).group(0)
    assert chart.count("<polyline") == 3 and "cut-off 0.36" in chart
    plain = _report()
    assert "probability-curve" not in render_html(plain)
    assert "match-probability cut-off" not in render_report(plain)
