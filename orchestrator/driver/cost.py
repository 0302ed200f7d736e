"""What a preset costs in device-hours, from seconds per video measured on the cluster's device
(`benchmarks/paper_cost.py --save FILE` measures them at the paper's model sizes): each teacher's epochs over
its share of the training set, its validation passes and its cache exports; each cell's epochs and
validation passes (a parallel cell trains its teacher too, once per group of cells that share it). Two
cells sharing a device each take about twice as long, so sharing does not change the sum.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

from orchestrator.errors import OrchestratorError
from orchestrator.experiment.matrix import Cell, TeacherSpec
from orchestrator.experiment.modes import Mode
from orchestrator.experiment.groups import grouped
from workloads.variants import epochs_trained

YOUTUBE8M_TRAIN, YOUTUBE8M_VALIDATE = 3_888_919, 1_112_356  # frame-level train and validate splits


@dataclass(frozen=True)
class Rates:
    """Seconds per video of a training step and of inference, by (family, k) (k None: the teacher), of
    models of one size on one device."""

    device: str
    size: str
    seconds: dict[tuple[str, int | None], tuple[float, float]]

    def save(self, path: str) -> None:
        by_family: dict[str, dict[str, list[float]]] = defaultdict(dict)
        for (family, k), pair in self.seconds.items():
            by_family[family]["all" if k is None else str(k)] = list(pair)
        with open(path, "w") as file:
            json.dump({"device": self.device, "size": self.size, "seconds_per_video": by_family}, file, indent=1)

    @classmethod
    def load(cls, path: str) -> Rates:
        try:
            with open(path) as file:
                found = json.load(file)
            seconds = {(family, None if k == "all" else int(k)): (float(pair[0]), float(pair[1]))
                       for family, by_k in found["seconds_per_video"].items() for k, pair in by_k.items()}
            return cls(str(found["device"]), str(found["size"]), seconds)
        except OSError as error:
            raise OrchestratorError(f"--rates {path}: {error.strerror}") from None
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise OrchestratorError(f"--rates {path}: not a file `benchmarks/paper_cost.py --save` wrote "
                                    f"({type(error).__name__}: {error})") from None

    def of(self, family: str, k: int | None) -> tuple[float, float]:
        if (family, k) not in self.seconds:
            what = "its teacher" if k is None else f"k={k}"
            raise OrchestratorError(f"the measured rates have no {family} {what}: measure them for this preset")
        return self.seconds[(family, k)]


def device_hours(teachers: list[TeacherSpec], cells: list[Cell], rates: Rates, train_videos: int,
                 validate_videos: int, parallel_group: int = 1) -> dict[str, float]:
    """Device-hours by kind of job: "teachers", then each cell mode but the skyline (its teacher's). A
    parallel cell trains its teacher too, once for each group of `parallel_group` cells that share it
    (`orchestrator.experiment.groups`; the group's members share that cost evenly)."""
    hours: dict[str, float] = defaultdict(float)
    for teacher in teachers:
        train, infer = rates.of(teacher.family, None)
        videos = train_videos * teacher.data_fraction
        exports = 1 + len({(c.k, c.intermediate_points) for c in cells if c.teacher == teacher and c.intermediate})
        passes = teacher.train.epochs * (videos * train + validate_videos * infer)
        hours["teachers"] += (passes + exports * videos * infer + validate_videos * infer) / 3600
    for job in grouped([c for c in cells if c.mode is not Mode.SKYLINE], parallel_group):  # a skyline: its teacher's
        for cell in job:
            hours[cell.mode] += _cell_seconds(cell, rates, train_videos, validate_videos, len(job)) / 3600
    return dict(hours)


def _cell_seconds(cell: Cell, rates: Rates, train_videos: int, validate_videos: int, group: int) -> float:
    """A cell's epochs and validation passes; a parallel cell's share of its group's teacher."""
    train, infer = rates.of(cell.family, cell.k)
    videos = train_videos * cell.data_fraction
    epochs = epochs_trained(cell.train.epochs, cell.variant, cell.stage_epochs)
    seconds = epochs * (videos * train + validate_videos * infer) + validate_videos * infer
    if cell.mode is Mode.PARALLEL:  # the teacher trains alongside, on all frames
        teacher_train, teacher_infer = rates.of(cell.family, None)
        seconds += epochs * (videos * teacher_train + validate_videos * teacher_infer) / group
    return seconds
