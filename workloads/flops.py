"""python -m workloads.flops --family F --size paper|small --frames N --classes C : multiply-adds of a model.

Counted from the model itself: one video of N frames runs through the model under PyTorch's
`FlopCounterMode`, which records every matrix product (2 FLOPs per multiply-add) per module. oneDNN is
turned off for the count so that CPU LSTMs decompose into the matrix products it sees. Multiply-adds of
the modules a family declares as per-frame (`frame_modules`: H-RNN's lower LSTM, the VLAD layers) are
`frame_macs`, the rest (H-RNN's upper LSTM over blocks, hidden layers, classifier) `video_macs`.
Element-wise work (activations, normalisation) is not counted, as in the paper.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from workloads.data.format import FEATURE_DIM
from workloads.errors import WorkloadError
from workloads.models import VideoModel, build_model


@dataclass(frozen=True)
class ModelCost:
    macs: int
    frame_macs: int
    video_macs: int
    params: int


def count_macs(model: VideoModel, frames: int) -> ModelCost:
    """Multiply-adds of `model` on one video of `frames` frames, split per-frame / per-video."""
    if frames < 1:
        raise WorkloadError(f"frames must be >= 1, got {frames}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, frames, FEATURE_DIM, device=device)
    mask = torch.ones(1, frames, dtype=torch.bool, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # oneDNN's note about TF32 on Intel GPUs when toggled
        with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
            model(x, mask)
    model.train(was_training)
    per_module = counter.get_flop_counts()  # keyed "<ClassName>.<submodule path>"
    root = type(model).__name__
    total = int(counter.get_total_flops()) // 2
    frame = sum(int(sum(per_module.get(f"{root}.{name}", {}).values())) // 2 for name in model.frame_modules)
    params = sum(p.numel() for p in model.parameters())
    return ModelCost(macs=total, frame_macs=frame, video_macs=total - frame, params=params)


def model_cost(family: str, size: str, frames: int, num_classes: int, k: int | None = None) -> ModelCost:
    """Cost of a freshly built model; `k` builds the student variant (H-RNN's block length)."""
    return count_macs(build_model(family, size, num_classes, k=k), frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workloads.flops", description=__doc__.splitlines()[0])
    parser.add_argument("--family", required=True)
    parser.add_argument("--size", default="paper")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--classes", type=int, default=3862)
    parser.add_argument("--student", action="store_true",
                        help="count the student variant that sees --frames frames (H-RNN: shorter blocks)")
    args = parser.parse_args(argv)
    try:
        cost = model_cost(args.family, args.size, args.frames, args.classes, k=args.frames if args.student else None)
    except WorkloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"family": args.family, "size": args.size, "frames": args.frames, "classes": args.classes, **asdict(cost)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
