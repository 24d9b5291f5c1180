"""Histograms of scores in [0, 1], binned in Python and drawn as inline SVG.

Binning here rather than in the page means the browser never walks 100,000 rows to draw a
chart, and the chart is there even with scripts disabled. Bars are stacked by action so
the filter's cut is visible as a change of colour at the threshold line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Histogram", "bin_by_action", "histogram_svg"]

BINS = 20
# Stack order bottom-up, and the index used for rows without an action.
_STACK = (0, 1, 2, 3)
_LABELS = ("keep", "correct", "drop", "no action")  # load.ACTIONS, then "none" (no import: load uses this)


@dataclass
class Histogram:
    """counts[bin][action] with action 0..2 = keep/correct/drop, 3 = none; `missing` = values not scored."""

    counts: list[list[int]]
    missing: int

    @property
    def total(self) -> int:
        return sum(sum(b) for b in self.counts)

    @classmethod
    def empty(cls, bins: int = BINS) -> Histogram:
        return cls(counts=[[0, 0, 0, 0] for _ in range(bins)], missing=0)

    def add(self, value: float | None, action: int) -> None:
        """Count one row (streaming: the report bins every row without keeping them)."""
        if value is None:
            self.missing += 1
            return
        bins = len(self.counts)
        b = min(bins - 1, max(0, int(value * bins)))
        self.counts[b][action if 0 <= action <= 2 else 3] += 1


def bin_by_action(values: Sequence[float | None], actions: Sequence[int], bins: int = BINS) -> Histogram:
    hist = Histogram.empty(bins)
    for value, action in zip(values, actions, strict=True):
        hist.add(value, action)
    return hist


def histogram_svg(hist: Histogram, *, title: str, threshold: float | None = None,
                  width: int = 640, height: int = 220, element_id: str | None = None,
                  clickable: bool = False) -> str:
    """An accessible SVG: a <title>, a tooltip per bar, the threshold as a labelled line.

    With `clickable`, bars carry data-lo/data-hi so the page can filter the table to a bin.
    """
    bins = len(hist.counts)
    left, right, top, bottom = 44, 10, 14, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((sum(b) for b in hist.counts), default=0) or 1
    bar_w = plot_w / bins

    def x_of(v: float) -> float:
        return left + v * plot_w

    def y_of(c: float) -> float:
        return top + plot_h - c / peak * plot_h

    id_attr = f' id="{escape(element_id)}"' if element_id else ""
    parts = [
        f'<svg class="hist" xmlns="http://www.w3.org/2000/svg"{id_attr} viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        # axes
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}"/>',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/>',
        f'<text class="tick" x="{left - 6}" y="{top + 4}" text-anchor="end">{peak}</text>',
        f'<text class="tick" x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text class="tick" x="{x_of(t):.1f}" y="{top + plot_h + 16}" '
                     f'text-anchor="middle">{t:g}</text>')
    for b, stack in enumerate(hist.counts):
        lo, hi = b / bins, (b + 1) / bins
        x = left + b * bar_w
        total = sum(stack)
        tip = f"{lo:.2f}–{hi:.2f}: {total} rows (" + ", ".join(
            f"{_LABELS[a]} {stack[a]}" for a in _STACK if stack[a]) + ")"
        data = f' data-lo="{lo:.4f}" data-hi="{hi:.4f}"' if clickable else ""
        parts.append(f'<g class="bin"{data}><title>{escape(tip)}</title>')
        # an invisible full-height target so thin bars are still easy to hover and click
        parts.append(f'<rect class="hit" x="{x:.2f}" y="{top}" width="{bar_w:.2f}" height="{plot_h}"/>')
        base = 0
        for a in _STACK:
            c = stack[a]
            if not c:
                continue
            y1, y0 = y_of(base + c), y_of(base)
            parts.append(f'<rect class="bar a{a}" x="{x + 1:.2f}" y="{y1:.2f}" '
                         f'width="{max(bar_w - 2, 1):.2f}" height="{max(y0 - y1, 0.5):.2f}"/>')
            base += c
        parts.append("</g>")
    if threshold is not None:
        tx = x_of(min(max(threshold, 0.0), 1.0))
        label_anchor = "start" if threshold < 0.8 else "end"
        dx = 4 if label_anchor == "start" else -4
        parts.append(
            f'<g class="threshold" data-threshold="{threshold}"><title>filter threshold {threshold:.4g}</title>'
            f'<line class="threshold-line" x1="{tx:.2f}" y1="{top - 4}" x2="{tx:.2f}" y2="{top + plot_h}"/>'
            f'<text class="threshold-label" x="{tx + dx:.2f}" y="{top + 6}" text-anchor="{label_anchor}">'
            f"threshold {threshold:.3g}</text></g>")
    parts.append("</svg>")
    return "".join(parts)
