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
from orchestrator.experiment import bounds
from orchestrator.experiment.modes import Mode, Role
from orchestrator.experiment.settings import AdaptiveReading, ContentStudents, DataConfig, Resources, TrainSettings
from orchestrator.experiment.validation import Invalid, checking, fill
from workloads.data.batch import FrameSelection
from workloads.frames import SELECTORS
from workloads.losses import Objective
from workloads.models import FAMILIES, ModelSpec, family_config, find_family
from workloads.models.base import INTERMEDIATE_POINTS
from workloads.parallel_pair import TARGET_MODES
from workloads.train import SERIAL_CLASSIFIERS
from workloads.variants import DEFAULT_WEIGHTS, PARALLEL_VARIANTS, SERIAL_VARIANTS, check_own_classifier, stages

PARALLEL_CLASSIFIERS = ("shared", "own")

KEEP_WEIGHTS = ("best", "all")
# The lists whose cross-product is a preset's matrix (`orchestrator.experiment.matrix.expand`).
MATRIX_KEYS = ("families", "ks", "data_fractions", "seeds", "baselines", "serial", "parallel", "intermediate",
               "parallel_intermediate")


_PART_AXES = ("families", "ks", "data_fractions", "seeds")  # a part left without one of them has no cells


@dataclass(frozen=True)
class Part:
    """One cross-product of a preset whose matrix is not one (the paper's: Table 2 at k=30 only, NetVLAD's
    two rows...): its name (the table it makes) and the lists it narrows to what it names of the preset's
    own (an `--override` of `ks: [10]` leaves a k=30 part empty, and out); a list it does not name is the
    preset's."""

    name: str
    families: tuple[str, ...] | None = None
    ks: tuple[int, ...] | None = None
    data_fractions: tuple[float, ...] | None = None
    seeds: tuple[int, ...] | None = None
    baselines: tuple[str, ...] | None = None
    serial: tuple[str, ...] | None = None
    parallel: tuple[str, ...] | None = None
    intermediate: tuple[str, ...] | None = None
    parallel_intermediate: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for key in _PART_AXES:
            if getattr(self, key) == ():
                raise Invalid(key, "must not be empty")
        _check_once(self, MATRIX_KEYS)

    def narrowed(self) -> dict[str, tuple]:
        """The lists the part names, as it names them."""
        return {key: getattr(self, key) for key in MATRIX_KEYS if getattr(self, key) is not None}

    def within(self, preset: Preset) -> dict[str, tuple] | None:
        """The lists the part names, narrowed to `preset`'s; None when that leaves no family, k, data
        fraction or seed."""
        narrowed = {key: tuple(v for v in values if v in getattr(preset, key))
                    for key, values in self.narrowed().items()}
        return None if any(key in narrowed and not narrowed[key] for key in _PART_AXES) else narrowed


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
    # Where a parallel student's targets come from: the teacher's training pass (`train`, dropout on, the
    # authors' joint graph) or an evaluation-mode pass (`eval`, as a serial student's cached targets).
    parallel_targets: str = "train"
    # A serial student's output layer: the teacher's, frozen (`shared`, the paper's text), or trained on
    # from the teacher's (`tuned`).
    serial_classifier: str = "shared"
    # How a variant of several stages (serial (a): Lrep, then LCE) spends `student_train.epochs`: shared out
    # among its stages (`split`: it trains as long as Uniform-k) or each stage all of them (`each`: twice).
    stage_epochs: str = "split"
    # Where a student matching intermediate states (`intermediate`, `parallel_intermediate`) matches them:
    # after each of its frames but the last (`frames`, the paper's Eq. 3) or at its H-RNN block ends
    # (`block_ends`: k/l terms, against the teacher's running state at those frames).
    intermediate_points: str = "frames"
    loss_weights: dict[str, float] = field(default_factory=dict)
    pred_distance: str = "kl"
    teacher_train: TrainSettings = field(default_factory=TrainSettings)
    student_train: TrainSettings = field(default_factory=TrainSettings)
    train_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per family, teacher and student
    resources: Resources = field(default_factory=Resources)
    # Which students' weights the store keeps: the best by validation GAP of each family and k (what the
    # registry gets), or every one (a paper-size model is 0.36-1.2 GB).
    adaptive: AdaptiveReading | None = None  # serial students also read adaptively, beside their k frames
    content: ContentStudents | None = None  # serial students on frames chosen by content (`workloads.saliency`)
    keep_weights: str = "best"
    publish: bool = True  # register each family's teacher and best student per k as MLflow Models at the end
    # The matrix as a union of cross-products (empty: the one cross-product of the lists above, which then
    # hold every value any part uses: the timing job and the search read them).
    parts: tuple[Part, ...] = ()

    def __post_init__(self) -> None:
        if not self.seeds or not self.ks or not self.families:
            raise Invalid("seeds/ks/families", "must not be empty")
        _check_once(self, MATRIX_KEYS)
        self._check_parts()
        for key, options in (("keep_weights", KEEP_WEIGHTS), ("parallel_classifier", PARALLEL_CLASSIFIERS),
                             ("parallel_targets", TARGET_MODES), ("intermediate_points", INTERMEDIATE_POINTS),
                             ("serial_classifier", SERIAL_CLASSIFIERS)):
            if getattr(self, key) not in options:
                raise Invalid(key, f"one of {', '.join(options)}, got {getattr(self, key)!r}")
        self._check_models()
        self._check_frames()
        self._check_losses()
        self._check_training()

    def cross_products(self) -> list[Preset]:
        """The preset as the cross-products its matrix is the union of: itself, or one per part left."""
        if not self.parts:
            return [self]
        return [product for _, product in self.part_products() if product is not None]

    def part_products(self) -> list[tuple[Part, Preset | None]]:
        """Each part with its cross-product: the preset narrowed to what the part names of its lists; None
        when that leaves a family, k, data fraction or seed list empty."""
        return [(part, None if (narrowed := part.within(self)) is None
                 else dataclasses.replace(self, parts=(), **narrowed)) for part in self.parts]

    def _check_parts(self) -> None:
        for index, part in enumerate(self.parts):
            try:  # what the part names must make a preset of its own: a typo is an error, not dropped
                dataclasses.replace(self, parts=(), **part.narrowed())
            except Invalid as invalid:
                raise invalid.under(f"parts[{index}]") from None
        if self.parts and not self.cross_products():
            raise Invalid("parts", "every part names none of the preset's families, ks, data_fractions or seeds")

    def train_settings(self, family: str, role: Role) -> TrainSettings:
        """The teacher's or student's training settings for `family`, its overrides applied."""
        base = {Role.TEACHER: self.teacher_train, Role.STUDENT: self.student_train}[Role(role)]
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
        for key, mode, variants in (("serial", Mode.SERIAL, self.serial), ("parallel", Mode.PARALLEL, self.parallel),
                                    ("intermediate", Mode.SERIAL, self.intermediate),
                                    ("parallel_intermediate", Mode.PARALLEL, self.parallel_intermediate),
                                    ("content.serial", Mode.SERIAL, self.content.serial if self.content else ())):
            for variant in variants:
                for family in self.families:
                    with checking(key):
                        stages(variant, self.weights, self.pred_distance, "intermediate" in key, mode=mode.training,
                               epochs=self.train_settings(family, Role.STUDENT).epochs, stage_epochs=self.stage_epochs)
            if variants and "intermediate" in key and not any(FAMILIES[f].build.supports_intermediates
                                                               for f in self.families):
                raise Invalid(key, "intermediate matching needs a family with intermediate states (hrnn)")
        for variant in (*self.parallel, *self.parallel_intermediate) if self.parallel_classifier == "own" else ():
            with checking("parallel_classifier"):
                check_own_classifier(stages(variant, self.weights, self.pred_distance, mode=Mode.PARALLEL.training))

    def _check_training(self) -> None:
        for name, settings in self.train_overrides.items():
            with checking("train_overrides"):
                find_family(name)
            for base in (self.teacher_train, self.student_train):
                fill(TrainSettings, {**dataclasses.asdict(base), **settings}, f"train_overrides.{name}")
        _check_batches(self)
        workers = self.resources.teacher.num_workers
        for family in self.families:
            batch = self.train_settings(family, Role.TEACHER).batch_size
            if batch % workers:
                # The batch is global: each data-parallel worker reads an equal part of it.
                raise Invalid("resources.teacher.num_workers", f"{family}'s teacher batch_size {batch} does not "
                              f"divide among {workers} workers")


def _check_batches(preset: Preset) -> None:
    """Every family's teacher and student batch within `bounds.MAX_BATCH_BYTES`."""
    for family, role in ((family, role) for family in preset.families for role in Role):
        batch, frames = preset.train_settings(family, role).batch_size, preset.data.max_frames
        what = f"per batch ({family}: {batch:,} videos of {frames:,} float32 frames)"
        if problem := bounds.too_large(bounds.batch_bytes(batch, frames), bounds.MAX_BATCH_BYTES, what, "B"):
            raise Invalid(f"{role.value}_train.batch_size", problem)


def check_model_sizes(preset: Preset, num_classes: int) -> None:
    """Every model of `preset` within `bounds.MAX_PARAMETERS` for `num_classes` (the data's, known once its
    shards are found), counted without allocating: an error names the family and the count."""
    for family in preset.families:
        spec = ModelSpec(family, preset.size, tuple(sorted(preset.model_overrides.get(family, {}).items())))
        count = bounds.model_parameters(spec, num_classes)
        if problem := bounds.too_large(count, bounds.MAX_PARAMETERS, f"parameters ({family} at size "
                                       f"{preset.size} for {num_classes:,} classes)"):
            raise OrchestratorError(f"preset {preset.name}: {problem}")


def _check_once(lists, keys: tuple[str, ...]) -> None:
    """Each value of a matrix list once: a repeated one would name the same cell twice."""
    for key in keys:
        values = getattr(lists, key) or ()
        repeated = sorted({v for v in values if values.count(v) > 1}, key=values.index)
        if repeated:
            raise Invalid(key, f"{', '.join(map(str, repeated))} given more than once; each value once")


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
        raw = merge(raw or {}, overrides)
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


def merge(base: dict, extra: dict) -> dict:
    """`extra` merged into `base` key by key, at every depth (how an override sets part of a preset)."""
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged
