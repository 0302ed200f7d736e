"""The experiment matrix as data: which teachers and cells a preset implies.

A `TeacherSpec` (family, model, data, fraction, seed, training) is trained once; a `Cell` is one entry
of the paper's tables. Both are frozen and their id is a hash of everything that defines them, so the
same id names a cell's MLflow run, its result in the store and (for teachers) the checkpoint and cache:
running the same grid twice finds the same ids and skips the finished work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from orchestrator.experiment.modes import Mode, Role
from orchestrator.experiment.presets import Preset
from orchestrator.experiment.settings import AdaptiveReading, TrainSettings
from workloads.models import FAMILIES, ModelSpec
from workloads.saliency import RULES, ScorerSettings
from workloads.variants import CLASSIFIER, Stage, stages

ID_VERSION = 1  # bump when the meaning of a field changes, so old results are not reused


def stable_id(payload: Any) -> str:
    text = json.dumps({"v": ID_VERSION, "payload": payload}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Training settings added later: at its default a setting is left out of the id, so ids (and the stores
# that hold their results) outlive the addition. `precision` "auto" was float16 on every GPU before bfloat16.
_LATER_TRAIN_DEFAULTS = {"precision": "auto"}


def _train_payload(train: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in train.items() if _LATER_TRAIN_DEFAULTS.get(key, object()) != value}


@dataclass(frozen=True)
class TeacherSpec:
    family: str
    size: str
    model: tuple[tuple[str, Any], ...]
    data: str  # data set id
    data_fraction: float
    seed: int
    train: TrainSettings

    @property
    def id(self) -> str:
        payload = dataclasses.asdict(self)
        payload["train"] = _train_payload(payload["train"])
        return "t-" + stable_id(payload)

    @property
    def name(self) -> str:
        fraction = f"/f{self.data_fraction:g}" if self.data_fraction < 1 else ""
        return f"{self.family}/teacher{fraction}/s{self.seed}"

    @property
    def model_spec(self) -> ModelSpec:
        return ModelSpec(self.family, self.size, self.model)


@dataclass(frozen=True)
class Cell:
    mode: Mode
    family: str
    size: str
    model: tuple[tuple[str, Any], ...]
    selection: str  # a frame selector, or "all" for the skyline
    k: int | None
    variant: str  # how it learns (`workloads.variants`): CLASSIFIER for skylines and baselines, else a student's
    intermediate: bool
    data: str
    data_fraction: float
    seed: int
    train: TrainSettings
    loss_weights: tuple[tuple[str, float], ...]
    pred_distance: str
    max_frames: int
    teacher: TeacherSpec | None  # the teacher a serial student reads, or the skyline's own
    parallel_classifier: str = "shared"  # a parallel student's output layer: the teacher's, or its own
    parallel_targets: str = "train"  # the teacher's mode when it makes a parallel student's targets
    serial_classifier: str = "shared"  # a serial student's output layer: the teacher's frozen, or tuned
    stage_epochs: str = "split"  # a variant of several stages: its epochs shared among them, or each all
    intermediate_points: str = "frames"  # an intermediate-matching student's: after each frame, or block ends
    adaptive: AdaptiveReading | None = None  # a serial student's: read adaptively as well (`workloads.adaptive`)
    scorer: ScorerSettings = ScorerSettings()  # a content student's frame scorer (the default for any other)

    @property
    def id(self) -> str:
        payload = dataclasses.asdict(self)
        payload["train"] = _train_payload(payload["train"])
        payload["teacher"] = self.teacher.id if self.teacher else None
        payload["loss"] = payload.pop("variant")  # the field's first name: ids (and stores) outlive the rename
        for key, default in (("parallel_classifier", "shared"), ("parallel_targets", "train"),
                             ("serial_classifier", "shared"), ("stage_epochs", "split"),
                             ("intermediate_points", "frames"), ("adaptive", None),
                             ("scorer", dataclasses.asdict(ScorerSettings()))):
            if payload[key] == default:  # settings added later: a default leaves the id as it was
                del payload[key]
        return "c-" + stable_id(payload)

    @property
    def j(self) -> int:
        """The nominal stride: every j-th frame of the longest videos."""
        return 1 if self.k is None else max(1, self.max_frames // self.k)

    @property
    def chooses_by_content(self) -> bool:
        """Whether its frames are chosen by a scorer that reads the video (`workloads.saliency`)."""
        return self.selection in RULES

    @property
    def name(self) -> str:
        what = self.selection if self.mode.named_by_selection else self.variant
        what += f"@{self.selection}" if self.chooses_by_content else ""
        parts = [self.family, self.mode, what + ("+intermediate" if self.intermediate else "")]
        if self.k is not None:
            parts.append(f"k{self.k}")
        if self.data_fraction < 1:
            parts.append(f"f{self.data_fraction:g}")
        parts.append(f"s{self.seed}")
        return "/".join(parts)

    @property
    def model_spec(self) -> ModelSpec:
        return ModelSpec(self.family, self.size, self.model)


def expand(preset: Preset, data_id: str) -> tuple[list[TeacherSpec], list[Cell]]:
    """Every teacher and cell of `preset` on data set `data_id`, in a stable order: the union of its
    cross-products (`Preset.cross_products`), each teacher and cell once."""
    teachers: dict[str, TeacherSpec] = {}
    cells: dict[str, Cell] = {}
    for product in preset.cross_products():
        its_teachers, its_cells = _cross_product(product, data_id)
        teachers.update((t.id, t) for t in its_teachers if t.id not in teachers)
        # A teacher two cross-products share is one object: the cells of both point at it.
        cells.update((c.id, c if c.teacher is None else dataclasses.replace(c, teacher=teachers[c.teacher.id]))
                     for c in its_cells if c.id not in cells)
    return list(teachers.values()), list(cells.values())


def _cross_product(preset: Preset, data_id: str) -> tuple[list[TeacherSpec], list[Cell]]:
    teachers: list[TeacherSpec] = []
    cells: list[Cell] = []
    weights = tuple(sorted(preset.weights.items()))
    for family in preset.families:
        model = tuple(sorted(preset.model_overrides.get(family, {}).items()))
        has_intermediates = FAMILIES[family].build.supports_intermediates
        student_train = preset.train_settings(family, Role.STUDENT)
        for fraction in preset.data_fractions:
            for seed in preset.seeds:
                teacher = TeacherSpec(family, preset.size, model, data_id, fraction, seed,
                                      preset.train_settings(family, Role.TEACHER))
                teachers.append(teacher)
                common = dict(family=family, size=preset.size, model=model, data=data_id, data_fraction=fraction,
                              seed=seed, max_frames=preset.data.max_frames, pred_distance=preset.pred_distance,
                              stage_epochs=preset.stage_epochs)
                cells.append(Cell(mode=Mode.SKYLINE, selection="all", k=None, variant=CLASSIFIER, intermediate=False,
                                  train=teacher.train, loss_weights=(), teacher=teacher, **common))
                student = dict(selection="uniform", train=student_train, loss_weights=weights, **common)
                for k in preset.ks:
                    for selection in preset.baselines:
                        cells.append(Cell(mode=Mode.BASELINE, selection=selection, k=k, variant=CLASSIFIER, intermediate=False,
                                          train=student_train, loss_weights=(), teacher=None, **common))
                    for variant in preset.serial:
                        cells.append(Cell(mode=Mode.SERIAL, k=k, variant=variant, intermediate=False, teacher=teacher,
                                          serial_classifier=preset.serial_classifier, adaptive=preset.adaptive,
                                          **student))
                    for variant in preset.intermediate if has_intermediates else ():
                        cells.append(Cell(mode=Mode.SERIAL, k=k, variant=variant, intermediate=True, teacher=teacher,
                                          serial_classifier=preset.serial_classifier,
                                          intermediate_points=preset.intermediate_points, **student))
                    parallel = [(v, False) for v in preset.parallel]
                    parallel += [(v, True) for v in preset.parallel_intermediate] if has_intermediates else []
                    # A pair trains on its teacher's schedule: the teacher learns as a skyline does.
                    pair = dict(student, train=teacher.train)
                    for variant, intermediate in parallel:
                        points = preset.intermediate_points if intermediate else "frames"
                        cells.append(Cell(mode=Mode.PARALLEL, k=k, variant=variant, intermediate=intermediate,
                                          teacher=None, parallel_classifier=preset.parallel_classifier,
                                          parallel_targets=preset.parallel_targets, intermediate_points=points,
                                          **pair))
                for k in preset.content.controlled_ks(preset.ks) if preset.content else ():
                    for rule in preset.content.rules:
                        for variant in preset.content.controlled_serial(preset.serial):
                            cells.append(Cell(mode=Mode.SERIAL, k=k, variant=variant, intermediate=False,
                                              teacher=teacher, serial_classifier=preset.serial_classifier,
                                              scorer=preset.content.scorer, **dict(student, selection=rule)))
    return teachers, cells


def cell_stages(cell: Cell) -> tuple[Stage, ...]:
    """How the cell's model learns: its variant's stages with the cell's weights and Lpred distance."""
    return stages(cell.variant, dict(cell.loss_weights), cell.pred_distance, cell.intermediate,
                  mode=cell.mode.training, epochs=cell.train.epochs, stage_epochs=cell.stage_epochs)
