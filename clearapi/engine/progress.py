"""A rich progress bar on stderr: rows done of total, rate, ETA, spend, learned rate.

Shown only on a terminal or in a notebook (or when asked), so logs and pipes stay clean. Rich redraws from
its own thread a few times a second; the engine only bumps counters, which costs nothing
when the bar is off.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from clearapi.records import RunStats

__all__ = ["ProgressBar", "RowsProgress", "describe_stats", "in_notebook", "want_progress"]


def want_progress(progress: bool | None) -> bool:
    """On when asked, else on a terminal or in a Jupyter kernel (rich draws there as a widget)."""
    if progress is not None:
        return progress
    if in_notebook():
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def in_notebook() -> bool:
    """A Jupyter kernel runs an IPython ZMQ shell; a plain script never imported IPython."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def describe_stats(stats: RunStats) -> str:
    """One line of engine figures, also used by the CLI's closing line."""
    parts = [f"{stats.requests} req"]
    if stats.cache_hits:
        parts.append(f"{stats.cache_hits} cached")
    if stats.rate_limited:
        parts.append(f"{stats.rate_limited}×429")
    retries = sum(stats.retries.values())
    if retries:
        parts.append(f"{retries} retries")
    parts.append(f"${stats.cost_usd:.4f}" if stats.cost_known else "cost ?")
    if stats.learned_rpm is not None:
        parts.append(f"~{stats.learned_rpm:.0f} rpm")
    if stats.learned_tpm is not None:
        parts.append(f"~{stats.learned_tpm:.0f} tpm")
    return " · ".join(parts)


class _StatsColumn(ProgressColumn):
    def __init__(self, stats: Callable[[], RunStats]) -> None:
        super().__init__()
        self._stats = stats

    def render(self, task: Task) -> Text:
        return Text(describe_stats(self._stats()), style="dim")


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f} rows/s", style="cyan")


class RowsProgress:
    """The handle a pipeline advances: one per engine, for the rows of the run."""

    def __init__(self, bar: ProgressBar | None) -> None:
        self._bar = bar
        self.done = 0
        self.total: int | None = None

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.set_total(total)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(advance=n)


class ProgressBar:
    def __init__(self, stats: Callable[[], RunStats], *, description: str = "rows",
                 console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            _StatsColumn(stats),
            console=console or Console(stderr=True),
            refresh_per_second=4,
            transient=False,
        )
        self._task: TaskID | None = None
        self._description = description

    def start(self) -> None:
        self._task = self._progress.add_task(self._description, total=None)
        self._progress.start()

    def set_total(self, total: int | None) -> None:
        if self._task is not None:
            self._progress.update(self._task, total=total)

    def update(self, *, advance: int = 0) -> None:
        if self._task is None:
            return
        if advance:
            self._progress.advance(self._task, advance)

    def stop(self) -> None:
        if self._task is not None:
            self._progress.refresh()
            self._progress.stop()
            self._task = None
