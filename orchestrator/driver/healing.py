"""The teacher caches a grid reads, kept whole. Each teacher's complete caches are noted when the grid
starts (a damaged one set aside there), and a cache found damaged or gone by a student that reads it is
written again from the teacher's final checkpoint, once per invocation: the students that need it wait for
the new one. A student that finds the cache gone because another had just set it aside waits for the same
rewrite, or runs once more if the rewrite had already ended.
"""

from __future__ import annotations

from typing import Callable

from orchestrator.cache.files import DamagedCache, MissingCache, set_aside
from orchestrator.cache.keys import cache_key, check_caches
from orchestrator.driver.backlog import Backlog, InFlight
from orchestrator.driver.ledger import Ledger
from orchestrator.driver.session import cause
from orchestrator.errors import note
from orchestrator.experiment.matrix import Cell, TeacherSpec
from orchestrator.jobs.teachers import TeacherJob


class CacheHealer:
    def __init__(self, ledger: Ledger, job: Callable[[TeacherSpec], TeacherJob]):
        self.ledger, self.job = ledger, job
        self.caches: dict[str, dict[str, str]] = {}  # teacher id -> its complete caches (key -> URI)
        self.rebuilds: dict[str, str] = {}  # teacher id -> why its caches are written again
        self.retried: set[str] = set()  # cells run again after finding their cache gone mid-rewrite

    def check(self, teacher: TeacherSpec) -> bool:
        """Note a teacher's caches when they are complete and its skyline is done; a damaged one is set
        aside, and the reason its caches are written again is kept for its skyline's run. Whether one
        was damaged."""
        caches, damaged = check_caches(self.job(teacher).caches())
        done = self.ledger.skylines[teacher.id].id in self.ledger.results
        for problem in damaged:
            note(teacher.name, f"{problem}; set aside, to be written again from the teacher's checkpoint")
        if caches is not None and done:
            self.caches[teacher.id] = caches
        elif done:
            self.rebuilds[teacher.id] = "; ".join(damaged) or "its caches were missing"
        return bool(damaged)

    def cache_of(self, cell: Cell) -> str | None:
        """The cache a cell reads (a serial student's), None for the others."""
        if not cell.mode.reads_cache:
            return None
        matched = (cell.k, cell.intermediate_points) if cell.intermediate else None
        return self.caches[cell.teacher.id][cache_key(cell.teacher, matched)]

    def why(self, teacher: TeacherSpec) -> str:
        """Why the teacher is fitted again, for its skyline's run."""
        return self.rebuilds.get(teacher.id, "its caches were missing")

    def fitted(self, teacher: TeacherSpec, caches: dict[str, str]) -> None:
        self.caches[teacher.id] = caches

    def heal(self, cell: Cell, error: BaseException, in_flight: InFlight, todo: Backlog,
             refit: Callable[[TeacherSpec], None]) -> bool:
        """Whether a serial cell that failed on its teacher's cache runs again: it waits for its teacher's
        caches to be written again (`refit` starts that, once per invocation), or runs once more."""
        damaged, missing = cause(error, DamagedCache), cause(error, MissingCache)
        if (damaged is None and missing is None) or not cell.mode.reads_cache:
            return False
        teacher = cell.teacher
        self.ledger.discard(cell)  # it runs again once the cache is written
        if in_flight.training(teacher):
            todo.blocked[teacher.id].append(cell)
            return True
        if teacher.id in self.rebuilds:
            if missing is None or teacher.id not in self.caches or cell.id in self.retried:
                return False
            self.retried.add(cell.id)
            todo.ready.insert(0, cell)
            return True
        problem = damaged or missing
        aside = set_aside(problem.location)
        note(cell.name, f"{problem}; {f'{aside} set aside, ' if aside else ''}the cache is written again from "
                        "the teacher's checkpoint, and the cell runs after")
        self.caches.pop(teacher.id, None)
        self.rebuilds[teacher.id] = problem.problem
        todo.hold_back(teacher, first=cell)  # so do the teacher's serial cells not started yet
        refit(teacher)
        return True
