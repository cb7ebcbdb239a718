"""Progress of a long run: a rich bar on a terminal, plain periodic lines in cron logs, or nothing.

The engine only calls :class:`Progress` methods; what the user sees is chosen here once,
from whether the stream is a terminal, so the engine never prints.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from artylyze.text import markup_safe, printable


class Progress:
    """The silent reporter (``--quiet``); the others override what they show."""

    def start(self, total: int, skipped: int = 0) -> None:
        """``total`` files to process; ``skipped`` were already up to date."""

    def advance(self, n: int, errors: int) -> None:
        """``n`` more files done; ``errors`` is the run's error count so far."""

    def note(self, message: str) -> None:
        """A warning worth showing while the run goes on (stale lock, unreadable dir)."""

    def finish(self) -> None:
        """The run is over: clear the bar / print the last line."""


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class PlainProgress(Progress):
    """One line every ``interval`` seconds, readable in a log file (no control characters)."""

    def __init__(self, stream: TextIO, interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, label: str = "tag",
                 unit: str = "files") -> None:
        self.stream, self.interval, self.clock = stream, interval, clock
        self.label, self.unit = label, unit
        self.total = self.done = self.errors = 0
        self.t0 = self.last = 0.0

    def start(self, total: int, skipped: int = 0) -> None:
        self.total, self.t0 = total, self.clock()
        self.last = self.t0
        extra = f" ({skipped} up to date)" if skipped else ""
        self._print(f"{self.label}: {total} {self.unit} to process{extra}")

    def advance(self, n: int, errors: int) -> None:
        self.done += n
        self.errors = errors
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._print(self.line(now))

    def line(self, now: float) -> str:
        elapsed = max(now - self.t0, 1e-9)
        rate = self.done / elapsed
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = _duration((self.total - self.done) / rate) if rate > 0 else "?"
        return (f"{self.label}: {self.done}/{self.total} {self.unit} ({pct:.0f}%), "
                f"{rate:.1f} {self.unit}/s, "
                f"ETA {eta}, {self.errors} errors")

    def note(self, message: str) -> None:
        self._print(f"warning: {printable(message)}")  # a name's newline must not forge a line

    def finish(self) -> None:
        if self.total:
            self._print(self.line(self.clock()))

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class RichProgress(Progress):
    """A live bar with files/s, ETA and the error count."""

    def __init__(self, stream: TextIO, label: str = "tag", unit: str = "files") -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        self.console = Console(file=stream)
        self.unit = unit
        self.bar = Bar(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                       TextColumn(f"{{task.fields[rate]}} {unit}/s"), TimeElapsedColumn(),
                       TextColumn("ETA"), TimeRemainingColumn(),
                       TextColumn("[red]{task.fields[errors]} errors"),
                       console=self.console, transient=False)
        self.task = None
        self.t0 = 0.0
        self.done = 0

    def start(self, total: int, skipped: int = 0) -> None:
        if skipped:
            self.console.print(f"{skipped} {self.unit} up to date")
        self.bar.start()
        self.t0 = time.monotonic()
        self.task = self.bar.add_task("tag", total=total, rate="-", errors=0)

    def advance(self, n: int, errors: int) -> None:
        self.done += n
        rate = self.done / max(time.monotonic() - self.t0, 1e-9)
        self.bar.update(self.task, advance=n, rate=f"{rate:.1f}", errors=errors)

    def note(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {markup_safe(message)}")

    def finish(self) -> None:
        self.bar.stop()


def make_progress(quiet: bool = False, stream: TextIO | None = None,
                  interval: float = 30.0, label: str = "tag", unit: str = "files") -> Progress:
    """The reporter that suits ``stream`` (stderr by default); ``label`` and ``unit`` name
    the work (``tag``/``files``, ``index``/``rows``)."""
    stream = stream or sys.stderr
    if quiet:
        return Progress()
    if stream.isatty():
        return RichProgress(stream, label, unit)
    return PlainProgress(stream, interval, label=label, unit=unit)
