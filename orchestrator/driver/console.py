"""What the person watching a grid sees: one live progress line on a terminal (tqdm), redrawn below the
lines the grid prints (a finished cell, a note); on anything else (CI, `ray job logs`, a file) no line
drawing, but a plain progress line whenever a cell finishes or fails or a teacher starts or ends.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from tqdm import tqdm

from orchestrator.errors import print_lines_with

_bar: tqdm | None = None  # the live line while one is drawn


def _above_the_bar(text: str) -> None:
    if _bar is not None:
        _bar.write(text, file=sys.stdout)


@dataclass(frozen=True)
class Counts:
    done: int  # cells finished, in this invocation or before
    running: int  # cells training now (as many as the cluster holds of those submitted)
    failed: int
    total: int
    teachers: int  # teachers training now
    queued: int = 0  # cells submitted to Ray, waiting for resources
    left_seconds: float | None = None  # the time left, learned kind by kind (`orchestrator.driver.pace`)


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class GridProgress:
    """Cells done / running / failed / total, teachers training, elapsed and the estimated time left (the
    counts carry it: `orchestrator.driver.pace`)."""

    def __init__(self, counts: Counts, live: bool | None = None):
        global _bar
        self.started, self.last = time.monotonic(), None
        self.live = sys.stderr.isatty() if live is None else live
        if self.live:
            _bar = tqdm(total=counts.total, initial=counts.done, unit="cell", dynamic_ncols=True, file=sys.stderr,
                        bar_format="{l_bar}{bar:20}| {n_fmt}/{total_fmt} cells done{postfix}")
            print_lines_with(_above_the_bar)
        self.update(counts)

    def line(self, counts: Counts) -> str:
        elapsed = time.monotonic() - self.started
        left = counts.total - counts.done - counts.failed
        eta = f"about {duration(counts.left_seconds)} left" if counts.left_seconds is not None else "time left: ?"
        eta = "" if not left else f", {eta}"
        queued = f", {counts.queued} queued" if counts.queued else ""
        return (f"{counts.done}/{counts.total} cells done, {counts.running} running{queued}, {counts.failed} failed, "
                f"{counts.teachers} teacher{'s' * (counts.teachers != 1)} training; {duration(elapsed)} elapsed{eta}")

    def update(self, counts: Counts) -> None:
        if _bar is not None:
            _bar.n = counts.done
            _bar.set_postfix_str(self.line(counts).split(" done, ", 1)[1], refresh=True)
        elif self.last is None or (counts.done, counts.failed, counts.teachers) != self.last:
            print(f"progress: {self.line(counts)}", flush=True)  # a line a cell, not one a start
        self.last = (counts.done, counts.failed, counts.teachers)

    def close(self) -> None:
        global _bar
        if _bar is not None:
            print_lines_with(None)
            _bar.close()
            _bar = None
