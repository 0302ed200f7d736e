"""The training loops, as plain functions: a model (or a teacher and a student), data, stages of weighted
losses (`workloads.variants`), a config and callbacks.

- `train_classifier`: LCE on whatever frames the data holds: the teacher / skyline (all frames) and
  the k-frame baselines (data read with a frame selection).
- `train_serial_student`: a student learns from a trained teacher's outputs (`TeacherSource`), never
  running the teacher.
- `train_parallel`: teacher (LCE on all frames) and student (on the frames a selection keeps of the same
  batch) trained jointly; the student's losses never reach the teacher, not even the shared classifier.

All three run one epoch skeleton (`_fit`): Adam with exponential learning-rate decay per epoch (a fresh
one per stage), L2 penalty as weight decay, validation GAP/mAP after every epoch, the best epoch's weights
restored at the end, seeded, CPU or CUDA (mixed precision on CUDA: `workloads.precision`). Each hands a `Progress` to
`on_progress` after every epoch and goes on from one given as `resume=`, ending with the same weights, to
the bit, as a loop never stopped. Each trains data-parallel too: given each replica's share of the data
(and, for the first two, a model from `workloads.distributed.replicate`), it pools the epoch's loss and
validation scores over all replicas, so every replica restores the same best epoch.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np
import torch

from workloads import variants
from workloads.adaptive import read_prefix
from workloads.data.batch import FrameSelection, VideoBatch
from workloads.distributed import check_share, gather_objects, joined, replicate, unwrap
from workloads.errors import WorkloadError
from workloads.evaluation import Evaluation, evaluate
from workloads.models import VideoModel
from workloads.parallel_pair import ParallelPair
from workloads.precision import Precision, check as check_precision
from workloads.progress import EpochCallback, EpochMetrics, Progress, ProgressCallback, TrainResult, on_cpu
from workloads.teacher_outputs import TeacherSource
from workloads.variants import Stage, check_own_classifier

SERIAL_CLASSIFIERS = ("shared", "tuned")  # a serial student's output layer: the teacher's, frozen; or trained
PREFETCH_BATCHES = 8  # batches a serial student reads ahead, so its teacher targets load meanwhile


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    learning_rate: float = 1e-3
    lr_decay: float = 0.95  # the learning rate is multiplied by this after every epoch
    weight_decay: float = 0.0  # Adam's L2 penalty on all parameters (not the paper's: see below)
    # The paper's L2, as the YouTube-8M starter code adds it: `regularization_penalty` (the paper's "2") times
    # the output layers' own L2 losses, `l2_penalty` x ||W||^2 / 2 on each weight matrix of the MoE (or
    # logistic) classifier, biases not penalised: slim's `l2_regularizer(1e-8)` in the authors' models.
    regularization_penalty: float = 2.0
    l2_penalty: float = 1e-8
    max_grad_norm: float | None = None
    seed: int = 0
    device: str = "auto"  # "cpu", "cuda", "cuda:N" or "auto" (CUDA when there is one)
    precision: str = "auto"  # `workloads.precision`: bfloat16 where the GPU has it, float16 + scaling else, CPU float32

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise WorkloadError(f"epochs must be >= 1, got {self.epochs}")
        if self.regularization_penalty < 0 or self.l2_penalty < 0:
            raise WorkloadError(f"need regularization_penalty >= 0 and l2_penalty >= 0, got "
                                f"{self.regularization_penalty}, {self.l2_penalty}")
        check_precision(self.precision)
        if self.learning_rate <= 0 or not 0 < self.lr_decay <= 1:
            raise WorkloadError(f"need learning_rate > 0 and 0 < lr_decay <= 1, got {self.learning_rate}, {self.lr_decay}")

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch: call before building a model to make its initialisation repeat."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_classifier(
    model: VideoModel,
    train: Iterable[VideoBatch],
    val: Iterable[VideoBatch],
    config: TrainConfig,
    on_epoch: EpochCallback | None = None,
    *,
    resume: Progress | None = None,
    on_progress: ProgressCallback | None = None,
) -> TrainResult:
    """LCE on the frames the data holds: a teacher / skyline on all frames, a baseline on k of them."""

    def loss(stage: Stage, batch: VideoBatch, precision: Precision):
        with precision.autocast():
            out = model(batch.frames, batch.mask, batch.positions)
        return stage.objective(out, batch.labels)

    learner = _Learner(model, loss, _scores_of(model), penalised=_penalised_by_stage(model))
    return _fit(learner, variants.classifier_stages(), train, val, config, on_epoch, resume, on_progress)


def train_serial_student(
    student: VideoModel,
    teacher: TeacherSource,
    train: Iterable[VideoBatch],
    val: Iterable[VideoBatch],
    stages: tuple[Stage, ...] | str,
    config: TrainConfig,
    on_epoch: EpochCallback | None = None,
    *,
    resume: Progress | None = None,
    on_progress: ProgressCallback | None = None,
    classifier: str = "shared",
    prefixes: tuple[int, ...] = (),
) -> TrainResult:
    """A student learns from the teacher's outputs; its output layer is the teacher's: frozen (`shared`, the
    paper: "the parameters of the output layer are shared between the teacher and the student") or
    trained on from there (`tuned`).

    `stages` is a tuple of `Stage`s or the name of a serial variant (`workloads.variants`). `prefixes`: each
    training batch is cut to one of these frame counts, drawn at random, its frames taken coarse to fine
    (`workloads.adaptive.read_prefix`), so the student learns to predict from as few as it may read."""
    if isinstance(stages, str):
        stages = variants.stages(stages)
    if classifier not in SERIAL_CLASSIFIERS:
        raise WorkloadError(f"a serial student's classifier is one of {', '.join(SERIAL_CLASSIFIERS)}, got {classifier!r}")
    model = unwrap(student)
    model.classifier.load_state_dict(teacher.classifier_state())
    # Frozen by leaving it out of the optimiser (its gradients still flow, so a DDP-wrapped student
    # reduces every parameter it registered, as DDP requires).
    frozen = tuple(model.classifier.parameters()) if classifier == "shared" else ()
    if any(stage.objective.needs_intermediates for stage in stages) and not model.supports_intermediates:
        raise WorkloadError(f"{type(model).__name__} has no intermediate states to match")
    if prefixes and any(stage.objective.needs_intermediates for stage in stages):
        raise WorkloadError("a student matching intermediate states reads all its frames: no prefixes")

    def loss(stage: Stage, batch: VideoBatch, precision: Precision):
        targets = teacher.targets(batch.ids, batch.frames.device) if stage.objective.needs_teacher else None
        if prefixes:  # torch's generator: its state is in a `Progress`, so a resumed loop draws the same
            batch = read_prefix(batch, prefixes[int(torch.randint(len(prefixes), ()))])
        with precision.autocast():
            out = student(batch.frames, batch.mask, batch.positions)
        return stage.objective(out, batch.labels, targets)

    def batches(stage: Stage, data: Iterable[VideoBatch]) -> Iterable[VideoBatch]:
        return _prefetched(data, teacher if stage.objective.needs_teacher else None)

    learner = _Learner(student, loss, _scores_of(student), batches, _penalised_by_stage(student), frozen)
    return _fit(learner, stages, train, val, config, on_epoch, resume, on_progress)


def train_parallel(
    teacher: VideoModel,
    student: VideoModel,
    train: Iterable[VideoBatch],
    val: Iterable[VideoBatch],
    selection: FrameSelection,
    stages: tuple[Stage, ...] | str,
    config: TrainConfig,
    on_epoch: EpochCallback | None = None,
    *,
    resume: Progress | None = None,
    on_progress: ProgressCallback | None = None,
    shared_classifier: bool = True,
    targets: str = "train",
) -> tuple[TrainResult, TrainResult]:
    """Teacher and student trained jointly on the same all-frames batches; returns (student, teacher)
    results. The best epoch is the student's best validation GAP, and both models are restored to it.

    `stages` is a tuple of `Stage`s or the name of a parallel variant; `shared_classifier` False gives the
    student its own output layer and `targets` says in which mode the teacher makes the student's targets
    (`workloads.parallel_pair`). When `train` is one replica's share, the pair
    is replicated (DistributedDataParallel) over the process group."""
    if isinstance(stages, str):
        stages = variants.stages(stages, mode="parallel")
    if not shared_classifier:
        check_own_classifier(stages)
    matches = any(stage.objective.needs_intermediates for stage in stages)
    if matches and not (student.supports_intermediates and teacher.supports_intermediates):
        raise WorkloadError(f"{type(student).__name__} has no intermediate states to match")
    pair = ParallelPair(teacher, student, selection, shared_classifier, targets)
    model = replicate(pair, config.torch_device()) if check_share(train) else pair

    def loss(stage: Stage, batch: VideoBatch, precision: Precision):
        with precision.autocast():
            teacher_loss, student_loss, parts = model(batch, stage.objective)
        return teacher_loss + student_loss, parts

    def scores(val, device, precision) -> tuple[Evaluation, Evaluation]:
        return (evaluate(student, val, device, selection=selection, precision=precision),
                evaluate(teacher, val, device, precision=precision))

    # The teacher's LCE trains its output layer whatever the student's stage: the pair's are always penalised.
    learner = _Learner(model, loss, scores, penalised=lambda stage: output_weights(model))
    result = _fit(learner, stages, train, val, config, on_epoch, resume, on_progress)
    best = result.history[result.best_epoch - 1] if result.best_epoch else None
    teacher_result = TrainResult(result.best_epoch, best.teacher_val_gap if best else -1.0,
                                 best.teacher_val_map if best else 0.0, result.history, result.train_seconds,
                                 result.precision)
    return result, teacher_result


# --- the epoch skeleton ---------------------------------------------------------------------------------


Scores = Callable[[Iterable[VideoBatch], torch.device, bool], tuple[Evaluation, Evaluation | None]]


class _Learner(NamedTuple):
    """What differs between the loops; `_fit` does the rest."""

    model: torch.nn.Module  # what is trained, saved in a `Progress` and restored (DDP-wrapped or not)
    loss: Callable[[Stage, VideoBatch, Precision], tuple[torch.Tensor, dict[str, float]]]  # one batch's
    scores: Scores  # validation: (what picks the best epoch, a parallel pair's teacher's or None)
    batches: Callable[[Stage, Iterable[VideoBatch]], Iterable[VideoBatch]] = lambda stage, data: data
    # The weights a stage's L2 penalises: the output layer's, when the stage's objective trains it.
    penalised: Callable[[Stage], list[torch.nn.Parameter]] = lambda stage: []
    frozen: tuple[torch.nn.Parameter, ...] = ()  # parameters the optimiser never steps


def _scores_of(model: torch.nn.Module) -> Scores:
    return lambda val, device, precision: (evaluate(model, val, device, precision=precision), None)


def _fit(learner: _Learner, stages: tuple[Stage, ...], train, val, config: TrainConfig,
         on_epoch: EpochCallback | None, resume: Progress | None, on_progress: ProgressCallback | None) -> TrainResult:
    """Run `stages` one after another, epoch by epoch, from where `resume` stopped (every stage it had
    finished skipped, the one it stopped in continued with its optimiser, schedule and scaler)."""
    device = config.torch_device()
    torch.manual_seed(config.seed)
    model = learner.model
    model.to(device)
    precision = Precision(device, config.precision)
    run = _Run.start(model, device, resume)
    epoch = 0
    for stage in stages:
        params, optimizer, schedule = stage_optimizer(model, learner.frozen, config)
        epochs = stage.epochs or config.epochs
        if run.done >= epoch + epochs:  # a stage the resumed run had finished
            epoch += epochs
            continue
        if run.done > epoch:  # the stage it stopped in
            optimizer.load_state_dict(resume.optimizer)
            schedule.load_state_dict(resume.schedule)
            precision.scaler.load_state_dict(resume.scaler)
            epochs -= run.done - epoch
            epoch = run.done
        for _ in range(epochs):
            epoch += 1
            epoch_start = time.perf_counter()
            mean = _train_epoch(learner, stage, train, epoch, precision, optimizer, params, config)
            schedule.step()
            scores, teacher = learner.scores(val, device, config.precision)
            metrics = EpochMetrics(epoch, stage.name, mean.loss(), mean.losses(), scores.gap, scores.map,
                                   time.perf_counter() - epoch_start, *_teacher_scores(teacher))
            run.ended(metrics, model, keep_weights=on_progress is not None)
            if on_epoch:
                on_epoch(metrics)
            if on_progress:
                on_progress(run.progress(optimizer, schedule, precision, device))
    run.result.precision = precision.name
    return run.finish(model)


def stage_optimizer(model: torch.nn.Module, frozen: tuple[torch.nn.Parameter, ...], config: TrainConfig):
    """A stage's fresh start: the parameters it steps (all but `frozen`), Adam over them, its schedule."""
    skipped = {id(p) for p in frozen}
    params = [p for p in model.parameters() if id(p) not in skipped]
    optimizer = torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    return params, optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)


def _teacher_scores(teacher: Evaluation | None) -> tuple[float | None, float | None]:
    return (None, None) if teacher is None else (teacher.gap, teacher.map)


def _train_epoch(learner: _Learner, stage: Stage, train, epoch: int, precision: Precision, optimizer, params,
                 config: TrainConfig) -> Mean:
    """One epoch's optimiser steps; the mean loss over every replica's batches."""
    set_epoch(train, epoch - 1)
    learner.model.train()
    mean = Mean()
    stepped = {id(p) for p in params}  # a frozen layer is not trained, so not penalised
    penalised = ([w for w in learner.penalised(stage) if id(w) in stepped]
                 if config.regularization_penalty and config.l2_penalty else [])
    with joined(learner.model):
        for batch in learner.batches(stage, train):
            batch = batch.to(precision.device)
            loss, parts = learner.loss(stage, batch, precision)
            if penalised:
                l2 = config.regularization_penalty * config.l2_penalty / 2 * sum(w.float().pow(2).sum() for w in penalised)
                loss, parts = loss + l2, {**parts, "l2": float(l2.detach())}
            precision.step(loss, optimizer, params, config.max_grad_norm)
            mean.add(float(loss.detach()), parts)
    return mean.pooled() if check_share(train) else mean


def _penalised_by_stage(module: torch.nn.Module) -> Callable[[Stage], list[torch.nn.Parameter]]:
    return lambda stage: output_weights(module) if stage.objective.trains_output else []


def output_weights(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The weight matrices of every output layer in `module` (a model, a pair, DDP's wrapper), each once:
    what the paper's L2 penalises (`_train_epoch` keeps those the optimiser steps)."""
    found = {id(p): p for m in module.modules() if isinstance(m, VideoModel)
             for p in m.classifier.parameters() if p.ndim > 1 and p.requires_grad}
    return list(found.values())


class _Run:
    """A loop's record so far: its result, the best epoch's weights, the epochs done, its clock."""

    def __init__(self, result: TrainResult, best_state, done: int, seconds_before: float):
        self.result, self.best_state, self.done = result, best_state, done
        self.start = time.perf_counter() - seconds_before
        self.weights = None  # the last epoch's, when a progress or a new best needs them

    @classmethod
    def start(cls, model: torch.nn.Module, device: torch.device, resume: Progress | None) -> _Run:
        if resume is None:
            return cls(TrainResult(best_epoch=0, gap=-1.0, map=0.0), None, 0, 0.0)
        unwrap(model).load_state_dict(resume.model)
        torch.set_rng_state(resume.rng)
        if resume.cuda_rng is not None and device.type == "cuda":
            torch.cuda.set_rng_state(resume.cuda_rng, device)
        result = dataclasses.replace(resume.result, history=list(resume.result.history))
        return cls(result, resume.best_state, resume.epoch, result.train_seconds)

    def ended(self, metrics: EpochMetrics, model: torch.nn.Module, keep_weights: bool) -> None:
        """Record an epoch; a new best keeps its weights."""
        self.result.history.append(metrics)
        improved = metrics.val_gap > self.result.gap
        # One copy serves as both the progress's weights and a new best: saved once, as torch.save writes
        # a shared tensor once (a quarter of a paper-size checkpoint with Adam's two moments).
        self.weights = on_cpu(unwrap(model).state_dict()) if improved or keep_weights else None
        if improved:
            self.result.best_epoch, self.result.gap, self.result.map = metrics.epoch, metrics.val_gap, metrics.val_map
            self.best_state = self.weights

    def progress(self, optimizer, schedule, precision: Precision, device: torch.device) -> Progress:
        self.result.train_seconds = time.perf_counter() - self.start
        result = dataclasses.replace(self.result, history=list(self.result.history))
        return Progress(self.result.history[-1].epoch, self.weights, on_cpu(optimizer.state_dict()),
                        schedule.state_dict(), precision.scaler.state_dict(), result, self.best_state,
                        torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None)

    def finish(self, model: torch.nn.Module) -> TrainResult:
        """The result, with the best epoch's weights put back into `model`."""
        self.result.train_seconds = time.perf_counter() - self.start
        if self.best_state is not None:
            unwrap(model).load_state_dict(self.best_state)
        return self.result


class Mean:
    def __init__(self):
        self.total, self.count, self.parts = 0.0, 0, {}

    def add(self, loss: float, parts: dict[str, float]) -> None:
        self.total += loss
        self.count += 1
        for k, v in parts.items():
            self.parts[k] = self.parts.get(k, 0.0) + v

    def loss(self) -> float:
        return self.total / max(self.count, 1)

    def losses(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.parts.items()}

    def pooled(self) -> Mean:
        """The means over every data-parallel replica's batches (this one's alone in one process)."""
        pooled = Mean()
        for total, count, parts in gather_objects((self.total, self.count, self.parts)):
            pooled.total += total
            pooled.count += count
            for k, v in parts.items():
                pooled.parts[k] = pooled.parts.get(k, 0.0) + v
        return pooled


def set_epoch(data, epoch: int) -> None:
    target = getattr(data, "dataset", data)
    if hasattr(target, "set_epoch"):
        target.set_epoch(epoch)


def _prefetched(batches: Iterable[VideoBatch], teacher: TeacherSource | None) -> Iterator[VideoBatch]:
    """The batches, read PREFETCH_BATCHES ahead, each announced to the teacher source (if it can
    prefetch): a cache on an object store then has their reads in flight before they are asked for."""
    prefetch = getattr(teacher, "prefetch", None)
    if prefetch is None:
        yield from batches
        return
    queue: deque[VideoBatch] = deque()
    for batch in batches:
        prefetch(batch.ids)
        queue.append(batch)
        if len(queue) > PREFETCH_BATCHES:
            yield queue.popleft()
    yield from queue
