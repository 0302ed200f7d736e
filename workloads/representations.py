"""What a model's representation E of each video is, for a sample of videos, and how close two models'
representations of the same videos are: the paper's direct evidence that Lrep works (Figure 3: a student's
and its teacher's representations of the same videos lie together).

`represent` runs a model over data and keeps E per video with the video's labels (a t-SNE of them by
class is Figure 3); `similarity` compares two sets on the videos they share:

- cosine: the mean over videos of cos(E_S, E_T) (1: the same direction);
- mse: the mean over videos and dimensions of (E_S - E_T)^2 (Lrep divided by the dimension).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from workloads.data.batch import VideoBatch
from workloads.errors import WorkloadError
from workloads.models import VideoModel


@dataclass(frozen=True)
class Representations:
    """E of some videos: ids, each one's labels, and (videos, d) float32 values in the same order."""

    ids: list[str]
    labels: list[list[int]]
    values: np.ndarray


@torch.no_grad()
def represent(model: VideoModel, data: Iterable[VideoBatch], device: torch.device | str = "cpu") -> Representations:
    """E of every video in `data` (read with the frames the model sees), in evaluation mode."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    ids, labels, values = [], [], []
    for batch in data:
        batch = batch.to(device)
        values.append(model(batch.frames, batch.mask, batch.positions).representation.float().cpu().numpy())
        ids += batch.ids
        labels += [np.flatnonzero(row).tolist() for row in batch.labels.cpu().numpy()]
    model.train(was_training)
    width = getattr(model, "representation_dim", 0)
    return Representations(ids, labels, np.concatenate(values) if values else np.zeros((0, width), np.float32))


def similarity(student: Representations, teacher: Representations) -> tuple[float, float, int]:
    """(mean cosine, mean squared error, videos) of `student` against `teacher` on the videos both hold."""
    ours, theirs, _ = _shared(student, teacher)
    return float(_cosines(ours, theirs).mean()), float(np.mean((ours - theirs) ** 2)), len(ours)


def cosines(student: Representations, teacher: Representations) -> tuple[list[str], np.ndarray]:
    """(the videos both hold, cos(E_S, E_T) of each): what a bootstrap of the mean cosine resamples."""
    ours, theirs, ids = _shared(student, teacher)
    return ids, _cosines(ours, theirs)


def _shared(student: Representations, teacher: Representations) -> tuple[np.ndarray, np.ndarray, list[str]]:
    where = {video: row for row, video in enumerate(teacher.ids)}
    rows = [(row, where[video]) for row, video in enumerate(student.ids) if video in where]
    if not rows:
        raise WorkloadError("the two sets of representations share no video")
    ours = student.values[[r for r, _ in rows]].astype(np.float64)
    theirs = teacher.values[[t for _, t in rows]].astype(np.float64)
    if ours.shape[1] != theirs.shape[1]:
        raise WorkloadError(f"representations of {ours.shape[1]} and {theirs.shape[1]} dimensions cannot be compared")
    return ours, theirs, [student.ids[r] for r, _ in rows]


def _cosines(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1)
    return np.sum(ours * theirs, axis=1) / np.maximum(norms, 1e-12)
