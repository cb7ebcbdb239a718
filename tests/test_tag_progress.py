"""Progress reporting: which reporter a stream gets, and what the plain (cron log) lines say."""

from __future__ import annotations

import io
import re

from artylyze.progress import PlainProgress, Progress, RichProgress, make_progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_reporter_follows_the_stream() -> None:
    assert type(make_progress(quiet=True, stream=Tty())) is Progress
    assert isinstance(make_progress(stream=io.StringIO()), PlainProgress)
    assert isinstance(make_progress(stream=Tty()), RichProgress)


def test_plain_lines_show_rate_eta_and_errors_every_interval() -> None:
    now = [100.0]
    out = io.StringIO()
    p = PlainProgress(out, interval=10.0, clock=lambda: now[0])
    p.start(1000, skipped=50)
    now[0] = 105.0
    p.advance(100, errors=0)  # within the interval: no line
    now[0] = 110.0
    p.advance(100, errors=3)
    p.note("took over a stale lock")
    now[0] = 112.5
    p.advance(50, errors=3)
    p.finish()
    assert out.getvalue().splitlines() == [
        "tag: 1000 files to process (50 up to date)",
        "tag: 200/1000 files (20%), 20.0 files/s, ETA 40s, 3 errors",
        "warning: took over a stale lock",
        "tag: 250/1000 files (25%), 20.0 files/s, ETA 38s, 3 errors",
    ]


def test_rich_bar_runs_on_a_terminal() -> None:
    out = Tty()
    p = RichProgress(out)
    p.start(3, skipped=1)
    p.advance(2, errors=1)
    p.advance(1, errors=1)
    p.finish()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # drop colours
    assert "1 files up to date" in text and "3/3" in text and "1 errors" in text
