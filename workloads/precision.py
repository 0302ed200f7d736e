"""Where a loop's math runs and at what precision: float16 autocast with loss scaling on CUDA when asked,
plain float32 everywhere else."""

from __future__ import annotations

import contextlib

import torch


class Precision:
    def __init__(self, device: torch.device, enabled: bool):
        self.device = device
        self.enabled = enabled and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled)

    def autocast(self):
        if self.enabled:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, params, max_grad_norm: float | None) -> None:
        """One optimiser step on `loss`: scaled backward, optional clipping of the unscaled gradients."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if max_grad_norm:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        self.scaler.step(optimizer)
        self.scaler.update()
