"""The coordinator report as text for a terminal: tables, an overlap matrix and a histogram."""

from __future__ import annotations

from .report_curve import curve_rows

__all__ = ["member_text", "render_report"]

_BAR_WIDTH = 40


def render_report(report: dict, *, max_groups: int = 15) -> str:
    """Format the JSON report of ``LinkageClient.report`` for people."""
    summary = report["summary"]
    lines = [
        f"Project {report['project']} - run {report['run']}",
        f"  threshold {report['threshold']:.3f}: {report['threshold_reason']}",
    ]
    if report["estimated_precision"]:
        lines.append(f"  estimated precision {report['estimated_precision']:.3f}, "
                     f"estimated recall {report['estimated_recall']:.3f} (from the score model)")
    lines.append(f"  {summary['records']} records, {summary['candidate_pairs']} linked pairs, "
                 f"{summary['groups']} groups ({summary['cross_agency_groups']} across agencies), "
                 f"{summary['seconds']:.1f} s")
    if summary.get("groups_to_review"):
        lines.append(f"  {summary['groups_to_review']} groups need review: their match "
                     "probability is uncertain; 'linkage review' records a decision, and later "
                     "runs learn from it")
    used = summary.get("reviews_used") or {}
    if used.get("accepted") or used.get("rejected"):
        lines.append(f"  the score model learnt from {used['accepted']} accepted and "
                     f"{used['rejected']} rejected groups of earlier reviews")
    lines += ["", "Agencies", f"  {'agency':<16}{'records':>9}{'batches':>9}{'with hits':>11}"
              f"{'duplicates':>12}"]
    for name, stats in report["agencies"].items():
        lines.append(f"  {name:<16}{stats['records']:>9}{stats['batches']:>9}"
                     f"{stats['records_with_hits']:>11}{stats['duplicate_records']:>12}")
    names = list(report["agencies"])
    lines += ["", "Shared entities between agencies (groups)"]
    width = max([len(n) for n in names] + [6]) + 2
    lines.append(" " * width + "".join(f"{n[:width - 1]:>{width}}" for n in names))
    for first in names:
        cells = []
        for second in names:
            if first == second:
                cells.append(f"{'-':>{width}}")
            else:
                key = "|".join(sorted((first, second)))
                cells.append(f"{report['agency_pairs'].get(key, 0):>{width}}")
        lines.append(f"{first:<{width}}" + "".join(cells))
    histogram = report["histogram"]
    field_wise = bool((report.get("network") or {}).get("waterfalls"))
    if histogram:
        peak = max(b["count"] for b in histogram) or 1
        # A field-wise threshold is a match probability, not a point on this Dice axis.
        lines += ["", "Candidate scores (record-level Dice; groups linked field-wise at match "
                      f"probability >= {report['threshold']:g}; --format html explains each)"
                  if field_wise else "Candidate scores (| marks the threshold)"]
        for bin_ in histogram:
            bar = "#" * max(1 if bin_["count"] else 0, round(_BAR_WIDTH * bin_["count"] / peak))
            marker = ("|" if not field_wise and bin_["low"] <= report["threshold"] < bin_["high"]
                      else " ")
            lines.append(f"  {bin_['low']:.3f}-{bin_['high']:.3f} {marker} {bar} {bin_['count']}")
    curve = curve_rows((report.get("network") or {}).get("probability_curve") or [])
    if curve:
        lines += ["", "Expected quality by match-probability cut-off (field-wise model; "
                      f"this run: {report['threshold']:g})",
                  f"  {'cut-off':>8}{'precision':>11}{'recall':>9}{'F1':>8}"]
        shown = [row for row in curve if round(row[0] * 100) % 10 == 0]
        for cutoff, precision, recall, f1 in shown:
            lines.append(f"  {cutoff:>8.2f}{precision:>11.4f}{recall:>9.4f}{f1:>8.4f}")
    brokers = [b for b in (report.get("network") or {}).get("brokers", [])
               if len(b["agencies"]) > 1][:10]
    if brokers:
        lines += ["", "Top brokers (entities that link cases across agencies and stages)"]
        for broker in brokers:
            lines.append(f"  {broker['rank']:>3}. {broker['group']}  {broker['explanation']}")
    groups = [g for g in report["groups"] if len(g["agencies"]) > 1]
    lines += ["", f"Groups across agencies: {len(groups)} (showing up to {max_groups}, "
                  "lowest confidence first: those deserve a look)"]
    lines += _group_lines(sorted(groups, key=lambda g: g["confidence"])[:max_groups])
    within = [g for g in report["groups"] if len(g["agencies"]) == 1 and g.get("needs_review")]
    if within:
        lines += ["", f"Groups within one agency that need review: {len(within)} (possible "
                      f"duplicates of one agency; showing up to {max_groups})"]
        lines += _group_lines(sorted(within, key=lambda g: g["confidence"])[:max_groups])
    follow_ups = [f for g in report["groups"] for f in g.get("follow_ups", [])]
    if follow_ups:
        lines += ["", f"Follow-ups: {len(follow_ups)}",
                  f"  {'id':<8}{'group':<20} {'asked by':<16}{'asked':<16}{'status':<10}note / answer"]
        for item in follow_ups:
            notes = " / ".join(filter(None, (item.get("note"), item.get("answer_note"))))
            lines.append(f"  {item['id']:<8}{item['group']:<20} {item['requested_by']:<16}"
                         f"{item['agency']:<16}{item['status']:<10}{notes}")
    return "\n".join(lines)


def member_text(agencies: dict[str, int]) -> str:
    """'be-police, se-police ×2': the agencies of a group, with a count where one holds
    several of its records."""
    return ", ".join(f"{a} ×{n}" if n > 1 else a for a, n in agencies.items())


def _group_lines(groups: list[dict]) -> list[str]:
    lines = []
    if groups:
        lines.append(f"  {'group':<20}  {'confidence':<10}  {'review':<14}  agencies")
    for group in groups:
        review = (group["review"] if group["review"] else
                  "needs review" if group.get("needs_review") else "")
        lines.append(f"  {group['id']:<20}  {group['confidence']:<10.3f}  {review:<14}  "
                     f"{member_text(group['agencies'])}")
    return lines
