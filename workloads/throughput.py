"""Seconds per video of a model's training step (forward, backward, Adam) and of its inference, measured on
random inputs on one device, at a precision (`workloads.precision`): what `benchmarks/paper_cost.py` saves
as rates for `--plan --rates`, what `--plan` measures itself, briefly, on the machine at hand when no rates
are given, and what `benchmarks/gpu_check.py` measures on a GPU. Reading the data is not in it
(`benchmarks/reader_throughput.py` measures that).
"""

from __future__ import annotations

import time

import torch

from workloads.data.format import FEATURE_DIM
from workloads.models import VideoModel, build_model
from workloads.precision import Precision


def _synchronize(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def inputs(batch: int, frames: int, device: str, generator: torch.Generator | None = None):
    """(frames, mask, positions) of `batch` full videos of `frames` random frames (dequantised features)."""
    x = torch.randn(batch, frames, FEATURE_DIM, generator=generator).to(device)
    mask = torch.ones(batch, frames, dtype=torch.bool, device=device)
    positions = torch.arange(frames, device=device).expand(batch, frames)
    return x, mask, positions


def measure(model: VideoModel, frames: int, batch: int, steps: int, device: str,
            precision: str = "float32") -> tuple[float, float]:
    """(training step, inference) seconds per video of `model` (on `device`) reading `frames` frames, the
    mean of `steps` batches of `batch` videos after one warm-up batch each."""
    x, mask, positions = inputs(batch, frames, device)
    model.eval()
    with torch.no_grad():
        classes = model(x[:1], mask[:1], positions[:1]).logits.shape[1]
    labels = (torch.rand(batch, classes, device=device) < 0.001).float()
    optimizer = torch.optim.Adam(model.parameters())
    running = Precision(torch.device(device), precision)

    def step() -> None:
        model.train()
        with running.autocast():
            logits = model(x, mask, positions).logits
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels)
        running.step(loss, optimizer, model.parameters(), None)

    def infer() -> None:
        model.eval()  # inference as it is served: batch norm on its running statistics, no dropout
        with torch.no_grad(), running.autocast():
            model(x, mask, positions)

    timings = []
    for work in (step, infer):
        work()  # warm-up: allocations, kernels
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            work()
        _synchronize(device)
        timings.append((time.perf_counter() - start) / (steps * batch))
    return timings[0], timings[1]


def seconds_per_video(family: str, size: str, classes: int, k: int | None, frames: int, batch: int, steps: int,
                      device: str, precision: str = "float32") -> tuple[float, float]:
    """`measure` of a new `size` model of `family` (a student of `k` frames, or the teacher)."""
    model = build_model(family, size, classes, **({"k": k} if k else {})).to(device)
    return measure(model, frames, batch, steps, device, precision)
