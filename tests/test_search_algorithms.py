"""The study's searcher and early stopping without a cluster: Optuna never hands Tune a cell twice (a
duplicate is answered from the first one's result), a finite space is walked to its end; ASHA on two
objectives keeps a cheap trial a GAP-only rung would stop."""

import pytest
from ray.tune.search import Searcher

from orchestrator.driver.rungs import ParetoRungs, front_ranks, survives
from orchestrator.driver.search_algorithms import CellKey, DistinctOptunaSearch, distinct_configurations
from orchestrator.experiment.matrix import expand
from orchestrator.experiment.presets import load_preset
from orchestrator.experiment.search_space import parse_space
from orchestrator.report.pareto import ran_settings


def template():
    _, cells = expand(load_preset("tiny"), "data-1")  # 60 frames
    return next(c for c in cells if c.mode == "serial" and c.variant == "rep+pred+ce")


def space(search):
    return parse_space({"name": "s", "family": "hrnn", "variant": "rep+pred+ce", "search": search}, "space")


def searcher(search):
    studied = space(search)
    key = CellKey(studied, template())
    found = DistinctOptunaSearch(key, distinct_configurations(studied, key), seed=0)
    found.set_search_properties(None, None, studied.tune_space())
    return found, key


def test_strides_that_give_the_same_k_are_one_cell():
    studied = space({"j": {"int": [9, 12]}})  # 60 frames: j=9 gives k=6 (stride 10), j=11 and j=12 give k=5
    key = CellKey(studied, template())
    cells = distinct_configurations(studied, key)
    assert sorted(dict(key(c))["k"] for c in cells) == [5, 6]
    assert dict(key({"j": 11}))["j"] == 12  # the stride the cell reads
    assert ran_settings({"j": 11}, dict(key({"j": 11}))) == "j=12 (sampled j=11)"
    assert ran_settings({"j": 12}, dict(key({"j": 12}))) == "j=12"
    # Uniform frames: no scorer, so a sampled width is said to be unused, not to have run
    by_content = CellKey(space({"selection": {"choice": ["uniform", "salient"]}, "scorer_width": {"choice": [8, 64]}}),
                         template())
    uniform = {"selection": "uniform", "scorer_width": 64}
    assert ran_settings(uniform, dict(by_content(uniform))) == "selection=uniform (not used by this cell: scorer_width=64)"
    salient = {"selection": "salient", "scorer_width": 8}
    assert ran_settings(salient, dict(by_content(salient))) == "scorer_width=8, selection=salient"
    assert distinct_configurations(space({"w_rep": {"uniform": [0, 1]}}), key) is None  # continuous: unbounded


def test_a_duplicate_is_answered_and_a_finite_space_is_walked_to_its_end(capsys):
    found, key = searcher({"j": {"int": [9, 12]}, "pred_distance": {"choice": ["kl", "mse"]}})  # 4 cells
    seen = []
    for number in range(8):
        config = found.suggest(f"t{number}")
        if config == Searcher.FINISHED:
            break
        seen.append(key(config))
        found.on_trial_complete(f"t{number}", {"gap": 0.5 + number / 100, "macs": 1e6 * dict(key(config))["k"]})
    assert len(seen) == len(set(seen)) == 4
    assert config == Searcher.FINISHED
    assert "every distinct cell this search space allows has been sampled (4)" in capsys.readouterr().out
    # Optuna was told every point it proposed: the trials Tune ran and the duplicates answered from them
    told = found._ot_study.get_trials(deepcopy=False)
    assert len(told) > 4 and all(t.state.name == "COMPLETE" for t in told)
    firsts = {tuple(t.values) for t in told}
    assert len(firsts) == 4  # a duplicate was told exactly its first's objectives


def test_a_duplicate_of_a_running_trial_is_answered_when_it_ends():
    found, key = searcher({"j": {"int": [11, 12]}, "w_rep": {"choice": [0.1]}})  # one cell
    first = found.suggest("t0")
    assert found.suggest("t1") == Searcher.FINISHED  # the only cell runs: nothing else to hand out
    waiting = sum(len(trials) for trials in found._waiting.values())
    assert waiting >= 1 and not found._answers
    found.on_trial_complete("t0", {"gap": 0.7, "macs": 5e6})
    told = found._ot_study.get_trials(deepcopy=False)
    assert len(told) == waiting + 1 and {tuple(t.values) for t in told} == {(0.7, 5e6)}
    assert key(first)


def test_pareto_rungs_keep_a_cheap_trial_that_gap_alone_would_stop():
    rungs = ParetoRungs(grace_period=1, max_epochs=9, reduction_factor=3)
    assert sorted(rungs.recorded) == [1, 3]
    assert rungs.decide("dear", 1, 0.80, 9e9)  # first at the rung
    assert rungs.decide("cheap", 1, 0.60, 1e9)  # worse GAP, far cheaper: not dominated
    assert not rungs.decide("worse", 1, 0.55, 5e9)  # dominated by "cheap" and by "dear"
    assert rungs.decide("dear", 2, 0.81, 9e9)  # between rungs: no decision
    assert rungs.decide("dear", 3, 0.82, 9e9)
    assert not rungs.decide("dearer", 3, 0.70, 9.5e9)
    # GAP alone (equal cost): the best third continues, the rest stop
    alone = ParetoRungs(grace_period=1, max_epochs=9, reduction_factor=3)
    decisions = [alone.decide(f"t{i}", 1, gap, 1e9) for i, gap in enumerate([0.5, 0.6, 0.4, 0.7, 0.3, 0.65])]
    assert decisions == [True, True, False, True, False, True]  # 0.65 is second of six: in the best third


@pytest.mark.parametrize("scores, ranks", [
    ({"a": (0.8, 2.0), "b": (0.6, 1.0), "c": (0.5, 1.5)}, {"a": 0, "b": 0, "c": 1}),
    ({"a": (0.5, 1.0), "b": (0.5, 1.0)}, {"a": 0, "b": 0}),  # equal points: neither dominates
])
def test_non_dominated_sorting(scores, ranks):
    assert front_ranks(scores) == ranks


def test_a_front_that_crosses_the_cut_is_kept_whole():
    scores = {"a": (0.9, 3.0), "b": (0.7, 1.0), "c": (0.8, 2.0), "d": (0.6, 2.5)}
    assert [survives(name, scores, 3) for name in "abcd"] == [True, True, True, False]



def test_a_trials_lines_name_its_cell_once_and_the_frames_an_adaptive_reading_read(capsys):
    from types import SimpleNamespace

    from orchestrator.driver.search_algorithms import TrialProgress

    by_k = space({"k": {"int": [6, 10]}, "tolerance": {"choice": [0.0, 0.02]}})
    progress = TrialProgress(2, CellKey(by_k, template()))
    trial = SimpleNamespace(trial_id="t0", config={"k": 8, "tolerance": 0.02},
                            last_result={"final": True, "gap": 0.56, "macs": 3e6, "frames": 4.2})
    progress.on_trial_start(0, [], trial)
    progress.on_trial_complete(0, [], trial)
    out = capsys.readouterr().out
    assert "trial t0 started: k=8, tolerance=0.02 [" in out
    assert "trial t0 finished: validation GAP 0.5600 at 0.003 G multiply-adds, 4.2 frames read on average [" in out
    by_j = space({"j": {"int": [9, 12]}})  # k is not sampled: said first
    TrialProgress(1, CellKey(by_j, template())).on_trial_start(0, [], SimpleNamespace(trial_id="t1", config={"j": 11}))
    assert "trial t1 started: k=5, j=12 (sampled j=11) [" in capsys.readouterr().out
