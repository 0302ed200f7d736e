"""Several parallel students trained beside one teacher, the way a grid trains the parallel cells that share
a teacher: the teacher's forward and backward pass, the costliest part of a pair, is paid once per batch
for all of them.

Grouping changes no member's numbers. The paper's teacher minimises LCE alone and every student's losses
stop at the student (`workloads.parallel_pair`), so the teacher trains as it would beside any one of them;
Adam and its weight decay act per parameter, so one optimiser over all of them steps each model as its own
would. What would couple them is randomness drawn in turn from one generator (dropout), so the teacher
and every member draw from a stream of their own, seeded by the config (the teacher) and by the member's
own `seed`: a member trains to the same weights in any group, or alone. Two things would couple them, and
the group refuses or says so: clipping the gradients' joint norm (refused for more than one member), and
float16 loss scaling on a GPU without bfloat16, where a step one member overflows is skipped for all.

Each member keeps its own best epoch (its validation GAP) with the teacher's weights of that epoch:
`MemberResult.restore` puts the teacher and the student back there before the member is tested.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch
from torch import nn

from workloads import variants
from workloads.data.batch import FrameSelection, VideoBatch
from workloads.errors import WorkloadError
from workloads.evaluation import evaluate
from workloads.models import VideoModel
from workloads.parallel_pair import TARGET_MODES, student_losses, teacher_objective
from workloads.precision import Precision
from workloads.progress import EpochCallback, EpochMetrics, TrainResult, on_cpu
from workloads.train import Mean, TrainConfig, output_weights, set_epoch, stage_optimizer
from workloads.variants import Stage, check_own_classifier


@dataclass
class Member:
    """One student of a group: its model, the frames it reads, how it learns, and where its epochs go."""

    student: VideoModel
    selection: FrameSelection
    stages: tuple[Stage, ...]
    seed: int  # its own dropout stream: the same in any group
    shared_classifier: bool = True  # the teacher's output layer (the paper's text), or its own
    targets: str = "train"  # the teacher's mode when it makes this student's targets
    on_epoch: EpochCallback | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stages, str):
            self.stages = variants.stages(self.stages, mode="parallel")
        if self.targets not in TARGET_MODES:
            raise WorkloadError(f"a parallel student's targets come from the teacher in {' or '.join(TARGET_MODES)} "
                                f"mode, got {self.targets!r}")
        if not self.shared_classifier:
            check_own_classifier(self.stages)


@dataclass
class MemberResult:
    """A member's training: its result (the best epoch by its validation GAP) and both models' weights then."""

    result: TrainResult
    student_state: dict[str, torch.Tensor] | None = None
    teacher_state: dict[str, torch.Tensor] | None = None

    def restore(self, teacher: VideoModel, student: VideoModel) -> None:
        """Put the teacher and the student back at this member's best epoch (a student on the teacher's
        output layer shares it, so members are restored, and used, one at a time)."""
        if self.teacher_state is not None:
            teacher.load_state_dict(self.teacher_state)
            student.load_state_dict(self.student_state)


class _Stream:
    """A random stream of its own: torch's generators swapped in for the forward passes that draw from it."""

    def __init__(self, seed: int, device: torch.device):
        self.devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=self.devices):
            torch.manual_seed(seed)
            self.cpu, self.cuda = self._states()

    def _states(self):
        return torch.get_rng_state(), torch.cuda.get_rng_state(self.devices[0]) if self.devices else None

    @contextmanager
    def drawing(self) -> Iterator[None]:
        with torch.random.fork_rng(devices=self.devices):
            torch.set_rng_state(self.cpu)
            if self.devices:
                torch.cuda.set_rng_state(self.cuda, self.devices[0])
            yield
            self.cpu, self.cuda = self._states()


class _Group(nn.Module):
    """The teacher and the students as one module: one optimiser steps them all."""

    def __init__(self, teacher: VideoModel, members: list[Member]):
        super().__init__()
        self.teacher, self.students = teacher, nn.ModuleList(m.student for m in members)
        for member in members:
            if member.shared_classifier:
                member.student.classifier = teacher.classifier  # owned (and trained) by the teacher


def train_parallel_group(teacher: VideoModel, members: list[Member], train: Iterable[VideoBatch],
                         val: Iterable[VideoBatch], config: TrainConfig) -> list[MemberResult]:
    """Train `teacher` (LCE on all frames) and every member's student (on the frames its selection keeps of
    the same batches) jointly; a member's result and epochs are what `train_parallel` would give it alone,
    but for the random streams. The members' stages must have the same epochs (the teacher's Adam and
    schedule restart with each stage)."""
    _check(teacher, members, config)
    device = config.torch_device()
    group = _Group(teacher, members).to(device)
    precision = Precision(device, config.precision)
    streams = [_Stream(config.seed, device)] + [_Stream(m.seed, device) for m in members]
    records = [MemberResult(TrainResult(best_epoch=0, gap=-1.0, map=0.0)) for _ in members]
    started, epoch = time.perf_counter(), 0
    for index, stage in enumerate(members[0].stages):
        params, optimizer, schedule = stage_optimizer(group, (), config)
        for _ in range(stage.epochs or config.epochs):
            epoch += 1
            epoch_start = time.perf_counter()
            mean = _train_epoch(group, members, streams, index, train, epoch, precision, optimizer, params, config)
            schedule.step()
            _ended(group, members, records, val, device, config, stage.name, epoch, mean, epoch_start)
    for record in records:
        record.result.train_seconds = time.perf_counter() - started
        record.result.precision = precision.name
    return records


def _check(teacher: VideoModel, members: list[Member], config: TrainConfig) -> None:
    if not members:
        raise WorkloadError("a parallel group needs at least one student")
    if len(members) > 1 and config.max_grad_norm:
        raise WorkloadError("clipping the gradients' joint norm would couple a group's students: "
                            "train them one at a time (max_grad_norm is set)")
    epochs = {tuple(stage.epochs or config.epochs for stage in m.stages) for m in members}
    if len(epochs) > 1:
        raise WorkloadError(f"a parallel group's students must train in stages of the same epochs, "
                            f"got {sorted(epochs)}")
    for member in members:
        matches = any(stage.objective.needs_intermediates for stage in member.stages)
        if matches and not (member.student.supports_intermediates and teacher.supports_intermediates):
            raise WorkloadError(f"{type(member.student).__name__} has no intermediate states to match")


def _train_epoch(group: _Group, members: list[Member], streams: list[_Stream], stage: int, train, epoch: int,
                 precision: Precision, optimizer, params, config: TrainConfig) -> Mean:
    """One epoch's optimiser steps over the whole group. Each member's parts, and its loss as a pair alone
    would report it (the teacher's loss and L2 with its own), are kept under its index."""
    set_epoch(train, epoch - 1)
    group.train()
    mean = Mean()
    penalty = config.regularization_penalty * config.l2_penalty / 2

    def l2(module: nn.Module) -> torch.Tensor:  # the paper's L2 on a model's output layer (`workloads.train`)
        zero = torch.zeros((), device=precision.device)
        return penalty * sum((w.float().pow(2).sum() for w in output_weights(module)), zero)

    for batch in train:
        batch = batch.to(precision.device)
        with streams[0].drawing(), precision.autocast():
            t_out = group.teacher(batch.frames, batch.mask, batch.positions)
            teacher_loss, parts = teacher_objective(t_out, batch.labels)
        teacher_l2 = l2(group.teacher)
        total = teacher_loss + teacher_l2
        for i, (member, stream) in enumerate(zip(members, streams[1:])):
            with stream.drawing(), precision.autocast():
                loss, own = student_losses(group.teacher, t_out, member.student, batch, member.selection,
                                           member.stages[stage].objective, member.shared_classifier, member.targets)
            # Its own output layer is penalised too; a shared one is the teacher's, penalised once.
            own_l2 = torch.zeros((), device=precision.device) if member.shared_classifier else l2(member.student)
            total = total + loss + own_l2
            alone = teacher_loss + teacher_l2 + loss + own_l2  # the loss the pair alone would report
            if penalty:
                own = {**own, "l2": float((teacher_l2 + own_l2).detach())}
            parts |= {f"{i}:{k}": v for k, v in own.items()} | {f"{i}:loss": float(alone.detach())}
        precision.step(total, optimizer, params, config.max_grad_norm)
        mean.add(float(total.detach()), parts)
    return mean


def _ended(group: _Group, members: list[Member], records: list[MemberResult], val, device: torch.device,
           config: TrainConfig, stage: str, epoch: int, mean: Mean, epoch_start: float) -> None:
    """Score every member on validation (the teacher once), keep each one's new best, hand each its epoch."""
    teacher = evaluate(group.teacher, val, device, precision=config.precision)
    losses = mean.losses()
    shared = {k: v for k, v in losses.items() if k.startswith("teacher_")}
    teacher_state = None  # one copy of the teacher's weights serves every member this epoch is best for
    for i, (member, record) in enumerate(zip(members, records)):
        scores = evaluate(member.student, val, device, selection=member.selection, precision=config.precision)
        own = {k.split(":", 1)[1]: v for k, v in losses.items() if k.startswith(f"{i}:")}
        metrics = EpochMetrics(epoch, stage, own.pop("loss"), shared | own, scores.gap, scores.map,
                               time.perf_counter() - epoch_start, teacher.gap, teacher.map)
        record.result.history.append(metrics)
        if scores.gap > record.result.gap:
            teacher_state = teacher_state or on_cpu(group.teacher.state_dict())
            record.result.best_epoch, record.result.gap, record.result.map = epoch, scores.gap, scores.map
            record.student_state, record.teacher_state = on_cpu(member.student.state_dict()), teacher_state
        if member.on_epoch:
            member.on_epoch(metrics)
