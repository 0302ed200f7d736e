"""Batch prediction end to end, the teacher (every frame) against the k=30 student and a student on k=10
frames chosen by content, same shards, side by side.

    python benchmarks/predict_speed.py [--size paper] [--videos 256] [--batch-size 128] [--rounds 3]
                                       [--families hrnn,netvlad,nextvlad] [--device cpu|cuda] [--content-k 10]

The content student (`workloads.saliency`, rule salient_segments) reads every frame, as a teacher does, runs
its frame scorer over all of them, and its student over the k it picks: on the smoke grid its k=10 student
reaches the test GAP of the best serial student on 30 uniform frames (README, "Frames chosen by content"),
which is the matched-GAP comparison this prints (untrained weights: time does not depend on them).
A student read adaptively is the exception: where each video stops depends on its weights, so its
end-to-end time beside the teacher and the 30-frame student, at the GAP each reaches, is
`benchmarks/registered_speed.py`'s, over the models a grid registered (its `-adaptive` ones included).

Each pass is what `python -m orchestrator.predict` does once the model is loaded: shards of full-length
(300-frame) videos read row group by row group, the model's frames gathered and dequantised, the model,
each video's top 20 classes, the submission CSV written under a temporary name and renamed. Rounds
alternate teacher and student (a slower minute slows both); each figure is the median round. Prints per
family the wall seconds and videos/s of both, the student/teacher wall-time ratio (target: at most 0.15
on CPU, for the families whose multiply-add ratio allows it) beside the multiply-add ratio, and where each one's time goes: reading row groups, gathering and
dequantising frames, the model, the rest (top-k, CSV). The machine's own limits come first, so a figure
reads as a share of the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # the pass's own progress line would only slow and clutter it

import numpy as np
import torch

from orchestrator.predict import Job, predict_here, write_predictions
from workloads.data.reader import VideoShards, decode_rows, read_unit
from workloads.data.synth import SynthConfig, generate
from workloads.flops import count_macs
from workloads.inference import Classifier, ModelCard
from workloads.memory import keep_freed_memory

from machine import describe_machine  # benchmarks/machine.py, beside this script

CLASSES = 3862
K = 30


def end_to_end(classifier: Classifier, shards: list[str], out: str, batch_size: int) -> float:
    job = Job(model="benchmark", data="", out=out, batch_size=batch_size)
    start = time.perf_counter()
    write_predictions(predict_here(classifier, shards, job), job, 0, None)
    if classifier.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def parts(classifier: Classifier, shards: list[str], batch_size: int) -> dict[str, float]:
    """Seconds spent reading row groups, gathering and dequantising, and in the model, over the shards."""
    reader = VideoShards(shards, batch_size, classifier.card.frame_selection, num_classes=CLASSES)
    read = decode = model = 0.0
    for unit in reader.units:
        start = time.perf_counter()
        table = read_unit(unit, CLASSES)
        read += time.perf_counter() - start
        for first in range(0, table.num_rows, batch_size):
            start = time.perf_counter()
            batch = decode_rows(table, np.arange(first, min(first + batch_size, table.num_rows)),
                                classifier.card.frame_selection, CLASSES)
            decode += time.perf_counter() - start
            start = time.perf_counter()
            classifier.predict(batch, 20)
            if classifier.device.type == "cuda":
                torch.cuda.synchronize()
            model += time.perf_counter() - start
    return {"read": read, "decode": decode, "model": model}


def _macs(classifier: Classifier) -> int:
    """Multiply-adds per 300-frame video: a content student's scorer over all 300 and its student on k."""
    card, model = classifier.card, classifier.model
    if card.chooses_by_content:
        return count_macs(model.student, card.k).macs + model.selector.macs(300)
    return count_macs(model, 300 if card.k is None else card.k).macs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="paper")
    parser.add_argument("--videos", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--families", default="hrnn,nextvlad,netvlad")
    parser.add_argument("--content-k", type=int, default=10, help="frames the content student reads")
    args = parser.parse_args()
    device = torch.device(args.device)
    keep_freed_memory()  # as the project's own processes run (workloads.memory)
    print(describe_machine())
    print(f"predict to CSV: {args.videos} videos of 300 frames, {args.size} size, {device}, "
          f"{torch.get_num_threads()} torch threads, batch {args.batch_size}, median of {args.rounds} rounds")
    header = (f"{'family':<10}{'model':<9}{'seconds':>9}{'videos/s':>10}{'ratio':>8}{'MAC ratio':>11}"
              f"{'read':>8}{'decode':>8}{'model':>8}{'rest':>8}")
    with tempfile.TemporaryDirectory() as scratch:
        data = os.path.join(scratch, "shards")
        generate(data, args.videos, seed=0, config=SynthConfig(num_classes=CLASSES, min_frames=300, max_frames=300),
                 videos_per_shard=128, workers=2)
        shards = VideoShards(data, 1).shards
        ratios = {}
        print(header)
        for family in args.families.split(","):
            models = {}
            for role, selection, k in (("teacher", "all", None), ("student", "uniform", K),
                                       ("content", "salient_segments", args.content_k)):
                card = ModelCard(family, args.size, CLASSES, selection, k, 300)
                models[role] = Classifier(card, card.build().to(device), device)
            macs = {role: _macs(c) for role, c in models.items()}
            for role, classifier in models.items():  # warm-up: allocator, caches, page cache
                end_to_end(classifier, shards[:1], os.path.join(scratch, "warm.csv"), args.batch_size)
            seconds = {role: [] for role in models}
            for _ in range(args.rounds):
                for role, classifier in models.items():
                    seconds[role].append(end_to_end(classifier, shards, os.path.join(scratch, f"{role}.csv"),
                                                    args.batch_size))
            wall = {role: statistics.median(values) for role, values in seconds.items()}
            for role, classifier in models.items():
                split = parts(classifier, shards, args.batch_size)
                rest = max(0.0, wall[role] - sum(split.values()))
                # The parts come from a pass of their own, timed piece by piece: shares of the larger total.
                total = max(wall[role], sum(split.values()))
                shares = "".join(f"{v / total:>8.0%}" for v in (*split.values(), rest))
                ratio_text = "" if role == "teacher" else f"{wall[role] / wall['teacher']:.3f}x"
                mac_text = "" if role == "teacher" else f"{macs[role] / macs['teacher']:.3f}x"
                print(f"{family:<10}{role:<9}{wall[role]:>9.2f}{args.videos / wall[role]:>10.1f}{ratio_text:>8}"
                      f"{mac_text:>11}{shares}")
            ratios[family] = (wall["student"] / wall["teacher"], macs["student"] / macs["teacher"])
            print(f"{family} content k={args.content_k} / student k={K} wall time to CSV: "
                  f"{wall['content'] / wall['student']:.3f}x (multiply-adds {macs['content'] / macs['student']:.3f}x)")
            del models
    for family, (ratio, mac_ratio) in ratios.items():
        if mac_ratio > 0.15:  # no end-to-end speed can beat the arithmetic: report the figure only
            print(f"{family} student/teacher wall time to CSV: {ratio:.3f}x (its multiply-add ratio is "
                  f"{mac_ratio:.3f}x: no 0.15x target)")
            continue
        verdict = "PASS" if ratio <= 0.15 else "FAIL"
        print(f"{family} student/teacher wall time to CSV: {ratio:.3f}x (target <= 0.15x on CPU): {verdict}")


if __name__ == "__main__":
    main()
