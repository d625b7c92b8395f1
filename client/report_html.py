"""The coordinator report as one self-contained HTML file: it works offline (no CDN).

Tables for the numbers, pictures where a picture beats a table: the agency
overlap as a heat map, the score histogram with the threshold and the model's
precision/recall curve, and the network of linked entities and cases, laid out
here with networkx and drawn as SVG with a little inline JavaScript (zoom,
pan, filter by agency / stage / entity type, click a node for its summary,
focus on one broker's neighbourhood).

The layout is force-directed (Fruchterman-Reingold, ``networkx.spring_layout``)
per connected component; components are packed side by side, largest first,
and the whole drawing is scaled to fill the frame, so neither a few small
clusters nor one hairball leaves the frame empty.
Only group ids and pseudonymous case references appear, never record ids.
"""

from __future__ import annotations

import html
import json
import math

import networkx as nx
import numpy as np

from .render import member_text
from .report_curve import probability_curve_svg

__all__ = ["MAX_NETWORK_NODES", "network_view", "render_html", "waterfall_svg"]

MAX_NETWORK_NODES = 600
_TOP_BROKERS = 60
_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
            "#e377c2", "#7f7f7f", "#bcbd22"]


def network_view(network: dict, *, max_nodes: int = MAX_NETWORK_NODES) -> dict:
    """The part of the network worth drawing, with positions.

    The strongest brokers, their cases and the other entities in those cases,
    up to ``max_nodes`` nodes; positions from a spring layout in [0, 1000].
    """
    brokers = [b["group"] for b in network.get("brokers", [])
               if len(b["agencies"]) > 1][:_TOP_BROKERS]
    neighbours: dict[str, set[str]] = {}
    for edge in network.get("edges", []):
        neighbours.setdefault(edge["source"], set()).add(edge["target"])
        neighbours.setdefault(edge["target"], set()).add(edge["source"])
    chosen: list[str] = []
    seen: set[str] = set()

    def take(node: str) -> None:
        if node not in seen and len(chosen) < max_nodes:
            seen.add(node)
            chosen.append(node)

    for broker in brokers:
        take(broker)
        for case in sorted(neighbours.get(broker, ())):
            take(case)
    for node in list(chosen):
        for other in sorted(neighbours.get(node, ())):
            take(other)
    nodes = {n["id"]: n for n in network.get("nodes", []) if n["id"] in seen}
    edges = [e for e in network.get("edges", []) if e["source"] in seen and e["target"] in seen]
    graph = nx.Graph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from((e["source"], e["target"]) for e in edges)
    positions = packed_layout(graph)
    rank = {b["group"]: b["rank"] for b in network.get("brokers", [])}
    drawn = []
    for node_id, node in nodes.items():
        x, y = positions.get(node_id, (FRAME / 2, FRAME / 2))
        drawn.append({**node, "x": round(float(x), 1), "y": round(float(y), 1),
                      "rank": rank.get(node_id)})
    return {"nodes": drawn, "edges": edges}


FRAME = 1000.0  # the network's SVG viewBox is FRAME x FRAME
_MARGIN = 24.0


def packed_layout(graph: nx.Graph, *, seed: int = 7) -> dict[str, tuple[float, float]]:
    """Positions in [margin, FRAME - margin]² for every node: a force-directed layout of
    each connected component, the components packed in rows (largest first, each given
    room in proportion to the square root of its size), then stretched to fill the frame.

    One spring layout of a graph of many components spreads the small ones over a ring
    around the large one and leaves most of the frame empty; one of a single dense
    component crowds its centre. Laying out and packing components separately, with
    outliers clipped before scaling, uses the frame.
    """
    if len(graph) == 0:
        return {}
    components = sorted((sorted(c) for c in nx.connected_components(graph)),
                        key=lambda c: (-len(c), c[0]))
    boxes = []
    for members in components:
        sub = graph.subgraph(members)
        if len(members) == 1:
            local = {members[0]: np.zeros(2)}
        elif len(members) == 2:
            local = {members[0]: np.array([-1.0, 0.0]), members[1]: np.array([1.0, 0.0])}
        else:
            local = nx.spring_layout(sub, seed=seed, iterations=150,
                                     k=1.6 / math.sqrt(len(members)))
        points = np.array([local[m] for m in members], np.float64)
        low, high = np.percentile(points, 2, axis=0), np.percentile(points, 98, axis=0)
        span = np.where(high - low > 1e-9, high - low, 1.0)
        unit = np.clip((points - low) / span, 0.0, 1.0) if len(members) > 2 else \
            (points - points.min(axis=0)) / np.where(np.ptp(points, axis=0) > 0,
                                                     np.ptp(points, axis=0), 1.0)
        boxes.append((members, unit, math.sqrt(len(members))))
    total_area = sum(side * side for _, _, side in boxes)
    row_width = max(math.sqrt(total_area) * 1.15, boxes[0][2])
    dominant = len(boxes) > 1 and len(boxes[0][0]) * 2 > len(graph)
    placed, x, y, row_height = [], 0.0, 0.0, 0.0
    for index, (members, unit, side) in enumerate(boxes):
        # A component holding most nodes gets the first row to itself (the final stretch
        # makes it as wide as the frame); the rest fill rows below it.
        if x > 0 and (x + side > row_width or (dominant and index == 1)):
            x, y, row_height = 0.0, y + row_height, 0.0
        placed.append((members, unit, side, x, y))
        x += side
        row_height = max(row_height, side)
    names, points = [], []
    for members, unit, side, px, py in placed:
        inner = side * (0.86 if len(members) > 1 else 0.0)  # a gap between components
        offset = (side - inner) / 2
        for member, (ux, uy) in zip(members, unit):
            names.append(member)
            points.append((px + offset + ux * inner, py + offset + uy * inner))
    array = np.array(points, np.float64)
    low, span = array.min(axis=0), np.ptp(array, axis=0)
    array = (array - low) / np.where(span > 0, span, 1.0) if len(array) > 1 else \
        np.full_like(array, 0.5)
    array = _MARGIN + array * (FRAME - 2 * _MARGIN)  # both axes stretched to the frame
    return {name: (float(x), float(y)) for name, (x, y) in zip(names, array)}


def render_html(report: dict) -> str:
    """The whole report as HTML text."""
    network = report.get("network") or {}
    view = network_view(network) if network else {"nodes": [], "edges": []}
    agencies = sorted(report["agencies"])
    colours = {agency: _PALETTE[i % len(_PALETTE)] for i, agency in enumerate(agencies)}
    data = {
        "view": view,
        "colours": colours,
        "stages": network.get("stages", []),
        "entity_types": sorted({n["entity_type"] for n in view["nodes"]
                                if n["kind"] == "entity"}),
        "brokers": {b["group"]: b for b in network.get("brokers", [])[:500]},
    }
    payload = json.dumps(data).replace("</", "<\\/")
    parts = [
        _HEAD.replace("{title}", html.escape(f"Linkage report - {report['project']}")),
        _summary(report),
        "<section><h2>Who shares entities with whom</h2>", _overlap(report, agencies, colours),
        "</section>",
        "<section><h2>Scores and threshold</h2>", _histogram(report, network),
        probability_curve_svg(network.get("probability_curve") or [], report["threshold"]),
        "</section>",
        _network_section(data),
        "<section><h2>Broker ranking</h2>", _brokers(network), "</section>",
        "<section><h2>Case clusters</h2>", _clusters(network), "</section>",
        "<section><h2>Crime-script stage coverage</h2>", _coverage(network, agencies),
        "</section>",
        "<section><h2>Changes since the previous run</h2>", _changes(network), "</section>",
        "<section><h2>Groups</h2>", _groups(report), "</section>",
        # The server sends the waterfalls inside the network's JSON.
        _waterfalls(report.get("waterfalls") or (network or {}).get("waterfalls") or {}),
        f'<script type="application/json" id="report-data">{payload}</script>',
        f"<script>{_SCRIPT}</script></body></html>",
    ]
    return "\n".join(parts)


def _summary(report: dict) -> str:
    summary = report["summary"]
    quality = ""
    if report.get("estimated_precision"):
        quality = (f"<p>Estimated precision <b>{report['estimated_precision']:.3f}</b>, "
                   f"estimated recall <b>{report['estimated_recall']:.3f}</b> (from the score "
                   "model, without ground truth).</p>")
    return (f"<header><h1>Linkage report: {html.escape(report['project'])}</h1>"
            f"<p>Run {report['run']}: {summary['records']} records, "
            f"{summary['groups']} groups of which {summary['cross_agency_groups']} span several "
            f"agencies. Threshold <b>{report['threshold']:.3f}</b>: "
            f"{html.escape(report['threshold_reason'])}.</p>{quality}"
            "<p class='note'>Group ids and pseudonymous case references only: the data owner "
            "resolves them through the usual, recorded request.</p></header>")


def _overlap(report: dict, agencies: list[str], colours: dict[str, str]) -> str:
    pairs = report["agency_pairs"]
    peak = max(pairs.values(), default=0) or 1
    rows = ["<table class='matrix' id='overlap'><tr><th></th>"
            + "".join(f"<th style='color:{colours[a]}'>{html.escape(a)}</th>" for a in agencies)
            + "<th>records</th></tr>"]
    for first in agencies:
        cells = []
        for second in agencies:
            if first == second:
                cells.append("<td class='diag'>-</td>")
                continue
            count = pairs.get("|".join(sorted((first, second))), 0)
            alpha = 0.08 + 0.82 * count / peak
            cells.append(f"<td style='background:rgba(31,119,180,{alpha:.2f})'>{count}</td>")
        records = report["agencies"][first]["records"]
        rows.append(f"<tr><th style='color:{colours[first]}'>{html.escape(first)}</th>"
                    + "".join(cells) + f"<td>{records}</td></tr>")
    rows.append("</table><p class='note'>Cells count the entities two agencies share.</p>")
    return "".join(rows)


def _histogram(report: dict, network: dict) -> str:
    """Candidate pairs per score on a log scale with both axes, the match region shaded, and
    the model's precision and recall on a right-hand 0-1 axis."""
    bins = report["histogram"]
    if not bins:
        return "<p>No candidate scores.</p>"
    width, height = 900, 320
    left, right, top, bottom = 70, 60, 20, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    low, high = bins[0]["low"], bins[-1]["high"]
    peak = max(b["count"] for b in bins) or 1
    decades = max(1, math.ceil(math.log10(peak + 1)))
    threshold = report["threshold"]

    def x_of(score: float) -> float:
        return left + (score - low) / (high - low) * plot_w

    def y_of_count(count: float) -> float:
        return top + plot_h - plot_h * math.log10(count + 1) / decades

    def y_of_share(share: float) -> float:
        return top + plot_h - plot_h * share

    parts = [f"<rect x='{x_of(max(threshold, low)):.1f}' y='{top}' "
             f"width='{max(x_of(high) - x_of(max(threshold, low)), 0):.1f}' height='{plot_h}' "
             "class='match-region'><title>match region: pairs at or above the threshold"
             "</title></rect>"]
    y_axis = [f"<g id='histogram-y-axis'><line x1='{left}' x2='{left}' y1='{top}' "
              f"y2='{top + plot_h}' class='axis'/>"]
    for power in range(decades + 1):
        value = 10 ** power
        if value > 10 ** decades:
            break
        y = y_of_count(value - 1 if power == 0 else value)
        label = f"{value:,}".replace(",", "\u2009")
        y_axis.append(f"<line x1='{left - 4}' x2='{left + plot_w}' y1='{y:.1f}' y2='{y:.1f}' "
                      f"class='grid'/><text x='{left - 7}' y='{y + 4:.1f}' class='tick' "
                      f"text-anchor='end'>{label if power else '0'}</text>")
    y_axis.append(f"<text class='axis-label' transform='translate(16 {top + plot_h / 2:.0f}) "
                  "rotate(-90)' text-anchor='middle'>candidate pairs (log scale)</text></g>")
    x_axis = [f"<g id='histogram-x-axis'><line x1='{left}' x2='{left + plot_w}' "
              f"y1='{top + plot_h}' y2='{top + plot_h}' class='axis'/>"]
    tick = math.ceil(low * 10 - 1e-9) / 10
    while tick <= high + 1e-9:
        x = x_of(tick)
        x_axis.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top + plot_h}' "
                      f"y2='{top + plot_h + 5}' class='axis'/><text x='{x:.1f}' "
                      f"y='{top + plot_h + 18}' class='tick' text-anchor='middle'>{tick:.1f}"
                      "</text>")
        tick = round(tick + 0.1, 10)
    x_axis.append(f"<text x='{left + plot_w / 2:.0f}' y='{height - 10}' class='axis-label' "
                  "text-anchor='middle'>Dice similarity of the pair</text></g>")
    bars = []
    for b in bins:
        y = y_of_count(b["count"])
        above = b["low"] >= threshold - 1e-12
        bars.append(f"<rect class='bar{' above' if above else ''}' x='{x_of(b['low']):.1f}' "
                    f"y='{y:.1f}' width='{max(x_of(b['high']) - x_of(b['low']) - 1, 1):.1f}' "
                    f"height='{top + plot_h - y:.1f}'><title>{b['low']:.3f}-{b['high']:.3f}: "
                    f"{b['count']} pairs</title></rect>")
    curve = [point for point in network.get("quality_curve", []) if low <= point[0] <= high]
    lines = []
    for index, colour, name in ((1, "#d62728", "precision"), (2, "#2ca02c", "recall")):
        if curve:
            points = " ".join(f"{x_of(p[0]):.1f},{y_of_share(p[index]):.1f}" for p in curve)
            lines.append(f"<polyline points='{points}' fill='none' stroke='{colour}' "
                         f"stroke-width='2'><title>estimated {name}</title></polyline>")
    right_axis = ""
    if curve:
        right_axis = (f"<g id='histogram-y2-axis'><line x1='{left + plot_w}' "
                      f"x2='{left + plot_w}' y1='{top}' y2='{top + plot_h}' class='axis'/>"
                      + "".join(f"<text x='{left + plot_w + 6}' y='{y_of_share(v) + 4:.1f}' "
                                f"class='tick'>{v:.1f}</text>" for v in (0.0, 0.5, 1.0))
                      + f"<text class='axis-label' transform='translate({width - 14} "
                        f"{top + plot_h / 2:.0f}) rotate(90)' text-anchor='middle'>estimated "
                        "precision / recall</text></g>")
    threshold_x = x_of(threshold)
    return (f"<svg id='histogram' viewBox='0 0 {width} {height}' width='{width}' "
            f"height='{height}'>{''.join(parts)}{''.join(y_axis)}{''.join(bars)}"
            f"{''.join(lines)}{''.join(x_axis)}{right_axis}"
            f"<line x1='{threshold_x:.1f}' x2='{threshold_x:.1f}' y1='{top}' "
            f"y2='{top + plot_h}' stroke='black' stroke-dasharray='4 3'/>"
            f"<text x='{threshold_x - 4:.1f}' y='{top + 12}' class='tick' text-anchor='end'>"
            f"threshold {threshold:.3f}</text></svg>"
            "<p class='note'>Bars: candidate pairs per score, on a logarithmic scale so that "
            "the few pairs of the match region (shaded, at or above the threshold, dark bars) "
            "stay readable beside the many low-score pairs. Lines: the model's expected "
            "<span style='color:#d62728'>precision</span> and "
            "<span style='color:#2ca02c'>recall</span> if the threshold were there "
            "(right-hand axis).</p>")


def _network_section(data: dict) -> str:
    agencies = "".join(f"<label><input type='checkbox' class='f-agency' value='{html.escape(a)}' "
                       f"checked> <span style='color:{c}'>{html.escape(a)}</span></label>"
                       for a, c in data["colours"].items())
    stages = "".join(f"<label><input type='checkbox' class='f-stage' value='{html.escape(s)}' "
                     f"checked> {html.escape(s)}</label>" for s in data["stages"])
    types = "".join(f"<option>{html.escape(t)}</option>" for t in data["entity_types"])
    count = len(data["view"]["nodes"])
    drawn = {n["id"] for n in data["view"]["nodes"]}
    candidates = [b for b in sorted(data["brokers"].values(), key=lambda b: b["rank"])
                  if b["group"] in drawn and len(b["agencies"]) > 1][:40]
    focus = "".join(
        f"<option value='{html.escape(b['group'])}'>#{b['rank']} {html.escape(b['group'])} "
        f"({len(b['agencies'])} agencies, {b['cases']} cases)</option>" for b in candidates)
    return ("<section><h2>Network of linked entities and cases</h2>"
            f"<p class='note'>{count} nodes: the strongest brokers, their cases and the other "
            "entities in those cases. Scroll to zoom, drag to pan, click a node for its "
            "summary; focus shows one broker with its cases and the entities in them.</p>"
            f"<div class='filters'><b>Agencies</b> {agencies}<br><b>Stages</b> {stages}<br>"
            f"<b>Entity type</b> <select id='f-type'><option value=''>all</option>{types}"
            "</select> <b>Focus on broker</b> <select id='f-focus'><option value=''>whole "
            f"network</option>{focus}</select> <button id='focus-selected' type='button'>"
            "focus on the selected node</button> <span id='visible-count'></span></div>"
            "<div class='network-wrap'><svg id='network' viewBox='0 0 1000 1000'></svg>"
            f"<aside>{_legend(data['colours'])}<div id='details'>Click a node.</div></aside>"
            "</div></section>")


def _legend(colours: dict[str, str]) -> str:
    """What the network's shapes, colours, sizes and lines mean."""
    swatches = "".join(
        f"<li><svg width='14' height='14'><rect x='2' y='2' width='10' height='10' "
        f"fill='{c}' class='node'/></svg> {html.escape(a)}</li>" for a, c in colours.items())
    return ("<div id='network-legend'><b>Legend</b><ul>"
            "<li><svg width='14' height='14'><circle cx='7' cy='7' r='5' fill='#222' "
            "class='node'/></svg> entity at several agencies (a hit)</li>"
            "<li><svg width='14' height='14'><circle cx='7' cy='7' r='4' fill='#888' "
            "class='node'/></svg> entity at one agency (its colour)</li>"
            "<li><svg width='22' height='14'><circle cx='5' cy='7' r='3' fill='#222'/>"
            "<circle cx='15' cy='7' r='6' fill='#222'/></svg> larger: higher broker rank</li>"
            "<li><svg width='14' height='14'><rect x='2' y='2' width='10' height='10' "
            "fill='#888' class='node'/></svg> case (pseudonymous), coloured by its agency:</li>"
            f"<li><ul>{swatches}</ul></li>"
            "<li><svg width='22' height='14'><line x1='1' y1='7' x2='21' y2='7' "
            "class='edge'/></svg> the entity appears in the case</li></ul></div>")


def _brokers(network: dict, limit: int = 25) -> str:
    brokers = [b for b in network.get("brokers", []) if len(b["agencies"]) > 1][:limit]
    if not brokers:
        return "<p>No entity links cases of several agencies yet.</p>"
    rows = ["<table id='brokers'><tr><th>rank</th><th>group</th><th>type</th><th>agencies</th>"
            "<th>stages</th><th>cases</th><th>betweenness</th><th>why</th></tr>"]
    for b in brokers:
        rows.append(f"<tr><td>{b['rank']}</td><td class='gid'>{html.escape(b['group'])}</td>"
                    f"<td>{html.escape(b['entity_type'])}</td><td>{len(b['agencies'])}</td>"
                    f"<td>{len(b['stages'])}</td><td>{b['cases']}</td>"
                    f"<td>{b['betweenness']:.4f}</td><td>{html.escape(b['explanation'])}</td></tr>")
    rows.append("</table><p class='note'>Ranked by the number of agencies, then stages, then "
                "cases an entity links, then betweenness centrality (how often it lies on the "
                "shortest path between two other nodes of the network).</p>")
    return "".join(rows)


def _clusters(network: dict, limit: int = 15) -> str:
    clusters = network.get("clusters", [])
    if not clusters:
        return "<p>No linked entity ties two cases together yet.</p>"
    rows = ["<table id='clusters'><tr><th>cluster</th><th>cases</th><th>entities</th>"
            "<th>agencies</th></tr>"]
    for cluster in clusters[:limit]:
        rows.append(f"<tr><td>{cluster['id']}</td><td>{cluster['cases']}</td>"
                    f"<td>{cluster['entities']}</td>"
                    f"<td>{html.escape(', '.join(cluster['agencies']))}</td></tr>")
    rows.append(f"</table><p class='note'>Cases connected through shared entities, largest first "
                f"({len(clusters)} in all).</p>")
    return "".join(rows)


def _coverage(network: dict, agencies: list[str]) -> str:
    coverage = network.get("stage_coverage", {})
    stages = network.get("stages") or sorted(coverage)
    if not coverage:
        return "<p>No records carry a stage.</p>"
    peak = max((n for per in coverage.values() for n in per.values()), default=1) or 1
    rows = ["<table class='matrix' id='coverage'><tr><th>stage</th>"
            + "".join(f"<th>{html.escape(a)}</th>" for a in agencies) + "</tr>"]
    for stage in stages:
        per = coverage.get(stage, {})
        cells = "".join(
            f"<td style='background:rgba(44,160,44,{0.08 + 0.82 * per.get(a, 0) / peak:.2f})'>"
            f"{per.get(a, 0)}</td>" for a in agencies)
        rows.append(f"<tr><th>{html.escape(stage)}</th>{cells}</tr>")
    rows.append("</table><p class='note'>Linked records per stage and agency.</p>")
    return "".join(rows)


def _changes(network: dict) -> str:
    changes = network.get("changes")
    if not changes:
        return "<p>This is the first run.</p>"
    rows = "".join(
        f"<tr><td>{b['rank']}</td><td class='gid'>{html.escape(b['group'])}</td><td>"
        f"{'new' if b['previous_rank'] is None else b['previous_rank']}</td></tr>"
        for b in changes.get("top_brokers", []))
    table = (f"<table id='broker-changes'><tr><th>rank now</th><th>group</th><th>rank in run "
             f"{changes['previous_run']}</th></tr>{rows}</table>") if rows else ""
    return (f"<p>Since run {changes['previous_run']}: {len(changes['new_groups'])} new or changed "
            f"groups ({len(changes['new_cross_agency_groups'])} spanning several agencies), "
            f"{changes['gone_groups']} groups no longer as they were. Top brokers then and now "
            "(a changed group gets a new id, so it shows as new):</p>" + table)


def _groups(report: dict, limit: int = 300) -> str:
    groups = sorted((g for g in report["groups"]
                     if len(g["agencies"]) > 1 or g.get("needs_review")),
                    key=lambda g: (not g.get("follow_ups"), g["confidence"]))[:limit]
    rows = ["<table id='groups'><tr><th>group</th><th>agencies</th><th>size</th>"
            "<th>confidence</th><th>review</th><th>follow-ups</th></tr>"]
    for g in groups:
        members = member_text(g["agencies"])
        if len(g["agencies"]) == 1:
            members += " (within one agency)"
        flag = " class='review'" if g.get("needs_review") else ""
        rows.append(f"<tr{flag}><td class='gid'>{html.escape(g['id'])}</td>"
                    f"<td>{html.escape(members)}</td>"
                    f"<td>{g['size']}</td><td>{g['confidence']:.3f}</td>"
                    f"<td>{html.escape(g['review'] or ('needs review' if flag else ''))}</td>"
                    f"<td>{html.escape(_follow_up_text(g.get('follow_ups', [])))}</td></tr>")
    rows.append(f"</table><p class='note'>Groups across agencies, and groups within one agency "
                f"that need review (possible duplicates); those with follow-ups first, then "
                f"lowest confidence (up to {limit}).</p>")
    return "".join(rows)


def _waterfalls(waterfalls: dict, limit: int = 40) -> str:
    """Per group, why it was linked: a waterfall of field weights (``linkage.analysis.explain``)."""
    if not waterfalls:
        return ""
    parts = ["<section><h2>Why groups were linked</h2><p class='note'>Each group's weakest "
             "link: the prior, then each field's agreement level and the bits it adds (green) "
             "or takes away (red); grey fields are missing and count for nothing. Field names "
             "and levels only, no values.</p>"]
    # In the order given (the server sends the least certain groups first).
    for group, waterfall in list(waterfalls.items())[:limit]:
        parts.append(waterfall_svg(str(group), waterfall))
    parts.append("</section>")
    return "".join(parts)


def _support_note(waterfall: dict) -> str:
    """Why the probability can exceed what the bars add up to."""
    support = waterfall.get("through_third_record")
    if not support or support < waterfall["probability"] - 1e-9:
        return ""
    return (f" (at least {support:.3f}: both records are confidently the same person as a "
            "third record)")


def waterfall_svg(group: str, waterfall: dict) -> str:
    """One group's waterfall as an SVG bar chart: a bar per step from the running total."""
    steps = waterfall["steps"]
    width, row, left, right = 760, 22, 230, 70
    height = row * (len(steps) + 1) + 30
    totals = [0.0] + [s["cumulative"] for s in steps]
    ends = totals + [waterfall["match_weight"]]
    low, high = min(ends), max(ends)
    span = max(high - low, 1.0)

    def x_of(value: float) -> float:
        return left + (value - low) / span * (width - left - right)

    rows = [f"<figure class='waterfall' data-group='{html.escape(group)}'>"
            f"<figcaption>Group {html.escape(group)}: match weight "
            f"{waterfall['match_weight']:+.1f} bits, probability "
            f"{waterfall['probability']:.3f}{_support_note(waterfall)}</figcaption>"
            f"<svg viewBox='0 0 {width} {height}' width='{width}' height='{height}' "
            "role='img' aria-label='match weight waterfall'>",
            f"<line x1='{x_of(0):.1f}' y1='0' x2='{x_of(0):.1f}' y2='{height - 20}' "
            "stroke='#999' stroke-dasharray='3,3'/>"]
    previous = 0.0
    for index, step in enumerate(steps):
        y = 6 + index * row
        start, end = previous, step["cumulative"]
        if step["field"] == "prior":
            colour = "#7f7f7f"
        elif step["level"] is not None and step["level"] < 0:
            colour = "#cccccc"
        else:
            colour = "#2ca02c" if step["weight"] >= 0 else "#d62728"
        x1, x2 = sorted((x_of(start), x_of(end)))
        label = f"{step['field']}: {step['label']}"
        rows.append(f"<text x='{left - 6}' y='{y + 14}' text-anchor='end' font-size='12'>"
                    f"{html.escape(label)}</text>"
                    f"<rect class='step' x='{x1:.1f}' y='{y}' width='{max(x2 - x1, 1.5):.1f}' "
                    f"height='{row - 6}' fill='{colour}'><title>{html.escape(label)}: "
                    f"{step['weight']:+.2f} bits</title></rect>"
                    f"<text x='{width - right + 6}' y='{y + 14}' font-size='12'>"
                    f"{step['weight']:+.1f}</text>")
        previous = end
    y = 6 + len(steps) * row
    rows.append(f"<text x='{left - 6}' y='{y + 14}' text-anchor='end' font-size='12' "
                f"font-weight='bold'>total</text><rect x='{min(x_of(0), x_of(previous)):.1f}' "
                f"y='{y}' width='{max(abs(x_of(previous) - x_of(0)), 1.5):.1f}' "
                f"height='{row - 6}' fill='#1f77b4'/><text x='{width - right + 6}' "
                f"y='{y + 14}' font-size='12'>{waterfall['match_weight']:+.1f}</text></svg>"
                "</figure>")
    return "".join(rows)


def _follow_up_text(follow_ups: list[dict]) -> str:
    return "; ".join(f"{f['id']}: {f['requested_by']} asked {f['agency']} ({f['status']})"
                     for f in follow_ups)


_HEAD = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>{title}</title><style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 7px;
text-align:right}th{background:#f6f6f6}td:last-child{text-align:left}td:nth-child(2){white-space:nowrap}
.matrix td{text-align:center;min-width:60px}.diag{color:#aaa}.note{color:#666;font-size:12px}
.tick{font-size:11px;fill:#555}.filters label{margin-right:10px}
.network-wrap{display:flex;gap:12px}#network{width:820px;height:820px;border:1px solid #ccc;
background:#fcfcfc;cursor:grab}#details{margin-top:12px}
.hidden{display:none}.node{stroke:#333;stroke-width:.6;cursor:pointer}.edge{stroke:#555;
stroke-opacity:.75;stroke-width:1.3}.selected{stroke:#000;stroke-width:3}
tr.review td{background:#fff4e5}.gid{white-space:nowrap;font-family:ui-monospace,monospace}
#network-legend ul{list-style:none;padding-left:0;margin:4px 0}#network-legend li{margin:2px 0}
#network-legend li ul{padding-left:18px}#network-legend svg{vertical-align:middle}
.axis{stroke:#444;stroke-width:1}.grid{stroke:#ddd;stroke-width:1}.axis-label{font-size:12px;
fill:#333}.bar{fill:#9ecae1}.bar.above{fill:#08519c}.match-region{fill:#fdd0a2;opacity:.35}
.network-wrap aside{width:320px;font-size:13px}
</style></head><body>"""

_SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById('report-data').textContent);
  const svg = document.getElementById('network');
  const NS = 'http://www.w3.org/2000/svg';
  const byId = {};
  const edgesLayer = document.createElementNS(NS, 'g');
  const nodesLayer = document.createElementNS(NS, 'g');
  svg.appendChild(edgesLayer); svg.appendChild(nodesLayer);
  data.view.nodes.forEach(function (node) { byId[node.id] = node; });
  const edgeElements = data.view.edges.map(function (edge) {
    const a = byId[edge.source], b = byId[edge.target];
    const line = document.createElementNS(NS, 'line');
    line.setAttribute('x1', a.x); line.setAttribute('y1', a.y);
    line.setAttribute('x2', b.x); line.setAttribute('y2', b.y);
    line.setAttribute('class', 'edge');
    edgesLayer.appendChild(line);
    return {edge: edge, element: line};
  });
  const nodeElements = data.view.nodes.map(function (node) {
    let shape;
    const colour = data.colours[node.agencies[0]] || '#777';
    if (node.kind === 'case') {
      shape = document.createElementNS(NS, 'rect');
      shape.setAttribute('x', node.x - 5); shape.setAttribute('y', node.y - 5);
      shape.setAttribute('width', 10); shape.setAttribute('height', 10);
      shape.setAttribute('fill', colour);
    } else {
      shape = document.createElementNS(NS, 'circle');
      const size = node.rank ? Math.max(4, 14 - Math.log2(node.rank) * 1.6) : 4;
      shape.setAttribute('cx', node.x); shape.setAttribute('cy', node.y);
      shape.setAttribute('r', size);
      shape.setAttribute('fill', node.agencies.length > 1 ? '#222' : colour);
    }
    shape.setAttribute('class', 'node');
    shape.setAttribute('data-id', node.id);
    shape.addEventListener('click', function (event) { event.stopPropagation(); show(node, shape); });
    nodesLayer.appendChild(shape);
    return {node: node, element: shape};
  });
  function show(node, shape) {
    document.querySelectorAll('#network .selected').forEach(function (el) {
      el.classList.remove('selected'); });
    shape.classList.add('selected');
    selectedId = node.id;
    const broker = data.brokers[node.id];
    const lines = ['<b>' + node.id + '</b>', node.kind === 'case' ? 'case of ' + node.agencies[0]
      : 'entity (' + node.entity_type + ')', 'agencies: ' + node.agencies.join(', '),
      'stages: ' + (node.stages.join(', ') || '-')];
    if (broker) { lines.push('broker rank ' + broker.rank + ': ' + broker.explanation); }
    document.getElementById('details').innerHTML = lines.join('<br>');
  }
  function filter() {
    const agencies = new Set(Array.from(document.querySelectorAll('.f-agency:checked'))
      .map(function (el) { return el.value; }));
    const stageBoxes = document.querySelectorAll('.f-stage');
    const stages = new Set(Array.from(document.querySelectorAll('.f-stage:checked'))
      .map(function (el) { return el.value; }));
    const type = document.getElementById('f-type').value;
    let visible = 0;
    const shown = {};
    nodeElements.forEach(function (item) {
      const node = item.node;
      let ok = node.agencies.some(function (a) { return agencies.has(a); });
      if (ok && stageBoxes.length && node.stages.length) {
        ok = node.stages.some(function (s) { return stages.has(s); });
      }
      if (ok && type && node.kind === 'entity') { ok = node.entity_type === type; }
      if (ok && focusSet) { ok = focusSet.has(node.id); }
      item.element.classList.toggle('hidden', !ok);
      shown[node.id] = ok;
      if (ok) { visible += 1; }
    });
    edgeElements.forEach(function (item) {
      item.element.classList.toggle('hidden', !(shown[item.edge.source] && shown[item.edge.target]));
    });
    document.getElementById('visible-count').textContent = visible + ' of ' + nodeElements.length
      + ' nodes shown';
  }
  const neighbours = {};
  data.view.edges.forEach(function (edge) {
    (neighbours[edge.source] = neighbours[edge.source] || []).push(edge.target);
    (neighbours[edge.target] = neighbours[edge.target] || []).push(edge.source);
  });
  let focusSet = null;
  let selectedId = null;
  function neighbourhood(id) {
    // The broker, its cases, and the other entities of those cases.
    const set = new Set([id]);
    (neighbours[id] || []).forEach(function (near) {
      set.add(near);
      (neighbours[near] || []).forEach(function (far) { set.add(far); });
    });
    return set;
  }
  function focusOn(id) {
    focusSet = id ? neighbourhood(id) : null;
    filter();
    if (!id) { box = {x: 0, y: 0, w: 1000, h: 1000}; apply(); return; }
    const members = data.view.nodes.filter(function (n) { return focusSet.has(n.id); });
    const xs = members.map(function (n) { return n.x; });
    const ys = members.map(function (n) { return n.y; });
    const x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    const y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    const side = Math.max(x1 - x0, y1 - y0, 60) * 1.25;
    box = {x: (x0 + x1) / 2 - side / 2, y: (y0 + y1) / 2 - side / 2, w: side, h: side};
    apply();
    const item = nodeElements.find(function (e) { return e.node.id === id; });
    if (item) { show(item.node, item.element); }
  }
  document.getElementById('f-focus').addEventListener('change', function (event) {
    focusOn(event.target.value); });
  document.getElementById('focus-selected').addEventListener('click', function () {
    if (selectedId) { document.getElementById('f-focus').value = ''; focusOn(selectedId); }
  });
  document.querySelectorAll('.f-agency, .f-stage, #f-type').forEach(function (el) {
    el.addEventListener('change', filter); });
  let box = {x: 0, y: 0, w: 1000, h: 1000};
  function apply() { svg.setAttribute('viewBox', [box.x, box.y, box.w, box.h].join(' ')); }
  svg.addEventListener('wheel', function (event) {
    event.preventDefault();
    const factor = event.deltaY > 0 ? 1.15 : 1 / 1.15;
    const rect = svg.getBoundingClientRect();
    const mx = box.x + (event.clientX - rect.left) / rect.width * box.w;
    const my = box.y + (event.clientY - rect.top) / rect.height * box.h;
    box = {x: mx - (mx - box.x) * factor, y: my - (my - box.y) * factor,
           w: box.w * factor, h: box.h * factor};
    apply();
  }, {passive: false});
  let drag = null;
  svg.addEventListener('mousedown', function (event) { drag = {x: event.clientX, y: event.clientY}; });
  window.addEventListener('mouseup', function () { drag = null; });
  window.addEventListener('mousemove', function (event) {
    if (!drag) { return; }
    const rect = svg.getBoundingClientRect();
    box.x -= (event.clientX - drag.x) / rect.width * box.w;
    box.y -= (event.clientY - drag.y) / rect.height * box.h;
    drag = {x: event.clientX, y: event.clientY};
    apply();
  });
  filter();
  window.linkageReport = {nodes: nodeElements.length, filter: filter, focusOn: focusOn};
})();
"""
