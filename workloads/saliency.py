"""Frames chosen by what they show: a cheap scorer rates every frame, and the student reads the k frames it
rates highest, in time order.

Which, and why. SCSampler (Korbar, Tran and Torresani, ICCV 2019) rates every clip with a sampler far
cheaper than the classifier and runs the classifier on the top-rated ones only. We keep its shape and train
the sampler from the teacher cache, so no teacher is recomputed: each frame alone learns to predict the
teacher's prediction for its whole video (P_T, binary cross-entropy on the soft targets). A frame that shows
one of the video's classes can predict it; a background frame cannot and stays near the mean prediction,
so a frame's saliency is how far its most-raised class probability lies above that class's mean over the
training frames. (Saliency as the highest probability, SCSampler's, tells labelled frames from background
ones far worse on the synthetic data: the frequent classes' priors are high.) Trained alone from cached
targets it costs seconds; relaxed top-k or policy-gradient selection trained with the student (AdaFrame)
needs the student in the loop and is not built here.

The scorer is two narrow layers over a frame's 1152 features, the first a learned cheap projection to 32
dimensions by default (`ScorerSettings.width`, which a preset and a search may set): 1152 x 32 + 32 x
classes multiply-adds a frame (8% of a small H-RNN student's per-frame work at 20 classes; 160 k at
YouTube-8M's 3,862, so 48 M over 300 frames, 6% of a paper-size 30-frame student's pass). It reads every
frame of a video, and the cell's multiply-adds count that (`ContentSelector.macs`).

Two rules pick from the scores (`RULES`, `@register_rule`): `salient` takes the k highest (SCSampler);
`salient_segments` cuts the video into k equal segments and takes the highest of each, so every part of the
video is still looked at and only the frame within each part is chosen by content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from workloads.data.batch import VideoBatch, of_tensors, take
from workloads.data.format import FEATURE_DIM
from workloads.errors import WorkloadError
from workloads.teacher_outputs import TeacherSource

WIDTH = 32  # the scorer's one hidden layer: 1152 x 32 multiply-adds per frame, a learned cheap projection

Rule = Callable[[np.ndarray, int], np.ndarray]  # (scores of a video's frames, k) -> sorted frame indices
RULES: dict[str, Rule] = {}


def register_rule(name: str) -> Callable[[Rule], Rule]:
    def add(fn: Rule) -> Rule:
        if name in RULES:
            raise ValueError(f"content selection rule {name!r} is registered twice")
        RULES[name] = fn
        return fn

    return add


@register_rule("salient")
def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The k highest-scoring frames (the earlier on a tie)."""
    return np.sort(np.argsort(-scores, kind="stable")[:k]).astype(np.int64)


@register_rule("salient_segments")
def best_of_segments(scores: np.ndarray, k: int) -> np.ndarray:
    """The highest-scoring frame of each of k equal segments (a video of n <= k frames: all of them)."""
    n = scores.size
    if n <= k:
        return np.arange(n, dtype=np.int64)
    bounds = (np.arange(k + 1) * n) // k
    return np.array([a + int(np.argmax(scores[a:b])) for a, b in zip(bounds[:-1], bounds[1:])], dtype=np.int64)


def check_rule(name: str) -> None:
    if name not in RULES:
        raise WorkloadError(f"unknown content selection {name!r}; known: {', '.join(sorted(RULES))}")


class FrameScorer(nn.Module):
    """Rates each frame from its features alone: a narrow two-layer network's logits over the classes.
    A frame's saliency is how far its most-raised class probability lies above that class's mean over the
    training frames (`prior`, set by `train_scorer`): a background frame predicts about the prior."""

    def __init__(self, num_classes: int, width: int = WIDTH):
        super().__init__()
        # Normalised per frame (element-wise, uncounted): the dequantised features are small.
        self.net = nn.Sequential(nn.LayerNorm(FEATURE_DIM, elementwise_affine=False), nn.Linear(FEATURE_DIM, width),
                                 nn.ReLU(), nn.Linear(width, num_classes))
        self.register_buffer("prior", torch.zeros(num_classes))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames)

    @torch.no_grad()
    def saliency(self, batch: VideoBatch) -> torch.Tensor:
        """(batch, F): each frame's largest rise of a class probability above the prior, -inf on padding;
        computed where the scorer is (a reader's batch may still be on the CPU)."""
        was_training = self.training
        self.eval()
        device = self.prior.device
        scores = (torch.sigmoid(self(batch.frames.to(device).float())) - self.prior).amax(dim=-1)
        self.train(was_training)
        return scores.masked_fill(~batch.mask.to(device), float("-inf"))

    @property
    def frame_macs(self) -> int:
        """Multiply-adds per frame of the two layers."""
        return sum(m.in_features * m.out_features for m in self.net if isinstance(m, nn.Linear))


@dataclass(frozen=True)
class ScorerSettings:
    """The frame scorer's shape and training, which a preset's `content.scorer` and a search may set: its
    width prices every frame it reads, so it trades the selector's own cost against how well it picks."""

    width: int = WIDTH
    epochs: int = 4
    learning_rate: float = 0.003
    frames_per_video: int = 32  # frames drawn per video and epoch: a video's frames are alike within a shot

    def __post_init__(self) -> None:
        for name in ("width", "epochs", "frames_per_video"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise WorkloadError(f"the frame scorer's {name} must be an integer >= 1, got {value!r}")
        if not self.learning_rate > 0:
            raise WorkloadError(f"the frame scorer's learning_rate must be > 0, got {self.learning_rate!r}")

    def build(self, num_classes: int) -> FrameScorer:
        return FrameScorer(num_classes, self.width)


def train_scorer(scorer: FrameScorer, teacher: TeacherSource, data: Iterable[VideoBatch], settings: ScorerSettings,
                 device: torch.device, seed: int = 0) -> list[float]:
    """Teach `scorer` to predict, from each frame alone, the teacher's prediction for the frame's video, on
    all-frames batches of the training split; returns each epoch's mean loss."""
    scorer.to(device).train()
    optimizer = torch.optim.Adam(scorer.parameters(), lr=settings.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for epoch in range(settings.epochs):
        if hasattr(data, "set_epoch"):
            data.set_epoch(epoch)
        total, count = 0.0, 0
        for batch in data:
            batch = batch.to(device)
            frames, mask = _drawn(batch, settings.frames_per_video, generator)
            targets = teacher.targets(batch.ids, device).probabilities
            logits = scorer(frames)
            each = nn.functional.binary_cross_entropy_with_logits(
                logits, targets[:, None, :].expand_as(logits), reduction="none").mean(-1)
            loss = each[mask].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + float(loss.detach()) * len(batch.ids), count + len(batch.ids)
        if not count:
            raise WorkloadError("the frame scorer's training data is empty")
        losses.append(total / count)
    scorer.prior.copy_(_mean_prediction(scorer, data, device))
    scorer.eval()
    return losses


@torch.no_grad()
def _mean_prediction(scorer: FrameScorer, data: Iterable[VideoBatch], device: torch.device) -> torch.Tensor:
    """Each class's probability averaged over every frame of `data`."""
    scorer.eval()
    total, frames = 0.0, 0
    for batch in data:
        batch = batch.to(device)
        total = total + torch.sigmoid(scorer(batch.frames[batch.mask])).sum(0)
        frames += int(batch.mask.sum())
    return total / max(frames, 1)


def _drawn(batch: VideoBatch, per_video: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_video` frames of each video drawn at random (with repeats on short videos) and their mask."""
    lengths = batch.mask.sum(1).clamp(min=1)
    draws = (torch.rand(len(batch.ids), per_video, generator=generator).to(lengths.device) * lengths[:, None]).long()
    frames = batch.frames.gather(1, draws.unsqueeze(-1).expand(-1, -1, batch.frames.shape[-1]))
    return frames, batch.mask.any(1, keepdim=True).expand(-1, per_video)


@dataclass
class ContentSelector:
    """A trained scorer and a rule: which k frames of each video of an all-frames batch a student reads."""

    scorer: FrameScorer
    rule: str
    k: int

    def __post_init__(self) -> None:
        check_rule(self.rule)
        if self.k < 1:
            raise WorkloadError(f"a content selection needs k >= 1, got {self.k}")

    def picks(self, batch: VideoBatch) -> list[np.ndarray]:
        """Each video's chosen frames, as slots of the batch (of an all-frames batch: frame indices)."""
        scores = self.scorer.saliency(batch).cpu().numpy()
        lengths = batch.mask.sum(1).tolist()
        return [RULES[self.rule](row[: int(n)], self.k) for row, n in zip(scores, lengths)]

    def pick(self, batch: VideoBatch) -> VideoBatch:
        """The batch cut to each video's chosen frames, in time order (an all-frames batch: slot = frame)."""
        return take(batch, self.picks(batch), self.k)

    def macs(self, frames: int) -> int:
        """What choosing costs on a video of `frames` frames: the scorer over every one of them."""
        return self.scorer.frame_macs * frames


class ContentSelected:
    """All-frames batches of `shards`, each cut to the frames `selector` picks: what a content-selecting
    student reads, as any reader of selected frames would give it (epochs pass through)."""

    def __init__(self, shards, selector: ContentSelector):
        self.shards, self.selector = shards, selector

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.shards, "set_epoch"):
            self.shards.set_epoch(epoch)

    def __iter__(self) -> Iterator[VideoBatch]:
        for batch in self.shards:
            yield self.selector.pick(batch)


class ContentStudent(nn.Module):
    """A student with its frame scorer, as a trained model leaves the grid: handed every frame of a video,
    it picks the video's k frames by content and predicts from them (what `predict` and a server run)."""

    def __init__(self, student: nn.Module, scorer: FrameScorer, rule: str, k: int):
        super().__init__()
        self.student, self.scorer = student, scorer
        self.selector = ContentSelector(scorer, rule, k)

    def _picked(self, frames: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None) -> VideoBatch:
        return self.selector.pick(of_tensors(frames, mask, positions))

    def read(self, frames: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None):
        """(logits, frames its student read of each video: the k picked; its scorer read them all)."""
        picked = self._picked(frames, mask, positions)
        return self.student.predict_logits(picked.frames, picked.mask, picked.positions), picked.mask.sum(1)

    def predict_logits(self, frames: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None):
        return self.read(frames, mask, positions)[0]

    def forward(self, frames: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None):
        picked = self._picked(frames, mask, positions)
        return self.student(picked.frames, picked.mask, picked.positions)
