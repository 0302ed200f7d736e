"""A preset's settings, each a frozen dataclass that checks its own meaning: the data (synthetic or
converted, and its roles), how models train, and what resources teachers and cells ask Ray for.

Each checks itself in `__post_init__` by building the real `workloads` objects from its values (the
generator's `SynthConfig`, a `TrainConfig`); `orchestrator.experiment.validation` checks keys and types.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from orchestrator.experiment import bounds
from orchestrator.experiment.validation import Invalid, checking, convert, fill
from workloads.data.synth import SynthConfig
from workloads.saliency import ScorerSettings, check_rule
from workloads.train import TrainConfig

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
        if problem := bounds.too_large(self.generator.num_classes, bounds.MAX_CLASSES):
            raise Invalid("classes", problem)
        videos = sum(self.split_videos.values())
        stored = bounds.synthetic_bytes(videos, self.generator.max_frames)
        what = f"of frames ({videos:,} videos of up to {self.generator.max_frames} frames)"
        if problem := bounds.too_large(stored, bounds.MAX_SYNTHETIC_BYTES, what, "B"):
            raise Invalid("train_videos", problem)

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
        if not 1 <= self.max_frames <= bounds.MAX_FRAMES:
            raise Invalid("max_frames", f"must be in [1, {bounds.MAX_FRAMES:,}], got {self.max_frames:,}")
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
    # The paper's L2 as the starter code adds it (`workloads.train.TrainConfig`): 2 x 1e-8 x ||W||^2 / 2 on
    # the output layer's weights; 0 turns it off.
    regularization_penalty: float = 2.0
    l2_penalty: float = 1e-8
    # Mixed precision on CUDA (`workloads.precision`): auto is bfloat16 where the GPU supports it, float16
    # with loss scaling elsewhere; CPUs train in float32 whatever it says but bfloat16
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise Invalid("batch_size", f"must be >= 1, got {self.batch_size}")
        with checking(""):
            self.config(seed=0, device="cpu")

    def config(self, seed: int, device: str) -> TrainConfig:
        """The training loop's config for a job of this seed on `device` ("auto": CUDA when there is one)."""
        return TrainConfig(epochs=self.epochs, learning_rate=self.learning_rate, lr_decay=self.lr_decay,
                           weight_decay=self.weight_decay, max_grad_norm=self.max_grad_norm, seed=seed, device=device,
                           regularization_penalty=self.regularization_penalty, l2_penalty=self.l2_penalty,
                           precision=self.precision)


def _check_custom(custom: dict[str, float]) -> None:
    for name, amount in custom.items():
        if name in ("CPU", "GPU", "memory") or amount <= 0:
            raise Invalid(f"custom.{name}", "a custom resource (not CPU/GPU/memory) with a positive amount")


@dataclass(frozen=True)
class AdaptiveReading:
    """A serial student read as many frames as each video needs (`workloads.adaptive`): its k frames coarse
    to fine in `steps` steps, each video stopping once its top-20 probabilities settle; the threshold is the
    most frugal of `thresholds` whose validation GAP is within `tolerance` of reading all k. The student is
    the serial cell's own, trained as the paper trains it: the reading changes no Table 1 row."""

    steps: int = 5
    tolerance: float = 0.005
    # From reading all k (0) to stopping at the second step whatever the prediction does (1: no probability
    # moves more): on the smoke grid the largest top-20 change between steps is above 0.1 for most videos
    thresholds: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise Invalid("steps", f"must be >= 1, got {self.steps}")
        if self.tolerance < 0:
            raise Invalid("tolerance", f"must be >= 0, got {self.tolerance}")
        if not self.thresholds or 0.0 not in self.thresholds or any(t < 0 for t in self.thresholds):
            raise Invalid("thresholds", "thresholds >= 0, 0 among them (reading all k: the reference)")

    def steps_for(self, k: int) -> tuple[int, ...]:
        """The frames read after each step: evenly up to k."""
        return tuple(sorted({max(1, round(k * (i + 1) / self.steps)) for i in range(self.steps)}))


@dataclass(frozen=True)
class ContentStudents:
    """Serial students that read the k frames a cheap frame scorer, trained from the teacher cache, picks
    by content (`workloads.saliency`): each rule of `rules` with each serial variant of `serial`, at each k
    of `ks` (none given: the preset's variants, the preset's ks). Each has its control beside it, the same
    variant on k uniform frames: they are made only for the variants and ks the preset's (or a part's)
    serial students also have."""

    rules: tuple[str, ...] = ("salient_segments",)
    serial: tuple[str, ...] = ()
    ks: tuple[int, ...] = ()
    scorer: ScorerSettings = ScorerSettings()  # the frame scorer's width and training

    def __post_init__(self) -> None:
        if not self.rules:
            raise Invalid("rules", "must not be empty")
        for rule in self.rules:
            with checking("rules"):
                check_rule(rule)

    def controlled_ks(self, ks: tuple[int, ...]) -> tuple[int, ...]:
        """Its ks that are among `ks` (the serial students' on uniform frames)."""
        return tuple(k for k in self.ks or ks if k in ks)

    def controlled_serial(self, serial: tuple[str, ...]) -> tuple[str, ...]:
        """Its variants that are among `serial`."""
        return tuple(v for v in self.serial or serial if v in serial)


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
    # How many parallel students of one teacher (same seed and training) one job trains beside a single
    # copy of it (`orchestrator.experiment.groups`): the teacher's passes are paid once for all of them, and
    # the job holds them all in memory. 1 runs each pair alone, which also finishes sooner where free slots
    # outnumber the jobs.
    parallel_group: int = 1

    def __post_init__(self) -> None:
        _check_custom(self.custom)
        if self.parallel_group < 1:
            raise Invalid("parallel_group", f"must be >= 1 (1: each parallel pair alone), got {self.parallel_group}")

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
