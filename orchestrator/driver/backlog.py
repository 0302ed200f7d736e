"""What a grid has left to do, and what it has started: the backlog (teachers to fit, cells ready to start,
serial cells waiting for their teacher's cache) planned from what is done, and the jobs in flight on Ray,
typed, so that the driver asks "which teachers are training" rather than sorting out a dict by type.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from orchestrator.experiment.groups import grouped
from orchestrator.experiment.matrix import Cell, TeacherSpec
from orchestrator.experiment.modes import Mode
from orchestrator.jobs.teachers import TeacherJob


@dataclass
class Backlog:
    """What a grid has left to do, given the cells already done and the teachers whose caches exist."""

    teachers: list[TeacherSpec] = field(default_factory=list)  # to fit: train, or export their caches again
    ready: list[Cell] = field(default_factory=list)  # may start now
    blocked: dict[str, list[Cell]] = field(default_factory=lambda: defaultdict(list))  # by the teacher they read

    def waiting(self, group: int = 1) -> int:
        """The jobs left to start, parallel cells in groups of at most `group` (`orchestrator.experiment.groups`)."""
        return len(grouped(self.ready, group)) + sum(len(grouped(cells, group)) for cells in self.blocked.values())

    def hold_back(self, teacher: TeacherSpec, first: Cell | None = None) -> None:
        """The teacher's serial cells not started yet wait for its caches (after `first`, if given)."""
        self.blocked[teacher.id] += ([first] if first else []) + [c for c in self.ready if c.teacher == teacher]
        self.ready = [c for c in self.ready if c.teacher != teacher]

    def release(self, teacher: TeacherSpec) -> list[Cell]:
        """The cells waiting for `teacher`, now ready, each before the ready cells of its own kind (they
        waited while the others could run), after heavier kinds (a group of parallel pairs not started
        yet is the longest job left: started last, the grid would end on it alone)."""
        waiting = heaviest_first(self.blocked.pop(teacher.id, []))
        self.ready = heaviest_first(waiting + self.ready)
        return waiting


def heaviest_first(cells: list[Cell]) -> list[Cell]:
    """Cells in the order a grid starts them: the kinds that train longest first (a parallel pair trains its
    teacher too, matching intermediate states costs more, a larger k reads more frames), so that a grid
    does not end on one long cell running alone while the other slots idle (the smoke grid did, for its
    last three minutes); otherwise the matrix's order."""
    rank = {Mode.PARALLEL: 0, Mode.SERIAL: 1}
    return sorted(cells, key=lambda c: (rank.get(c.mode, 2), not c.intermediate, -(c.k or 0)))


def backlog(teachers: list[TeacherSpec], cells: list[Cell], done: set[str], cached: set[str],
            damaged: set[str] = frozenset()) -> Backlog:
    """A teacher is fitted when its skyline is not done, when a cache of it was found damaged (the store
    heals), or when a cell that needs it is not done and its caches are incomplete (caches deleted on
    purpose stay deleted until a cell needs them); a serial cell waits for its teacher's caches unless they
    exist already."""
    todo = Backlog()
    for teacher in teachers:
        mine = [c for c in cells if c.teacher == teacher]
        skyline_done = all(c.id in done for c in mine if c.mode is Mode.SKYLINE)
        needed = teacher.id not in cached and any(c.id not in done for c in mine)
        if not skyline_done or teacher.id in damaged or needed:
            todo.teachers.append(teacher)
    for cell in cells:
        if cell.id in done or cell.mode is Mode.SKYLINE:
            continue
        if cell.mode.reads_cache and cell.teacher.id not in cached:
            todo.blocked[cell.teacher.id].append(cell)
        else:
            todo.ready.append(cell)
    todo.ready = heaviest_first(todo.ready)
    return todo


class InFlight:
    """The jobs a driver has started on Ray and not yet collected, by the Ray object each will yield."""

    def __init__(self):
        self.teachers: dict[Any, TeacherJob] = {}
        self.cells: dict[Any, tuple[Cell, ...]] = {}  # one cell, or a group of parallel cells

    def __len__(self) -> int:
        return len(self.teachers) + len(self.cells)

    def refs(self) -> list:
        return [*self.teachers, *self.cells]

    def pop(self, ref) -> TeacherJob | tuple[Cell, ...]:
        return self.teachers.pop(ref) if ref in self.teachers else self.cells.pop(ref)

    def training(self, teacher: TeacherSpec) -> bool:
        """Whether this teacher is being fitted now."""
        return any(job.spec == teacher for job in self.teachers.values())

    def cancel(self, ray) -> None:
        """Cancel every job in flight (one that has finished, or lost its worker, has nothing to stop)."""
        for ref in self.refs():
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - see the docstring
                pass
        self.teachers.clear()
        self.cells.clear()
