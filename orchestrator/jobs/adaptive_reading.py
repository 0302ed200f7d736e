"""A serial student read adaptively (`workloads.adaptive`) once it is tested: the threshold calibrated on
the validation split (the most frugal within the cell's tolerance of reading all k), the test split read at
every threshold, and the chosen threshold's test predictions kept, so the report pairs them with the same
student's k-frame reading on the same videos.
"""

from __future__ import annotations

from typing import Any

from orchestrator.store.predictions import write_predictions
from workloads.adaptive import Curve, anytime, calibrate
from workloads.data.reader import VideoShards


def _sweep(recipe, shards: VideoShards, steps: tuple[int, ...], num_classes: int) -> Curve:
    cell = recipe.cell
    found = Curve(cell.k, steps, cell.adaptive.thresholds, recipe.cost, num_classes)
    for batch in shards:
        probabilities = anytime(recipe.model, batch.to(recipe.device), cell.k, steps)
        found.add(probabilities, batch.labels.numpy(), batch.num_frames.numpy(), list(batch.ids))
    return found


def read_adaptively(recipe, data, kept_predictions: str | None) -> dict[str, Any]:
    """The cell's adaptive reading as `CellResult` fields: the threshold, its validation GAP, mAP, mean
    frames read and multiply-adds (what a search's trial reading adaptively reports), its test GAP and mAP,
    mean frames read and multiply-adds, and the test curve (threshold, GAP, frames, multiply-adds)."""
    cell = recipe.cell
    steps, batch = cell.adaptive.steps_for(cell.k), cell.train.batch_size
    validation = _sweep(recipe, data.validation(batch), steps, data.num_classes)
    picked = calibrate(validation.points(), cell.adaptive.tolerance)
    test = _sweep(recipe, data.testing(batch), steps, data.num_classes)
    at = next(p for p in test.points() if p.threshold == picked.threshold)
    if kept_predictions is not None:
        write_predictions(kept_predictions, test.scores[picked.threshold].predictions())
    return {"adaptive_threshold": picked.threshold, "adaptive_val_gap": picked.gap,
            "adaptive_val_map": validation.scores[picked.threshold].mean_average_precision(),
            "adaptive_val_frames": picked.frames, "adaptive_val_macs": picked.macs, "adaptive_gap": at.gap,
            "adaptive_map": test.scores[picked.threshold].mean_average_precision(),
            "adaptive_frames": at.frames, "adaptive_macs": at.macs,
            "adaptive_curve": tuple((p.threshold, p.gap, p.frames, p.macs) for p in test.points())}


def stopping_rule(cell, reading: dict[str, Any]) -> dict[str, Any]:
    """The rule a cell's reading (`read_adaptively`'s fields) calibrated, as a model card keeps it
    (`ModelCard.stopping`: the threshold and the frames read after each step); {} without a reading."""
    if not reading:
        return {}
    return {"threshold": reading["adaptive_threshold"], "steps": list(cell.adaptive.steps_for(cell.k))}
