"""`--plan` without `--rates`: a short calibration on the machine at hand. Each model the preset trains
(every family's teacher and its students at each k, at the preset's size, class count and frames) is timed
for a few small batches on this machine's device, with as many threads as Ray gives a cell; the rates give
the grid's device-hours (`orchestrator.driver.cost`), and the wall time follows from how many cells this
machine runs at once. Compute only: reading the data, Ray and MLflow add to it (the smoke grid on 2 cores:
11 minutes estimated, 14 taken).
"""

from __future__ import annotations

import os
import time

import torch

from orchestrator.driver.cost import Rates
from orchestrator.experiment.presets import Preset
from workloads.data.convert import YOUTUBE8M_CLASSES
from workloads.throughput import seconds_per_video

BATCH, STEPS = 16, 2  # per model: a warm-up batch, then STEPS timed ones


def classes_of(preset: Preset) -> int:
    synthetic = preset.data.synthetic
    return synthetic.generator.num_classes if synthetic is not None else YOUTUBE8M_CLASSES


def threads_of(preset: Preset) -> int:
    """The threads a cell's training gets: Ray sets OMP_NUM_THREADS to a task's CPUs."""
    return max(1, int(preset.resources.cell.cpus))


def calibrate(preset: Preset, device: str | None = None) -> tuple[Rates, float]:
    """(The measured rates of every model of the preset, on `device` (CUDA when there is one, else the
    CPU); the seconds the measuring took.)"""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    started, threads = time.monotonic(), torch.get_num_threads()
    torch.set_num_threads(threads_of(preset))
    try:
        seconds = {}
        for family in preset.families:
            for k in (None, *preset.ks):
                frames = preset.data.max_frames if k is None else k
                seconds[(family, k)] = seconds_per_video(family, preset.size, classes_of(preset), k, frames, BATCH,
                                                         STEPS, device)
    finally:
        torch.set_num_threads(threads)
    where = f"{device} here, {threads_of(preset)} thread{'s' * (threads_of(preset) > 1)} a cell,"
    return Rates(where, preset.size, seconds), time.monotonic() - started


def cells_at_once(preset: Preset) -> int:
    """How many cells this machine runs side by side: its CPUs over a cell's (one GPU: one cell per GPU)."""
    cell = preset.resources.cell
    if cell.gpus > 0 and torch.cuda.is_available():
        return max(1, int(torch.cuda.device_count() / cell.gpus))
    return max(1, int((os.cpu_count() or 1) // max(cell.cpus, 1e-9)))


def wall_hours(hours: dict[str, float], teachers: int, slots: int) -> float:
    """The grid's wall time from its device-hours: teachers first, as many at once as fit (a cell waits for
    its teacher), then the cells spread over every slot."""
    teacher_hours = hours.get("teachers", 0.0)
    rest = sum(value for kind, value in hours.items() if kind != "teachers")
    return teacher_hours / max(1, min(slots, teachers)) + rest / slots
