"""Reading only as many frames as each video needs: the paper's own next step ("we simply select frames
uniformly"), as FrameExit (Ghodrati et al. 2021) and AdaFrame (Wu et al. 2019) stop per video.

A k-frame student reads its k uniform frames in a coarse-to-fine order: the first m of the order cover the
video evenly for every m (the van der Corput order of the k slots: 0, k/2, k/4, 3k/4, ...), so every prefix
is itself a spread-out selection. After each step (m in `steps`, the last being k) the student predicts from
the frames read so far, in time order. A video stops at the first step whose prediction moved less than a
threshold since the step before (the largest change of the probabilities of its top 20 classes), or when
all k are read. The threshold is calibrated on the validation split: the one that reads fewest frames on
average while its validation GAP stays within a tolerance of reading all k (`calibrate`); the test split
then reports GAP against mean frames read and mean multiply-adds (`curve`), for every threshold.

`AdaptiveStudent` is the reading as a product: a registered model that stops per video by the calibrated
threshold, runs each step on the videos still reading only, and says how many frames each read.

Multiply-adds are counted as the loop runs them: each step runs the student again over the frames read so
far (a recurrent student's blocks change as frames are inserted between them), so a video stopping at
step s costs the sum of steps 1..s, per-frame work for the frames of each step plus the per-video work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from workloads.data.batch import FrameSelection, VideoBatch, of_tensors, subsample, take
from workloads.errors import WorkloadError
from workloads.flops import ModelCost
from workloads.metrics import TOP_K, TopKAccumulator
from workloads.models import VideoModel


def coarse_to_fine(k: int) -> np.ndarray:
    """A permutation of range(k) whose every prefix is spread over the k slots (van der Corput order)."""
    if k < 1:
        raise WorkloadError(f"k must be >= 1, got {k}")
    bits = max(1, (k - 1).bit_length())
    order, seen = [], set()
    for i in range(1 << bits):
        reversed_i = int(format(i, f"0{bits}b")[::-1], 2)
        slot = reversed_i * k >> bits
        if slot not in seen:
            seen.add(slot)
            order.append(slot)
    return np.array(order, dtype=np.int64)


def prefix(num_frames: int, k: int, m: int) -> np.ndarray:
    """The frames a video of `num_frames` has read after m steps of its k uniform frames' coarse-to-fine
    order, in time order."""
    uniform = FrameSelection("uniform", k=k).indices(num_frames)
    return np.sort(uniform[coarse_to_fine(len(uniform))[:m]]) if len(uniform) else uniform


def check_steps(steps: tuple[int, ...], k: int) -> None:
    if not steps or list(steps) != sorted(set(steps)) or steps[0] < 1 or steps[-1] != k:
        raise WorkloadError(f"steps must rise from >= 1 to k={k}, got {list(steps)}")


def read_prefix(batch: VideoBatch, m: int) -> VideoBatch:
    """What a student has read after m steps, of a batch read with its k-frame selection (each row's frames
    first, in time order): the first m of each row's frames in their coarse-to-fine order. Training on
    such prefixes (`train_serial_student(prefixes=)`) teaches a student to predict from any of them."""
    lengths = batch.mask.sum(1).tolist()
    picks = [np.sort(coarse_to_fine(int(n))[:m]) if n else np.zeros(0, np.int64) for n in lengths]
    return take(batch, picks, min(m, batch.mask.shape[1]))


@torch.no_grad()
def anytime(model: VideoModel, batch: VideoBatch, k: int, steps: tuple[int, ...]) -> np.ndarray:
    """(steps, videos, classes) probabilities of `model` after each step, on an all-frames batch."""
    check_steps(steps, k)
    selected = subsample(batch, FrameSelection("uniform", k=k))  # its k frames; each step a prefix of them
    was_training = model.training
    model.eval()
    try:
        out = []
        for m in steps:
            read = read_prefix(selected, m)
            out.append(torch.sigmoid(model(read.frames, read.mask, read.positions).logits.float()).cpu().numpy())
    finally:
        model.train(was_training)
    return np.stack(out)


def frames_read(num_frames: np.ndarray, k: int, steps: tuple[int, ...]) -> np.ndarray:
    """(steps, videos): the frames each video has read after each step (a short video has fewer)."""
    return np.minimum(np.asarray(steps)[:, None], np.minimum(num_frames, k)[None, :])


def stops(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Per video, the step at which it stops: the first (after the first) whose top-20 probabilities moved
    less than `threshold` since the step before, else the last."""
    steps = probabilities.shape[0]
    last = np.full(probabilities.shape[1], steps - 1, dtype=np.int64)
    if steps == 1:
        return last
    top = np.argsort(-probabilities, axis=2)[:, :, :TOP_K]  # each step's own top 20
    current = np.take_along_axis(probabilities[1:], top[1:], axis=2)
    before = np.take_along_axis(probabilities[:-1], top[1:], axis=2)
    calm = np.abs(current - before).max(axis=2) < threshold  # (steps - 1, videos)
    first = np.where(calm.any(axis=0), calm.argmax(axis=0) + 1, steps - 1)
    return np.minimum(first, last)


@dataclass(frozen=True)
class Point:
    """Reading with one threshold: GAP, mean frames read and mean multiply-adds per video."""

    threshold: float
    gap: float
    frames: float
    macs: float


def chosen(probabilities: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """(videos, classes): each video's prediction at its stop."""
    return probabilities[stop, np.arange(probabilities.shape[1])]


def macs_of(read: np.ndarray, stop: np.ndarray, cost: ModelCost, k: int) -> np.ndarray:
    """Per video, the multiply-adds of steps 1..stop: each runs the student over the frames read so far."""
    per_frame = cost.frame_macs / k
    per_step = per_frame * read + cost.video_macs  # (steps, videos)
    spent = np.cumsum(per_step, axis=0)
    return spent[stop, np.arange(read.shape[1])]


class Curve:
    """GAP, frames read and multiply-adds of each threshold, accumulated batch by batch (a split's whole
    probabilities, steps x videos x classes, would not fit in memory on YouTube-8M)."""

    def __init__(self, k: int, steps: tuple[int, ...], thresholds: tuple[float, ...], cost: ModelCost,
                 num_classes: int):
        check_steps(steps, k)
        self.k, self.steps, self.thresholds, self.cost = k, steps, thresholds, cost
        self.scores = {t: TopKAccumulator(num_classes) for t in thresholds}
        self.frames = dict.fromkeys(thresholds, 0.0)
        self.macs = dict.fromkeys(thresholds, 0.0)
        self.videos = 0

    def add(self, probabilities: np.ndarray, labels: np.ndarray, num_frames: np.ndarray,
            ids: list[str] | None = None) -> None:
        read = frames_read(np.asarray(num_frames), self.k, self.steps)
        videos = np.arange(probabilities.shape[1])
        for threshold in self.thresholds:
            stop = stops(probabilities, threshold)
            self.scores[threshold].add(chosen(probabilities, stop), labels, ids)
            self.frames[threshold] += float(read[stop, videos].sum())
            self.macs[threshold] += float(macs_of(read, stop, self.cost, self.k).sum())
        self.videos += probabilities.shape[1]

    def points(self) -> list[Point]:
        if not self.videos:
            raise WorkloadError("no videos were read")
        return [Point(t, self.scores[t].gap(), self.frames[t] / self.videos, self.macs[t] / self.videos)
                for t in self.thresholds]


def curve(probabilities: np.ndarray, labels: np.ndarray, num_frames: np.ndarray, k: int, steps: tuple[int, ...],
          thresholds: tuple[float, ...], cost: ModelCost) -> list[Point]:
    """GAP, mean frames and mean multiply-adds for each threshold (0: every video reads all k), of
    probabilities held whole."""
    found = Curve(k, steps, thresholds, cost, probabilities.shape[2])
    found.add(probabilities, labels, num_frames)
    return found.points()


def calibrate(points: list[Point], tolerance: float) -> Point:
    """Of validation's points, the one that reads fewest frames on average with a GAP within `tolerance`
    of the all-k reading's (threshold 0, or the highest GAP when there is none)."""
    full = next((p for p in points if p.threshold == 0), max(points, key=lambda p: p.gap))
    good = [p for p in points if p.gap >= full.gap - tolerance]
    return min(good, key=lambda p: (p.frames, -p.gap))


class AdaptiveStudent(nn.Module):
    """A k-frame student that reads as many of its k frames as each video needs, as a product: handed each
    video's k frames (in time order, as the reader gives a k-frame model), it predicts after each step from
    the frames read so far in their coarse-to-fine order, and a video stops at the first step whose top-20
    probabilities moved less than `threshold` since the step before, exactly as `stops` decides on the
    test split. Each step runs the student on the videos still reading only."""

    def __init__(self, student: nn.Module, k: int, steps: tuple[int, ...], threshold: float):
        super().__init__()
        check_steps(tuple(steps), k)
        if threshold < 0:
            raise WorkloadError(f"a stopping threshold is >= 0, got {threshold}")
        self.student, self.k, self.steps, self.threshold = student, k, tuple(steps), float(threshold)

    @torch.no_grad()
    def read(self, frames: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None):
        """(logits at each video's stop, frames each video read)."""
        batch = of_tensors(frames, mask, positions)
        frames, mask, positions = batch.frames, batch.mask, batch.positions
        videos = frames.shape[0]
        reading = torch.arange(videos, device=frames.device)
        logits = before = None
        read = torch.zeros(videos, dtype=torch.long, device=frames.device)
        for step, m in enumerate(self.steps):
            rows = batch._replace(frames=frames[reading], mask=mask[reading], positions=positions[reading])
            part = read_prefix(rows, m)
            now = self.student.predict_logits(part.frames, part.mask, part.positions)
            if logits is None:
                logits = now.new_empty(videos, now.shape[1])
            logits[reading] = now
            read[reading] = part.mask.sum(1)
            probabilities = torch.sigmoid(now.float())
            if step == len(self.steps) - 1:
                break
            if before is not None:
                top = probabilities.topk(min(TOP_K, probabilities.shape[1]), dim=1).indices
                moved = (probabilities.gather(1, top) - before[reading].gather(1, top)).abs().amax(1)
                going = self.keeps_reading(moved, step, reading, videos)
                reading, probabilities = reading[going], probabilities[going]
                if not len(reading):
                    break
            if before is None:
                before = torch.zeros(videos, probabilities.shape[1], device=frames.device)
            before[reading] = probabilities
        return logits, read

    def keeps_reading(self, moved: torch.Tensor, step: int, reading: torch.Tensor, videos: int) -> torch.Tensor:
        """Which of the videos still reading (`reading`: their rows of a batch of `videos`) go on after
        step `step` (>= 1): those whose top-20 probabilities moved by the threshold or more (`moved`)."""
        return moved >= self.threshold

    def predict_logits(self, frames: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None):
        return self.read(frames, mask, positions)[0]
