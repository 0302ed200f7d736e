"""`--plan` without rates: every model of a preset timed briefly on this machine, and the wall time that
follows from the cells it runs at once."""

import torch

from orchestrator.driver.calibration import calibrate, cells_at_once, threads_of, wall_hours
from orchestrator.experiment.presets import load_preset


def test_every_model_of_the_preset_is_timed_with_a_cells_threads():
    preset = load_preset("tiny")
    before = torch.get_num_threads()
    rates, took = calibrate(preset, "cpu")
    assert set(rates.seconds) == {("hrnn", None), ("hrnn", 10)} and rates.size == "small"
    teacher, student = rates.of("hrnn", None), rates.of("hrnn", 10)
    assert all(0 < s < 1 for s in (*teacher, *student)) and took > 0
    assert student[0] < teacher[0]  # 10 frames train faster than 60
    assert torch.get_num_threads() == before  # the driver's own threads given back
    assert rates.device == f"cpu here, {threads_of(preset)} thread a cell,"
    assert cells_at_once(preset) >= 1


def test_the_wall_time_waits_for_teachers_then_spreads_the_cells():
    assert wall_hours({"teachers": 2.0, "serial": 3.0, "baseline": 1.0}, teachers=1, slots=4) == 2.0 + 4.0 / 4
    assert wall_hours({"teachers": 2.0, "serial": 3.0}, teachers=4, slots=2) == 1.0 + 1.5
    assert wall_hours({}, teachers=0, slots=2) == 0.0
