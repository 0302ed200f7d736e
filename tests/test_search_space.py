"""Search spaces: the shipped studies load; bad files fail naming the key; trials map to grid cells; the
Pareto front and the best configuration as a grid override."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from orchestrator.experiment.presets import load_preset
from orchestrator.errors import OrchestratorError
from orchestrator.experiment.matrix import cell_stages, expand
from orchestrator.experiment.fronts import pareto_front
from orchestrator.report.pareto import best_override
from orchestrator.experiment.results import Trial
from orchestrator.experiment.search_parameters import override_of, settings_of
from orchestrator.experiment.search_space import load_space, parse_space

SPACES = sorted((Path(__file__).resolve().parents[1] / "search_spaces").glob("*.yaml"))
BASE = {"name": "s", "family": "hrnn", "variant": "rep+pred+ce", "search": {"w_rep": {"loguniform": [1e-4, 1.0]}}}


def template():
    _, cells = expand(load_preset("tiny"), "data-1")
    return next(c for c in cells if c.mode == "serial" and c.variant == "rep+pred+ce")


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_shipped_spaces_load_and_build_ray_domains(path):
    space = load_space(str(path))
    domains = space.tune_space()
    assert set(domains) == set(space.search) and domains
    assert space.trial_cell(template(), {name: d.sample() for name, d in domains.items()}).mode == "serial"


def test_there_is_a_weights_study_and_a_stride_study():
    searched = [set(load_space(str(p)).search) for p in SPACES]
    assert any({"w_rep", "w_pred", "w_ce"} <= s for s in searched)
    assert any("j" in s or "k" in s for s in searched)


@pytest.mark.parametrize("change, message", [
    ({"colour": 1}, "colour: unknown key"),
    ({"family": "resnet"}, "family: unknown model family 'resnet'"),
    ({"variant": "rep"}, "variant: unknown serial variant"),
    ({"search": {}}, "search: a mapping of at least one parameter"),
    ({"search": {"w_foo": {"uniform": [0, 1]}}}, "search.w_foo: unknown parameter"),
    ({"search": {"w_rep": {"loguniform": [0, 1]}}}, "log-uniform range must be above 0"),
    ({"search": {"w_rep": {"uniform": [1, 0.5]}}}, "low 1 must be below high 0.5"),
    ({"search": {"w_rep": {"normal": [0, 1]}}}, "search.w_rep: one of"),
    ({"search": {"j": {"uniform": [2, 8]}}}, "j is an integer"),
    ({"search": {"pred_distance": {"choice": ["kl", "cosine"]}}}, "search.pred_distance.choice: pred distance must be one of"),
    ({"search": {"j": {"int": [2, 8]}}, "fixed": {"k": 10}}, "the stride j or the frame count k, not both"),
    ({"fixed": {"w_rep": 0.1}}, "fixed.w_rep: is also searched"),
    ({"fixed": {"learning_rate": 0}}, "fixed.learning_rate: need learning_rate > 0"),
    ({"fixed": {"w_pred": -1}}, "fixed.w_pred: loss weights must be >= 0"),
    ({"fixed": {"k": 0}}, "fixed.k: frame selection k must be >= 1"),
    ({"fixed": {"j": 2.5}}, "fixed.j: a positive integer"),
    ({"search": {"w_rep": {"choice": ["a lot"]}}}, "search.w_rep.choice: a number"),
    ({"epochs": 0}, "epochs: an integer >= 1"),
    ({"name": "a/b"}, "name: letters, digits"),
    ({"early_stopping": "median"}, "early_stopping: one of pareto, gap, off"),
])
def test_bad_spaces_name_the_key(change, message):
    with pytest.raises(OrchestratorError, match=message) as caught:
        parse_space({**BASE, **change}, "space.yaml")
    assert str(caught.value).startswith("space.yaml: ")


def test_unreadable_space_file(tmp_path):
    with pytest.raises(OrchestratorError, match="cannot read the search space"):
        load_space(str(tmp_path / "missing.yaml"))
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(OrchestratorError, match="bad.yaml: not valid YAML"):
        load_space(str(tmp_path / "bad.yaml"))


def test_a_trial_becomes_a_serial_cell():
    space = parse_space({**BASE, "fixed": {"w_pred": 0.01}, "epochs": 2,
                         "search": {"w_rep": {"loguniform": [1e-4, 1.0]}, "j": {"int": [2, 12]},
                                    "learning_rate": {"loguniform": [1e-4, 1e-2]}}}, "s.yaml")
    base = template()
    cell = space.trial_cell(base, {"w_rep": 0.001, "j": 6, "learning_rate": 0.002})
    weights = dict(cell.loss_weights)
    assert weights["rep"] == 0.001 and weights["pred"] == 0.01 and weights["ce"] == dict(base.loss_weights)["ce"]
    assert cell.k == base.max_frames // 6 and cell.j == 6
    assert cell.train.learning_rate == 0.002 and cell.train.epochs == 2
    assert cell.teacher == base.teacher and cell.id != base.id
    objective = cell_stages(cell)[0].objective
    assert objective.weights == {"rep": 0.001, "pred": 0.01, "ce": weights["ce"]}


def trial(gap, macs, config=None, settings=None):
    return Trial("t", config or {}, settings or {}, gap, 0.0, macs, 0.0, 0.0, ())


def test_pareto_front():
    trials = [trial(0.5, 10), trial(0.7, 30), trial(0.6, 30), trial(0.4, 10), trial(0.65, 20), trial(0.7, 40)]
    assert pareto_front(trials) == [trial(0.5, 10), trial(0.65, 20), trial(0.7, 30)]
    assert pareto_front([]) == []


def test_the_best_configuration_is_a_grid_override(tmp_path):
    space = parse_space(BASE, "s.yaml")
    best = trial(0.61, 4_000_000, config={"w_rep": 0.002},
                 settings={"w_ce": 1.0, "w_pred": 0.01, "w_rep": 0.002, "w_rep_intermediate": 1.0, "k": 7, "j": 8,
                           "learning_rate": 0.004, "pred_distance": "mse"})
    override = yaml.safe_load(best_override(space, "tiny", best))
    preset = load_preset("tiny", override)
    assert preset.ks == (7,) and preset.serial == ("rep+pred+ce",) and preset.families == ("hrnn",)
    assert preset.loss_weights["rep"] == 0.002 and preset.pred_distance == "mse"
    assert preset.student_train.learning_rate == 0.004
    _, cells = expand(preset, "data-1")
    serial = next(c for c in cells if c.mode == "serial" and not c.intermediate)
    assert cell_stages(serial)[0].objective.weights == {"rep": 0.002, "pred": 0.01, "ce": 1.0}


def test_a_study_resumes_with_its_own_space_and_refuses_a_changed_one(tmp_path, capsys):
    from orchestrator.store.layout import Store
    from orchestrator.driver.study import study_record

    store = Store(str(tmp_path))
    space = parse_space(BASE, "s.yaml")
    assert study_record(store, space, 8) == {"trials": 8, "space": study_record(store, space, 8)["space"]}
    assert study_record(store, space, 20)["trials"] == 8  # resumed with what it was started with
    assert "started with 8 trials" in capsys.readouterr().out
    changed = parse_space({**BASE, "search": {"w_rep": {"loguniform": [1e-3, 1.0]}}}, "s.yaml")
    with pytest.raises(OrchestratorError, match="was started with another search space"):
        study_record(store, changed, 8)
    record = tmp_path / "tune" / "s.json"
    record.write_text(record.read_text()[:20])  # cut short: set aside, the study goes on with what it is given
    assert study_record(store, changed, 5)["trials"] == 5
    assert "set aside as s.json.unreadable-" in capsys.readouterr().out
    assert len(list(record.parent.glob("s.json.unreadable-*"))) == 1


def test_a_content_trial_trains_a_content_student_that_the_grid_reproduces():
    space = load_space(str(next(p for p in SPACES if p.name == "frames_by_content.yaml")))
    cell = space.trial_cell(template(), {"selection": "salient", "k": 8})
    assert cell.chooses_by_content and cell.k == 8 and cell.adaptive is None
    assert settings_of(cell)["selection"] == "salient"
    assert "selection" not in settings_of(space.trial_cell(template(), {"selection": "uniform", "k": 8}))
    override = override_of({"selection": "salient", "k": 8})
    assert override == {"content": {"rules": ["salient"]}, "ks": [8]}
    # The grid with that override trains the trial's student, and its control on uniform frames beside it
    _, cells = expand(load_preset("tiny", {**override, "serial": ["rep+pred+ce"]}), "data-1")
    assert cell.id in {c.id for c in cells}
    assert any(c.k == 8 and c.variant == "rep+pred+ce" and c.selection == "uniform" for c in cells)
    with pytest.raises(OrchestratorError, match=r"search\.selection\.choice: unknown content selection 'salience'"):
        parse_space({**BASE, "search": {"selection": {"choice": ["uniform", "salience"]}}}, "space.yaml")


def test_a_trial_sets_its_frame_scorer_and_the_grid_reproduces_it():
    space = parse_space({**BASE, "search": {"scorer_width": {"choice": [8, 64]}, "selection": {"choice": ["salient"]},
                                            "scorer_learning_rate": {"loguniform": [1e-3, 1e-2]}}}, "s.yaml")
    # The scorer's settings follow the selection however the sampler orders them (numpy's numbers too)
    values = {"scorer_width": np.int64(8), "scorer_learning_rate": 0.002, "selection": "salient"}
    cell = space.trial_cell(template(), values)
    assert (cell.scorer.width, cell.scorer.learning_rate, type(cell.scorer.width)) == (8, 0.002, int)
    found = settings_of(cell)
    assert {name: found[name] for name in ("selection", "scorer_width", "scorer_epochs", "scorer_learning_rate")} == {
        "selection": "salient", "scorer_width": 8, "scorer_epochs": 4, "scorer_learning_rate": 0.002}
    # On uniform frames there is no scorer: the trial is the uniform student whatever width was sampled
    uniform = space.trial_cell(template(), {**values, "selection": "uniform"})
    assert uniform.id == space.trial_cell(template(), {"selection": "uniform", "scorer_width": 64}).id
    assert not any(name.startswith("scorer_") for name in settings_of(uniform))
    override = override_of({"selection": "salient", "scorer_width": 8, "scorer_epochs": 2})
    assert override == {"content": {"rules": ["salient"], "scorer": {"width": 8, "epochs": 2}}}
    _, cells = expand(load_preset("tiny", {**override, "serial": ["rep+pred+ce"]}), "data-1")
    trial = space.trial_cell(template(), {"selection": "salient", "scorer_width": 8, "scorer_epochs": 2})
    assert trial.id in {c.id for c in cells}
    with pytest.raises(OrchestratorError, match=r"search\.scorer_width\.choice: .*width must be an integer >= 1"):
        parse_space({**BASE, "search": {"scorer_width": {"choice": [0, 8]}}}, "space.yaml")
    with pytest.raises(OrchestratorError, match=r"search\.scorer_width: scorer_width is an integer"):
        parse_space({**BASE, "search": {"scorer_width": {"uniform": [4, 8]}}}, "space.yaml")


def test_an_adaptive_trial_reads_adaptively_reports_that_reading_and_the_grid_reproduces_it():
    from orchestrator.driver.study import final_report
    from orchestrator.experiment.results import CellResult

    space = load_space(str(next(p for p in SPACES if p.name == "adaptive_reading.yaml")))
    assert space.reads_adaptively and not parse_space(BASE, "s.yaml").reads_adaptively
    cell = space.trial_cell(template(), {"k": 20, "tolerance": 0.01})
    assert cell.k == 20 and cell.adaptive.tolerance == 0.01 and settings_of(cell)["tolerance"] == 0.01
    assert cell.adaptive.thresholds == template().adaptive.thresholds  # the preset's other reading settings kept
    override = override_of({"k": 20, "tolerance": 0.01})
    assert override == {"ks": [20], "adaptive": {"tolerance": 0.01}}
    _, cells = expand(load_preset("tiny", {**override, "serial": ["rep+pred+ce"]}), "data-1")
    assert cell.id in {c.id for c in cells}
    # A content student is not read adaptively, whichever parameter comes first
    for values in ({"selection": "salient", "tolerance": 0.01}, {"tolerance": 0.01, "selection": "salient"}):
        assert space.trial_cell(template(), values).adaptive is None
    # Its last report: the reading's validation scores and multiply-adds, and the frames it read
    result = CellResult(gap=0.5, map=0.4, val_gap=0.6, val_map=0.5, best_epoch=1, train_seconds=1.0,
                        inference_seconds=1.0, macs=100, frame_macs=90, params=1, history=(), wall_seconds=1.0,
                        device="cpu", adaptive_val_gap=0.58, adaptive_val_map=0.45, adaptive_val_frames=7.5,
                        adaptive_val_macs=60.0, adaptive_gap=0.49, adaptive_map=0.38)
    read = final_report(result, adaptively=True)
    assert (read["gap"], read["map"], read["macs"], read["frames"]) == (0.58, 0.45, 60.0, 7.5)
    assert (read["test_gap"], read["test_map"]) == (0.49, 0.38)
    plain = final_report(result, adaptively=False)
    assert (plain["gap"], plain["macs"], plain["test_gap"]) == (0.6, 100, 0.5) and "frames" not in plain
    with pytest.raises(OrchestratorError, match=r"search\.tolerance\.choice: .*must be >= 0"):
        parse_space({**BASE, "search": {"tolerance": {"choice": [0.01, -0.1]}}}, "space.yaml")
