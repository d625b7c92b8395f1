"""The coordinator's pages: overview and runs, the review queue, the network, follow-ups."""

from __future__ import annotations

import grpc
from flask import Blueprint, flash, jsonify, redirect, render_template, request, session, \
    url_for

from ..report_html import network_view
from .app import state
from .views import NetworkIndex, all_follow_ups, review_queue

__all__ = ["pages"]

pages = Blueprint("pages", __name__)
# One colour per agency, as in the HTML report.
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22"]


def _payload() -> dict:
    """A JSON body from the page's scripts, or the fields of a plain form."""
    return request.get_json(silent=True) or request.form.to_dict()


def _projects() -> list[dict]:
    return state().client.list_projects()


def _current_project(projects: list[dict]) -> str | None:
    """The project picked on the page, else the one named at start, else the first."""
    names = [p["name"] for p in projects]
    picked = request.args.get("project")
    if picked in names:
        session["project"] = picked
    chosen = session.get("project") or state().project
    if chosen in names:
        return chosen
    return names[0] if names else None


def _report(project: str) -> tuple[dict | None, str | None]:
    """The report of the latest run, or (None, why not) when there is no run yet."""
    try:
        return state().client.report(project), None
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
            return None, error.details()
        raise


def _common(page: str) -> dict:
    projects = _projects()
    project = _current_project(projects)
    return {"page": page, "role": "coordinator", "projects": projects, "project": project}


def _layout(project: str, report: dict) -> dict:
    """The drawn part of the network, laid out once per run (the layout takes a while)."""
    console = state()
    key = (project, report["run"])
    with console.layout_lock:
        if key not in console.layouts:
            console.layouts[key] = network_view(report.get("network") or {})
        return console.layouts[key]


@pages.get("/overview", endpoint="home")
def overview():
    context = _common("overview")
    report, no_run = (_report(context["project"]) if context["project"] else (None, None))
    project_row = next((p for p in context["projects"] if p["name"] == context["project"]),
                       None)
    runs = [r for r in (state().runs.finished if state().runs else [])
            if r["project"] == context["project"]]
    return render_template("overview.html", **context, report=report, no_run=no_run,
                           project_row=project_row, console_runs=runs,
                           changes=((report or {}).get("network") or {}).get("changes"))


@pages.post("/api/runs")
def start_run():
    body = _payload()
    project = body.get("project") or ""
    if project not in {p["name"] for p in _projects()}:
        return jsonify(error=f"No project {project!r}; pick one from the list."), 404
    threshold = (body.get("threshold") or "auto").strip()
    blocking = body.get("blocking") or "auto"
    if blocking not in ("auto", "lsh", "exhaustive"):
        return jsonify(error="Blocking is 'auto', 'lsh' or 'exhaustive'."), 400
    if not state().runs.start(project, threshold, blocking):
        return jsonify(error="A run started from this console is still going; wait for it to "
                             "end.", status=state().runs.status()), 409
    return jsonify(state().runs.status()), 202


@pages.get("/api/runs/status")
def run_status():
    return jsonify(state().runs.status())


@pages.get("/review")
def review():
    context = _common("review")
    report, no_run = (_report(context["project"]) if context["project"] else (None, None))
    waiting, decided = review_queue(report, NetworkIndex(report.get("network"))) if report \
        else ([], [])
    return render_template("review.html", **context, report=report, no_run=no_run,
                           waiting=waiting, decided=decided)


@pages.post("/api/review")
def record_review():
    body = _payload()
    decision = body.get("decision")
    if decision not in ("accepted", "rejected"):
        return jsonify(error="A decision is 'accepted' or 'rejected'."), 400
    project, group = body.get("project") or "", body.get("group") or ""
    note = (body.get("note") or "").strip()
    stored = state().client.review(project, group, decision, note)
    return jsonify(group=group, decision=stored, note=note)


@pages.get("/network")
def network():
    context = _common("network")
    report, no_run = (_report(context["project"]) if context["project"] else (None, None))
    data = None
    brokers = []
    if report and report.get("network"):
        view = _layout(context["project"], report)
        agencies = sorted(report["agencies"])
        data = {"view": view,
                "colours": {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(agencies)},
                "stages": report["network"].get("stages", []),
                "entity_types": sorted({n["entity_type"] for n in view["nodes"]
                                        if n["kind"] == "entity"}),
                "project": context["project"]}
        brokers = [b for b in report["network"].get("brokers", [])
                   if len(b["agencies"]) > 1][:30]
    return render_template("network.html", **context, report=report, no_run=no_run, data=data,
                           brokers=brokers)


@pages.get("/api/brokers/<group>")
def broker(group: str):
    project = request.args.get("project") or ""
    report, no_run = _report(project)
    if report is None:
        return jsonify(error=no_run), 409
    found = NetworkIndex(report.get("network")).neighbourhood(group)
    if found is None:
        return jsonify(error=f"No entity {group!r} in the network of run {report['run']}."), 404
    summary = next((g for g in report["groups"] if g["id"] == group), None)
    found["confidence"] = summary["confidence"] if summary else None
    found["follow_ups"] = summary["follow_ups"] if summary else []
    return jsonify(found)


@pages.get("/follow-ups")
def follow_ups():
    context = _common("follow-ups")
    report, no_run = (_report(context["project"]) if context["project"] else (None, None))
    rows = all_follow_ups(report) if report else []
    groups = sorted((g for g in report["groups"] if len(g["agencies"]) > 1),
                    key=lambda g: g["confidence"]) if report else []
    return render_template("follow_ups.html", **context, report=report, no_run=no_run,
                           rows=rows, groups=groups, suggested=request.args.get("group", ""))


@pages.post("/api/follow-ups")
def open_follow_up():
    body = _payload()
    created = state().client.open_follow_up(body.get("project") or "", body.get("group") or "",
                                            (body.get("note") or "").strip(),
                                            role="coordinator")
    if request.is_json:
        return jsonify(follow_ups=created)
    flash(f"Opened {', '.join(f['id'] + ' (' + f['agency'] + ')' for f in created)} on "
          f"group {body.get('group')}.")
    return redirect(url_for("pages.follow_ups"), 303)
