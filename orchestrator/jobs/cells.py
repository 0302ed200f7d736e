"""One baseline, serial student or parallel pair: resolved once into a `Recipe`, trained by its mode's
runner (parallel pairs in groups around one teacher, `run_group`, a lone pair a group of one), tested, and
returned as a `CellResult`. `run_cell` is what a Ray task (a grid's cell, a search's
trial) runs; it talks to no tracking store, so the driver alone records results.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from orchestrator.cache.reader import ParquetTeacherCache
from orchestrator.errors import OrchestratorError
from orchestrator.experiment.matrix import Cell, cell_stages
from orchestrator.experiment.modes import Mode
from orchestrator.experiment.results import CellResult
from orchestrator.jobs.adaptive_reading import read_adaptively, stopping_rule
from orchestrator.jobs.data_sets import DataSet
from orchestrator.store import weights
from orchestrator.store.predictions import write_predictions
from orchestrator.store.samples import write_sample
from workloads.data.batch import FrameSelection, VideoBatch
from workloads.data.reader import VideoShards
from workloads.evaluation import evaluate
from workloads.flops import ModelCost, count_macs
from workloads.models import VideoModel
from workloads.progress import EpochCallback, TrainResult, announce_start
from workloads.representations import represent
from workloads.saliency import ContentSelected, ContentSelector, ContentStudent, train_scorer
from workloads.parallel_group import Member, train_parallel_group
from workloads.train import TrainConfig, seed_everything, train_classifier, train_serial_student
from workloads.variants import Stage

PARALLEL_TEACHER_SEED = 1_000_003  # added to a cell's seed for its parallel teacher's initial weights


@dataclass(frozen=True)
class Recipe:
    """A cell resolved where it runs: everything its runner needs, each built once."""

    cell: Cell
    model: VideoModel  # the model the cell trains and reports: a baseline, a student
    teacher: VideoModel | None  # a parallel pair's teacher, trained alongside
    selection: FrameSelection | None  # the frames the reader keeps (None: every frame, for `content`)
    stages: tuple[Stage, ...]
    config: TrainConfig
    cost: ModelCost  # multiply-adds on one video: the model on k frames, and choosing them by content
    content: ContentSelector | None = None  # frames chosen by content: its scorer trains with the cell

    @property
    def device(self) -> torch.device:
        return self.config.torch_device()

    @property
    def product(self) -> VideoModel | ContentStudent:
        """The trained model as it leaves: the student, with its frame scorer when it chooses by content."""
        if self.content is None:
            return self.model
        return ContentStudent(self.model, self.content.scorer, self.content.rule, self.content.k)

    def reads(self, shards: VideoShards) -> Iterable[VideoBatch]:
        """What the model reads of `shards` (read with `selection`): each batch cut to the content
        selector's frames, when it has one."""
        return shards if self.content is None else ContentSelected(shards, self.content)


def resolve(cell: Cell, num_classes: int, device: str) -> Recipe:
    """The cell's recipe, its student initialised from the cell's seed (as every student and baseline of
    that seed is), a parallel pair's teacher from a seed of its own (`_parallel_teacher`)."""
    if cell.mode not in (*RUNNERS, Mode.PARALLEL):
        raise OrchestratorError(f"{cell.name}: cells of mode {str(cell.mode)!r} run as teachers")
    seed_everything(cell.seed)
    model = cell.model_spec.build(num_classes, k=cell.k)
    if cell.intermediate:
        model.match_intermediates_at(cell.intermediate_points)
    teacher = _parallel_teacher(cell, num_classes) if cell.mode is Mode.PARALLEL else None
    cost = count_macs(model, cell.k)
    if not cell.chooses_by_content:
        return Recipe(cell, model, teacher, FrameSelection(cell.selection, k=cell.k), cell_stages(cell),
                      cell.train.config(cell.seed, device), cost)
    content = ContentSelector(cell.scorer.build(num_classes), cell.selection, cell.k)
    # The scorer reads every frame: counted on the longest videos, as a teacher's cost is.
    choosing = content.macs(cell.max_frames)
    cost = dataclasses.replace(cost, macs=cost.macs + choosing, video_macs=cost.video_macs + choosing,
                               params=cost.params + sum(p.numel() for p in content.scorer.parameters()))
    return Recipe(cell, model, teacher, None, cell_stages(cell), cell.train.config(cell.seed, device), cost, content)


def _parallel_teacher(cell: Cell, num_classes: int) -> VideoModel:
    """A parallel pair's teacher, initialised from a generator seeded by the cell's seed (offset, so that it
    does not start as a copy of its student): the same teacher for every student of that seed, so that
    students grouped around one copy of it train as they would alone."""
    with torch.random.fork_rng():
        torch.manual_seed(cell.seed + PARALLEL_TEACHER_SEED)
        return cell.model_spec.build(num_classes)


Runner = Callable[[Recipe, DataSet, str | None, EpochCallback | None], TrainResult]


def _baseline(recipe: Recipe, data: DataSet, cache_uri: str | None, on_epoch: EpochCallback | None) -> TrainResult:
    train, val = _student_data(recipe, data)
    return train_classifier(recipe.model, train, val, recipe.config, on_epoch)


def _serial(recipe: Recipe, data: DataSet, cache_uri: str | None, on_epoch: EpochCallback | None) -> TrainResult:
    if cache_uri is None:
        raise OrchestratorError(f"{recipe.cell.name}: a serial student needs its teacher's cache")
    teacher = ParquetTeacherCache(cache_uri)
    if recipe.content is not None:  # the scorer first: the student then reads what it picks
        all_frames = data.training(recipe.cell.train.batch_size, shuffle=True, seed=recipe.cell.seed,
                                   fraction=recipe.cell.data_fraction)
        train_scorer(recipe.content.scorer, teacher, all_frames, recipe.cell.scorer, recipe.device, recipe.cell.seed)
    train, val = _student_data(recipe, data)
    return train_serial_student(recipe.model, teacher, train, val, recipe.stages, recipe.config, on_epoch,
                                classifier=recipe.cell.serial_classifier)


RUNNERS: dict[Mode, Runner] = {Mode.BASELINE: _baseline, Mode.SERIAL: _serial}  # parallel cells: `run_group`


def _student_data(recipe: Recipe, data: DataSet) -> tuple[Iterable[VideoBatch], Iterable[VideoBatch]]:
    """Training and validation data as the student reads them."""
    cell, batch = recipe.cell, recipe.cell.train.batch_size
    train = data.training(batch, recipe.selection, shuffle=True, seed=cell.seed, fraction=cell.data_fraction)
    return recipe.reads(train), recipe.reads(data.validation(batch, recipe.selection))


@dataclass(frozen=True)
class Kept:
    """Where a cell's job keeps what outlives it besides its result (None: not kept): its model's
    representation sample (`orchestrator.store.samples`), its card and weights (`orchestrator.store.weights`),
    its test predictions (`orchestrator.store.predictions`)."""

    sample: str | None = None
    weights: str | None = None
    predictions: str | None = None
    adaptive_predictions: str | None = None  # an adaptive reading's test predictions at its threshold


def run_cell(cell: Cell, data: DataSet, cache_uri: str | None, device: str,
             on_epoch: EpochCallback | None = None, kept: Kept = Kept()) -> CellResult:
    """Train and test one cell. `device` is what its resources ask for ("cpu", or "auto": CUDA when there
    is one); `cache_uri` is a serial student's teacher cache; `on_epoch` sees each epoch's validation
    scores as they come (a search's early stopping)."""
    started = time.perf_counter()
    announce_start(on_epoch)
    return run_recipe(resolve(cell, data.num_classes, device), data, cache_uri, on_epoch, started, kept)



def run_recipe(recipe: Recipe, data: DataSet, cache_uri: str | None, on_epoch: EpochCallback | None = None,
               started: float | None = None, kept: Kept = Kept()) -> CellResult:
    """Train a resolved cell with its mode's runner (a parallel pair as a group of one), then test it on the
    data set's test split, and keep what `kept` asks for."""
    started = time.perf_counter() if started is None else started
    if recipe.cell.mode is Mode.PARALLEL:
        return run_group([recipe], data, [on_epoch], [kept], started)[0]
    result = RUNNERS[recipe.cell.mode](recipe, data, cache_uri, on_epoch)
    return _tested(recipe, result, None, data, kept, started)


def run_group(recipes: list[Recipe], data: DataSet, on_epochs: list[EpochCallback | None], kept: list[Kept],
              started: float | None = None) -> list[CellResult]:
    """Parallel cells that share their teacher's training (`orchestrator.experiment.groups`), trained
    beside one copy of it (`workloads.parallel_group`), then each tested with the teacher as it was at
    the cell's best epoch: each cell's numbers are what it gets alone."""
    started = time.perf_counter() if started is None else started
    first, teacher = recipes[0].cell, recipes[0].teacher
    members = [Member(r.model, r.selection, r.stages, seed=member_seed(r.cell),
                      shared_classifier=r.cell.parallel_classifier == "shared", targets=r.cell.parallel_targets,
                      on_epoch=on_epoch) for r, on_epoch in zip(recipes, on_epochs)]
    batch = first.train.batch_size
    # The group reads every frame: the teacher sees them all, each student its selection's.
    train = data.training(batch, shuffle=True, seed=first.seed, fraction=first.data_fraction)
    trained = train_parallel_group(teacher, members, train, data.validation(batch), recipes[0].config)
    results = []
    for recipe, member, keep in zip(recipes, trained, kept):
        member.restore(teacher, recipe.model)
        results.append(_tested(recipe, member.result, teacher, data, keep, started, len(recipes)))
    return results


def member_seed(cell: Cell) -> int:
    """A parallel student's own random stream (dropout): from the cell alone, never from its group."""
    return int(cell.id.removeprefix("c-")[:8], 16)


def _tested(recipe: Recipe, result: TrainResult, teacher: VideoModel | None, data: DataSet, kept: Kept,
            started: float, group: int = 1) -> CellResult:
    """Test a trained cell (and a parallel pair's teacher) on the data set's test split, keep what `kept`
    asks for, and give its result."""
    batch = recipe.cell.train.batch_size
    test = evaluate(recipe.model, recipe.reads(data.testing(batch, recipe.selection)), recipe.device,
                    keep_predictions=kept.predictions is not None)
    teacher_test = None if teacher is None else evaluate(teacher, data.testing(batch), recipe.device)
    if kept.predictions is not None:
        write_predictions(kept.predictions, test.predictions)
    if kept.sample is not None:
        theirs = None if teacher is None else represent(teacher, data.sampled(batch), recipe.device)
        mine = represent(recipe.model, recipe.reads(data.sampled(batch, recipe.selection)), recipe.device)
        write_sample(kept.sample, mine, theirs)
    adaptive = {} if recipe.cell.adaptive is None else read_adaptively(recipe, data, kept.adaptive_predictions)
    if kept.weights is not None:  # with the stopping rule its adaptive reading calibrated, if it has one
        card = weights.student_card(recipe.cell, data.num_classes, stopping_rule(recipe.cell, adaptive))
        weights.save(kept.weights, card, recipe.product)
    return CellResult.of(result, test, recipe.cost, time.perf_counter() - started, recipe.device.type, data.roles(),
                         teacher_gap=None if teacher_test is None else teacher_test.gap,
                         teacher_map=None if teacher_test is None else teacher_test.map, weights=kept.weights,
                         parallel_group=group if teacher is not None else None, **adaptive)
