"""Training throughput per family: videos/s of a teacher (all frames) and a serial student (Uniform-30).

    python benchmarks/train_throughput.py [--size small] [--videos 256] [--batch-size 32] [--device cpu]

One epoch each of LCE teacher training and of a rep+pred+ce serial student reading a teacher cache,
measured side by side in one run, including reading the shards.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from workloads.data.batch import FrameSelection
from workloads.data.reader import VideoShards
from workloads.data.synth import SynthConfig, generate
from workloads.memory import keep_freed_memory
from workloads.models import FAMILIES, build_model
from workloads.teacher_outputs import InMemoryTeacherCache, export_teacher
from workloads.train import TrainConfig, train_classifier, train_serial_student
from machine import describe_machine  # benchmarks/machine.py, beside this script

CLASSES = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    parser.add_argument("--videos", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--families", default=",".join(sorted(FAMILIES)))
    args = parser.parse_args()
    keep_freed_memory()  # as the project's own processes run (workloads.memory)
    print(describe_machine())  # the machine's own limits: figures below read as shares of them
    config = TrainConfig(epochs=1, device=args.device)
    selection = FrameSelection("uniform", k=30)
    print(f"training throughput, {args.size} size, {args.videos} videos of 120-300 frames, {args.device}, "
          f"{torch.get_num_threads()} threads, batch {args.batch_size}")
    print(f"{'family':<10}{'teacher videos/s':>18}{'student videos/s':>18}")
    with tempfile.TemporaryDirectory() as scratch:
        train, val = f"{scratch}/train", f"{scratch}/val"
        generate(train, args.videos, seed=0, config=SynthConfig(num_classes=CLASSES), workers=2)
        generate(val, args.batch_size, seed=0, split="validate", config=SynthConfig(num_classes=CLASSES))
        for family in args.families.split(","):
            teacher = build_model(family, args.size, CLASSES)
            start = time.perf_counter()
            train_classifier(teacher, VideoShards(train, args.batch_size, shuffle=True), VideoShards(val, args.batch_size), config)
            teacher_rate = args.videos / (time.perf_counter() - start)
            cache = InMemoryTeacherCache(export_teacher(teacher, VideoShards(train, args.batch_size), args.device),
                                         teacher.classifier.state_dict())
            student = build_model(family, args.size, CLASSES, k=30)
            start = time.perf_counter()
            train_serial_student(student, cache, VideoShards(train, args.batch_size, selection, shuffle=True),
                                 VideoShards(val, args.batch_size, selection), "rep+pred+ce", config)
            student_rate = args.videos / (time.perf_counter() - start)
            print(f"{family:<10}{teacher_rate:>18.1f}{student_rate:>18.1f}")


if __name__ == "__main__":
    main()
