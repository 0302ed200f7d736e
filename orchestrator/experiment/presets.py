"""Presets: plain YAML files validated into frozen dataclasses at the edge.

`orchestrator.experiment.validation` checks every key and type against the dataclass it fills; each dataclass checks
what its values mean by building the real `workloads` objects from them (a model's config, frame
selections, the variants' stages, a `TrainConfig`, the synthetic generator's `SynthConfig`). Every error
names the file and the key path. Code below `load_preset` only sees typed objects.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import OrchestratorError
from orchestrator.experiment.validation import Invalid, checking, convert, fill
from workloads.data.batch import FrameSelection
from workloads.data.synth import SynthConfig
from workloads.frames import SELECTORS
from workloads.losses import Objective
from workloads.models import FAMILIES, family_config, find_family
from workloads.train import TrainConfig
from workloads.variants import DEFAULT_WEIGHTS, PARALLEL_VARIANTS, SERIAL_VARIANTS, check_own_classifier, stages

PARALLEL_CLASSIFIERS = ("shared", "own")

PRESET_CLASSES = 50  # a preset's synthetic class count when it gives none
_PRESET_NAMES = {"num_classes": "classes"}  # a `SynthConfig` field that a preset calls by another name


@dataclass(frozen=True)
class SyntheticData:
    """A synthetic data set (`workloads.data.synth`): videos per split, the seed of its world and videos,
    and the generator's settings. A preset gives them in one mapping: `train_videos`, `validate_videos`,
    `seed`, `classes` (the generator's `num_classes`) and any other `SynthConfig` field (`min_frames`,
    `max_frames`, `difficulty`, `mean_labels`, ...)."""

    train_videos: int = 2000
    validate_videos: int = 500
    seed: int = 0
    generator: SynthConfig = SynthConfig(num_classes=PRESET_CLASSES)
    test_videos: int | None = None  # None: as many as validate_videos

    def __post_init__(self) -> None:
        for key in ("train_videos", "validate_videos", "test_videos"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise Invalid(key, f"must be >= 1, got {getattr(self, key)}")
        with checking(""):
            self.generator.validate()

    @classmethod
    def from_yaml(cls, raw: Any, key: str) -> SyntheticData:
        if not isinstance(raw, dict):
            raise Invalid(key, f"expected a mapping, got {raw!r}")
        own = [f.name for f in dataclasses.fields(cls) if f.name != "generator"]
        generator = {_PRESET_NAMES.get(f.name, f.name): f.name for f in dataclasses.fields(SynthConfig)}
        for name in raw:
            if name not in own and name not in generator:
                raise Invalid(f"{key}.{name}", f"unknown key; known here: {', '.join(sorted([*own, *generator]))}")
        settings = {"num_classes": PRESET_CLASSES, **{generator[k]: v for k, v in raw.items() if k in generator}}
        try:
            built = fill(SynthConfig, settings, key)
        except Invalid as invalid:
            preset_key = _PRESET_NAMES.get(invalid.key.rsplit(".", 1)[-1])
            raise (Invalid(f"{key}.{preset_key}", invalid.problem) if preset_key else invalid) from None
        sizes = {name: convert(raw[name], int | None, f"{key}.{name}") for name in own if name in raw}
        try:
            return cls(generator=built, **sizes)
        except Invalid as invalid:
            raise invalid.under(key) from None

    def identity(self) -> dict[str, Any]:
        """What the data set's id hashes: the sizes, the seed and the generator's settings, keyed as ids were
        before a preset could set every generator setting (so a store keeps its data and results); a setting
        changed from the generator's default joins them."""
        g, defaults = self.generator, SynthConfig()
        payload = {"train_videos": self.train_videos, "validate_videos": self.validate_videos, "seed": self.seed,
                   "classes": g.num_classes, "min_frames": g.min_frames, "max_frames": g.max_frames,
                   "difficulty": g.difficulty}
        for f in dataclasses.fields(SynthConfig):
            name = _PRESET_NAMES.get(f.name, f.name)
            if name not in payload and getattr(g, f.name) != getattr(defaults, f.name):
                payload[name] = getattr(g, f.name)
        if self.test_videos not in (None, self.validate_videos):
            payload["test_videos"] = self.test_videos
        return payload

    @property
    def split_videos(self) -> dict[str, int]:
        return {"train": self.train_videos, "validate": self.validate_videos,
                "test": self.test_videos or self.validate_videos}


@dataclass(frozen=True)
class DataConfig:
    """Either `synthetic` (generated into the store on first use, with splits of its own) or `uri`: a folder
    of shard folders (what `workloads.data.convert` writes). Three roles, never mixed: training, validation
    (the best epoch, the search's objective) and test (every reported score). With `holdout`, validation is
    a share (below 1) or a number (1 and above) of `train/`'s videos held out by id hash, and `validate/`
    is the test split, as in the paper; without it, `validate/` validates and `test/` tests."""

    synthetic: SyntheticData | None = None
    uri: str | None = None
    holdout: float | None = None
    max_frames: int = 300  # the longest video; a uniform selection's nominal stride j = max_frames // k

    def __post_init__(self) -> None:
        if (self.synthetic is None) == (self.uri is None):
            raise Invalid("", "give exactly one of 'synthetic' or 'uri'")
        if self.max_frames < 1:
            raise Invalid("max_frames", f"must be >= 1, got {self.max_frames}")
        if self.holdout is not None and self.synthetic is not None:
            raise Invalid("holdout", "synthetic data has a validation split of its own; holdout is for 'uri' data")
        if self.holdout is not None and (self.holdout <= 0 or (self.holdout >= 1 and not float(self.holdout).is_integer())):
            raise Invalid("holdout", f"a share of the training videos in (0, 1) or a number of them, got {self.holdout}")


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 5
    learning_rate: float = 1e-3
    lr_decay: float = 0.95
    weight_decay: float = 0.0
    batch_size: int = 64
    max_grad_norm: float | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise Invalid("batch_size", f"must be >= 1, got {self.batch_size}")
        with checking(""):
            self.config(seed=0, device="cpu")

    def config(self, seed: int, device: str) -> TrainConfig:
        """The training loop's config for a job of this seed on `device` ("auto": CUDA when there is one)."""
        return TrainConfig(epochs=self.epochs, learning_rate=self.learning_rate, lr_decay=self.lr_decay,
                           weight_decay=self.weight_decay, max_grad_norm=self.max_grad_norm, seed=seed, device=device)


def _check_custom(custom: dict[str, float]) -> None:
    for name, amount in custom.items():
        if name in ("CPU", "GPU", "memory") or amount <= 0:
            raise Invalid(f"custom.{name}", "a custom resource (not CPU/GPU/memory) with a positive amount")


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

    def __post_init__(self) -> None:
        _check_custom(self.custom)
        if self.max_failures < 0:
            raise Invalid("max_failures", f"must be >= 0, got {self.max_failures}")
        if self.num_workers < 1:
            raise Invalid("num_workers", f"must be >= 1, got {self.num_workers}")

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0


@dataclass(frozen=True)
class CellResources:
    cpus: float = 1.0
    gpus: float = 0.0
    custom: dict[str, float] = field(default_factory=dict)  # e.g. {student_node: 0.5}: single-GPU nodes

    def __post_init__(self) -> None:
        _check_custom(self.custom)

    @property
    def device(self) -> str:
        """The device a cell's training asks for: CUDA when it was given a GPU and one is there ("auto";
        a node type that offers GPUs it does not have, as Ray's fake cluster does, runs it on the CPU)."""
        return "auto" if self.gpus > 0 else "cpu"


@dataclass(frozen=True)
class Resources:
    teacher: TeacherResources = field(default_factory=TeacherResources)
    cell: CellResources = field(default_factory=CellResources)

    def separate_node_types(self) -> bool:
        """Whether teachers and cells ask for different node types (so they never compete for CPUs)."""
        return bool(self.teacher.custom and self.cell.custom and not set(self.teacher.custom) & set(self.cell.custom))


KEEP_WEIGHTS = ("best", "all")


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
    serial: tuple[str, ...] = SERIAL_VARIANTS
    parallel: tuple[str, ...] = PARALLEL_VARIANTS
    intermediate: tuple[str, ...] = ()  # serial variants run again with rep_intermediate (families that have it)
    parallel_intermediate: tuple[str, ...] = ()  # parallel variants run again with it (Table 4's parallel rows)
    # A parallel student's output layer: the teacher's (`shared`, the paper's text: the student reaches it
    # through detached parameters, so its losses never move it) or its own (`own`, the authors' code:
    # trained by the student's LCE and Lpred).
    parallel_classifier: str = "shared"
    loss_weights: dict[str, float] = field(default_factory=dict)
    pred_distance: str = "kl"
    teacher_train: TrainSettings = field(default_factory=TrainSettings)
    student_train: TrainSettings = field(default_factory=TrainSettings)
    train_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per family, teacher and student
    resources: Resources = field(default_factory=Resources)
    # Which students' weights the store keeps: the best by validation GAP of each family and k (what the
    # registry gets), or every one (a paper-size model is 0.36-1.2 GB).
    keep_weights: str = "best"
    publish: bool = True  # register each family's teacher and best student per k as MLflow Models at the end

    def __post_init__(self) -> None:
        if not self.seeds or not self.ks or not self.families:
            raise Invalid("seeds/ks/families", "must not be empty")
        if self.keep_weights not in KEEP_WEIGHTS:
            raise Invalid("keep_weights", f"one of {', '.join(KEEP_WEIGHTS)}, got {self.keep_weights!r}")
        self._check_models()
        self._check_frames()
        self._check_losses()
        self._check_training()

    def train_settings(self, family: str, role: str) -> TrainSettings:
        """The teacher's or student's training settings for `family`, its overrides applied."""
        base = self.teacher_train if role == "teacher" else self.student_train
        return dataclasses.replace(base, **self.train_overrides.get(family, {}))

    @property
    def weights(self) -> dict[str, float]:
        """Every loss's weight: the preset's, else 1."""
        return {**DEFAULT_WEIGHTS, **self.loss_weights}

    def _check_models(self) -> None:
        for name in self.families:
            with checking("families"):
                find_family(name)
            with checking("size"):
                family_config(name, self.size)
        for name, overrides in self.model_overrides.items():
            with checking("model_overrides"):
                base = dataclasses.asdict(family_config(name, self.size))
            fill(FAMILIES[name].config_type, {**base, **overrides}, f"model_overrides.{name}")

    def _check_frames(self) -> None:
        for k in self.ks:
            with checking("ks"):
                FrameSelection("uniform", k=k)
            if k > self.data.max_frames:
                raise Invalid("ks", f"k={k} is outside [1, {self.data.max_frames}]")
        for name in self.baselines:
            with checking("baselines"):
                FrameSelection(name, k=self.ks[0])
        for fraction in self.data_fractions:
            if not 0 < fraction <= 1:
                raise Invalid("data_fractions", f"{fraction} is outside (0, 1]")

    def _check_losses(self) -> None:
        with checking("loss_weights"):
            Objective(self.weights)
        with checking("pred_distance"):
            Objective(pred_distance=self.pred_distance)
        for key, mode, variants in (("serial", "serial", self.serial), ("parallel", "parallel", self.parallel),
                                    ("intermediate", "serial", self.intermediate),
                                    ("parallel_intermediate", "parallel", self.parallel_intermediate)):
            for variant in variants:
                with checking(key):
                    stages(variant, self.weights, self.pred_distance, "intermediate" in key, mode=mode)
            if variants and "intermediate" in key and not any(FAMILIES[f].build.supports_intermediates
                                                               for f in self.families):
                raise Invalid(key, "intermediate matching needs a family with intermediate states (hrnn)")
        if self.parallel_classifier not in PARALLEL_CLASSIFIERS:
            raise Invalid("parallel_classifier", f"one of {', '.join(PARALLEL_CLASSIFIERS)}")
        for variant in (*self.parallel, *self.parallel_intermediate) if self.parallel_classifier == "own" else ():
            with checking("parallel_classifier"):
                check_own_classifier(stages(variant, self.weights, self.pred_distance, mode="parallel"))

    def _check_training(self) -> None:
        for name, settings in self.train_overrides.items():
            with checking("train_overrides"):
                find_family(name)
            for base in (self.teacher_train, self.student_train):
                fill(TrainSettings, {**dataclasses.asdict(base), **settings}, f"train_overrides.{name}")
        workers = self.resources.teacher.num_workers
        for family in self.families:
            batch = self.train_settings(family, "teacher").batch_size
            if batch % workers:
                # The batch is global: each data-parallel worker reads an equal part of it.
                raise Invalid("resources.teacher.num_workers", f"{family}'s teacher batch_size {batch} does not "
                              f"divide among {workers} workers")


def preset_names() -> list[str]:
    return sorted(p.name[: -len(".yaml")] for p in resources.files("orchestrator.presets").iterdir() if p.name.endswith(".yaml"))


def load_preset(name_or_path: str, overrides: dict | None = None, overrides_from: str | None = None) -> Preset:
    """A shipped preset by name (`smoke`, `paper`, ...) or a YAML file by path, with `overrides` (a
    mapping merged key by key, e.g. from the `--override` file `overrides_from`) applied before
    validation. An error names the file that set the key: the override's when it set it."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        where = str(path)
        text = _read(path, "the preset")
    else:
        resource = resources.files("orchestrator.presets") / f"{name_or_path}.yaml"
        if not resource.is_file():
            raise OrchestratorError(f"unknown preset {name_or_path!r}; shipped: {', '.join(preset_names())}")
        where = f"preset {name_or_path} ({resource})"
        text = resource.read_text()
    raw = _parse(text, where)
    if overrides:
        raw = _merge(raw or {}, overrides)
    if not isinstance(raw, dict):
        raise OrchestratorError(f"{where}: a preset is a YAML mapping")
    try:
        return fill(Preset, raw)
    except Invalid as invalid:
        if overrides and _sets(overrides, invalid.key):
            where = f"{overrides_from or 'the override'} (merged into {where})"
        raise OrchestratorError(f"{where}: {invalid}") from None


def _sets(overrides: dict, key: str) -> bool:
    """Whether `overrides` sets `key` (a dotted path, list indices allowed), a key above it or one below."""
    node: Any = overrides
    for part in key.split("."):
        part = part.split("[", 1)[0]
        if not isinstance(node, dict):
            return True  # the override set a whole value above the key
        if part not in node:
            return False
        node = node[part]
    return True


def load_override(path: str | None) -> dict | None:
    """An `--override` file: a YAML mapping merged into the preset."""
    if path is None:
        return None
    raw = _parse(_read(Path(path), "the override"), path) or {}
    if not isinstance(raw, dict):
        raise OrchestratorError(f"{path}: an override is a YAML mapping")
    return raw


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as error:
        raise OrchestratorError(f"{path}: cannot read {what}: {error.strerror}") from None


def _parse(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise OrchestratorError(f"{where}: not valid YAML: {error}") from None


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged
