"""A serial student's epoch reading the teacher cache vs the same epoch recomputing the teacher online.

    python benchmarks/cache_vs_online.py [--family hrnn] [--size small] [--videos 512] [--k 30]

Both epochs train the same student with the same rep+pred+ce objective on the same videos; the online
one reads every frame, runs the teacher forward for E_T and P_T and subsamples the student's frames from
the batch, which is what serial training would cost without the cache. Target: cached <= 0.25x online.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from orchestrator.cache.reader import ParquetTeacherCache
from orchestrator.cache.files import write_teacher_cache
from workloads.data.batch import FrameSelection, subsample
from workloads.data.reader import VideoShards
from workloads.data.synth import SynthConfig, generate
from workloads.losses import Objective, TeacherTargets
from workloads.memory import keep_freed_memory
from workloads.models import build_model
from workloads.teacher_outputs import export_teacher
from machine import describe_machine  # benchmarks/machine.py, beside this script

CLASSES = 50


def epoch_cached(student, cache, source, selection, batch_size, objective):
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    start = time.perf_counter()
    for batch in VideoShards(source, batch_size, selection, shuffle=True):
        targets = cache.targets(batch.ids, torch.device("cpu"))
        loss, _ = objective(student(batch.frames, batch.mask, batch.positions), batch.labels, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def epoch_online(student, teacher, source, selection, batch_size, objective):
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    teacher.eval()
    start = time.perf_counter()
    for batch in VideoShards(source, batch_size, shuffle=True):
        with torch.no_grad():
            out = teacher(batch.frames, batch.mask, batch.positions)
        targets = TeacherTargets(out.representation, torch.sigmoid(out.logits))
        small = subsample(batch, selection)
        loss, _ = objective(student(small.frames, small.mask, small.positions), batch.labels, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="hrnn")
    parser.add_argument("--size", default="small")
    parser.add_argument("--videos", type=int, default=512)
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    keep_freed_memory()  # as the project's own processes run (workloads.memory)
    print(describe_machine())  # the machine's own limits: figures below read as shares of them
    selection = FrameSelection("uniform", k=args.k)
    objective = Objective.parse("rep+pred+ce")
    with tempfile.TemporaryDirectory() as scratch:
        source, cache_dir = f"{scratch}/train", f"{scratch}/cache"
        generate(source, args.videos, seed=0, config=SynthConfig(num_classes=CLASSES), workers=2)
        teacher = build_model(args.family, args.size, CLASSES).eval()
        write_teacher_cache(cache_dir, [export_teacher(teacher, VideoShards(source, 64))], teacher.classifier.state_dict(), {})
        cache = ParquetTeacherCache(cache_dir)
        torch.manual_seed(0)
        student = build_model(args.family, args.size, CLASSES, k=args.k)
        student.classifier.load_state_dict(teacher.classifier.state_dict())
        epoch_cached(student, cache, source, selection, args.batch_size, objective)  # warm-up
        cached = min(epoch_cached(student, cache, source, selection, args.batch_size, objective) for _ in range(2))
        online = min(epoch_online(student, teacher, source, selection, args.batch_size, objective) for _ in range(2))
    ratio = cached / online
    print(f"serial student epoch, {args.family} {args.size}, {args.videos} videos of 120-300 frames, k={args.k}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'from the teacher cache':<32}{cached:>8.2f} s")
    print(f"{'recomputing the teacher online':<32}{online:>8.2f} s")
    print(f"cached / online: {ratio:.3f}x (target <= 0.25x): {'PASS' if ratio <= 0.25 else 'FAIL'}")


if __name__ == "__main__":
    main()
