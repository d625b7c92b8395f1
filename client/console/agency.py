"""The agency analyst's pages: its own hits (filter, CSV) and its follow-ups."""

from __future__ import annotations

import grpc
from flask import Blueprint, Response, flash, jsonify, redirect, render_template, request, \
    url_for

from .app import state
from .views import HitFilter, hits_csv, split_follow_ups

__all__ = ["pages"]

pages = Blueprint("pages", __name__)


def _payload() -> dict:
    return request.get_json(silent=True) or request.form.to_dict()


def _hits() -> tuple[list[dict], str | None]:
    """The agency's results, or (nothing, why not) when the project has no run yet."""
    try:
        return list(state().client.results(state().project)), None
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
            return [], error.details()
        raise


def _context(page: str) -> dict:
    return {"page": page, "role": "agency", "project": state().project, "projects": []}


@pages.get("/hits", endpoint="home")
def hits():
    found, no_run = _hits()
    chosen = HitFilter.from_args(request.args)
    for problem in chosen.problems:
        flash(problem)
    shown = [h for h in found if chosen.keep(h)]
    agencies = sorted({a for h in found for a in h["agencies"]})
    return render_template("hits.html", **_context("hits"), hits=shown, total=len(found),
                           cross=sum(1 for h in found if h["agencies"]), agencies=agencies,
                           chosen=chosen, no_run=no_run, query=request.query_string.decode())


@pages.get("/hits.csv")
def hits_export():
    found, _ = _hits()
    chosen = HitFilter.from_args(request.args)
    text = hits_csv(h for h in found if chosen.keep(h))
    return Response(text, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{state().project}-hits.csv"'})


@pages.get("/follow-ups")
def follow_ups():
    found, no_run = _hits()
    asked, requested = split_follow_ups(found)
    groups = sorted({h["group"]: h for h in found if h["agencies"]}.values(),
                    key=lambda h: h["group"])
    return render_template("agency_follow_ups.html", **_context("follow-ups"), asked=asked,
                           requested=requested, groups=groups, no_run=no_run,
                           suggested=request.args.get("group", ""))


@pages.post("/api/follow-ups/<follow_up>/answer")
def answer(follow_up: str):
    body = _payload()
    decision = body.get("decision")
    if decision not in ("approved", "declined"):
        return jsonify(error="An answer is 'approved' or 'declined'."), 400
    stored = state().client.answer_follow_up(state().project, follow_up, decision,
                                             (body.get("note") or "").strip())
    if request.is_json:
        return jsonify(stored)
    flash(f"{stored['id']}: {stored['status']}.")
    return redirect(url_for("pages.follow_ups"), 303)


@pages.post("/api/follow-ups")
def open_follow_up():
    body = _payload()
    created = state().client.open_follow_up(state().project, body.get("group") or "",
                                            (body.get("note") or "").strip())
    if request.is_json:
        return jsonify(follow_ups=created)
    flash(f"Opened {', '.join(f['id'] + ' (asked ' + f['agency'] + ')' for f in created)} on "
          f"group {body.get('group')}.")
    return redirect(url_for("pages.follow_ups"), 303)
