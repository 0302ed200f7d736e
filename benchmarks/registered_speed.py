"""Registered models end to end on a labelled folder, side by side: time, test GAP, frames read.

    python benchmarks/registered_speed.py --tracking-uri URI --data FOLDER [--models NAME,NAME,...]
                                          [--rounds 3] [--batch-size 128]

What `benchmarks/predict_speed.py` cannot show with untrained weights: the models a grid registered, with
their own weights, so each one's time sits beside the GAP it reaches on the same videos, and an adaptive
student (`-adaptive`, whose work depends on where its weights let each video stop) reads what it reads.
Each pass is what `python -m orchestrator.predict` does once the model is loaded (shards read, frames
gathered, the model, the CSV written and renamed); rounds alternate the models, each figure the median
round. By default: the family's teacher, and every student registered at the largest k and below, e.g.
after the smoke grid (README's main command; its store is `runs/`):

    python benchmarks/registered_speed.py --tracking-uri sqlite:///runs/mlflow.db \
        --data runs/data/syn-c96fb7e0ab1919c2/test
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # the pass's own progress line would only slow and clutter it
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from mlflow.tracking import MlflowClient

from orchestrator.predict import Job, check_shards, load_classifier, predict_here, write_predictions
from workloads.inference import Scores

from machine import describe_machine  # benchmarks/machine.py, beside this script


def registered(tracking_uri: str) -> list[str]:
    """Every registered model of the store with a `best` alias, the teacher first."""
    names = [model.name for model in MlflowClient(tracking_uri).search_registered_models() if "best" in model.aliases]
    return sorted(names, key=lambda name: (not name.endswith("-all"), name))


def one_pass(classifier, shards: list[str], out: str, batch_size: int) -> tuple[float, float, float]:
    """(seconds, GAP, mean frames read) of one pass over the shards."""
    job = Job(model="benchmark", data="", out=out, batch_size=batch_size, labels=True)
    scores = Scores(classifier.card.num_classes)
    start = time.perf_counter()
    videos, read = write_predictions(predict_here(classifier, shards, job), job, 0, scores)
    return time.perf_counter() - start, scores.gap(), read / max(videos, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--data", required=True, help="a labelled folder of shards (a grid's test split)")
    parser.add_argument("--models", help="registered names, comma-separated (default: every one registered)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    names = args.models.split(",") if args.models else registered(args.tracking_uri)
    print(describe_machine())
    models = {name: load_classifier(f"models:/{name}@best", args.tracking_uri) for name in names}
    shards, total = check_shards(next(iter(models.values())), args.data)
    print(f"predict to CSV with labels: {total} videos of {args.data}, median of {args.rounds} rounds, "
          f"batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "predictions.csv")
        for classifier in models.values():  # warm-up: allocator, caches, page cache
            one_pass(classifier, shards[:1], out, args.batch_size)
        seconds = {name: [] for name in models}
        found = {}
        for _ in range(args.rounds):
            for name, classifier in models.items():
                wall, gap, frames = one_pass(classifier, shards, out, args.batch_size)
                seconds[name].append(wall)
                found[name] = (gap, frames)
    reference = statistics.median(seconds[names[0]])
    print(f"{'model':<34}{'seconds':>9}{'videos/s':>10}{'vs first':>10}{'test GAP':>10}{'frames read':>13}  reads")
    for name, classifier in models.items():
        wall = statistics.median(seconds[name])
        gap, frames = found[name]
        print(f"{name:<34}{wall:>9.2f}{total / wall:>10.1f}{wall / reference:>9.3f}x{gap:>10.4f}{frames:>13.1f}  "
              f"{classifier.card.reads}")


if __name__ == "__main__":
    main()
