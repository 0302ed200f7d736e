"""What the `paper` preset costs in device-hours, from training and inference throughput measured here.

    python benchmarks/paper_cost.py [--device cuda] [--batch-size N] [--steps 3]
        [--train-videos 3888919] [--validate-videos 1112356] [--save rates.json]

Measures, on this device and at the paper's model sizes, the seconds per video of a training step
(forward, backward, Adam) and of inference, for each family's teacher (all 300 frames) and its students
at each k of the preset, on random inputs (the data pipeline is measured by reader_throughput.py). Then
adds up the preset's matrix (`orchestrator.experiment.matrix.expand`): each teacher's epochs over its fraction of
the training set, its validation passes and its cache export; each cell's epochs and validation passes
(a parallel cell trains its teacher too). Run it on one GPU of the cluster's type: the total is the
GPU-hours of the grid (`orchestrator.driver.cost`). Video counts default to YouTube-8M's frame-level train
and validate splits. `--save` keeps the measured seconds per video for `python -m orchestrator.grid --plan
--rates rates.json`, which prints the same estimate for any preset.
"""

from __future__ import annotations

import argparse

import torch

from orchestrator.experiment.presets import load_preset
from orchestrator.driver.cost import YOUTUBE8M_TRAIN, YOUTUBE8M_VALIDATE, Rates, device_hours
from orchestrator.experiment.matrix import expand
from workloads.memory import keep_freed_memory
from workloads.throughput import seconds_per_video
from machine import describe_machine  # benchmarks/machine.py, beside this script

CLASSES = 3862


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, help="default: each family's batch size in the preset (256, 80)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--train-videos", type=int, default=YOUTUBE8M_TRAIN)
    parser.add_argument("--validate-videos", type=int, default=YOUTUBE8M_VALIDATE)
    parser.add_argument("--save", help="write the measured seconds per video here, for `orchestrator.grid --plan --rates`")
    args = parser.parse_args()
    keep_freed_memory()  # as the project's own processes run (workloads.memory)
    print(describe_machine())  # the machine's own limits: figures below read as shares of them
    preset = load_preset("paper")
    frames = preset.data.max_frames
    teachers, cells = expand(preset, "yt8m")
    seconds: dict[tuple[str, int | None], tuple[float, float]] = {}
    for family in preset.families:
        batch = args.batch_size or preset.train_settings(family, "student").batch_size
        for k in (None, *preset.ks):
            seconds[(family, k)] = seconds_per_video(family, "paper", CLASSES, k, k or frames, batch, args.steps,
                                                     args.device)
            train, infer = seconds[(family, k)]
            print(f"  {family:<9} {'teacher' if k is None else f'k={k}':<8} train {1 / train:8.1f} videos/s   "
                  f"inference {1 / infer:8.1f} videos/s", flush=True)
    rates = Rates(args.device, "paper", seconds)
    if args.save:
        rates.save(args.save)
    hours = device_hours(teachers, cells, rates, args.train_videos, args.validate_videos,
                         preset.resources.cell.parallel_group)
    print(f"paper preset: {len(teachers)} teachers, {len(cells)} cells; YouTube-8M {args.train_videos:,} training and "
          f"{args.validate_videos:,} validation videos; measured on {args.device}, batch {args.batch_size or 'as the preset'}")
    for kind, value in sorted(hours.items()):
        print(f"  {kind:<10} {value:12,.0f} {args.device}-hours")
    print(f"  {'total':<10} {sum(hours.values()):12,.0f} {args.device}-hours")


if __name__ == "__main__":
    main()
