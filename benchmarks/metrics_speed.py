"""GAP and mAP on a YouTube-8M-sized validation set: 100k videos x 3862 classes.

    python benchmarks/metrics_speed.py [--videos 100000] [--classes 3862]

Prints the seconds each metric takes on float32 sigmoid-like scores, with and without tied scores (ties
take the starter code's exact tie-breaking path).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from workloads.metrics import TopKAccumulator
from machine import describe_machine  # benchmarks/machine.py, beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=3862)
    args = parser.parse_args()
    print(describe_machine())  # the machine's own limits: figures below read as shares of them
    rng = np.random.default_rng(0)
    labels = np.zeros((args.videos, args.classes), dtype=np.uint8)
    for i in range(3):
        labels[np.arange(args.videos), rng.zipf(1.3, args.videos) % args.classes] = 1
    scores = rng.random((args.videos, args.classes), dtype=np.float32)
    scores += labels * np.float32(0.5)
    for name, data in (("distinct scores", scores), ("tied scores (rounded to 1e-3)", np.round(scores, 3))):
        start = time.perf_counter()
        acc = TopKAccumulator(args.classes)
        for lo in range(0, args.videos, 10_000):
            acc.add(data[lo : lo + 10_000], labels[lo : lo + 10_000])
        accumulated = time.perf_counter() - start
        gap = acc.gap()
        gap_done = time.perf_counter() - start
        mean_ap = acc.mean_average_precision()
        total = time.perf_counter() - start
        print(f"{name:<32} top-20 {accumulated:5.1f} s  GAP {gap:.4f} +{gap_done - accumulated:4.1f} s  "
              f"mAP {mean_ap:.4f} +{total - gap_done:4.1f} s  total {total:5.1f} s "
              f"({args.videos} videos x {args.classes} classes)")


if __name__ == "__main__":
    main()
