"""GAP@20 and mAP of a model on a data set, in one process or pooled over data-parallel replicas."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

import torch

from workloads.data.batch import FrameSelection, VideoBatch, subsample
from workloads.distributed import broadcast, check_share, gather_scores, unwrap
from workloads.errors import WorkloadError
from workloads.metrics import TopKAccumulator, TopKPredictions
from workloads.models import VideoModel
from workloads.precision import Precision


@dataclass(frozen=True)
class Evaluation:
    gap: float
    map: float
    videos: int
    seconds: float
    # Each video's top 20 (with `keep_predictions`; on rank 0 only when the data was one replica's share): what a paired bootstrap
    # of this model against another resamples (`workloads.bootstrap`).
    predictions: TopKPredictions | None = None


@torch.no_grad()
def evaluate(
    model: VideoModel,
    data: Iterable[VideoBatch],
    device: torch.device | str = "cpu",
    selection: FrameSelection | None = None,
    precision: str = "float32",
    keep_predictions: bool = False,
) -> Evaluation:
    """GAP@20 and mAP of `model` on `data`; `selection` subsamples all-frames batches first.

    When `data` is one data-parallel replica's share (see `workloads.distributed`), every replica calls
    this and all get the scores over the whole data. `keep_predictions`: the result holds each video's top
    20 as well (rank 0's result, then)."""
    device = torch.device(device)
    model = unwrap(model)
    share = check_share(data)
    running = Precision(device, precision)
    was_training = model.training
    model.eval()
    accumulator = None
    start = time.perf_counter()
    for batch in data:
        batch = batch.to(device)
        if selection is not None:
            batch = subsample(batch, selection)
        with running.autocast():
            out = model(batch.frames, batch.mask, batch.positions)
        scores = torch.sigmoid(out.logits.float()).cpu().numpy()
        if accumulator is None:
            accumulator = TopKAccumulator(scores.shape[1])
        accumulator.add(scores, batch.labels.cpu().numpy(), ids=list(batch.ids))
    model.train(was_training)
    if share:  # a share may hold no batch at all: the merged accumulator is what must not be empty
        accumulator = gather_scores(accumulator, getattr(data, "dataset", data).num_classes)
        scores = broadcast(None if accumulator is None else _scores(accumulator))
    else:
        scores = None if accumulator is None else _scores(accumulator)
    if scores is None:
        raise WorkloadError("evaluation data is empty")
    predictions = accumulator.predictions() if keep_predictions and accumulator is not None else None
    return Evaluation(*scores, time.perf_counter() - start, predictions=predictions)


def _scores(accumulator: TopKAccumulator) -> tuple[float, float, int] | None:
    """(GAP, mAP, videos), or None when nothing was accumulated."""
    if accumulator.num_videos == 0:
        return None
    return accumulator.gap(), accumulator.mean_average_precision(), accumulator.num_videos
