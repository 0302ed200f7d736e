"""The paper's losses, one function each in a registry, and their weighted sum declared in config.

Every loss returns a scalar: summed over its feature or class dimension, averaged over the batch.

- `ce`: LCE, the sum over classes of per-class sigmoid cross entropies.
- `rep`: Lrep = ||E_T - E_S||^2.
- `rep_intermediate`: Lrep^I = sum over the student's intermediate steps of ||I_T - I_S||^2, the teacher's
  intermediates taken at the student's frame positions (`TeacherTargets.intermediates`).
- `pred`: Lpred = d(P_T, P_S) with d = `kl` (KL(teacher || student) of the per-class Bernoulli
  distributions, summed over classes, as in the authors' code) or `mse` (squared error of probabilities).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from workloads.errors import WorkloadError
from workloads.models import ModelOutput

PRED_DISTANCES = ("kl", "mse")


class TeacherTargets(NamedTuple):
    """What a student learns from, per video of the batch: E_T (batch, d), P_T (batch, classes) and,
    for intermediate matching, I_T (batch, steps, d) at the student's intermediate positions."""

    representation: torch.Tensor
    probabilities: torch.Tensor
    intermediates: torch.Tensor | None = None


@dataclass(frozen=True)
class LossContext:
    labels: torch.Tensor
    teacher: TeacherTargets | None
    pred_distance: str = "kl"


LossFn = Callable[[ModelOutput, LossContext], torch.Tensor]
LOSSES: dict[str, LossFn] = {}
NEEDS_TEACHER: set[str] = set()
READS_OUTPUT: set[str] = set()  # losses of the model's output layer (its logits), not only its representation


def register_loss(name: str, needs_teacher: bool = False, reads_output: bool = False) -> Callable[[LossFn], LossFn]:
    def add(fn: LossFn) -> LossFn:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is registered twice")
        LOSSES[name] = fn
        if needs_teacher:
            NEEDS_TEACHER.add(name)
        if reads_output:
            READS_OUTPUT.add(name)
        return fn

    return add


@register_loss("ce", reads_output=True)
def cross_entropy(out: ModelOutput, ctx: LossContext) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(out.logits.float(), ctx.labels, reduction="sum") / ctx.labels.shape[0]


@register_loss("rep", needs_teacher=True)
def representation(out: ModelOutput, ctx: LossContext) -> torch.Tensor:
    diff = out.representation.float() - ctx.teacher.representation
    return diff.pow(2).sum(-1).mean()


@register_loss("rep_intermediate", needs_teacher=True)
def representation_intermediate(out: ModelOutput, ctx: LossContext) -> torch.Tensor:
    if out.intermediates is None or ctx.teacher.intermediates is None:
        raise WorkloadError("rep_intermediate needs a model with intermediates and the teacher's intermediates")
    valid = (out.intermediate_positions >= 0).unsqueeze(-1)
    diff = (out.intermediates.float() - ctx.teacher.intermediates) * valid
    return diff.pow(2).sum((-1, -2)).mean()


@register_loss("pred", needs_teacher=True, reads_output=True)
def prediction(out: ModelOutput, ctx: LossContext) -> torch.Tensor:
    target = ctx.teacher.probabilities
    if ctx.pred_distance == "mse":
        return (torch.sigmoid(out.logits.float()) - target).pow(2).sum(-1).mean()
    # KL(t || s) = t log t + (1-t) log(1-t) - [t log s + (1-t) log(1-s)]: the teacher's entropy term
    # does not depend on the student, the rest is a cross entropy on the student's logits.
    eps = 1e-7
    t = target.clamp(eps, 1 - eps)
    entropy = t * t.log() + (1 - t) * (1 - t).log()
    cross = F.binary_cross_entropy_with_logits(out.logits.float(), t, reduction="none")
    return (entropy + cross).sum(-1).mean()


@dataclass(frozen=True)
class Objective:
    """A weighted sum of registered losses, e.g. Objective({"rep": 1, "pred": 0.01, "ce": 1})."""

    weights: dict[str, float] = field(default_factory=lambda: {"ce": 1.0})
    pred_distance: str = "kl"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(LOSSES))
        if unknown:
            raise WorkloadError(f"unknown loss(es) {', '.join(unknown)}; known: {', '.join(sorted(LOSSES))}")
        if not self.weights or all(w == 0 for w in self.weights.values()):
            raise WorkloadError("an objective needs at least one loss with a non-zero weight")
        if any(w < 0 for w in self.weights.values()):
            raise WorkloadError(f"loss weights must be >= 0, got {self.weights}")
        if self.pred_distance not in PRED_DISTANCES:
            raise WorkloadError(f"pred distance must be one of {PRED_DISTANCES}, got {self.pred_distance!r}")

    @classmethod
    def parse(cls, spec: str, weights: dict[str, float] | None = None, pred_distance: str = "kl") -> "Objective":
        """'rep+pred+ce' -> Objective with weight 1 for each term unless `weights` says otherwise."""
        names = [name.strip() for name in spec.split("+") if name.strip()]
        weights = weights or {}
        return cls({name: float(weights.get(name, 1.0)) for name in names}, pred_distance)

    @property
    def needs_teacher(self) -> bool:
        return any(name in NEEDS_TEACHER and w for name, w in self.weights.items())

    @property
    def trains_output(self) -> bool:
        """Whether a term reads the output layer: a stage of Lrep alone leaves it (and its L2) alone."""
        return any(name in READS_OUTPUT and w for name, w in self.weights.items())

    @property
    def needs_intermediates(self) -> bool:
        return bool(self.weights.get("rep_intermediate"))

    def __call__(self, out: ModelOutput, labels: torch.Tensor, teacher: TeacherTargets | None = None):
        """(total, {name: value}) over the terms with a non-zero weight."""
        if self.needs_teacher and teacher is None:
            raise WorkloadError(f"objective {self.name} needs the teacher's outputs")
        ctx = LossContext(labels=labels, teacher=teacher, pred_distance=self.pred_distance)
        parts = {name: LOSSES[name](out, ctx) for name, w in self.weights.items() if w}
        total = sum(self.weights[name] * value for name, value in parts.items())
        return total, {name: float(value.detach()) for name, value in parts.items()}

    @property
    def name(self) -> str:
        return "+".join(self.weights)
