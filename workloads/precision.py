"""Where a loop's math runs and at what precision. A loop's `precision` setting:

    auto      bfloat16 autocast on a CUDA device that supports it (Ampere and later: no loss scaling, the
              range of float32), float16 autocast with loss scaling on an older one; float32 on a CPU
    bfloat16  bfloat16 autocast on CUDA or on the CPU (refused where the GPU, or the CPU's oneDNN, lacks
              it: without AVX-512 BF16 or AMX, oneDNN cannot build the LSTM of an H-RNN in bfloat16)
    float16   float16 autocast with loss scaling on CUDA; float32 on a CPU (float16 there is no faster)
    float32   no autocast anywhere
"""

from __future__ import annotations

import contextlib

import torch

from workloads.errors import WorkloadError

PRECISIONS = ("auto", "bfloat16", "float16", "float32")
_NAMES = {None: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def check(setting: str) -> None:
    if setting not in PRECISIONS:
        raise WorkloadError(f"precision must be one of {', '.join(PRECISIONS)}, got {setting!r}")


def resolve(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype `setting` means on `device`; None: plain float32."""
    check(setting)
    cuda = device.type == "cuda"
    if setting == "float32" or (not cuda and setting in ("auto", "float16")):
        return None
    if setting == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if setting == "bfloat16" and cuda and not torch.cuda.is_bf16_supported():
        raise WorkloadError(f"precision bfloat16: {torch.cuda.get_device_name(device)} does not support it "
                            "(use auto: float16 with loss scaling there)")
    if setting == "bfloat16" and not cuda and not cpu_has_bfloat16():
        raise WorkloadError("precision bfloat16: this CPU has no bfloat16 support in oneDNN (AVX-512 BF16 or AMX), "
                            "whose LSTM then fails; use auto or float32")
    return torch.bfloat16 if setting == "bfloat16" else torch.float16


def cpu_has_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 on this CPU (a private probe of PyTorch's; where it is gone, assume so)."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return True if probe is None else bool(probe())


class Precision:
    def __init__(self, device: torch.device, setting: str = "auto"):
        self.device = device
        self.dtype = resolve(setting, device)
        # Loss scaling only for float16: bfloat16 has float32's exponent, so gradients do not underflow
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype is torch.float16 and device.type == "cuda")

    @property
    def name(self) -> str:
        """What the math runs at: bfloat16, float16 or float32."""
        return _NAMES[self.dtype]

    def autocast(self):
        if self.dtype is not None:
            return torch.autocast(self.device.type, dtype=self.dtype)
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
