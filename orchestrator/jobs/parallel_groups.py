"""A grid's job as a Ray task: one cell, or parallel cells whose teachers would train alike
(`orchestrator.experiment.groups`), trained beside one copy of the teacher (`workloads.parallel_group`),
each cell's numbers what it would get alone."""

from __future__ import annotations

import time

from orchestrator.errors import OrchestratorError
from orchestrator.experiment.groups import teacher_training
from orchestrator.experiment.matrix import Cell
from orchestrator.experiment.results import CellResult
from orchestrator.jobs.cells import Kept, resolve, run_cell, run_group
from orchestrator.jobs.data_sets import DataSet
from workloads.progress import EpochCallback, announce_start


def run_cells(cells: tuple[Cell, ...], data: DataSet, cache_uri: str | None, device: str,
              on_epochs: tuple[EpochCallback | None, ...], kept: tuple[Kept, ...]) -> list[CellResult]:
    """What a grid's Ray task runs: one cell (`run_cell`), or a group of parallel cells that share their
    teacher's training; their results in their order."""
    if len(cells) == 1:
        return [run_cell(cells[0], data, cache_uri, device, on_epochs[0], kept[0])]
    keys = {teacher_training(cell) for cell in cells}
    if None in keys or len(keys) != 1:
        raise OrchestratorError(f"{', '.join(c.name for c in cells)}: only parallel cells whose teachers train "
                                "alike (family, size, data, seed, training) train as one group")
    started = time.perf_counter()
    for on_epoch in on_epochs:
        announce_start(on_epoch)
    recipes = [resolve(cell, data.num_classes, device) for cell in cells]
    return run_group(recipes, data, list(on_epochs), list(kept), started)
