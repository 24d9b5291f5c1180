"""The default cut, calibrated to the dataset: where a row is more likely corrupted than clean.

An absolute cut (confidence < 0.5) means different things on different data: on short factual
rows clean responses score high, while on long, open-ended rows (summaries, headings of real
passages) the model's agreement and consistency are low on *every* row, so clean rows sit near
or below 0.5 and a third of a clean file can go. The ranking carries over between datasets
better than the scale does, so the cut is read off the dataset's own confidences:

* confidences go to log-odds and into a fixed histogram (`BINS` counts: memory does not grow
  with the file);
* a two-component Gaussian mixture is fitted to it by EM — a "clean" component and, below it,
  a "corrupted" one of at most half the rows;
* if the data do not show two components (AIC, and a corrupted component that is told apart
  from the clean one), the file is read as clean: one Gaussian, and only its far lower tail
  (`TAIL_Z` standard deviations, about 1 % of a normal sample) is cut;
* otherwise the cut is the highest point below the clean mean where the corrupted component's
  weighted density passes the clean one's, i.e. a row below it is more likely corrupted;
* the cut is capped at the old absolute 0.5 (`CEILING`): it only ever moves down.

The same fit says what a cut costs: the share of the clean component below it (clean rows
dropped) and of the corrupted component above it (corrupted rows kept). Those are estimates
from the fit, not measurements; they are written next to the cut so a user can see them.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["BINS", "CEILING", "MIN_ROWS", "TAIL_Z", "WARN_DROP_SHARE", "Calibration", "calibrate", "drop_warning"]

#: log-odds range and resolution of the histogram the mixture is fitted to
LO, HI, BINS = -7.0, 7.0, 280
#: fewer scored rows than this and the fit says too little: the absolute cut stays
MIN_ROWS = 20
#: with no corrupted component in sight, cut this many standard deviations below the mean
TAIL_Z = 2.33
#: a corrupted component is at most this share of the rows: a larger "corrupted" mode is
#: the clean rows' own spread (long tasks), not damage
MAX_CORRUPTED = 0.5
#: the two components must be this far apart (Ashman's D) to be read as two
MIN_SEPARATION = 1.5
#: the calibrated cut never goes above the old absolute cut: a skewed clean mode (easy rows piled
#: near the top) can fit as two components and put the crossing at 0.7-0.8 (measured: a third of
#: clean rows dropped on the easy sets). Calibration moves the cut *down* for data whose clean rows
#: score low; it does not move it up
CEILING = 0.5
#: the warning's limit: a run that drops more than this share of its rows says why
WARN_DROP_SHARE = 0.25
#: information-criterion penalty per extra parameter: AIC's 2. BIC's ln n asks too much of the
#: 40-150 rows a small labelled set has (simulated: recall 0.26 where AIC gives 0.54 at precision
#: 0.89), and AIC still reads one Gaussian as one (about 3 % of a clean 72-row file dropped)
PENALTY: float | None = 2.0
_SD_FLOOR = 0.15
_EPS = 1e-300

Rule = Literal["mixture", "one-component", "absolute"]


@dataclass(frozen=True)
class _Normal:
    mean: float
    sd: float

    def pdf(self, z: float) -> float:
        u = (z - self.mean) / self.sd
        return math.exp(-0.5 * u * u) / (self.sd * math.sqrt(2.0 * math.pi))

    def cdf(self, z: float) -> float:
        return 0.5 * math.erfc(-(z - self.mean) / (self.sd * math.sqrt(2.0)))


@dataclass(frozen=True)
class Calibration:
    """The calibrated cut and what the fit says it costs."""

    rule: Rule
    threshold: float
    rows: int
    #: estimated share of corrupted rows in the dataset (the corrupted component's weight)
    corrupted_share: float | None = None
    clean: tuple[float, float] | None = None  # (mean, sd) in log-odds
    corrupted: tuple[float, float] | None = None
    note: str = ""

    def clean_dropped(self, threshold: float | None = None) -> float | None:
        """Estimated share of clean rows below `threshold` (the calibrated cut if None)."""
        if self.clean is None:
            return None
        return _Normal(*self.clean).cdf(_z(self.threshold if threshold is None else threshold))

    def corrupted_kept(self, threshold: float | None = None) -> float | None:
        """Estimated share of corrupted rows at or above `threshold` (the calibrated cut if None)."""
        if self.corrupted is None:
            return None
        return 1.0 - _Normal(*self.corrupted).cdf(_z(self.threshold if threshold is None else threshold))

    def report(self, threshold: float | None = None) -> dict[str, object]:
        """What summary.json says about the cut actually applied."""
        cut = self.threshold if threshold is None else threshold
        out: dict[str, object] = {
            "rule": self.rule, "calibrated_threshold": round(self.threshold, 6), "rows": self.rows,
            "estimated_corrupted_share": _round(self.corrupted_share),
            "estimated_clean_dropped": _round(self.clean_dropped(cut)),
            "estimated_corrupted_kept": _round(self.corrupted_kept(cut)),
            "note": self.note,
        }
        if self.clean is not None:
            out["clean_component"] = {"mean_logit": round(self.clean[0], 4), "sd_logit": round(self.clean[1], 4)}
        if self.corrupted is not None:
            out["corrupted_component"] = {"mean_logit": round(self.corrupted[0], 4),
                                          "sd_logit": round(self.corrupted[1], 4)}
        return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _z(confidence: float) -> float:
    p = min(1.0 - 1e-3, max(1e-3, confidence))
    return math.log(p / (1.0 - p))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _histogram(confidences: Iterable[float]) -> tuple[array[float], int]:
    counts = array("d", bytes(8 * BINS))
    n = 0
    width = (HI - LO) / BINS
    for c in confidences:
        if c is None or not math.isfinite(c):
            continue
        k = int((_z(c) - LO) / width)
        counts[min(BINS - 1, max(0, k))] += 1.0
        n += 1
    return counts, n


def _centres() -> list[float]:
    width = (HI - LO) / BINS
    return [LO + (k + 0.5) * width for k in range(BINS)]


def _moments(xs: list[float], ws: Iterable[float]) -> tuple[float, float, float]:
    total = mean = sq = 0.0
    for x, w in zip(xs, ws, strict=True):
        total += w
        mean += w * x
        sq += w * x * x
    if total <= 0:
        return 0.0, 0.0, _SD_FLOOR
    mean /= total
    var = max(sq / total - mean * mean, 0.0)
    return total, mean, max(math.sqrt(var), _SD_FLOOR)


def _loglik(xs: list[float], counts: array[float], parts: list[tuple[float, _Normal]]) -> float:
    return sum(c * math.log(max(sum(w * g.pdf(x) for w, g in parts), _EPS))
               for x, c in zip(xs, counts, strict=True) if c)


def _quantile(xs: list[float], counts: array[float], n: int, q: float) -> float:
    seen = 0.0
    for x, c in zip(xs, counts, strict=True):
        seen += c
        if seen >= q * n:
            return x
    return xs[-1]


def _fit_two(xs: list[float], counts: array[float], n: int) -> tuple[float, _Normal, _Normal]:
    """EM for (weight of the low component, low, high), started from a 25 / 75 split."""
    split = _quantile(xs, counts, n, 0.25)
    _, m_lo, s_lo = _moments(xs, [c if x <= split else 0.0 for x, c in zip(xs, counts, strict=True)])
    _, m_hi, s_hi = _moments(xs, [c if x > split else 0.0 for x, c in zip(xs, counts, strict=True)])
    pi, lo, hi = 0.25, _Normal(m_lo, s_lo), _Normal(m_hi, s_hi)
    previous = -math.inf
    for _ in range(500):
        resp = []
        for x in xs:
            a, b = pi * lo.pdf(x), (1.0 - pi) * hi.pdf(x)
            resp.append(a / (a + b) if a + b > _EPS else (1.0 if x < (lo.mean + hi.mean) / 2 else 0.0))
        w_lo, m_lo, s_lo = _moments(xs, [c * r for c, r in zip(counts, resp, strict=True)])
        _, m_hi, s_hi = _moments(xs, [c * (1.0 - r) for c, r in zip(counts, resp, strict=True)])
        pi = min(MAX_CORRUPTED, max(1e-4, w_lo / n))
        lo, hi = _Normal(m_lo, s_lo), _Normal(m_hi, s_hi)
        current = _loglik(xs, counts, [(pi, lo), (1.0 - pi, hi)])
        if current - previous < 1e-6 * n:
            break
        previous = current
    if lo.mean > hi.mean:
        pi, lo, hi = 1.0 - pi, hi, lo
    return pi, lo, hi


def _crossing(pi: float, lo: _Normal, hi: _Normal) -> float | None:
    """The highest z below the clean mean where the corrupted side's weighted density wins."""
    step = 0.01
    z = hi.mean
    while z >= LO:
        if pi * lo.pdf(z) >= (1.0 - pi) * hi.pdf(z):
            return z
        z -= step
    return None


def calibrate(confidences: Iterable[float]) -> Calibration:
    """The calibrated cut for a dataset's confidences (one pass; memory: a fixed histogram)."""
    counts, n = _histogram(confidences)
    if n < MIN_ROWS:
        return Calibration("absolute", 0.5, n, note=f"only {n} scored rows (< {MIN_ROWS}): too few to "
                                                     "calibrate, the absolute cut 0.5 applies")
    occupied = [(x, c) for x, c in zip(_centres(), counts, strict=True) if c]  # EM over what is there
    xs = [x for x, _ in occupied]
    counts = array("d", [c for _, c in occupied])
    _, mean, sd = _moments(xs, counts)
    one = _Normal(mean, sd)
    ll1 = _loglik(xs, counts, [(1.0, one)])
    pi, lo, hi = _fit_two(xs, counts, n)
    ll2 = _loglik(xs, counts, [(pi, lo), (1.0 - pi, hi)])
    separation = math.sqrt(2.0) * (hi.mean - lo.mean) / math.sqrt(lo.sd ** 2 + hi.sd ** 2)
    gain = 2.0 * (ll2 - ll1) - 3.0 * (math.log(n) if PENALTY is None else PENALTY)
    criterion = "BIC" if PENALTY is None else "AIC"
    cut = _crossing(pi, lo, hi) if gain > 0 and separation >= MIN_SEPARATION else None
    if cut is None:
        z = mean - TAIL_Z * sd
        return Calibration("one-component", min(CEILING, _sigmoid(z)), n, corrupted_share=0.0, clean=(mean, sd),
                           note=(f"the confidences show no separate low mode (separation {separation:.2f}, "
                                 f"{criterion} gain {gain:.1f}): read as clean, only the lower tail "
                                 f"{TAIL_Z} sd below the mean is cut"))
    note = (f"two-component mixture: {pi:.0%} of rows in a low mode (separation {separation:.2f}); cut where a "
            "row is more likely in it than in the clean one")
    if _sigmoid(cut) > CEILING:
        # above the ceiling the "low mode" is mostly the lower half of a skewed clean mode, so the "clean"
        # component is only its upper part and undercounts the clean rows below the cut: say so
        note += (f"; that point ({_sigmoid(cut):.2f}) is above the ceiling {CEILING}, so the cut is {CEILING}: "
                 "the fit has likely split a skewed clean mode, and its estimate of clean rows dropped is then "
                 "too low")
    return Calibration("mixture", min(CEILING, _sigmoid(cut)), n, corrupted_share=pi, clean=(hi.mean, hi.sd),
                       corrupted=(lo.mean, lo.sd), note=note)


def drop_warning(dropped: int, scored: int, calibration: Calibration | None, threshold: float,
                 limit: float = WARN_DROP_SHARE) -> str | None:
    """A sentence for the user when the cut drops more than `limit` of the scored rows, or None."""
    if scored <= 0 or dropped / scored <= limit:
        return None
    share = dropped / scored
    why = f"{dropped} of {scored} rows ({share:.0%}) fall below the cut {threshold:.3f}"
    if calibration is None or calibration.clean is None:
        return f"{why}; there were too few rows to estimate how many of them are clean"
    lost = calibration.clean_dropped(threshold)
    assert lost is not None
    if calibration.rule == "mixture" and abs(threshold - calibration.threshold) < 1e-9:
        reason = (f"the calibration finds {calibration.corrupted_share:.0%} of rows in a low-confidence mode "
                  f"and estimates {lost:.0%} of clean rows are lost")
    else:
        reason = (f"the calibrated cut would be {calibration.threshold:.3f}; at this cut an estimated {lost:.0%} "
                  f"of clean rows are lost")
    return f"{why}: {reason} (check report.html before training on curated.jsonl)"
