"""How close each cell's representations lie to its teacher's (`rep_cosine`, `rep_mse`; the paper's Figure
3): a cell is compared with its teacher's representation sample when it is recorded, or, for a cell that
finished first (a baseline, or in an earlier run), when the teacher is.
"""

from __future__ import annotations

import dataclasses

from orchestrator.driver.ledger import Ledger
from orchestrator.experiment.matrix import Cell, TeacherSpec
from orchestrator.experiment.modes import Mode
from orchestrator.experiment.results import CellResult
from orchestrator.store.samples import rep_metrics


class Similarity:
    def __init__(self, teachers: list[TeacherSpec], cells: list[Cell], ledger: Ledger):
        self.cells, self.ledger = cells, ledger
        # What a cell's representations are compared with: its teacher's (a baseline's: the teacher of its
        # family, data fraction and seed; a parallel pair's own, in its sample).
        teacher_of = {(t.family, t.size, t.model, t.data_fraction, t.seed): t for t in teachers}
        self.references = {c.id: c.teacher or teacher_of[(c.family, c.size, c.model, c.data_fraction, c.seed)]
                           for c in cells if c.mode in (Mode.BASELINE, Mode.SERIAL)}

    def measured(self, cell: Cell, result: CellResult) -> CellResult:
        """`result` with how close the cell's representations are to its teacher's (when both samples are
        there: a baseline may finish before its teacher, and is measured when the teacher does)."""
        store, reference = self.ledger.store, self.references.get(cell.id)
        metrics = rep_metrics(store.representations(cell.id),
                              None if reference is None else store.representations(reference.id))
        return result if metrics is None else dataclasses.replace(result, **metrics)

    def measure_against(self, teacher: TeacherSpec) -> None:
        """Measure the recorded cells compared with `teacher` that were recorded before it."""
        store = self.ledger.store
        for cell in self.cells:
            found = self.ledger.results.get(cell.id)
            if found is None or found.rep_cosine is not None or self.references.get(cell.id) != teacher:
                continue
            metrics = rep_metrics(store.representations(cell.id), store.representations(teacher.id))
            if metrics is not None:
                self.ledger.measured(cell, metrics)
