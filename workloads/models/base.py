"""The model interface, the family registry, and the pieces the families share."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from workloads.errors import WorkloadError


class ModelOutput(NamedTuple):
    """What every model returns.

    representation: (batch, d) E, the input of the classifier head.
    intermediates: (batch, steps, d) the running representation after each step of the model's own
        structure (H-RNN: each block), or None for families without one.
    intermediate_positions: (batch, steps) int64 frame index (in the original video) of the last frame
        each intermediate has seen, -1 where a video has no such step; None with intermediates None.
    logits: (batch, classes) pre-sigmoid scores; probabilities are sigmoid(logits).
    """

    representation: torch.Tensor
    intermediates: torch.Tensor | None
    intermediate_positions: torch.Tensor | None
    logits: torch.Tensor


INTERMEDIATE_POINTS = ("block_ends", "frames")


class VideoModel(nn.Module):
    """A family's encoder plus a classifier head that a student can take over from its teacher.

    Subclasses implement `encode(frames, mask, positions)` -> (representation, intermediates,
    intermediate_positions) and list the submodules that run once per frame in `frame_modules`
    (the FLOPs counter attributes their multiply-adds to `frame_macs`).
    """

    frame_modules: tuple[str, ...] = ()
    supports_intermediates = False
    # Where a family with intermediates (H-RNN) has them, as a student matching its teacher's reads them:
    # "block_ends" (the state after each block, cheap: the encoder has it anyway) or "frames" (the running
    # state after each input frame but the last, Eq. 3's i = j, 2j, ..., N - j; computed while training only).
    intermediate_points = "block_ends"

    def __init__(self, classifier: nn.Module, representation_dim: int, dropout: float):
        super().__init__()
        self.classifier = classifier
        self.representation_dim = representation_dim
        self.dropout = nn.Dropout(dropout)

    def encode(self, frames, mask, positions):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, frames: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None) -> ModelOutput:
        """frames (batch, F, 1152) float, mask (batch, F) bool with valid frames first, positions (batch, F)
        int64 frame indices in the original video (default 0..F-1)."""
        if positions is None:
            positions = torch.arange(frames.shape[1], device=frames.device).expand(frames.shape[0], -1)
        representation, intermediates, intermediate_positions = self.encode(frames, mask, positions)
        logits = self.classifier(self.dropout(representation))
        return ModelOutput(representation, intermediates, intermediate_positions, logits)

    def final_representation(self, frames: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """E alone, which is all inference needs; a family whose intermediates cost time overrides it."""
        return self.encode(frames, mask, positions)[0]

    def predict_logits(self, frames: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """The logits of `forward`, without computing what only training reads (the intermediates)."""
        if positions is None:
            positions = torch.arange(frames.shape[1], device=frames.device).expand(frames.shape[0], -1)
        return self.classifier(self.dropout(self.final_representation(frames, mask, positions)))

    def match_intermediates_at(self, points: str) -> None:
        """Where this model's intermediates lie: one of INTERMEDIATE_POINTS."""
        if points not in INTERMEDIATE_POINTS:
            raise WorkloadError(f"intermediate points are one of {', '.join(INTERMEDIATE_POINTS)}, got {points!r}")
        if points != "block_ends" and not self.supports_intermediates:
            raise WorkloadError(f"{type(self).__name__} has no intermediate states")
        self.intermediate_points = points

    def intermediate_positions(self, input_positions: np.ndarray) -> np.ndarray:
        """Positions (in the video) of this model's intermediates for a video whose input frames sit at
        `input_positions`: the `intermediate_positions` that `forward` would return, without running it."""
        raise WorkloadError(f"{type(self).__name__} has no intermediate states")

    def share_classifier(self, teacher: "VideoModel") -> None:
        """Take over the teacher's output layer (the same module, as in the paper)."""
        if teacher.representation_dim != self.representation_dim:
            raise WorkloadError(
                f"cannot share a classifier between representations of {teacher.representation_dim} "
                f"and {self.representation_dim} dimensions"
            )
        self.classifier = teacher.classifier


# --- classifier heads -------------------------------------------------------------------------------


class LogisticClassifier(nn.Module):
    def __init__(self, input_dim: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(input_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class MoeClassifier(nn.Module):
    """The YouTube-8M starter code's mixture of experts: per class, softmax gates over `mixtures` sigmoid
    experts plus an always-zero expert. Returns logits of the mixed probability."""

    def __init__(self, input_dim: int, num_classes: int, mixtures: int = 2, eps: float = 1e-6):
        super().__init__()
        self.num_classes, self.mixtures, self.eps = num_classes, mixtures, eps
        self.gates = nn.Linear(input_dim, num_classes * (mixtures + 1))
        self.experts = nn.Linear(input_dim, num_classes * mixtures)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = torch.softmax(self.gates(x).view(-1, self.num_classes, self.mixtures + 1), dim=-1)
        experts = torch.sigmoid(self.experts(x).view(-1, self.num_classes, self.mixtures))
        probabilities = (gates[..., : self.mixtures] * experts).sum(-1)
        return torch.logit(probabilities, eps=self.eps)


CLASSIFIERS: dict[str, Callable[..., nn.Module]] = {
    "logistic": lambda input_dim, num_classes, mixtures: LogisticClassifier(input_dim, num_classes),
    "moe": lambda input_dim, num_classes, mixtures: MoeClassifier(input_dim, num_classes, mixtures),
}


def build_classifier(name: str, input_dim: int, num_classes: int, mixtures: int) -> nn.Module:
    if name not in CLASSIFIERS:
        raise WorkloadError(f"unknown classifier {name!r}; known: {', '.join(sorted(CLASSIFIERS))}")
    return CLASSIFIERS[name](input_dim, num_classes, mixtures)


# --- shared layers ------------------------------------------------------------------------------------


class ContextGating(nn.Module):
    """x * sigmoid(BN(W x)) (WILLOW), or through a bottleneck of dim // reduction (NeXtVLAD's SE gating)."""

    def __init__(self, dim: int, reduction: int = 1):
        super().__init__()
        if reduction == 1:
            self.gate = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim))
        else:
            self.gate = nn.Sequential(
                nn.Linear(dim, dim // reduction, bias=False),
                nn.BatchNorm1d(dim // reduction),
                nn.ReLU(),
                nn.Linear(dim // reduction, dim, bias=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.gate(x))


class MaskedBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the valid frames only, so padding never moves the statistics or the outputs.

    Input (batch, F, C) with mask (batch, F); padded positions come out as zeros.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = torch.zeros_like(x)
        out[mask] = super().forward(x[mask])
        return out


# --- the registry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    name: str
    config_type: type
    sizes: dict[str, dict[str, Any]]
    build: Callable[..., VideoModel]


FAMILIES: dict[str, Family] = {}


def register_family(name: str, config_type: type, sizes: dict[str, dict[str, Any]]):
    """Class decorator: `@register_family("hrnn", HRNNConfig, {"paper": {...}, "small": {...}})`; the
    class is built as `cls(config, num_classes, k)`."""

    def add(cls):
        if name in FAMILIES:
            raise ValueError(f"model family {name!r} is registered twice")
        FAMILIES[name] = Family(name, config_type, sizes, cls)
        return cls

    return add


def find_family(name: str) -> Family:
    """The registered family `name`."""
    if name not in FAMILIES:
        raise WorkloadError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def family_config(family: str, size: str, **overrides: Any):
    """The typed configuration of `family` at `size`, with `overrides` (unknown keys are errors)."""
    spec = find_family(family)
    if size not in spec.sizes:
        raise WorkloadError(f"unknown size {size!r} for {family!r}; known: {', '.join(sorted(spec.sizes))}")
    known = {f.name for f in dataclasses.fields(spec.config_type)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise WorkloadError(f"unknown {family} model setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return spec.config_type(**{**spec.sizes[size], **overrides})


@dataclass(frozen=True)
class ModelSpec:
    """Which model: a registered family at a named size, with some of its settings overridden."""

    family: str
    size: str
    overrides: tuple[tuple[str, Any], ...] = ()

    def config(self):
        return family_config(self.family, self.size, **dict(self.overrides))

    def build(self, num_classes: int, k: int | None = None) -> VideoModel:
        """The model for `num_classes`; `k` is the number of frames a student sees (None for a model that
        sees every frame)."""
        config = self.config()  # names an unknown family, size or setting
        return FAMILIES[self.family].build(config, num_classes, k)


def build_model(family: str, size: str, num_classes: int, k: int | None = None, **overrides: Any) -> VideoModel:
    """A `family` model at `size` for `num_classes`; `k` is the number of frames a student sees (None for a
    model that sees every frame)."""
    return ModelSpec(family, size, tuple(overrides.items())).build(num_classes, k)
