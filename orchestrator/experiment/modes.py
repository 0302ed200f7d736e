"""How a cell trains, as a type: its mode, with what each mode implies in one table, and the two roles a
preset's training settings serve. A mode's value is what cell ids, cell names, the store and MLflow hold.

    mode       role     trains (workloads.variants)   learns from                 registry
    skyline    teacher  classifier                    labels, on every frame      fewer-frames-<family>-all
    baseline   student  classifier                    labels, on k frames         (a point of comparison)
    serial     student  serial                        its teacher's cache         fewer-frames-<family>-k<k>
    parallel   student  parallel                      a teacher trained with it   fewer-frames-<family>-k<k>
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from orchestrator.errors import OrchestratorError


class Role(StrEnum):
    """Whose training settings a model uses: the preset's `teacher_train` or its `student_train`."""

    TEACHER = "teacher"
    STUDENT = "student"


class Mode(StrEnum):
    SKYLINE = "skyline"
    BASELINE = "baseline"
    SERIAL = "serial"
    PARALLEL = "parallel"

    @classmethod
    def parse(cls, text: str, where: str) -> Mode:
        """The mode named `text`; an error naming `where` it came from when there is none of that name."""
        try:
            return cls(text)
        except ValueError:
            raise OrchestratorError(f"{where}: unknown mode {text!r}; known: {', '.join(cls)}") from None

    @property
    def training(self) -> str:
        """The training mode of `workloads.variants` its variant belongs to."""
        return _TRAITS[self].training

    @property
    def is_student(self) -> bool:
        """Whether it learns from a teacher: its weights compete for its family's registered model at its k."""
        return _TRAITS[self].is_student

    @property
    def reads_cache(self) -> bool:
        """Whether it reads its teacher's cache (and so waits for it)."""
        return self is Mode.SERIAL

    @property
    def named_by_selection(self) -> bool:
        """Whether its name (and table row) says which frames it sees rather than how it learns."""
        return _TRAITS[self].training == "classifier"


@dataclass(frozen=True)
class _Traits:
    training: str
    is_student: bool


_TRAITS = {
    Mode.SKYLINE: _Traits("classifier", is_student=False),
    Mode.BASELINE: _Traits("classifier", is_student=False),
    Mode.SERIAL: _Traits("serial", is_student=True),
    Mode.PARALLEL: _Traits("parallel", is_student=True),
}
