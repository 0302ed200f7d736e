"""Which parallel cells may train as one group (`orchestrator.jobs.parallel_groups` runs them): those whose
teachers would train identically. A parallel pair trains its teacher from scratch, and its passes over
every frame are most of the pair's cost; pairs that differ only in their students (k, frame selection,
losses, output layer, targets) can share one copy of it. Plain data, so the driver plans and prices the
jobs (`orchestrator.driver.cost`) without importing what trains them.
"""

from __future__ import annotations

from typing import Hashable

from orchestrator.experiment.matrix import Cell, cell_stages
from orchestrator.experiment.modes import Mode


def teacher_training(cell: Cell) -> Hashable | None:
    """What a parallel cell's teacher's training depends on (None: a cell that trains alone): cells of the
    same one may share a teacher. The stages' epochs too, as each stage restarts the teacher's Adam."""
    if cell.mode is not Mode.PARALLEL or cell.train.max_grad_norm:
        return None
    epochs = tuple(stage.epochs or cell.train.epochs for stage in cell_stages(cell))
    return (cell.family, cell.size, cell.model, cell.data, cell.data_fraction, cell.seed, cell.train,
            cell.max_frames, epochs)


def grouped(cells: list[Cell], most: int) -> list[tuple[Cell, ...]]:
    """`cells` as jobs, in their order (a group where its first member stood): parallel cells of one
    teacher's training in groups of at most `most`, the others alone."""
    jobs: list[list[Cell]] = []
    open_groups: dict[Hashable, list[Cell]] = {}  # the last group of each teacher's training
    for cell in cells:
        key = teacher_training(cell)
        group = open_groups.get(key) if key is not None else None
        if group is not None and len(group) < most:
            group.append(cell)
            continue
        jobs.append([cell])
        if key is not None:
            open_groups[key] = jobs[-1]
    return [tuple(job) for job in jobs]
