"""What a study may search, one registered `Parameter` each: how a value of it is checked (by building what
it sets), set on a trial's cell, read back from a cell, and written into a grid override, so that a trial
trains exactly what the grid would with those values and the best one reproduces in the grid.

    w_ce, w_rep, w_rep_intermediate, w_pred   loss weights (one per loss of `workloads.losses`)
    j (stride: k = max_frames // j) or k      the frames the student sees
    learning_rate                             the student's
    pred_distance                             kl | mse
    selection                                 uniform, or a content rule (`workloads.saliency`)
    scorer_width, scorer_epochs,              a content student's frame scorer (`ScorerSettings`): its
    scorer_learning_rate                      width prices every frame it reads; a uniform trial has none
    tolerance                                 the adaptive reading's (`AdaptiveReading`): a study that sets
                                              it reads its trials adaptively and optimises that reading
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from orchestrator.experiment.matrix import Cell
from orchestrator.experiment.presets import merge
from orchestrator.experiment.settings import AdaptiveReading
from orchestrator.experiment.validation import Invalid
from workloads.data.batch import FrameSelection
from workloads.losses import LOSSES, Objective
from workloads.saliency import ScorerSettings, check_rule
from workloads.train import TrainConfig
from workloads.variants import DEFAULT_WEIGHTS


@dataclass(frozen=True)
class Parameter:
    name: str
    check: Callable[[Any, str], None]  # (value, key): raises `Invalid` or a `WorkloadError` when it cannot be
    apply: Callable[[Cell, Any], Cell]  # the cell with this value
    read: Callable[[Cell], Any]  # the cell's value (None: the cell has none)
    override: Callable[[Any], dict[str, Any]]  # what sets it in a preset override
    absent: Any = None  # what a cell that reads back None ran (None: the setting does not apply to it)

    @property
    def frames(self) -> bool:
        """Whether it sets the frames the student sees (the stride j or k: a space gives one of them)."""
        return self.name in ("j", "k")

    @property
    def integer(self) -> bool:
        return self.frames or self.name in ("scorer_width", "scorer_epochs")


def _number(value: Any, key: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise Invalid(key, "a number")


def _frames(kind: str) -> Callable[[Any, str], None]:
    def check(value: Any, key: str) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(key, "a positive integer")
        FrameSelection("uniform", **{kind: value})
    return check


def _weight(loss: str) -> Parameter:
    def check(value: Any, key: str) -> None:
        _number(value, key)
        Objective({**DEFAULT_WEIGHTS, loss: value})

    def apply(cell: Cell, value: Any) -> Cell:
        weights = {**dict(cell.loss_weights), loss: float(value)}
        return dataclasses.replace(cell, loss_weights=tuple(sorted(weights.items())))

    return Parameter(f"w_{loss}", check, apply, lambda cell: dict(cell.loss_weights).get(loss),
                     lambda value: {"loss_weights": {loss: float(value)}})


def _learning_rate(value: Any, key: str) -> None:
    _number(value, key)
    TrainConfig(learning_rate=value)


def _with_learning_rate(cell: Cell, value: Any) -> Cell:
    return dataclasses.replace(cell, train=dataclasses.replace(cell.train, learning_rate=float(value)))


def _selection(value: Any, key: str) -> None:
    if value != "uniform":
        check_rule(value)


def _with_selection(cell: Cell, value: Any) -> Cell:
    """The cell on `value`'s frames; a content student is not read adaptively (its reading is uniform's)."""
    if value == "uniform":
        return dataclasses.replace(cell, selection="uniform")
    return dataclasses.replace(cell, selection=str(value), adaptive=None)


def _tolerance(value: Any, key: str) -> None:
    _number(value, key)
    if value < 0:
        raise Invalid(key, f"must be >= 0, got {value}")


def _with_tolerance(cell: Cell, value: Any) -> Cell:
    """The cell read adaptively with this tolerance (its other reading settings kept), where it can be: a
    serial student on uniform frames; a content student's reading stays off."""
    if cell.chooses_by_content or cell.intermediate:
        return cell
    return dataclasses.replace(cell, adaptive=dataclasses.replace(cell.adaptive or AdaptiveReading(),
                                                                  tolerance=float(value)))


def _scorer(setting: str) -> Parameter:
    """One of a content student's `ScorerSettings`; a cell on uniform frames has no scorer to set."""
    def check(value: Any, key: str) -> None:
        _number(value, key)
        ScorerSettings(**{setting: value})

    kind = float if setting == "learning_rate" else int  # a sampler may hand numpy's numbers

    def apply(cell: Cell, value: Any) -> Cell:
        if not cell.chooses_by_content:
            return cell
        return dataclasses.replace(cell, scorer=dataclasses.replace(cell.scorer, **{setting: kind(value)}))

    return Parameter(f"scorer_{setting}", check, apply,
                     lambda cell: getattr(cell.scorer, setting) if cell.chooses_by_content else None,
                     lambda value: {"content": {"scorer": {setting: kind(value)}}})


_REGISTERED = (
    *(_weight(loss) for loss in LOSSES),
    Parameter("j", _frames("j"), lambda cell, j: dataclasses.replace(cell, k=max(1, cell.max_frames // int(j))),
              lambda cell: cell.j, lambda j: {}),  # its k is the override's
    Parameter("k", _frames("k"), lambda cell, k: dataclasses.replace(cell, k=int(k)), lambda cell: cell.k,
              lambda k: {"ks": [int(k)]}),
    Parameter("learning_rate", _learning_rate, _with_learning_rate, lambda cell: cell.train.learning_rate,
              lambda lr: {"student_train": {"learning_rate": float(lr)}}),
    Parameter("pred_distance", lambda value, key: Objective(pred_distance=value),
              lambda cell, distance: dataclasses.replace(cell, pred_distance=str(distance)),
              lambda cell: cell.pred_distance, lambda distance: {"pred_distance": str(distance)}),
    # Read back only where it is a content rule: a uniform trial's settings are what they always were
    Parameter("selection", _selection, _with_selection,
              lambda cell: cell.selection if cell.chooses_by_content else None,
              lambda rule: {} if rule == "uniform" else {"content": {"rules": [str(rule)]}}, absent="uniform"),
    Parameter("tolerance", _tolerance, _with_tolerance, lambda cell: cell.adaptive.tolerance if cell.adaptive else None,
              lambda tolerance: {"adaptive": {"tolerance": float(tolerance)}}),
    *(_scorer(setting) for setting in ("width", "epochs", "learning_rate")),
)
PARAMETERS: dict[str, Parameter] = {parameter.name: parameter for parameter in _REGISTERED}


def settings_of(cell: Cell) -> dict[str, Any]:
    """Every searchable setting of a trial's cell, under its parameter's name."""
    return {name: value for name, parameter in PARAMETERS.items() if (value := parameter.read(cell)) is not None}


def override_of(settings: dict[str, Any]) -> dict[str, Any]:
    """A preset override that sets these settings, each parameter's part merged key by key, at every depth
    (two scorer settings make one `content.scorer`)."""
    merged: dict[str, Any] = {}
    for name, value in settings.items():
        merged = merge(merged, PARAMETERS[name].override(value))
    return merged
