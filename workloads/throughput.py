"""Seconds per video of a model's training step (forward, backward, Adam) and of its inference, measured on
random inputs on one device: what `benchmarks/paper_cost.py` saves as rates for `--plan --rates`, and what
`--plan` measures itself, briefly, on the machine at hand when no rates are given. Reading the data is not
in it (`benchmarks/reader_throughput.py` measures that).
"""

from __future__ import annotations

import time

import torch

from workloads.data.format import FEATURE_DIM
from workloads.losses import Objective
from workloads.models import build_model


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def seconds_per_video(family: str, size: str, classes: int, k: int | None, frames: int, batch: int, steps: int,
                      device: str) -> tuple[float, float]:
    """(training step, inference) seconds per video of a `size` model reading `frames` frames, the mean of
    `steps` batches of `batch` videos after one warm-up batch each."""
    model = build_model(family, size, classes, **({"k": k} if k else {})).to(device)
    x = torch.randn(batch, frames, FEATURE_DIM, device=device)
    mask = torch.ones(batch, frames, dtype=torch.bool, device=device)
    positions = torch.arange(frames, device=device).expand(batch, frames)
    labels = (torch.rand(batch, classes, device=device) < 0.001).float()
    optimizer = torch.optim.Adam(model.parameters())
    objective = Objective({"ce": 1.0})

    def step() -> None:
        model.train()
        loss, _ = objective(model(x, mask, positions), labels, None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def infer() -> None:
        model.eval()  # inference as it is served: batch norm on its running statistics, no dropout
        with torch.no_grad():
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
