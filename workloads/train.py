"""The training loops, as plain functions: a model (or two), data, a config and a per-epoch callback.

- `train_classifier`: LCE on whatever frames the data holds: the teacher / skyline (all frames) and
  the k-frame baselines (data read with a frame selection).
- `train_serial_student`: a student learns from a trained teacher's cached outputs (`TeacherSource`),
  never running the teacher, through one or more `Stage`s; `SERIAL_VARIANTS` holds the paper's five.
- `train_parallel`: teacher (LCE on all frames) and student (on the frames a selection keeps of the same
  batch) trained jointly; the student's losses never reach the teacher, not even the shared classifier.
- `evaluate`: GAP and mAP on data; `export_teacher`: a trained teacher's E_T, P_T and I_T per video.

Every loop: Adam with exponential learning-rate decay per epoch, L2 penalty as weight decay, validation
GAP/mAP after every epoch, the best epoch's weights restored at the end, seeded, CPU or CUDA (mixed
precision on CUDA). `train_classifier` and `train_serial_student` also train data-parallel: given a model
from `workloads.distributed.replicate` and each replica's share of the data, they pool the epoch's loss
and validation scores over all replicas, so every replica restores the same best epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np
import torch
from torch.func import functional_call

from workloads.data.reader import FrameSelection, VideoBatch, subsample
from workloads.distributed import broadcast, check_share, gather_objects, gather_scores, joined, unwrap
from workloads.errors import WorkloadError
from workloads.losses import Objective, TeacherTargets
from workloads.metrics import TopKAccumulator
from workloads.models import ModelOutput, VideoModel


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    learning_rate: float = 1e-3
    lr_decay: float = 0.95  # the learning rate is multiplied by this after every epoch
    weight_decay: float = 0.0  # L2 penalty on all parameters
    max_grad_norm: float | None = None
    seed: int = 0
    device: str = "auto"  # "cpu", "cuda", "cuda:N" or "auto" (CUDA when there is one)
    amp: bool = True  # float16 autocast with loss scaling, CUDA only

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise WorkloadError(f"epochs must be >= 1, got {self.epochs}")
        if self.learning_rate <= 0 or not 0 < self.lr_decay <= 1:
            raise WorkloadError(f"need learning_rate > 0 and 0 < lr_decay <= 1, got {self.learning_rate}, {self.lr_decay}")

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@dataclass(frozen=True)
class Stage:
    """Train with `objective` for `epochs` (None: the config's). Each stage starts a fresh Adam and
    learning-rate schedule, as the fine-tuning stage of variant (a) does."""

    objective: Objective
    epochs: int | None = None
    name: str = "train"


SERIAL_VARIANTS: dict[str, tuple[Stage, ...]] = {
    # (a) mimic the teacher's representation, then fine-tune student + the teacher's classifier on LCE.
    "rep_then_ce": (Stage(Objective({"rep": 1.0}), name="rep"), Stage(Objective({"ce": 1.0}), name="finetune")),
    "rep+ce": (Stage(Objective.parse("rep+ce")),),  # (b)
    "pred": (Stage(Objective.parse("pred")),),  # (c)
    "pred+ce": (Stage(Objective.parse("pred+ce")),),  # (d)
    "rep+pred+ce": (Stage(Objective.parse("rep+pred+ce")),),  # (e)
}
PARALLEL_VARIANTS = ("rep", "rep+ce", "rep+pred+ce")
PREFETCH_BATCHES = 8  # batches a serial student reads ahead, so its teacher targets load meanwhile


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int  # counted over all stages, from 1
    stage: str
    loss: float
    losses: dict[str, float]
    val_gap: float
    val_map: float
    seconds: float
    teacher_val_gap: float | None = None  # parallel training: the teacher's own validation GAP
    teacher_val_map: float | None = None


@dataclass
class TrainResult:
    best_epoch: int
    gap: float
    map: float
    history: list[EpochMetrics] = field(default_factory=list)
    train_seconds: float = 0.0


EpochCallback = Callable[[EpochMetrics], None]


@dataclass
class Progress:
    """A loop after one of its epochs, with all it needs to go on exactly as if it had not stopped: the
    weights, the optimiser, schedule and loss scaler of the current stage, the best epoch so far and its
    weights, and torch's random state (dropout). Data order needs none: the reader derives it from
    (seed, epoch). Passed to `on_progress` after every epoch, taken back as `resume=`."""

    epoch: int  # epochs done, counted over all stages
    model: dict[str, torch.Tensor]
    optimizer: dict
    schedule: dict
    scaler: dict
    result: TrainResult
    best_state: dict[str, torch.Tensor] | None
    rng: torch.Tensor
    cuda_rng: torch.Tensor | None = None


ProgressCallback = Callable[[Progress], None]


def load_progress(source) -> Progress:
    """A `Progress` that `torch.save` wrote, read by torch's weights-only unpickler: tensors, plain
    containers and this module's three records, never a global outside them, so a checkpoint in a shared
    store cannot run code in whoever resumes from it."""
    with torch.serialization.safe_globals([Progress, TrainResult, EpochMetrics]):
        return torch.load(source, weights_only=True)


class TeacherSource(Protocol):
    """A trained teacher's outputs, looked up by video id (the teacher cache implements this)."""

    def targets(self, ids: list[str], device: torch.device) -> TeacherTargets: ...

    # Optionally also `prefetch(ids) -> None`: a hint that `targets(ids)` comes soon (see `_prefetched`).

    def classifier_state(self) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class TeacherRecord:
    """One video's teacher outputs: E_T (d,), P_T (classes,), and I_T (steps, d) at `positions`."""

    id: str
    representation: np.ndarray
    probabilities: np.ndarray
    intermediates: np.ndarray | None = None
    positions: np.ndarray | None = None


class InMemoryTeacherCache:
    """A `TeacherSource` over exported records held in memory."""

    def __init__(self, records: Iterable[TeacherRecord], classifier_state: dict[str, torch.Tensor]):
        self.records = {r.id: r for r in records}
        self._classifier = {k: v.detach().cpu().clone() for k, v in classifier_state.items()}

    def classifier_state(self) -> dict[str, torch.Tensor]:
        return self._classifier

    def targets(self, ids: list[str], device: torch.device) -> TeacherTargets:
        return stack_targets([self._record(i) for i in ids], device)

    def _record(self, video_id: str) -> TeacherRecord:
        try:
            return self.records[video_id]
        except KeyError:
            raise WorkloadError(f"the teacher cache has no video {video_id!r}") from None


def stack_targets(records: list[TeacherRecord], device: torch.device) -> TeacherTargets:
    representation = torch.from_numpy(np.stack([r.representation for r in records])).float()
    probabilities = torch.from_numpy(np.stack([r.probabilities for r in records])).float()
    intermediates = pad_intermediates([r.intermediates for r in records], device)
    return TeacherTargets(representation.to(device), probabilities.to(device), intermediates)


def pad_intermediates(values: list[np.ndarray | None], device: torch.device) -> torch.Tensor | None:
    """Videos' I_T, (steps_i, d) each, as one (videos, max steps, d) tensor zero-padded; None without."""
    if not values or values[0] is None:
        return None
    steps = max(v.shape[0] for v in values)
    padded = np.zeros((len(values), steps, values[0].shape[1]), np.float32)
    for row, value in enumerate(values):
        padded[row, : value.shape[0]] = value
    return torch.from_numpy(padded).to(device)


# --- helpers ------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch: call before building a model to make its initialisation repeat."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _set_epoch(data, epoch: int) -> None:
    target = getattr(data, "dataset", data)
    if hasattr(target, "set_epoch"):
        target.set_epoch(epoch)


def _to(batch: VideoBatch, device: torch.device) -> VideoBatch:
    asynchronous = device.type == "cuda"
    return batch._replace(
        frames=batch.frames.to(device, non_blocking=asynchronous),
        mask=batch.mask.to(device, non_blocking=asynchronous),
        positions=batch.positions.to(device, non_blocking=asynchronous),
        labels=batch.labels.to(device, non_blocking=asynchronous),
    )


class _Precision:
    """Autocast and loss scaling on CUDA when asked; nothing on the CPU."""

    def __init__(self, device: torch.device, enabled: bool):
        self.enabled = enabled and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled)

    def autocast(self):
        if self.enabled:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, params, max_grad_norm: float | None) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if max_grad_norm:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        self.scaler.step(optimizer)
        self.scaler.update()


def _optimizer(params, config: TrainConfig):
    optimizer = torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)


def _unique_parameters(*models: torch.nn.Module) -> list[torch.nn.Parameter]:
    seen, params = set(), []
    for model in models:
        for p in model.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return _on_cpu(model.state_dict())


def _on_cpu(value):
    """A copy of a (nested) state dict with its tensors on the CPU: the live one changes with every step."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(v) for v in value)
    return value


class _Mean:
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

    def pooled(self) -> _Mean:
        """The means over every data-parallel replica's batches (this one's alone in one process)."""
        pooled = _Mean()
        for total, count, parts in gather_objects((self.total, self.count, self.parts)):
            pooled.total += total
            pooled.count += count
            for k, v in parts.items():
                pooled.parts[k] = pooled.parts.get(k, 0.0) + v
        return pooled


# --- evaluation -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    gap: float
    map: float
    videos: int
    seconds: float


@torch.no_grad()
def evaluate(
    model: VideoModel,
    data: Iterable[VideoBatch],
    device: torch.device | str = "cpu",
    selection: FrameSelection | None = None,
    amp: bool = False,
) -> Evaluation:
    """GAP@20 and mAP of `model` on `data`; `selection` subsamples all-frames batches first.

    When `data` is one data-parallel replica's share (see `workloads.distributed`), every replica calls
    this and all get the scores over the whole data."""
    device = torch.device(device)
    model = unwrap(model)
    share = check_share(data)
    precision = _Precision(device, amp)
    was_training = model.training
    model.eval()
    accumulator = None
    start = time.perf_counter()
    for batch in data:
        batch = _to(batch, device)
        if selection is not None:
            batch = subsample(batch, selection)
        with precision.autocast():
            out = model(batch.frames, batch.mask, batch.positions)
        scores = torch.sigmoid(out.logits.float()).cpu().numpy()
        if accumulator is None:
            accumulator = TopKAccumulator(scores.shape[1])
        accumulator.add(scores, batch.labels.cpu().numpy())
    model.train(was_training)
    if share:  # a share may hold no batch at all: the merged accumulator is what must not be empty
        merged = gather_scores(accumulator, getattr(data, "dataset", data).num_classes)
        scores = broadcast(None if merged is None else _scores(merged))
    else:
        scores = None if accumulator is None else _scores(accumulator)
    if scores is None:
        raise WorkloadError("evaluation data is empty")
    return Evaluation(*scores, time.perf_counter() - start)


def _scores(accumulator: TopKAccumulator) -> tuple[float, float, int] | None:
    """(GAP, mAP, videos), or None when nothing was accumulated."""
    if accumulator.num_videos == 0:
        return None
    return accumulator.gap(), accumulator.mean_average_precision(), accumulator.num_videos


# --- the loops ----------------------------------------------------------------------------------------


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
    """LCE on the frames the data holds: a teacher / skyline on all frames, a baseline on k of them.
    `on_progress` gets a `Progress` after every epoch; `resume` goes on from one (a restarted teacher)."""
    return _run_stages(model, (Stage(Objective({"ce": 1.0})),), train, val, config, None, on_epoch,
                       resume, on_progress)


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
) -> TrainResult:
    """A student learns from the teacher's cached outputs; its classifier starts as the teacher's.

    `stages` is a tuple of `Stage`s or a name in `SERIAL_VARIANTS`; `resume` and `on_progress` as in
    `train_classifier`.
    """
    if isinstance(stages, str):
        if stages not in SERIAL_VARIANTS:
            raise WorkloadError(f"unknown serial variant {stages!r}; known: {', '.join(SERIAL_VARIANTS)}")
        stages = SERIAL_VARIANTS[stages]
    model = unwrap(student)
    model.classifier.load_state_dict(teacher.classifier_state())
    for stage in stages:
        if stage.objective.needs_intermediates and not model.supports_intermediates:
            raise WorkloadError(f"{type(model).__name__} has no intermediate states to match")
    return _run_stages(student, stages, train, val, config, teacher, on_epoch, resume, on_progress)


def _run_stages(model, stages, train, val, config, teacher: TeacherSource | None, on_epoch,
                resume: Progress | None = None, on_progress: ProgressCallback | None = None) -> TrainResult:
    device = config.torch_device()
    torch.manual_seed(config.seed)
    model.to(device)
    precision = _Precision(device, config.amp)
    result = TrainResult(best_epoch=0, gap=-1.0, map=0.0)
    best_state = None
    done = 0  # epochs a resumed run had already done
    if resume is not None:
        unwrap(model).load_state_dict(resume.model)
        result = dataclasses.replace(resume.result, history=list(resume.result.history))
        best_state, done = resume.best_state, resume.epoch
        torch.set_rng_state(resume.rng)
        if resume.cuda_rng is not None and device.type == "cuda":
            torch.cuda.set_rng_state(resume.cuda_rng, device)
    start = time.perf_counter() - result.train_seconds
    epoch = 0
    for stage in stages:
        params = list(model.parameters())
        optimizer, schedule = _optimizer(params, config)
        epochs = stage.epochs or config.epochs
        if done >= epoch + epochs:  # a stage the resumed run had finished
            epoch += epochs
            continue
        if done > epoch:  # the stage it stopped in
            optimizer.load_state_dict(resume.optimizer)
            schedule.load_state_dict(resume.schedule)
            precision.scaler.load_state_dict(resume.scaler)
            epochs -= done - epoch
            epoch = done
        for _ in range(epochs):
            epoch += 1
            _set_epoch(train, epoch - 1)
            model.train()
            mean = _Mean()
            epoch_start = time.perf_counter()
            with joined(model):
                for batch in _prefetched(train, teacher if stage.objective.needs_teacher else None):
                    batch = _to(batch, device)
                    targets = teacher.targets(batch.ids, device) if stage.objective.needs_teacher else None
                    with precision.autocast():
                        out = model(batch.frames, batch.mask, batch.positions)
                    loss, parts = stage.objective(out, batch.labels, targets)
                    precision.step(loss, optimizer, params, config.max_grad_norm)
                    mean.add(float(loss.detach()), parts)
            if check_share(train):
                mean = mean.pooled()
            schedule.step()
            scores = evaluate(model, val, device, amp=config.amp)
            metrics = EpochMetrics(epoch, stage.name, mean.loss(), mean.losses(), scores.gap, scores.map,
                                   time.perf_counter() - epoch_start)
            result.history.append(metrics)
            improved = scores.gap > result.gap
            # One copy serves as both the progress's weights and a new best: saved once, as torch.save
            # writes a shared tensor once (a quarter of a paper-size checkpoint with Adam's two moments).
            weights = _snapshot(unwrap(model)) if improved or on_progress else None
            if improved:
                result.best_epoch, result.gap, result.map = epoch, scores.gap, scores.map
                best_state = weights
            if on_epoch:
                on_epoch(metrics)
            if on_progress:
                result.train_seconds = time.perf_counter() - start
                on_progress(Progress(
                    epoch, weights, _on_cpu(optimizer.state_dict()), schedule.state_dict(),
                    precision.scaler.state_dict(), dataclasses.replace(result, history=list(result.history)),
                    best_state, torch.get_rng_state(),
                    torch.cuda.get_rng_state(device) if device.type == "cuda" else None))
    result.train_seconds = time.perf_counter() - start
    if best_state is not None:
        unwrap(model).load_state_dict(best_state)
    return result


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


def parallel_losses(
    teacher: VideoModel,
    student: VideoModel,
    batch: VideoBatch,
    selection: FrameSelection,
    objective: Objective,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """(teacher LCE, student loss, parts) for one all-frames batch.

    The student's targets are detached from the teacher, and the student reaches the shared classifier
    through detached copies of its parameters: gradients of the student loss stop at the student.
    """
    t_out = teacher(batch.frames, batch.mask, batch.positions)
    teacher_loss, teacher_parts = Objective({"ce": 1.0})(t_out, batch.labels)
    student_batch = subsample(batch, selection)
    s_out = _student_forward(student, teacher, student_batch)
    intermediates = None
    if objective.needs_intermediates:
        intermediates = teacher.states_at(batch.frames, batch.mask, batch.positions,
                                          s_out.intermediate_positions).detach()
    targets = TeacherTargets(t_out.representation.detach().float(),
                             torch.sigmoid(t_out.logits.detach().float()), intermediates)
    student_loss, student_parts = objective(s_out, batch.labels, targets)
    parts = {f"teacher_{k}": v for k, v in teacher_parts.items()} | student_parts
    return teacher_loss, student_loss, parts


def _student_forward(student: VideoModel, teacher: VideoModel, batch: VideoBatch) -> ModelOutput:
    representation, intermediates, positions = student.encode(batch.frames, batch.mask, batch.positions)
    frozen = {name: p.detach() for name, p in teacher.classifier.named_parameters()}
    frozen |= dict(teacher.classifier.named_buffers())
    logits = functional_call(teacher.classifier, frozen, (student.dropout(representation),))
    return ModelOutput(representation, intermediates, positions, logits)


def train_parallel(
    teacher: VideoModel,
    student: VideoModel,
    train: Iterable[VideoBatch],
    val: Iterable[VideoBatch],
    selection: FrameSelection,
    objective: Objective | str,
    config: TrainConfig,
    on_epoch: EpochCallback | None = None,
) -> tuple[TrainResult, TrainResult]:
    """Teacher and student trained jointly on the same all-frames batches; returns (student, teacher)
    results. The best epoch is the student's best validation GAP, and both models are restored to it."""
    if isinstance(objective, str):
        objective = Objective.parse(objective)
    if objective.needs_intermediates and not (student.supports_intermediates and teacher.supports_intermediates):
        raise WorkloadError(f"{type(student).__name__} has no intermediate states to match")
    device = config.torch_device()
    torch.manual_seed(config.seed)
    teacher.to(device)
    student.to(device)
    student.classifier = teacher.classifier  # one output layer, owned (and trained) by the teacher
    precision = _Precision(device, config.amp)
    params = _unique_parameters(teacher, student)
    optimizer, schedule = _optimizer(params, config)
    student_result = TrainResult(best_epoch=0, gap=-1.0, map=0.0)
    teacher_result = TrainResult(best_epoch=0, gap=-1.0, map=0.0)
    best = None
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        _set_epoch(train, epoch - 1)
        teacher.train()
        student.train()
        mean = _Mean()
        epoch_start = time.perf_counter()
        for batch in train:
            batch = _to(batch, device)
            with precision.autocast():
                teacher_loss, student_loss, parts = parallel_losses(teacher, student, batch, selection, objective)
            loss = teacher_loss + student_loss
            precision.step(loss, optimizer, params, config.max_grad_norm)
            mean.add(float(loss.detach()), parts)
        schedule.step()
        s_scores = evaluate(student, val, device, selection=selection, amp=config.amp)
        t_scores = evaluate(teacher, val, device, amp=config.amp)
        metrics = EpochMetrics(epoch, "parallel", mean.loss(), mean.losses(), s_scores.gap, s_scores.map,
                               time.perf_counter() - epoch_start, t_scores.gap, t_scores.map)
        student_result.history.append(metrics)
        if s_scores.gap > student_result.gap:
            student_result.best_epoch, student_result.gap, student_result.map = epoch, s_scores.gap, s_scores.map
            teacher_result.best_epoch, teacher_result.gap, teacher_result.map = epoch, t_scores.gap, t_scores.map
            best = (_snapshot(teacher), _snapshot(student))
        if on_epoch:
            on_epoch(metrics)
    student_result.train_seconds = teacher_result.train_seconds = time.perf_counter() - start
    teacher_result.history = student_result.history
    if best is not None:
        teacher.load_state_dict(best[0])
        student.load_state_dict(best[1])
    return student_result, teacher_result


# --- teacher export -----------------------------------------------------------------------------------


def student_intermediate_positions(student: VideoModel, selection: FrameSelection) -> Callable[[int], np.ndarray]:
    """num_frames -> the frame positions at which `student`, reading `selection`, has intermediates:
    the positions a teacher export must answer for intermediate matching."""
    if selection.name == "random":
        raise WorkloadError("intermediate matching needs a deterministic frame selection, not 'random'")

    def positions(num_frames: int) -> np.ndarray:
        return student.intermediate_positions(selection.indices(num_frames))

    return positions


@torch.no_grad()
def export_teacher(
    teacher: VideoModel,
    data: Iterable[VideoBatch],
    device: torch.device | str = "cpu",
    intermediate_positions: Callable[[int], np.ndarray] | None = None,
) -> Iterator[TeacherRecord]:
    """Run a trained teacher over all-frames `data` and yield each video's E_T and P_T and, when
    `intermediate_positions(num_frames)` is given, I_T at those positions (what a student will ask for)."""
    device = torch.device(device)
    teacher.eval()
    teacher.to(device)
    if intermediate_positions is not None and not teacher.supports_intermediates:
        raise WorkloadError(f"{type(teacher).__name__} has no intermediate states to export")
    for batch in data:
        batch = _to(batch, device)
        out = teacher(batch.frames, batch.mask, batch.positions)
        representation = out.representation.float().cpu().numpy()
        probabilities = torch.sigmoid(out.logits.float()).cpu().numpy()
        intermediates = query = None
        if intermediate_positions is not None:
            wanted = [np.asarray(intermediate_positions(int(n)), dtype=np.int64) for n in batch.num_frames]
            query = np.full((len(wanted), max((w.size for w in wanted), default=0) or 1), -1, np.int64)
            for row, w in enumerate(wanted):
                query[row, : w.size] = w
            intermediates = teacher.states_at(
                batch.frames, batch.mask, batch.positions, torch.from_numpy(query).to(device)
            ).float().cpu().numpy()
        for row, video_id in enumerate(batch.ids):
            steps = int((query[row] >= 0).sum()) if query is not None else 0
            yield TeacherRecord(
                id=video_id,
                representation=representation[row],
                probabilities=probabilities[row],
                intermediates=intermediates[row, :steps] if intermediates is not None else None,
                positions=query[row, :steps] if query is not None else None,
            )
