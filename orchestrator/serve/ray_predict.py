"""Batch prediction spread over a Ray cluster with Ray Data: one item per shard, an autoscaling pool of
actors that each hold the model once (it reaches them through the object store) and yield a shard's
predictions batch by batch, streamed back to the driver in whatever order they finish."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from workloads.inference import Classifier, Predictions


class ShardLabeller:
    """A Ray Data actor: shard paths in, their videos' top classes out, one output block per batch."""

    def __init__(self, classifier_ref: list, batch_size: int, top_k: int, gpus: float):
        import ray
        import torch

        self.classifier: Classifier = ray.get(classifier_ref[0])
        if gpus and torch.cuda.is_available():
            self.classifier = Classifier(self.classifier.card, self.classifier.model.to("cuda"), "cuda")
        self.batch_size, self.top_k = batch_size, top_k

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        for shard in batch["shard"]:
            for predictions in self.classifier.predict_shard(str(shard), self.batch_size, self.top_k):
                yield {"id": _objects(predictions.ids), "classes": predictions.classes,
                       "scores": predictions.scores, "labels": _objects([l.tolist() for l in predictions.labels]),
                       "frames": predictions.frames}


def shard_predictions(ray, classifier: Classifier, shards: list[str], job) -> Iterator[Predictions]:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver draws one progress line of its own
    cpus = max(1.0, ray.cluster_resources().get("CPU", 1.0))
    workers = max(1, min(len(shards), int(cpus // max(job.cpus, 1e-9))))
    data = ray.data.from_items([{"shard": shard} for shard in shards], override_num_blocks=len(shards))
    labelled = data.map_batches(
        ShardLabeller, batch_size=1, concurrency=(1, workers), num_cpus=job.cpus, num_gpus=job.gpus or None,
        fn_constructor_kwargs={"classifier_ref": [ray.put(classifier)], "batch_size": job.batch_size,
                               "top_k": job.top_k, "gpus": job.gpus})
    for rows in labelled.iter_batches(batch_size=None, batch_format="numpy"):
        yield Predictions([str(video) for video in rows["id"]], np.asarray(rows["classes"]),
                          np.asarray(rows["scores"]), [np.asarray(labels, dtype=np.int64) for labels in rows["labels"]],
                          np.asarray(rows["frames"]))


def _objects(values: list) -> np.ndarray:
    """A one-dimensional object array (NumPy would make equal-length lists a matrix)."""
    array = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        array[i] = value
    return array
