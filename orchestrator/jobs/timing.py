"""The timing job: Table 3's time column, measured fairly. Cells train on whatever node Ray gives them, so
their own inference times do not compare; this job runs, in one Ray task on one device of the cell type,
each family's teacher over all frames and its student at every k of the preset, side by side
(`workloads.timing`), over the same test videos. A grid runs it when its cells are done, and logs the
figures on its parent run (`orchestrator.driver.closing`).

Untrained models do the work trained ones do, but for a student read adaptively: where each video stops
depends on its weights. That one is timed with the kept weights of the student best read adaptively at
its k (the registered `-adaptive` model), stopping by its own calibrated rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from orchestrator.experiment.modes import Role
from orchestrator.experiment.presets import Preset
from orchestrator.experiment.rows import timed, timed_adaptive, timed_content
from orchestrator.jobs.data_sets import DataSet
from orchestrator.store import weights
from workloads.data.batch import FrameSelection, VideoBatch
from workloads.models import ModelSpec
from workloads.saliency import ContentStudent, ScorerSettings
from workloads.timing import milliseconds_per_video
from workloads.train import seed_everything

TIMING_VIDEOS = 256  # test videos each model runs over, per round


@dataclass(frozen=True)
class TimingJob:
    models: tuple[tuple[ModelSpec, int], ...]  # each family's model and its batch size
    ks: tuple[int, ...]
    data: DataSet
    device: str  # "cpu", or "auto": CUDA when the task was given a GPU
    content: tuple[tuple[int, str], ...] = ()  # (k, rule) of each content student (`workloads.saliency`)
    scorer: ScorerSettings = ScorerSettings()  # their frame scorer's (its width is what its time depends on)
    adaptive: tuple[tuple[str, int, str], ...] = ()  # (family, k, kept weights) of each best adaptive reading


def timing_job(preset: Preset, data: DataSet, adaptive: dict[tuple[str, int], str] | None = None) -> TimingJob:
    """The job for `preset`'s models; `adaptive`: (family, k) -> the kept weights of the student best read
    adaptively there (`weights.best_adaptive`)."""
    specs = tuple((ModelSpec(family, preset.size, tuple(sorted(preset.model_overrides.get(family, {}).items()))),
                   preset.train_settings(family, Role.STUDENT).batch_size) for family in preset.families)
    return TimingJob(specs, tuple(preset.ks), data, preset.resources.cell.device, content_timed(preset),
                     preset.content.scorer if preset.content else ScorerSettings(),
                     tuple((family, k, location) for (family, k), location in sorted((adaptive or {}).items())))


def content_timed(preset: Preset) -> tuple[tuple[int, str], ...]:
    """(k, rule) of the content students the preset makes (those with a control: `ContentStudents`)."""
    if preset.content is None or not preset.content.controlled_serial(preset.serial):
        return ()
    return tuple((k, rule) for k in preset.content.controlled_ks(preset.ks) for rule in preset.content.rules)


def _batches(data: DataSet, batch_size: int, selection: FrameSelection | None) -> list[VideoBatch]:
    """The first TIMING_VIDEOS test videos (fewer when the split is smaller), read as a model reads them."""
    batches, videos = [], 0
    for batch in data.testing(batch_size, selection):
        batches.append(batch)
        videos += len(batch.ids)
        if videos >= TIMING_VIDEOS:
            break
    return batches


def time_models(job: TimingJob) -> tuple[str, dict[tuple[str, str], float]]:
    """(the device, (family, a Table 3 row's name: "all", "k<k>", ...) -> milliseconds per video)."""
    device = torch.device("cuda" if job.device == "auto" and torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {threads} thread{'s' * (threads > 1)}"
    found: dict[str, float] = {}
    for spec, batch_size in job.models:
        seed_everything(0)  # weights do not change the work; a fixed seed keeps runs alike
        classes = job.data.num_classes
        models = {what: (spec.build(classes, k=k),
                         _batches(job.data, batch_size, None if k is None else FrameSelection("uniform", k=k)))
                  for what, k in zip(timed(job.ks), (None, *job.ks))}
        for k, rule in job.content:  # handed every frame, as `predict` hands it them
            student = ContentStudent(spec.build(classes, k=k), job.scorer.build(classes), rule, k)
            models[timed_content(k, rule)] = (student, _batches(job.data, batch_size, None))
        for family, k, location in job.adaptive:  # handed its k frames, as `predict` hands it them
            if family == spec.family:
                reading = weights.reading_adaptively(*weights.read(location))[1]
                models[timed_adaptive(k)] = (reading, _batches(job.data, batch_size, FrameSelection("uniform", k=k)))
        for what, ms in milliseconds_per_video(models, device).items():
            found[(spec.family, what)] = ms
        del models
    return where, found
