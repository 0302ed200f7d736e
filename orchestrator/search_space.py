"""Search spaces: a study's YAML file (`search_spaces/*.yaml`) validated into a `SearchSpace`.

A study searches one serial student (family, variant) over some of these parameters; those it does not
search keep a fixed value (`fixed`, else the preset's):

    w_rep, w_pred, w_ce, w_rep_intermediate   loss weights
    j (stride: k = max_frames // j) or k      the frames the student sees
    learning_rate                             the student's
    pred_distance                             kl | mse

Each searched parameter is one distribution: `{loguniform: [low, high]}`, `{uniform: [low, high]}`,
`{int: [low, high]}` (both ends included) or `{choice: [a, b, ...]}`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import OrchestratorError
from orchestrator.matrix import Cell
from workloads.losses import PRED_DISTANCES
from workloads.models import FAMILIES
from workloads.train import SERIAL_VARIANTS

WEIGHTS = {"w_rep": "rep", "w_pred": "pred", "w_ce": "ce", "w_rep_intermediate": "rep_intermediate"}
PARAMETERS = (*WEIGHTS, "j", "k", "learning_rate", "pred_distance")
KINDS = ("loguniform", "uniform", "int", "choice")


@dataclass(frozen=True)
class Distribution:
    kind: str
    values: tuple

    def to_tune(self):
        from ray import tune

        if self.kind == "loguniform":
            return tune.loguniform(*self.values)
        if self.kind == "uniform":
            return tune.uniform(*self.values)
        if self.kind == "int":
            return tune.randint(self.values[0], self.values[1] + 1)  # randint excludes its upper end
        return tune.choice(list(self.values))


@dataclass(frozen=True)
class SearchSpace:
    name: str
    family: str
    variant: str
    search: dict[str, Distribution]
    fixed: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None  # the student's; None keeps the preset's
    grace_period: int = 1  # epochs every trial runs before ASHA may stop it
    reduction_factor: int = 3  # ASHA keeps the best 1/reduction_factor of the trials at each rung
    seed: int = 0  # the sampler's
    description: str = ""

    def tune_space(self) -> dict:
        return {name: distribution.to_tune() for name, distribution in self.search.items()}

    def trial_cell(self, template: Cell, values: dict[str, Any]) -> Cell:
        """The serial cell a trial trains: the template with the sampled and fixed values."""
        chosen = {**self.fixed, **values}
        weights = dict(template.loss_weights)
        for parameter, loss in WEIGHTS.items():
            if parameter in chosen:
                weights[loss] = float(chosen[parameter])
        k = template.k
        if "k" in chosen:
            k = int(chosen["k"])
        elif "j" in chosen:
            k = max(1, template.max_frames // int(chosen["j"]))
        train = template.train
        if "learning_rate" in chosen:
            train = dataclasses.replace(train, learning_rate=float(chosen["learning_rate"]))
        if self.epochs is not None:
            train = dataclasses.replace(train, epochs=self.epochs)
        return dataclasses.replace(template, k=k, train=train, loss_weights=tuple(sorted(weights.items())),
                                   pred_distance=str(chosen.get("pred_distance", template.pred_distance)))


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
    def fail(key: str, problem: str) -> OrchestratorError:
        return OrchestratorError(f"{where}: {key}: {problem}")

    if not isinstance(raw, dict):
        raise OrchestratorError(f"{where}: a search space is a YAML mapping")
    known = {f.name for f in dataclasses.fields(SearchSpace)}
    for key in raw:
        if key not in known:
            raise fail(key, f"unknown key; known: {', '.join(sorted(known))}")
    for key in ("name", "family", "variant", "search"):
        if key not in raw:
            raise fail(key, "missing")
    if not isinstance(raw["name"], str) or not raw["name"].replace("-", "").replace("_", "").isalnum():
        raise fail("name", "letters, digits, '-' and '_' only (it names the study's folder)")
    if raw["family"] not in FAMILIES:
        raise fail("family", f"unknown family {raw['family']!r}; known: {', '.join(sorted(FAMILIES))}")
    if raw["variant"] not in SERIAL_VARIANTS:
        raise fail("variant", f"unknown serial variant {raw['variant']!r}; known: {', '.join(SERIAL_VARIANTS)}")
    search = raw["search"]
    if not isinstance(search, dict) or not search:
        raise fail("search", "a mapping of at least one parameter to its distribution")
    distributions = {name: _distribution(name, spec, fail) for name, spec in search.items()}
    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise fail("fixed", "a mapping of parameter to value")
    for name, value in fixed.items():
        _check_parameter(f"fixed.{name}", name, fail)
        if name in distributions:
            raise fail(f"fixed.{name}", "is also searched")
        _check_value(f"fixed.{name}", name, value, fail)
    frames = {"j", "k"} & (set(distributions) | set(fixed))
    if len(frames) > 1:
        raise fail("j/k", "give the stride j or the frame count k, not both")
    numbers = {}
    for key, minimum in (("epochs", 1), ("grace_period", 1), ("reduction_factor", 2), ("seed", 0)):
        value = raw.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
            raise fail(key, f"an integer >= {minimum}")
        if value is not None:
            numbers[key] = value
    return SearchSpace(name=raw["name"], family=raw["family"], variant=raw["variant"], search=distributions,
                       fixed=dict(fixed), description=str(raw.get("description", "")), **numbers)


def _check_parameter(key: str, name: str, fail) -> None:
    if name not in PARAMETERS:
        raise fail(key, f"unknown parameter; known: {', '.join(PARAMETERS)}")


def _check_value(key: str, name: str, value: Any, fail) -> None:
    if name == "pred_distance":
        if value not in PRED_DISTANCES:
            raise fail(key, f"must be one of {', '.join(PRED_DISTANCES)}")
    elif name in ("j", "k"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise fail(key, "a positive integer")
    elif not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (name == "learning_rate" and value == 0):
        raise fail(key, "a non-negative number" if name != "learning_rate" else "a positive number")


def _distribution(name: str, spec: Any, fail) -> Distribution:
    key = f"search.{name}"
    _check_parameter(key, name, fail)
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
        raise fail(key, f"one of {', '.join('{' + k + ': [...]}' for k in KINDS)}")
    kind, values = next(iter(spec.items()))
    if not isinstance(values, list) or not values:
        raise fail(f"{key}.{kind}", "a non-empty list")
    if kind == "choice":
        for value in values:
            _check_value(f"{key}.choice", name, value, fail)
        return Distribution(kind, tuple(values))
    if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise fail(f"{key}.{kind}", "[low, high], two numbers")
    low, high = values
    if not low < high:
        raise fail(f"{key}.{kind}", f"low {low} must be below high {high}")
    if kind == "loguniform" and low <= 0:
        raise fail(f"{key}.{kind}", "a log-uniform range must be above 0")
    if kind == "int" and not (isinstance(low, int) and isinstance(high, int)):
        raise fail(f"{key}.{kind}", "integer ends")
    if name == "pred_distance":
        raise fail(key, "pred_distance is searched with {choice: [kl, mse]}")
    if name in ("j", "k") and kind != "int":
        raise fail(key, f"{name} is an integer: use {{int: [low, high]}} or {{choice: [...]}}")
    for value in values:
        _check_value(f"{key}.{kind}", name, value, fail)
    return Distribution(kind, (low, high))
