"""The expected quality of a field-wise run against its probability cut-off, as SVG.

A field-wise type links on match probabilities, so its threshold is no point
on the Dice axis of the score histogram; this chart shows what moving the
cut-off trades: the model's expected precision, recall and F1 at each cut-off.
"""

from __future__ import annotations

__all__ = ["curve_rows", "probability_curve_svg"]

_SERIES = ((1, "#d62728", "precision"), (2, "#2ca02c", "recall"), (3, "#1f77b4", "F1"))


def curve_rows(curve: list) -> list[tuple[float, float, float, float]]:
    """(cut-off, precision, recall, F1) per point of a (cut-off, precision, recall) curve."""
    rows = []
    for cutoff, precision, recall in curve:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        rows.append((float(cutoff), float(precision), float(recall), f1))
    return rows


def probability_curve_svg(curve: list, threshold: float) -> str:
    """The chart (empty text without a curve); ``threshold`` is the cut-off the run used."""
    rows = curve_rows(curve)
    if not rows:
        return ""
    width, height, left, top, plot_w, plot_h = 640, 260, 50, 16, 560, 200

    def x_of(value):
        return left + plot_w * value

    def y_of(value):
        return top + plot_h * (1 - value)

    parts = [f"<svg id='probability-curve' viewBox='0 0 {width} {height}' width='{width}' "
             f"height='{height}'>",
             f"<line x1='{left}' x2='{left + plot_w}' y1='{top + plot_h}' y2='{top + plot_h}' "
             "class='axis'/>",
             f"<line x1='{left}' x2='{left}' y1='{top}' y2='{top + plot_h}' class='axis'/>"]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f"<text x='{x_of(tick):.1f}' y='{top + plot_h + 16}' class='tick' "
                     f"text-anchor='middle'>{tick:.2f}</text>"
                     f"<text x='{left - 6}' y='{y_of(tick) + 4:.1f}' class='tick' "
                     f"text-anchor='end'>{tick:.2f}</text>")
    for index, colour, name in _SERIES:
        points = " ".join(f"{x_of(row[0]):.1f},{y_of(row[index]):.1f}" for row in rows)
        parts.append(f"<polyline points='{points}' fill='none' stroke='{colour}' "
                     f"stroke-width='2'><title>estimated {name}</title></polyline>")
    x = x_of(threshold)
    parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top}' y2='{top + plot_h}' "
                 f"stroke='black' stroke-dasharray='4 3'/><text x='{x + 4:.1f}' "
                 f"y='{top + 12}' class='tick'>cut-off {threshold:g}</text>")
    parts.append(f"<text x='{left + plot_w / 2:.0f}' y='{height - 4}' class='axis-label' "
                 "text-anchor='middle'>match-probability cut-off</text></svg>")
    legend = ", ".join(f"<span style='color:{colour}'>{name}</span>" for _, colour, name in _SERIES)
    return ("".join(parts) + f"<p class='note'>The field-wise model's expected {legend} of "
            "linking the pairs at or above each match-probability cut-off; the dashed line is "
            "the cut-off this run used.</p>")
