"""Inference, teacher (all 300 frames) vs student (Uniform-30), end to end: read the shards + forward.

    python benchmarks/inference_speed.py [--size paper] [--videos 128] [--batch-size 64] [--device cpu]

For each family, prints wall seconds, videos/s and multiply-adds per video of both, measured side by side
in one run, and the student/teacher wall-time ratio. Target: H-RNN student <= 0.2x the teacher's time
(the paper measured 0.70x for 0.1x the FLOPs).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from workloads.data.batch import FrameSelection
from workloads.data.reader import VideoShards
from workloads.data.synth import SynthConfig, generate
from workloads.flops import count_macs
from workloads.memory import keep_freed_memory
from workloads.models import FAMILIES, build_model
from machine import describe_machine  # benchmarks/machine.py, beside this script

CLASSES = 3862


@torch.no_grad()
def timed_pass(model, source: str, selection, batch_size: int, device: torch.device) -> float:
    start = time.perf_counter()
    for batch in VideoShards(source, batch_size, selection):
        out = model(batch.frames.to(device), batch.mask.to(device), batch.positions.to(device))
        torch.sigmoid(out.logits).cpu()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="paper")
    parser.add_argument("--videos", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--families", default=",".join(sorted(FAMILIES)))
    args = parser.parse_args()
    keep_freed_memory()  # as the project's own processes run (workloads.memory)
    print(describe_machine())  # the machine's own limits: figures below read as shares of them
    device = torch.device(args.device)
    selection = FrameSelection("uniform", k=30)
    print(f"inference on {args.videos} videos of 300 frames, {args.size} size, {device}, "
          f"{torch.get_num_threads()} threads, batch {args.batch_size}")
    print(f"{'family':<10}{'model':<10}{'seconds':>9}{'videos/s':>10}{'GMACs/video':>13}{'time ratio':>12}{'MAC ratio':>11}")
    with tempfile.TemporaryDirectory() as scratch:
        generate(scratch, args.videos, seed=0, config=SynthConfig(num_classes=CLASSES, min_frames=300, max_frames=300), workers=2)
        for family in args.families.split(","):
            teacher = build_model(family, args.size, CLASSES).eval().to(device)
            student = build_model(family, args.size, CLASSES, k=30).eval().to(device)
            macs = {"teacher": count_macs(teacher, 300).macs, "student": count_macs(student, 30).macs}
            timed_pass(teacher, scratch, None, args.batch_size, device)  # warm-up: caches, allocator
            timed_pass(student, scratch, selection, args.batch_size, device)
            seconds = {
                "teacher": timed_pass(teacher, scratch, None, args.batch_size, device),
                "student": timed_pass(student, scratch, selection, args.batch_size, device),
            }
            for role in ("teacher", "student"):
                ratio = "" if role == "teacher" else f"{seconds['student'] / seconds['teacher']:.3f}x"
                mac_ratio = "" if role == "teacher" else f"{macs['student'] / macs['teacher']:.3f}x"
                print(f"{family:<10}{role:<10}{seconds[role]:>9.2f}{args.videos / seconds[role]:>10.1f}"
                      f"{macs[role] / 1e9:>13.3f}{ratio:>12}{mac_ratio:>11}")
            if family == "hrnn":
                ratio = seconds["student"] / seconds["teacher"]
                print(f"hrnn student/teacher wall time {ratio:.3f}x (target <= 0.2x): {'PASS' if ratio <= 0.2 else 'FAIL'}")
            del teacher, student


if __name__ == "__main__":
    main()
