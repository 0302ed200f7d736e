"""What a training loop reports: each epoch's metrics, the final result, and the `Progress` it resumes from.

A `Progress` saved with `torch.save` is read back by `load_progress`, torch's weights-only unpickler with
only this module's three records allowed, so a checkpoint in a shared store cannot run code in whoever
resumes from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch


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
    gap: float  # validation GAP and mAP of the best epoch
    map: float
    history: list[EpochMetrics] = field(default_factory=list)
    train_seconds: float = 0.0
    precision: str = "float32"  # what the loop's math ran at (`workloads.precision.Precision.name`)


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
    containers and this module's three records, never a global outside them."""
    with torch.serialization.safe_globals([Progress, TrainResult, EpochMetrics]):
        return torch.load(source, weights_only=True)


def on_cpu(value):
    """A copy of a (nested) state dict with its tensors on the CPU: the live one changes with every step."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_cpu(v) for v in value)
    return value


def announce_start(on_epoch: EpochCallback | None) -> None:
    """Tell whoever listens on `on_epoch` that the job runs now (a callback with a `started` method: the
    grid's driver begins the job's MLflow run then, not when it was queued); other callbacks are not told."""
    started = getattr(on_epoch, "started", None)
    if callable(started):
        started()
