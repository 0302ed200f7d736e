"""What a model's 95% interval costs: `workloads.bootstrap` on test splits of growing size, against one exact
GAP of the same predictions (what `evaluate` computes anyway).

    python benchmarks/bootstrap_speed.py [--videos 400 20000 100000] [--classes 3862] [--resamples 1000]

Prints, per size, the seconds to draw the shared resamples, the seconds to resample one model's GAP, and
that as a multiple of one exact GAP. Above 20,000 videos the resampling runs on a fixed 20,000-video subset
(rescaled), so its cost stops growing with the split.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from machine import describe_machine  # benchmarks/machine.py, beside this script
from workloads.bootstrap import Resamples, resampled_gap
from workloads.metrics import TopKAccumulator


def predictions(videos: int, classes: int, rng: np.random.Generator) -> TopKAccumulator:
    """A model's top 20 on `videos` videos of 1-3 labels, scores a little higher where a label is."""
    accumulator = TopKAccumulator(classes)
    for start in range(0, videos, 5_000):
        n = min(5_000, videos - start)
        labels = np.zeros((n, classes), np.float32)
        for _ in range(3):
            labels[np.arange(n), rng.zipf(1.3, n) % classes] = 1
        scores = rng.random((n, classes), dtype=np.float32) + labels * np.float32(0.5)
        accumulator.add(scores, labels, ids=[f"v{start + i:08d}" for i in range(n)])
    return accumulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, nargs="+", default=[400, 20_000, 100_000])
    parser.add_argument("--classes", type=int, default=3862)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    print(describe_machine())  # the machine's own limits: figures below read as shares of them
    rng = np.random.default_rng(0)
    for videos in args.videos:
        accumulator = predictions(videos, args.classes, rng)
        kept = accumulator.predictions()
        start = time.perf_counter()
        exact = accumulator.gap()
        one_gap = time.perf_counter() - start
        start = time.perf_counter()
        resamples = Resamples.of(kept.ids, resamples=args.resamples)
        drawn = time.perf_counter() - start
        start = time.perf_counter()
        interval = resampled_gap(kept, resamples, exact).interval()
        resampled = time.perf_counter() - start
        print(f"{videos:>8,} videos: resamples drawn in {drawn:6.2f} s; one model's {args.resamples} GAPs in "
              f"{resampled:6.2f} s = {resampled / max(one_gap, 1e-9):7.1f} x one exact GAP ({one_gap:.3f} s); "
              f"GAP {exact:.4f} {interval}")


if __name__ == "__main__":
    main()
