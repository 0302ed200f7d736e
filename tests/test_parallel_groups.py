"""A grid's jobs (`orchestrator.jobs.parallel_groups`): the parallel cells whose teachers would train alike
run as one group around one copy of the teacher, and each gets the numbers it gets alone."""

import dataclasses

import pytest

from orchestrator.driver.cost import Rates, device_hours
from orchestrator.errors import OrchestratorError
from orchestrator.experiment.groups import grouped, teacher_training
from orchestrator.experiment.matrix import expand
from orchestrator.experiment.modes import Mode
from orchestrator.experiment.presets import load_preset
from orchestrator.jobs.cells import Kept, run_cell
from orchestrator.jobs.data_sets import data_id
from orchestrator.jobs.parallel_groups import run_cells
from test_cells import data  # noqa: F401 - the cells tests' small data set, as a fixture here too


def cells_of(name):
    preset = load_preset(name)
    return expand(preset, data_id(preset.data))[1]


def test_parallel_cells_of_one_teachers_training_are_grouped_in_order_the_others_run_alone():
    cells = cells_of("smoke")
    jobs = grouped(cells, most=8)
    assert sorted(cell.name for job in jobs for cell in job) == sorted(cell.name for cell in cells)
    groups = [job for job in jobs if len(job) > 1]
    parallel = [cell for cell in cells if cell.mode is Mode.PARALLEL]
    assert len(groups) == len({cell.seed for cell in parallel}) == 2  # one teacher per seed
    for group in groups:
        assert {cell.mode for cell in group} == {Mode.PARALLEL} and len({cell.seed for cell in group}) == 1
        assert len({cell.k for cell in group}) > 1 and any(cell.intermediate for cell in group)
    assert sum(map(len, groups)) == len(parallel)
    first = cells.index(groups[0][0])
    assert jobs.index(groups[0]) == len(grouped(cells[:first], most=8))  # where its first member stood
    capped = grouped(parallel, most=3)
    assert max(map(len, capped)) == 3 and sum(map(len, capped)) == len(parallel)
    assert all(len(job) == 1 for job in grouped(parallel, most=1))
    clipped = [dataclasses.replace(cell, train=dataclasses.replace(cell.train, max_grad_norm=1.0)) for cell in parallel]
    assert teacher_training(clipped[0]) is None and all(len(job) == 1 for job in grouped(clipped, most=8))


def test_a_group_gives_each_cell_the_numbers_it_gets_alone(data, tmp_path):
    pair = next(cell for cell in cells_of("tiny") if cell.mode is Mode.PARALLEL)
    other = dataclasses.replace(pair, variant="rep+pred+ce", k=5)
    seen = {pair.name: [], other.name: []}
    kept = (Kept(), Kept(sample=str(tmp_path / "sample")))
    together = run_cells((pair, other), data, None, "cpu", tuple(seen[c.name].append for c in (pair, other)), kept)
    for cell, result in zip((pair, other), together):
        alone = run_cell(cell, data, None, "cpu")
        assert (result.gap, result.val_gap, result.teacher_gap, result.best_epoch) == \
            (alone.gap, alone.val_gap, alone.teacher_gap, alone.best_epoch)
        assert [(m.loss, m.losses) for m in result.history] == [(m.loss, m.losses) for m in alone.history]
        assert seen[cell.name] == list(result.history)  # its own epochs
        assert (result.parallel_group, alone.parallel_group) == (2, 1)
    assert together[1].rep_cosine is None  # measured by the driver, from the kept sample
    with pytest.raises(OrchestratorError, match="only parallel cells whose teachers train alike"):
        run_cells((pair, dataclasses.replace(other, seed=1)), data, None, "cpu", (None, None), (Kept(), Kept()))


def test_a_groups_teacher_is_priced_once():
    preset = load_preset("smoke")
    teachers, cells = expand(preset, data_id(preset.data))
    rates = Rates("cpu", "small", {(preset.families[0], k): (2.0, 1.0) for k in (None, *preset.ks)})
    alone = device_hours(teachers, cells, rates, 1000, 100, parallel_group=1)
    together = device_hours(teachers, cells, rates, 1000, 100, parallel_group=8)
    assert {kind: hours for kind, hours in alone.items() if kind != Mode.PARALLEL} == \
        {kind: hours for kind, hours in together.items() if kind != Mode.PARALLEL}
    parallel = [cell for cell in cells if cell.mode is Mode.PARALLEL]
    teacher_hours = sum(cell.train.epochs * (1000 * 2.0 + 100 * 1.0) for cell in parallel) / 3600
    groups = len(grouped(parallel, 8))
    saved = teacher_hours * (1 - groups / len(parallel))
    assert alone[Mode.PARALLEL] - together[Mode.PARALLEL] == pytest.approx(saved)
