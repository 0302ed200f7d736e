"""How long the cells left will take, learned kind by kind from the cells this invocation finished: a
parallel pair (teacher and student trained together) costs several baselines, and a teacher more still,
so a grid's first cell (often a baseline) says little about its last ones (the smoke grid's estimate said
2h25m after its first cell; 40 minutes remained).

A cell's work is estimated from the cells of its kind (mode, intermediate matching, k) that finished here:
their mean seconds. A kind not seen yet is priced in frames read (epochs x share of the data x frames a
video: k, all of them for a teacher, both for a parallel pair) at the seconds per frame of its mode, else
of every cell seen. The time left is that work at the pace the work done so far took: the seconds the
finished cells ran, against the seconds that have passed (which counts how many run side by side).
"""

from __future__ import annotations

import time
from collections import defaultdict

from orchestrator.experiment.matrix import Cell
from orchestrator.experiment.modes import Mode


def frames_read(cell: Cell) -> float:
    """A cell's training work in frames read: what its cost scales with."""
    per_video = cell.max_frames if cell.k is None else cell.k
    if cell.mode is Mode.PARALLEL or cell.chooses_by_content:
        per_video += cell.max_frames  # its teacher trains beside it, or its frame scorer reads, on every frame
    return max(1, cell.train.epochs) * cell.data_fraction * per_video


def _kind(cell: Cell) -> tuple:
    return cell.mode, cell.intermediate, cell.k


class Pace:
    def __init__(self):
        self.began = time.monotonic()
        self.seconds: dict[tuple, list[float]] = defaultdict(list)  # kind -> each finished cell's seconds
        self.per_frame: dict[Mode | None, list[tuple[float, float]]] = defaultdict(list)  # (seconds, frames)

    def finished(self, cell: Cell, seconds: float) -> None:
        """`cell` finished here after `seconds` of its job's wall time."""
        self.seconds[_kind(cell)].append(seconds)
        for key in (cell.mode, None):
            self.per_frame[key].append((seconds, frames_read(cell)))

    def estimate(self, cell: Cell) -> float | None:
        """The seconds `cell` will take; None before any cell finished."""
        seen = self.seconds.get(_kind(cell))
        if seen:
            return sum(seen) / len(seen)
        pairs = self.per_frame.get(cell.mode) or self.per_frame.get(None)
        if not pairs:
            return None
        return sum(s for s, _ in pairs) / sum(f for _, f in pairs) * frames_read(cell)

    def left(self, cells: list[Cell]) -> float | None:
        """Seconds until `cells` (those not finished) are done, at the pace of this invocation so far."""
        work_done = sum(s for seconds in self.seconds.values() for s in seconds)
        if not cells or work_done <= 0:
            return None
        work_left = sum(self.estimate(cell) or 0.0 for cell in cells)
        return work_left * (time.monotonic() - self.began) / work_done
