"""Search spaces: a study's YAML file (`search_spaces/*.yaml`) validated into a `SearchSpace`.

A study searches one serial student (family, variant) over some of the parameters of
`orchestrator.experiment.search_parameters`; those it does not search keep a fixed value (`fixed`, else
the preset's).

Each searched parameter is one distribution: `{loguniform: [low, high]}`, `{uniform: [low, high]}`,
`{int: [low, high]}` (both ends included) or `{choice: [a, b, ...]}`. The file goes through the presets'
validator (`orchestrator.experiment.validation`); every value a parameter can take is checked by building what it
sets (an `Objective`, a `FrameSelection`, a `TrainConfig`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import OrchestratorError
from orchestrator.experiment.matrix import Cell
from orchestrator.experiment.presets import Preset
from orchestrator.experiment.search_parameters import PARAMETERS
from orchestrator.experiment.validation import Invalid, build, checking
from workloads.models import find_family
from workloads.variants import stages

# Each kind of distribution as Ray Tune's: `int` includes its upper end, which Tune's randint excludes.
_TUNE = {
    "loguniform": lambda tune, values: tune.loguniform(*values),
    "uniform": lambda tune, values: tune.uniform(*values),
    "int": lambda tune, values: tune.randint(values[0], values[1] + 1),
    "choice": lambda tune, values: tune.choice(list(values)),
}
KINDS = tuple(_TUNE)
EARLY_STOPPING = ("pareto", "gap", "off")


@dataclass(frozen=True)
class Distribution:
    kind: str
    values: tuple

    @classmethod
    def from_yaml(cls, raw: Any, key: str) -> Distribution:
        if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in KINDS:
            raise Invalid(key, f"one of {', '.join('{' + k + ': [...]}' for k in KINDS)}")
        kind, values = next(iter(raw.items()))
        key = f"{key}.{kind}"
        if not isinstance(values, list) or not values:
            raise Invalid(key, "a non-empty list")
        if kind == "choice":
            return cls(kind, tuple(values))
        if len(values) != 2 or not all(_is_number(v) for v in values):
            raise Invalid(key, "[low, high], two numbers")
        low, high = values
        if not low < high:
            raise Invalid(key, f"low {low} must be below high {high}")
        if kind == "loguniform" and low <= 0:
            raise Invalid(key, "a log-uniform range must be above 0")
        if kind == "int" and not (isinstance(low, int) and isinstance(high, int)):
            raise Invalid(key, "integer ends")
        return cls(kind, (low, high))

    def to_tune(self):
        from ray import tune

        return _TUNE[self.kind](tune, self.values)


@dataclass(frozen=True)
class SearchSpace:
    name: str
    family: str
    variant: str
    search: dict[str, Distribution]
    fixed: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None  # the student's; None keeps the preset's
    # pareto: ASHA ranking trials by dominance on (GAP, multiply-adds), so a trial is not stopped only for
    # being cheap; gap: ASHA on GAP alone; off: every trial runs its epochs
    early_stopping: str = "pareto"
    grace_period: int = 1  # epochs every trial runs before early stopping may stop it
    reduction_factor: int = 3  # ASHA keeps the best 1/reduction_factor of the trials at each rung
    seed: int = 0  # the sampler's
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name.replace("-", "").replace("_", "").isalnum():
            raise Invalid("name", "letters, digits, '-' and '_' only (it names the study's folder)")
        with checking("family"):
            find_family(self.family)
        with checking("variant"):
            stages(self.variant)
        if not self.search:
            raise Invalid("search", "a mapping of at least one parameter to its distribution")
        for name, distribution in self.search.items():
            _check_distribution(f"search.{name}", name, distribution)
        for name, value in self.fixed.items():
            _check_parameter(f"fixed.{name}", name)
            if name in self.search:
                raise Invalid(f"fixed.{name}", "is also searched")
            _check_value(f"fixed.{name}", name, value)
        if len({name for name in (*self.search, *self.fixed) if PARAMETERS[name].frames}) > 1:
            raise Invalid("j/k", "give the stride j or the frame count k, not both")
        if self.early_stopping not in EARLY_STOPPING:
            raise Invalid("early_stopping", f"one of {', '.join(EARLY_STOPPING)}")
        for key, minimum in (("epochs", 1), ("grace_period", 1), ("reduction_factor", 2), ("seed", 0)):
            value = getattr(self, key)
            if value is not None and value < minimum:
                raise Invalid(key, f"an integer >= {minimum}")

    @property
    def reads_adaptively(self) -> bool:
        """Whether its trials are read adaptively and report that reading (it sets the `tolerance`)."""
        return "tolerance" in self.search or "tolerance" in self.fixed

    def tune_space(self) -> dict:
        return {name: distribution.to_tune() for name, distribution in self.search.items()}

    def finite_values(self) -> dict[str, tuple] | None:
        """Every value of each searched parameter when all take finitely many (int and choice); else None."""
        if any(d.kind not in ("int", "choice") for d in self.search.values()):
            return None
        return {name: tuple(range(d.values[0], d.values[1] + 1)) if d.kind == "int" else d.values
                for name, d in self.search.items()}

    def trial_cell(self, template: Cell, values: dict[str, Any]) -> Cell:
        """The serial cell a trial trains: the template with the sampled and fixed values, set in the
        registry's order (the frames' selection before the scorer that picks them)."""
        cell, given = template, {**self.fixed, **values}
        for name in (name for name in PARAMETERS if name in given):
            cell = PARAMETERS[name].apply(cell, given[name])
        if self.epochs is not None:
            cell = dataclasses.replace(cell, train=dataclasses.replace(cell.train, epochs=self.epochs))
        return cell


def check_against(space: SearchSpace, preset: Preset, where: str) -> None:
    """Whether every frame count the space can give fits the videos of the preset its trials run on:
    k in [1, max_frames], a stride j no longer than the videos."""
    frames = preset.data.max_frames
    candidates = {f"search.{name}.{d.kind}": (name, d.values) for name, d in space.search.items()}
    candidates |= {f"fixed.{name}": (name, (value,)) for name, value in space.fixed.items()}
    for key, (name, values) in candidates.items():
        for value in values if PARAMETERS[name].frames else ():
            if value > frames:
                raise OrchestratorError(f"{where}: {key}: {name}={value} is outside [1, {frames}], the frames of "
                                        f"preset {preset.name}'s videos")


def load_space(path: str) -> SearchSpace:
    """Read and validate a search space; errors name the file and the key."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise OrchestratorError(f"{path}: cannot read the search space: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise OrchestratorError(f"{path}: not valid YAML: {error}") from None
    return parse_space(raw, path)


def parse_space(raw: Any, where: str) -> SearchSpace:
    if not isinstance(raw, dict):
        raise OrchestratorError(f"{where}: a search space is a YAML mapping")
    return build(SearchSpace, raw, where)


def _check_parameter(key: str, name: str) -> None:
    if name not in PARAMETERS:
        raise Invalid(key, f"unknown parameter; known: {', '.join(PARAMETERS)}")


def _check_distribution(key: str, name: str, distribution: Distribution) -> None:
    _check_parameter(key, name)
    if name == "pred_distance" and distribution.kind != "choice":
        raise Invalid(key, "pred_distance is searched with {choice: [kl, mse]}")
    if PARAMETERS[name].integer and distribution.kind not in ("int", "choice"):
        raise Invalid(key, f"{name} is an integer: use {{int: [low, high]}} or {{choice: [...]}}")
    for value in distribution.values:
        _check_value(f"{key}.{distribution.kind}", name, value)


def _check_value(key: str, name: str, value: Any) -> None:
    """Whether a parameter may take `value`: what it sets is built from it."""
    with checking(key):
        PARAMETERS[name].check(value, key)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
