"""YAML (presets, search spaces) into frozen dataclasses, with one kind of error: file, key path, problem.

`build(cls, raw, where)` fills `cls` from a parsed YAML mapping, checking every key and type against the
dataclass's annotations (nested dataclasses, tuples, dicts, optionals). A type may parse its own YAML form
with a `from_yaml(raw, key)` class method. What the values mean each dataclass checks in its
`__post_init__`, mostly by building the real `workloads` objects (an `Objective`, a `FrameSelection`, a
`TrainConfig`, a model's config) inside `checking(key)`, which turns their errors into `Invalid` at that
key; it may also raise `Invalid(key, problem)` itself. Keys are relative to the dataclass that raises;
`build` prefixes the path down to it and names the file:

    preset.yaml: teacher_train.learning_rate: need learning_rate > 0 and 0 < lr_decay <= 1, got 0.0, 0.95
"""

from __future__ import annotations

import dataclasses
import types
import typing
from contextlib import contextmanager
from typing import Any

from orchestrator.errors import OrchestratorError
from workloads.errors import WorkloadError


class Invalid(OrchestratorError):
    """A value that cannot be used, at `key` (a dotted path relative to what is being built)."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key, self.problem = key, problem

    def __reduce__(self):  # raised in a Ray task, it crosses to the driver whole
        return type(self), (self.key, self.problem)

    def under(self, prefix: str) -> Invalid:
        return Invalid(_join(prefix, self.key), self.problem)


@contextmanager
def checking(key: str):
    """Errors of the `workloads` objects built inside, as `Invalid` at `key`."""
    try:
        yield
    except WorkloadError as error:
        raise Invalid(key, str(error)) from None


def build(cls, raw: Any, where: str, prefix: str = ""):
    """`cls` filled from `raw`; any problem is an `OrchestratorError` naming `where` and the key path."""
    try:
        return fill(cls, raw, prefix)
    except Invalid as invalid:
        raise OrchestratorError(f"{where}: {invalid}") from None


def fill(cls, raw: Any, prefix: str = ""):
    """`cls` filled from `raw`, problems raised as `Invalid` with their key path from `prefix` down."""
    if not isinstance(raw, dict):
        raise Invalid(prefix, f"expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise Invalid(_join(prefix, str(key)), f"unknown key; known here: {', '.join(sorted(names))}")
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in raw
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise Invalid(_join(prefix, missing[0]), "missing")
    values = {name: convert(value, hints[name], _join(prefix, name)) for name, value in raw.items()}
    try:
        return cls(**values)
    except Invalid as invalid:  # from the dataclass's own checks, relative to it
        raise invalid.under(prefix) from None
    except WorkloadError as error:  # a `workloads` dataclass's own checks
        raise Invalid(prefix, str(error)) from None


def convert(value: Any, kind: Any, key: str) -> Any:
    """`value` checked against the annotation `kind`, dataclasses built; problems as `Invalid` at `key`."""
    origin = typing.get_origin(kind)
    if hasattr(kind, "from_yaml"):
        try:
            return kind.from_yaml(value, key)
        except WorkloadError as error:
            raise Invalid(key, str(error)) from None
    if dataclasses.is_dataclass(kind):
        return fill(kind, value, key)
    if origin in (typing.Union, types.UnionType):
        return _one_of(value, typing.get_args(kind), key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise Invalid(key, f"expected a list, got {value!r}")
        item = typing.get_args(kind)[0]
        return tuple(convert(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise Invalid(key, f"expected a mapping, got {value!r}")
        _, item = typing.get_args(kind)
        return {str(k): convert(v, item, _join(key, str(k))) for k, v in value.items()}
    if kind is Any:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float, str, bool) and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise Invalid(key, f"expected {kind.__name__}, got {value!r}")
    return value


def _one_of(value: Any, options: tuple, key: str) -> Any:
    if value is None and type(None) in options:
        return None
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return convert(value, option, key)
        except Invalid as error:
            errors.append(error)
    raise errors[0] if errors else Invalid(key, f"bad value {value!r}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix and key else prefix or key
