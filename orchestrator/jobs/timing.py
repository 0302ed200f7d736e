"""The timing job: Table 3's time column, measured fairly. Cells train on whatever node Ray gives them, so
their own inference times do not compare; this job runs, in one Ray task on one device of the cell type,
each family's teacher over all frames and its student at every k of the preset, side by side
(`workloads.timing`), over the same test videos. A grid runs it when its cells are done, and logs the
figures on its parent run as `time_per_video_ms/<family>/<all|k<k>>`, with the device as `timing_device`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from orchestrator.experiment.presets import Preset
from orchestrator.jobs.data_sets import DataSet
from orchestrator.errors import note, one_line
from orchestrator.tracking.runs import TIMING_PREFIX
from workloads.data.batch import FrameSelection, VideoBatch
from workloads.models import ModelSpec
from workloads.timing import milliseconds_per_video
from workloads.train import seed_everything

TIMING_VIDEOS = 256  # test videos each model runs over, per round


@dataclass(frozen=True)
class TimingJob:
    models: tuple[tuple[ModelSpec, int], ...]  # each family's model and its batch size
    ks: tuple[int, ...]
    data: DataSet
    device: str  # "cpu", or "auto": CUDA when the task was given a GPU


def timing_job(preset: Preset, data: DataSet) -> TimingJob:
    specs = tuple((ModelSpec(family, preset.size, tuple(sorted(preset.model_overrides.get(family, {}).items()))),
                   preset.train_settings(family, "student").batch_size) for family in preset.families)
    return TimingJob(specs, tuple(preset.ks), data, preset.resources.cell.device)


def _batches(data: DataSet, batch_size: int, selection: FrameSelection | None) -> list[VideoBatch]:
    """The first TIMING_VIDEOS test videos (fewer when the split is smaller), read as a model reads them."""
    batches, videos = [], 0
    for batch in data.testing(batch_size, selection):
        batches.append(batch)
        videos += len(batch.ids)
        if videos >= TIMING_VIDEOS:
            break
    return batches


def time_models(job: TimingJob) -> tuple[str, dict[str, float]]:
    """(the device, "<family>/<all|k<k>>" -> milliseconds per video)."""
    device = torch.device("cuda" if job.device == "auto" and torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {threads} thread{'s' * (threads > 1)}"
    found: dict[str, float] = {}
    for spec, batch_size in job.models:
        seed_everything(0)  # weights do not change the work; a fixed seed keeps runs alike
        models = {"all": (spec.build(job.data.num_classes), _batches(job.data, batch_size, None))}
        for k in job.ks:
            models[f"k{k}"] = (spec.build(job.data.num_classes, k=k),
                               _batches(job.data, batch_size, FrameSelection("uniform", k=k)))
        for what, ms in milliseconds_per_video(models, device).items():
            found[f"{spec.family}/{what}"] = ms
        del models
    return where, found


def timing_keys(preset: Preset) -> list[str]:
    """The parent-run metrics a timing of `preset`'s models logs."""
    return [f"{TIMING_PREFIX}{family}/{what}" for family in preset.families
            for what in ("all", *(f"k{k}" for k in preset.ks))]


def time_on_parent(ray: Any, preset: Preset, data: DataSet, tracker, trained: bool) -> bool:
    """Run the timing job on a cell's resources and log it on the tracker's open parent run; skipped when
    this invocation `trained` nothing and an earlier one timed these models (its figures stand: the report
    reads the newest). Whether it was logged: a failure is a note, not a failed grid (the report then says
    the time was not measured)."""
    if not trained and tracker.parent_with_metrics(timing_keys(preset)):
        return False
    cell = preset.resources.cell
    task = ray.remote(time_models).options(num_cpus=cell.cpus, num_gpus=cell.gpus, resources=cell.custom or None)
    try:
        where, found = ray.get(task.remote(timing_job(preset, data)))
        tracker.log_metrics(tracker.parent_id, {TIMING_PREFIX + key: value for key, value in found.items()})
        tracker.set_tags(tracker.parent_id, {"timing_device": where})
    except Exception as error:  # noqa: BLE001 - see the docstring
        note("timing", f"inference time not measured ({type(error).__name__}: {one_line(error)})")
        return False
    return True
