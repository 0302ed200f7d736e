"""A teacher and its student trained jointly, as one module: the paper's parallel training.

The teacher learns from the labels (LCE on all frames); the student sees the frames a selection keeps of
the same batch and learns from the teacher's outputs of that batch. One module, so that one optimiser,
one state dict (checkpoints) and one DistributedDataParallel wrapper (data parallelism) hold both.

The student's output layer is either the teacher's (`shared`, the paper's text) or its own (the authors'
code). Shared, the student reaches it through detached copies of its parameters: the student's losses
train the student's encoder only, and the layer learns from the teacher's LCE alone, so the teacher
trains exactly as the skyline does. Its own, the layer learns from the student's LCE and Lpred, so a
variant needs one of them (Lrep alone would leave it untrained).

The student's targets (E_T, P_T, I_T) come from the teacher's training forward pass, dropout on (`train`,
one pass: the authors' joint graph), or from a second pass in evaluation mode without gradients (`eval`:
what a serial student's cached targets are).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.func import functional_call

from workloads.data.batch import FrameSelection, VideoBatch, subsample
from workloads.errors import WorkloadError
from workloads.losses import Objective, TeacherTargets
from workloads.models import ModelOutput, VideoModel
from workloads.variants import classifier_stages

_TEACHER_OBJECTIVE = classifier_stages()[0].objective
TARGET_MODES = ("train", "eval")


class ParallelPair(nn.Module):
    """`teacher` and `student`, the student's output layer the teacher's (`shared`) or its own;
    `forward(batch, objective)` gives (teacher loss, student loss, parts)."""

    def __init__(self, teacher: VideoModel, student: VideoModel, selection: FrameSelection, shared: bool = True,
                 targets: str = "train"):
        super().__init__()
        if targets not in TARGET_MODES:
            raise WorkloadError(f"a parallel pair's targets come from the teacher in {' or '.join(TARGET_MODES)} "
                                f"mode, got {targets!r}")
        self.teacher, self.student, self.selection, self.shared, self.targets = teacher, student, selection, shared, targets
        if shared:
            student.classifier = teacher.classifier  # owned (and trained) by the teacher

    def forward(self, batch: VideoBatch, objective: Objective):
        return parallel_losses(self.teacher, self.student, batch, self.selection, objective, self.shared, self.targets)


def parallel_losses(
    teacher: VideoModel,
    student: VideoModel,
    batch: VideoBatch,
    selection: FrameSelection,
    objective: Objective,
    shared: bool = True,
    targets: str = "train",
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """(teacher LCE, student loss, parts) for one all-frames batch.

    The student's targets are detached from the teacher, and a student sharing the teacher's classifier
    reaches it through detached copies of its parameters: gradients of the student loss stop at the student.
    """
    t_out = teacher(batch.frames, batch.mask, batch.positions)
    teacher_loss, teacher_parts = teacher_objective(t_out, batch.labels)
    student_loss, student_parts = student_losses(teacher, t_out, student, batch, selection, objective, shared, targets)
    parts = teacher_parts | student_parts
    return teacher_loss, student_loss, parts


def teacher_objective(t_out: ModelOutput, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The teacher's loss, LCE on all frames, and its parts named as a pair reports them."""
    loss, parts = _TEACHER_OBJECTIVE(t_out, labels)
    return loss, {f"teacher_{k}": v for k, v in parts.items()}


def student_losses(
    teacher: VideoModel,
    t_out: ModelOutput,
    student: VideoModel,
    batch: VideoBatch,
    selection: FrameSelection,
    objective: Objective,
    shared: bool = True,
    targets: str = "train",
) -> tuple[torch.Tensor, dict[str, float]]:
    """The student's loss on the frames `selection` keeps of `batch`, against the teacher's `t_out` of the
    whole batch (or, for `eval` targets, a second pass of the teacher), and its parts."""
    student_batch = subsample(batch, selection)
    if shared:
        s_out = _student_forward(student, teacher, student_batch)
    else:
        s_out = student(student_batch.frames, student_batch.mask, student_batch.positions)
    with _mode(teacher, targets):
        source = t_out if targets == "train" else teacher(batch.frames, batch.mask, batch.positions)
        intermediates = None
        if objective.needs_intermediates:
            intermediates = teacher.states_at(batch.frames, batch.mask, batch.positions,
                                              s_out.intermediate_positions).detach()
    made = TeacherTargets(source.representation.detach().float(), torch.sigmoid(source.logits.detach().float()),
                          intermediates)
    return objective(s_out, batch.labels, made)


@contextmanager
def _mode(teacher: VideoModel, targets: str) -> Iterator[None]:
    """Where the targets are made: as the teacher trains, or in evaluation mode without gradients."""
    if targets == "train":
        yield
        return
    teacher.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        teacher.train()


def _student_forward(student: VideoModel, teacher: VideoModel, batch: VideoBatch) -> ModelOutput:
    representation, intermediates, positions = student.encode(batch.frames, batch.mask, batch.positions)
    frozen = {name: p.detach() for name, p in teacher.classifier.named_parameters()}
    frozen |= dict(teacher.classifier.named_buffers())
    logits = functional_call(teacher.classifier, frozen, (student.dropout(representation),))
    return ModelOutput(representation, intermediates, positions, logits)
