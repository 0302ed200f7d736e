"""A grid's jobs: one cell, or the parallel cells whose teachers would train alike, trained as one group.

A parallel pair trains its teacher from scratch, and the teacher's all-frames passes are most of a pair's
cost (the smoke grid's parallel cells were two thirds of its CPU time). Pairs whose teachers would train
identically, the same family, size, data, fraction, seed and training (their students may differ in k,
frame selection, losses, output layer and targets), share one copy of it (`workloads.parallel_group`),
each student's numbers what it would get alone. Clipping the gradients' joint norm would couple the
students, so such cells run alone.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Hashable

from orchestrator.errors import OrchestratorError
from orchestrator.experiment.matrix import Cell
from orchestrator.experiment.modes import Mode
from orchestrator.experiment.results import CellResult
from orchestrator.jobs.cells import Kept, cell_stages, resolve, run_cell, run_group
from orchestrator.jobs.data_sets import DataSet
from workloads.progress import EpochCallback, announce_start


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
    open_groups: dict[Hashable, list[Cell]] = defaultdict(list)
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


def run_cells(cells: tuple[Cell, ...], data: DataSet, cache_uri: str | None, device: str,
              on_epochs: tuple[EpochCallback | None, ...], kept: tuple[Kept, ...]) -> list[CellResult]:
    """What a grid's Ray task runs: one cell (`run_cell`), or a group of parallel cells that share their
    teacher's training; their results in their order."""
    if len(cells) == 1:
        return [run_cell(cells[0], data, cache_uri, device, on_epochs[0], kept[0])]
    if len({teacher_training(cell) for cell in cells} - {None}) != 1 or None in map(teacher_training, cells):
        raise OrchestratorError(f"{', '.join(c.name for c in cells)}: only parallel cells whose teachers train "
                                "alike (family, size, data, seed, training) train as one group")
    started = time.perf_counter()
    for on_epoch in on_epochs:
        announce_start(on_epoch)
    recipes = [resolve(cell, data.num_classes, device) for cell in cells]
    return run_group(recipes, data, list(on_epochs), list(kept), started)
