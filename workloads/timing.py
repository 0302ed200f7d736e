"""Inference time per video of several models measured side by side: the same device, the same moment,
rounds interleaved (teacher, student k=10, student k=30, teacher, ...) so that a slower minute of the
machine slows them all alike; each model's figure is its median round. Batches are read beforehand, so
the figure is the model's own work (the reader's is `benchmarks/reader_throughput.py`'s).
"""

from __future__ import annotations

import statistics
import time
from typing import Sequence

import torch

from workloads.data.batch import VideoBatch
from workloads.models import VideoModel


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def _round(model: VideoModel, batches: Sequence[VideoBatch], device: torch.device) -> float:
    _sync(device)
    started = time.perf_counter()
    for batch in batches:
        logits = model.predict_logits(batch.frames.to(device), batch.mask.to(device), batch.positions.to(device))
        torch.sigmoid(logits).cpu()
    _sync(device)
    return time.perf_counter() - started


def milliseconds_per_video(models: dict[str, tuple[VideoModel, Sequence[VideoBatch]]], device: torch.device,
                           rounds: int = 3) -> dict[str, float]:
    """name -> median milliseconds per video of `model` over its `batches` (each model its own frames),
    after one warm-up round each (allocator, kernels, caches)."""
    videos = {name: sum(len(b.ids) for b in batches) for name, (_, batches) in models.items()}
    if not all(videos.values()):
        raise ValueError("every model needs at least one video to time")
    for model, _ in models.values():
        model.eval().to(device)
    times: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(rounds + 1):
        for name, (model, batches) in models.items():
            seconds = _round(model, batches, device)
            if round_:  # the first is the warm-up
                times[name].append(seconds)
    return {name: 1000 * statistics.median(times[name]) / videos[name] for name in models}
