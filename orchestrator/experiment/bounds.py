"""Upper bounds on what a preset may ask for, checked before Ray starts, so that a slip of the keyboard
(`classes: 1000000000`) is one line naming the key and the bound instead of a machine swapping for minutes.

Each bound leaves room for the largest real use (the paper's models on YouTube-8M, 300 frames a video and
4,716 classes; an hour of video at its one frame a second) and stays within what one 24 GB machine or one
GPU of a cluster survives.
"""

from __future__ import annotations

import math

from workloads.data.format import FEATURE_DIM

MAX_FRAMES = 10_000  # frames a video: 2.8 hours at YouTube-8M's one frame a second
MAX_CLASSES = 50_000  # a synthetic vocabulary: ten times YouTube-8M's 4,716
GiB = 2**30
MAX_SYNTHETIC_BYTES = 16 * GiB  # a synthetic data set's frames, as stored (a byte per feature)
MAX_BATCH_BYTES = 4 * GiB  # one batch of frames as float32, before the model touches it
MAX_PARAMETERS = 1_000_000_000  # one model: 4 GB of float32 weights, 16 GB with gradients and Adam's moments


def too_large(amount: float, bound: float, what: str = "", unit: str = "") -> str | None:
    """A problem's text when `amount` passes `bound`, else None; `what` follows the amount ("parameters
    (netvlad for 40,000 classes)")."""
    if amount <= bound:
        return None
    return f"{_size(amount, unit)}{' ' + what if what else ''}, over the bound of {_size(bound, unit)}"


def synthetic_bytes(videos: int, max_frames: int) -> int:
    """The most a synthetic data set of `videos` videos stores."""
    return videos * max_frames * FEATURE_DIM


def batch_bytes(batch_size: int, max_frames: int) -> int:
    """A batch of frames as the models read them (float32)."""
    return batch_size * max_frames * FEATURE_DIM * 4


def model_parameters(spec, num_classes: int, k: int | None = None) -> int:
    """How many parameters `spec` (a `workloads.models.ModelSpec`) has for `num_classes`, counted on PyTorch's
    meta device: nothing is allocated, whatever the size."""
    import torch

    with torch.device("meta"):
        model = spec.build(num_classes, k=k)
    return sum(p.numel() for p in model.parameters())


def _size(amount: float, unit: str) -> str:
    if unit == "B":
        return f"{amount / GiB:,.1f} GiB" if amount >= GiB / 10 else f"{amount / 2**20:,.1f} MiB"
    return f"{amount:,.0f}" if math.isfinite(amount) else str(amount)
