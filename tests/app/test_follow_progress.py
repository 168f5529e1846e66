"""``flask jobs submit --wait`` draws a progress bar in the terminal; its label must say what
the bar shows, in the same redraw (issue 21: the label lagged its bar by a step)."""

from __future__ import annotations

import io

import click

from app.commands import show_progress


class Terminal(io.StringIO):
    """A terminal for click: it draws the bar only where output is a TTY."""

    def isatty(self) -> bool:
        return True


def last_line(out: Terminal) -> str:
    """What the terminal shows now: the last redraw, without cursor escapes."""
    return out.getvalue().split("\r")[-1].replace("\x1b[?25l", "").strip()


def test_the_label_moves_with_its_bar():
    out = Terminal()
    with click.progressbar(length=100, label="queued", file=out, width=10) as bar:
        done = show_progress(bar, 0, 40, "running on a GPU (40%)")
        assert "running on a GPU (40%)" in last_line(out) and "40%" in last_line(out)
        done = show_progress(bar, done, 100, "done")
        line = last_line(out)
        assert line.startswith("done") and "100%" in line, line
        # A new headline with no progress (waiting behind others) is drawn at once too.
        assert show_progress(bar, done, None, "cancelled") == 100
        assert last_line(out).startswith("cancelled")
