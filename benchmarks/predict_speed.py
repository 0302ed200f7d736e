"""Batch prediction end to end, the teacher (every frame) against the k=30 student, a student on k=10 frames
chosen by content and the k=30 student read adaptively, same shards, side by side.

    python benchmarks/predict_speed.py [--size paper] [--videos 256] [--batch-size 128] [--rounds 3]
                                       [--families hrnn,netvlad,nextvlad] [--device cpu|cuda] [--content-k 10]
                                       [--steps 5] [--adaptive-stops 0.5,0.2,0.2,0.1]

The content student (`workloads.saliency`, rule salient_segments) reads every frame, as a teacher does, runs
its frame scorer over all of them, and its student over the k it picks: on the smoke grid its k=10 student
reaches the test GAP of the best serial student on 30 uniform frames (README, "Frames chosen by content"),
which is the matched-GAP comparison this prints (untrained weights: time does not depend on them).

The adaptive student (`workloads.adaptive.AdaptiveStudent`, `-adaptive` in the registry) reads the k=30
student's frames coarse to fine in `--steps` steps and stops each video once its prediction settles. Where
a video stops depends on trained weights, which this benchmark has not, so each `adaptive@m` row times the
reading with every video stopping after m frames (m from the second step: a stop needs two predictions to
compare), and `adaptive mix` with the shares of videos stopping at each of those steps that
`--adaptive-stops` gives (a trained reading's profile). At matched test GAP: the smoke grid's paper
students, read at the threshold that keeps validation GAP within 0.005 of reading all 30, read 29.1 of 30
frames (README, "As many frames as each video needs"), so `adaptive@30` is their cost; a reading that
matched the 30-frame GAP on at most 15 frames would cost at least `adaptive@12`. The registered models
with their own weights, each beside the GAP it reaches, are `benchmarks/registered_speed.py`'s.

Each pass is what `python -m orchestrator.predict` does once the model is loaded: shards of full-length
(300-frame) videos read row group by row group, the model's frames gathered and dequantised, the model,
each video's top 20 classes, the submission CSV written under a temporary name and renamed. Rounds
alternate the models (a slower minute slows them all); each figure is the median round. Prints per
family the wall seconds, videos/s and mean frames read of each, its wall-time ratio to the teacher (target
for the k=30 student: at most 0.15 on CPU, for the families whose multiply-add ratio allows it) beside the
multiply-add ratio, and where each one's time goes: reading row groups, gathering and dequantising frames,
the model, the rest (top-k, CSV). The machine's own limits come first, so a figure reads as a share of the
machine.
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

from orchestrator.experiment.settings import AdaptiveReading
from orchestrator.predict import Job, predict_here, write_predictions
from workloads.adaptive import AdaptiveStudent, frames_read, macs_of
from workloads.data.reader import VideoShards, decode_rows, read_unit
from workloads.data.synth import SynthConfig, generate
from workloads.flops import count_macs
from workloads.inference import Classifier, ModelCard
from workloads.memory import keep_freed_memory

from machine import describe_machine  # benchmarks/machine.py, beside this script

CLASSES = 3862
FRAMES = 300
K = 30


class ScheduledStops(AdaptiveStudent):
    """An adaptive student whose videos stop where a schedule says rather than where their (untrained)
    predictions settle: `shares[i]` of each batch's videos stop after step i + 1 (the first step a stop can
    follow). Everything else, the steps run on the videos still reading only, is the product's loop."""

    def __init__(self, student, k: int, steps: tuple[int, ...], shares: tuple[float, ...]):
        super().__init__(student, k, steps, threshold=0.0)
        self.bounds = torch.tensor(np.cumsum(shares), dtype=torch.float64)

    def keeps_reading(self, moved, step, reading, videos):
        # Video p of n stops after the step whose cumulative share first passes (p + 0.5) / n.
        stop = 1 + torch.searchsorted(self.bounds, (reading.cpu().double() + 0.5) / videos, right=True)
        return (stop > step).to(moved.device)


def schedule(text: str | None, steps: tuple[int, ...]) -> tuple[float, ...] | None:
    """`--adaptive-stops` as shares, one for each step a video can stop after (all but the first)."""
    if text is None:
        return None
    try:
        shares = tuple(float(value) for value in text.split(","))
    except ValueError:
        shares = ()
    if len(shares) != len(steps) - 1 or min(shares) < 0 or abs(sum(shares) - 1) > 1e-6:
        raise SystemExit(f"--adaptive-stops: {len(steps) - 1} shares >= 0 summing to 1, one for each of the steps "
                         f"{list(steps[1:])}, got {text!r}")
    return shares


def end_to_end(classifier: Classifier, shards: list[str], out: str, batch_size: int) -> tuple[float, float]:
    """(seconds, mean frames read per video) of one pass."""
    job = Job(model="benchmark", data="", out=out, batch_size=batch_size)
    start = time.perf_counter()
    videos, read = write_predictions(predict_here(classifier, shards, job), job, 0, None)
    if classifier.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, read / max(videos, 1)


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


def _macs(classifier: Classifier) -> float:
    """Multiply-adds per 300-frame video: a content student's scorer over all 300 and its student on k; an
    adaptive one's steps as its schedule runs them, each over the frames read so far."""
    card, model = classifier.card, classifier.model
    if card.chooses_by_content:
        return count_macs(model.student, card.k).macs + model.selector.macs(FRAMES)
    if isinstance(model, ScheduledStops):
        read = frames_read(np.array([FRAMES]), card.k, model.steps)
        cost = count_macs(model.student, card.k)
        shares = np.diff(model.bounds.numpy(), prepend=0.0)
        return float(sum(share * macs_of(read, np.array([step + 1]), cost, card.k)[0]
                         for step, share in enumerate(shares)))
    return count_macs(model, FRAMES if card.k is None else card.k).macs


def models_of(family: str, args, steps: tuple[int, ...], mix: tuple[float, ...] | None,
              device: torch.device) -> dict[str, Classifier]:
    """The teacher, the k=30 student, the content student, and the k=30 student read adaptively with every
    video stopping after each step in turn (and with `--adaptive-stops`' shares), by name."""
    models = {}
    for role, selection, k in (("teacher", "all", None), ("student", "uniform", K),
                               ("content", "salient_segments", args.content_k)):
        card = ModelCard(family, args.size, CLASSES, selection, k, FRAMES)
        models[role] = Classifier(card, card.build().to(device), device)
    card = ModelCard(family, args.size, CLASSES, "uniform", K, FRAMES, stopping={"threshold": 0.0, "steps": list(steps)},
                     adaptive=True)
    student = models["student"].model  # one set of weights: the rows differ by where videos stop only
    schedules = {f"adaptive@{m}": tuple(float(i == at) for i in range(len(steps) - 1)) for at, m in enumerate(steps[1:])}
    if mix is not None:
        schedules["adaptive mix"] = mix
    for role, shares in schedules.items():
        models[role] = Classifier(card, ScheduledStops(student, K, steps, shares).to(device), device)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="paper")
    parser.add_argument("--videos", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--families", default="hrnn,nextvlad,netvlad")
    parser.add_argument("--content-k", type=int, default=10, help="frames the content student reads")
    parser.add_argument("--steps", type=int, default=AdaptiveReading().steps,
                        help="the adaptive reading's steps (a preset's adaptive.steps)")
    parser.add_argument("--adaptive-stops", help="shares of videos stopping after each step from the second, "
                        "comma-separated, summing to 1 (a trained reading's profile): adds an 'adaptive mix' row")
    args = parser.parse_args()
    device = torch.device(args.device)
    steps = AdaptiveReading(steps=args.steps).steps_for(K)
    if len(steps) < 2:
        raise SystemExit(f"--steps: an adaptive reading stops after its second step at the earliest; {args.steps} "
                         f"step(s) of k={K} leave it none")
    mix = schedule(args.adaptive_stops, steps)
    keep_freed_memory()  # as the project's own processes run (workloads.memory)
    print(describe_machine())
    print(f"predict to CSV: {args.videos} videos of {FRAMES} frames, {args.size} size, {device}, "
          f"{torch.get_num_threads()} torch threads, batch {args.batch_size}, median of {args.rounds} rounds; "
          f"adaptive steps {list(steps)} of k={K}")
    header = (f"{'family':<10}{'model':<14}{'seconds':>9}{'videos/s':>10}{'frames':>8}{'ratio':>8}{'MAC ratio':>11}"
              f"{'read':>8}{'decode':>8}{'model':>8}{'rest':>8}")
    with tempfile.TemporaryDirectory() as scratch:
        data = os.path.join(scratch, "shards")
        generate(data, args.videos, seed=0, config=SynthConfig(num_classes=CLASSES, min_frames=FRAMES, max_frames=FRAMES),
                 videos_per_shard=128, workers=2)
        shards = VideoShards(data, 1).shards
        ratios = {}
        print(header)
        for family in args.families.split(","):
            models = models_of(family, args, steps, mix, device)
            macs = {role: _macs(c) for role, c in models.items()}
            for role, classifier in models.items():  # warm-up: allocator, caches, page cache
                end_to_end(classifier, shards[:1], os.path.join(scratch, "warm.csv"), args.batch_size)
            seconds, frames = {role: [] for role in models}, {}
            for _ in range(args.rounds):
                for role, classifier in models.items():
                    wall, frames[role] = end_to_end(classifier, shards, os.path.join(scratch, "out.csv"),
                                                    args.batch_size)
                    seconds[role].append(wall)
            wall = {role: statistics.median(values) for role, values in seconds.items()}
            for role, classifier in models.items():
                split = parts(classifier, shards, args.batch_size)
                rest = max(0.0, wall[role] - sum(split.values()))
                # The parts come from a pass of their own, timed piece by piece: shares of the larger total.
                total = max(wall[role], sum(split.values()))
                shares = "".join(f"{v / total:>8.0%}" for v in (*split.values(), rest))
                ratio_text = "" if role == "teacher" else f"{wall[role] / wall['teacher']:.3f}x"
                mac_text = "" if role == "teacher" else f"{macs[role] / macs['teacher']:.3f}x"
                print(f"{family:<10}{role:<14}{wall[role]:>9.2f}{args.videos / wall[role]:>10.1f}{frames[role]:>8.1f}"
                      f"{ratio_text:>8}{mac_text:>11}{shares}")
            ratios[family] = (wall["student"] / wall["teacher"], macs["student"] / macs["teacher"])
            print(f"{family} content k={args.content_k} / student k={K} wall time to CSV: "
                  f"{wall['content'] / wall['student']:.3f}x (multiply-adds {macs['content'] / macs['student']:.3f}x)")
            adaptive = [role for role in models if role.startswith("adaptive")]
            print(f"{family} read adaptively / student k={K} wall time to CSV: " + ", ".join(
                f"{role} {wall[role] / wall['student']:.3f}x ({frames[role]:.1f} frames, multiply-adds "
                f"{macs[role] / macs['student']:.3f}x)" for role in adaptive))
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
