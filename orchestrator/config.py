"""Presets: plain YAML files validated into frozen dataclasses at the edge.

Every key is checked against the dataclass it fills: an unknown key or a value of the wrong type is an
error that names the key path and the file. Code below `load_preset` only sees typed objects.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import OrchestratorError
from workloads.frames import SELECTORS
from workloads.losses import LOSSES, PRED_DISTANCES
from workloads.models import FAMILIES
from workloads.train import PARALLEL_VARIANTS, SERIAL_VARIANTS


@dataclass(frozen=True)
class SyntheticData:
    train_videos: int = 2000
    validate_videos: int = 500
    classes: int = 50
    min_frames: int = 120
    max_frames: int = 300
    difficulty: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class DataConfig:
    """Either `synthetic` (generated into the store on first use) or `uri`: a folder with `train/` and
    `validate/` shard folders (what `workloads.data.convert` and `synth` write)."""

    synthetic: SyntheticData | None = None
    uri: str | None = None
    max_frames: int = 300  # the longest video; a uniform selection's nominal stride j = max_frames // k


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 5
    learning_rate: float = 1e-3
    lr_decay: float = 0.95
    weight_decay: float = 0.0
    batch_size: int = 64
    max_grad_norm: float | None = None


@dataclass(frozen=True)
class TeacherResources:
    num_workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    # Custom Ray resources per worker: a cluster's node types offer them (cluster/*.yaml), so asking for
    # e.g. {teacher_node: 1} puts teachers on, and makes the autoscaler add, the multi-GPU node type.
    custom: dict[str, float] = field(default_factory=dict)
    # Retries after a worker or its node fails (a preempted spot node); each resumes from the teacher's
    # last epoch checkpoint. 0: a failure fails the teacher (its error reaches the grid at once).
    max_failures: int = 0


@dataclass(frozen=True)
class CellResources:
    cpus: float = 1.0
    gpus: float = 0.0
    custom: dict[str, float] = field(default_factory=dict)  # e.g. {student_node: 0.5}: single-GPU nodes


@dataclass(frozen=True)
class Resources:
    teacher: TeacherResources = field(default_factory=TeacherResources)
    cell: CellResources = field(default_factory=CellResources)


@dataclass(frozen=True)
class Preset:
    name: str
    data: DataConfig
    families: tuple[str, ...] = ("hrnn",)
    size: str = "small"
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    ks: tuple[int, ...] = (30,)
    data_fractions: tuple[float, ...] = (1.0,)
    baselines: tuple[str, ...] = tuple(SELECTORS)
    serial: tuple[str, ...] = tuple(SERIAL_VARIANTS)
    parallel: tuple[str, ...] = PARALLEL_VARIANTS
    intermediate: tuple[str, ...] = ()  # serial variants run again with rep_intermediate (families that have it)
    loss_weights: dict[str, float] = field(default_factory=dict)
    pred_distance: str = "kl"
    teacher_train: TrainSettings = field(default_factory=TrainSettings)
    student_train: TrainSettings = field(default_factory=TrainSettings)
    train_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per family, teacher and student
    resources: Resources = field(default_factory=Resources)

    def validate(self, where: str) -> None:
        def fail(key: str, problem: str) -> OrchestratorError:
            return OrchestratorError(f"{where}: {key}: {problem}")

        if (self.data.synthetic is None) == (self.data.uri is None):
            raise fail("data", "give exactly one of 'synthetic' or 'uri'")
        for name in self.families:
            if name not in FAMILIES:
                raise fail("families", f"unknown family {name!r}; known: {', '.join(sorted(FAMILIES))}")
            if self.size not in FAMILIES[name].sizes:
                raise fail("size", f"unknown size {self.size!r} for {name}")
        for name in self.model_overrides:
            if name not in FAMILIES:
                raise fail("model_overrides", f"unknown family {name!r}")
            known = {f.name for f in dataclasses.fields(FAMILIES[name].config_type)}
            for key in self.model_overrides[name]:
                if key not in known:
                    raise fail(f"model_overrides.{name}.{key}", f"unknown setting; known: {', '.join(sorted(known))}")
        for key, values, known in (
            ("baselines", self.baselines, SELECTORS),
            ("serial", self.serial, SERIAL_VARIANTS),
            ("parallel", self.parallel, PARALLEL_VARIANTS),
            ("intermediate", self.intermediate, [v for v in SERIAL_VARIANTS if "rep" in v]),
        ):
            for value in values:
                if value not in known:
                    raise fail(key, f"unknown variant {value!r}; known: {', '.join(known)}")
        if self.intermediate and not any(FAMILIES[f].build.supports_intermediates for f in self.families):
            raise fail("intermediate", "intermediate matching needs a family with intermediate states (hrnn)")
        train_keys = {f.name for f in dataclasses.fields(TrainSettings)}
        for name, settings in self.train_overrides.items():
            if name not in FAMILIES:
                raise fail("train_overrides", f"unknown family {name!r}")
            for key in settings:
                if key not in train_keys:
                    raise fail(f"train_overrides.{name}.{key}", f"unknown setting; known: {', '.join(sorted(train_keys))}")
        for key in self.loss_weights:
            if key not in LOSSES:
                raise fail(f"loss_weights.{key}", f"unknown loss; known: {', '.join(sorted(LOSSES))}")
            if self.loss_weights[key] < 0:
                raise fail(f"loss_weights.{key}", "must be >= 0")
        if self.pred_distance not in PRED_DISTANCES:
            raise fail("pred_distance", f"must be one of {', '.join(PRED_DISTANCES)}")
        if not self.seeds or not self.ks or not self.families:
            raise fail("seeds/ks/families", "must not be empty")
        for k in self.ks:
            if not 1 <= k <= self.data.max_frames:
                raise fail("ks", f"k={k} is outside [1, {self.data.max_frames}]")
        for fraction in self.data_fractions:
            if not 0 < fraction <= 1:
                raise fail("data_fractions", f"{fraction} is outside (0, 1]")
        for key, settings in (("teacher_train", self.teacher_train), ("student_train", self.student_train)):
            if settings.epochs < 1 or settings.batch_size < 1 or settings.learning_rate <= 0:
                raise fail(key, "epochs, batch_size and learning_rate must be positive")
        for key, custom in (("resources.teacher.custom", self.resources.teacher.custom),
                            ("resources.cell.custom", self.resources.cell.custom)):
            for name, amount in custom.items():
                if name in ("CPU", "GPU", "memory") or amount <= 0:
                    raise fail(f"{key}.{name}", "a custom resource (not CPU/GPU/memory) with a positive amount")
        if self.resources.teacher.max_failures < 0:
            raise fail("resources.teacher.max_failures", f"must be >= 0, got {self.resources.teacher.max_failures}")
        workers = self.resources.teacher.num_workers
        if workers < 1:
            raise fail("resources.teacher.num_workers", f"must be >= 1, got {workers}")
        for family in self.families:
            batch = train_settings(self, family, "teacher").batch_size
            if batch % workers:
                # The batch is global: each data-parallel worker reads an equal part of it.
                raise fail("resources.teacher.num_workers", f"{family}'s teacher batch_size {batch} does not "
                           f"divide among {workers} workers")


def train_settings(preset: Preset, family: str, role: str) -> TrainSettings:
    """The teacher's or student's training settings for `family`, its overrides applied."""
    base = preset.teacher_train if role == "teacher" else preset.student_train
    return dataclasses.replace(base, **preset.train_overrides.get(family, {}))


def _convert(value: Any, kind: Any, key: str, where: str) -> Any:
    """Check `value` against the annotation `kind` and build dataclasses; errors name `key`."""
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise OrchestratorError(f"{where}: {key}: expected a mapping, got {value!r}")
        return _build(kind, value, key, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key, where)
            except OrchestratorError as error:
                errors.append(str(error))
        raise OrchestratorError(errors[0] if errors else f"{where}: {key}: bad value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise OrchestratorError(f"{where}: {key}: expected a list, got {value!r}")
        item = typing.get_args(kind)[0]
        return tuple(_convert(v, item, f"{key}[{i}]", where) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise OrchestratorError(f"{where}: {key}: expected a mapping, got {value!r}")
        _, item = typing.get_args(kind)
        return {str(k): _convert(v, item, f"{key}.{k}", where) for k, v in value.items()}
    if kind is Any:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float, str, bool) and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise OrchestratorError(f"{where}: {key}: expected {kind.__name__}, got {value!r}")
    return value


def _build(cls, raw: dict, prefix: str, where: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        path = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise OrchestratorError(f"{where}: unknown key {path!r}; known here: {', '.join(sorted(names))}")
    values = {}
    for name, value in raw.items():
        values[name] = _convert(value, hints[name], f"{prefix}.{name}" if prefix else name, where)
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise OrchestratorError(f"{where}: missing key {(prefix + '.' if prefix else '') + missing[0]!r}")
    return cls(**values)


def parse_preset(raw: Any, where: str) -> Preset:
    if not isinstance(raw, dict):
        raise OrchestratorError(f"{where}: a preset is a YAML mapping")
    preset = _build(Preset, raw, "", where)
    preset.validate(where)
    return preset


def preset_names() -> list[str]:
    return sorted(p.name[: -len(".yaml")] for p in resources.files("orchestrator.presets").iterdir() if p.name.endswith(".yaml"))


def load_preset(name_or_path: str, overrides: dict | None = None) -> Preset:
    """A shipped preset by name (`smoke`, `paper`, ...) or a YAML file by path, with `overrides` (a
    mapping merged key by key, e.g. from a `--override` file) applied before validation."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        where = str(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise OrchestratorError(f"{where}: cannot read the preset: {error.strerror}") from None
    else:
        resource = resources.files("orchestrator.presets") / f"{name_or_path}.yaml"
        if not resource.is_file():
            raise OrchestratorError(f"unknown preset {name_or_path!r}; shipped: {', '.join(preset_names())}")
        where = f"preset {name_or_path} ({resource})"
        text = resource.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise OrchestratorError(f"{where}: not valid YAML: {error}") from None
    if overrides:
        raw = _merge(raw or {}, overrides)
    return parse_preset(raw, where)


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged
