"""`python -m orchestrator.tune` end to end on a real local Ray and MLflow: a study, its records, an
interruption and its resumption."""

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from grids import of_kind, tracking
from orchestrator.experiment.presets import load_preset
from orchestrator.experiment.search_parameters import PARAMETERS
from orchestrator.tracking import schema
from orchestrator.tracking.schema import RunKind

REPO = Path(__file__).resolve().parents[1]
SPACE = {"name": "small-study", "family": "hrnn", "variant": "rep+pred+ce", "epochs": 2, "early_stopping": "gap",
         "search": {"w_rep": {"loguniform": [1.0e-3, 1.0]}, "j": {"int": [3, 12]}}}


def tune(store, space, trials, *extra, **popen):
    command = [sys.executable, "-m", "orchestrator.tune", "--space", str(space), "--preset", "tiny",
               "--trials", str(trials), "--store", str(store), *extra]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.Popen(command, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def runs(store):
    client = MlflowClient(tracking(store))
    experiment = client.get_experiment_by_name("fewer-frames-search-small-study")
    return client, client.search_runs([experiment.experiment_id])


@pytest.mark.slow
def test_a_study_records_its_trials_and_front_and_resumes_after_an_interruption(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    store = tmp_path / "store"

    # Interrupted (SIGTERM, as `ray job stop` or a batch scheduler sends) once a trial has finished. One
    # trial at a time, the first runs to its end (ASHA has nothing to compare it with) and five are left
    # when the signal lands; two at a time, the first to finish could be the last of all.
    first = tune(store, space, 6, "--concurrency", "1")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        if any('"final": true' in open(f).read() for f in glob.glob(f"{store}/tune/small-study/*/result.json")):
            break
        time.sleep(0.5)
    assert first.poll() is None, first.communicate()
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 130, out[-2000:] + err[-2000:]
    assert "run the same command again to resume the study" in err
    client, before = runs(store)
    parent = of_kind(before, RunKind.STUDY)
    assert len(parent) == 1 and parent[0].info.status == "KILLED"
    finished_before = {r.data.tags[schema.TRIAL_ID_TAG] for r in of_kind(before, RunKind.TRIAL)}
    assert finished_before  # logged as they were, before the interruption

    # The same command resumes: the finished trials are kept, the rest run, the study ends.
    second = tune(store, space, 6, "--concurrency", "1")
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, out[-2000:] + err[-2000:]
    assert "resuming study small-study" in out
    client, after = runs(store)
    parents = of_kind(after, RunKind.STUDY)
    assert [p.info.run_id for p in parents] == [parent[0].info.run_id] and parents[0].info.status == "FINISHED"
    every = of_kind(after, RunKind.TRIAL)
    ids = [r.data.tags[schema.TRIAL_ID_TAG] for r in every]
    assert len(ids) == len(set(ids)) == 6 and finished_before <= set(ids)  # every trial once, none lost
    for trial in every:
        assert trial.data.tags[schema.PARENT_TAG] == parents[0].info.run_id
        # every setting a trial has (`selection` and the scorer's only where it reads frames chosen by content)
        by_content = {name for name in PARAMETERS if name == "selection" or name.startswith("scorer_")}
        assert set(PARAMETERS) - {"w_rep_intermediate", *by_content} <= set(trial.data.params)
        assert {schema.GAP, schema.MAP, schema.MACS} <= set(trial.data.metrics)
        assert client.get_metric_history(trial.info.run_id, schema.VAL_GAP)
    trials = [r for r in every if r.info.status == "FINISHED"]
    stopped = [r for r in every if r.info.status == "KILLED"]
    assert trials and stopped and len(trials) + len(stopped) == 6, [(r.info.status, r.data.tags) for r in every]
    assert all(r.data.tags[schema.TRIAL_OUTCOME_TAG] == "finished" and schema.TEST_GAP in r.data.metrics
               for r in trials)
    for trial in stopped:  # ASHA's: where it stopped, and what it had reached
        epoch = client.get_metric_history(trial.info.run_id, schema.VAL_GAP)[-1]
        assert trial.data.tags[schema.TRIAL_OUTCOME_TAG] == f"stopped by ASHA after epoch {epoch.step} " \
                                                            f"(validation GAP {epoch.value:.4f})"
        assert schema.TEST_GAP not in trial.data.metrics
    tune_state = sorted(glob.glob(f"{store}/tune/small-study/run_trial_*"))
    assert len(tune_state) == 6  # every trial of the study ran once, across both invocations

    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {schema.PARETO_JSON, schema.PARETO_PNG, schema.BEST_YAML} <= artifacts
    front = json.loads(Path(client.download_artifacts(parents[0].info.run_id, schema.PARETO_JSON, str(tmp_path)))
                       .read_text())
    points = [(t["gap"], t["macs"]) for t in front["front"]]
    assert points and all(not (g2 >= g and m2 <= m and (g2, m2) != (g, m)) for g, m in points for g2, m2 in points)
    assert Path(client.download_artifacts(parents[0].info.run_id, schema.PARETO_PNG, str(tmp_path))).read_bytes()[:4] \
        == b"\x89PNG"
    best = yaml.safe_load((store / "tune" / "small-study.best.yaml").read_text())
    preset = load_preset("tiny", best)  # the grid accepts it as --override
    assert preset.serial == ("rep+pred+ce",) and preset.ks[0] in {t["settings"]["k"] for t in front["front"]}
    assert schema.readable(max(t["gap"] for t in front["front"])) == max(r.data.metrics[schema.GAP] for r in trials)
    # The teacher the trials read is recorded the grid's way: a grid on this store reuses it.
    assert glob.glob(f"{store}/results/*.json") and glob.glob(f"{store}/teachers/*/cache/base/_manifest.json")


@pytest.mark.slow
def test_a_stride_study_trains_each_cell_once_draws_every_trial_and_keeps_the_cheap_end(tmp_path):
    # 60 frames: j in [6, 14] gives k = 10, 8, 7, 6, 6, 5, 5, 5, 4: six distinct cells for nine strides
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"name": "small-study", "family": "hrnn", "variant": "rep+pred+ce", "epochs": 3,
                                     "search": {"j": {"int": [6, 14]}}, "fixed": {"w_rep": 0.001}}))
    store = tmp_path / "store"
    study = tune(store, space, 9, "--concurrency", "2")
    out, err = study.communicate(timeout=600)
    assert study.returncode == 0, out[-3000:] + err[-3000:]
    assert "its space holds 6 distinct cells: 6 trials, not 9" in out
    # live: a line as each trial starts and ends, with the counts
    assert out.count(" started: k=") == 6
    ended = [line for line in out.splitlines() if " finished: validation GAP" in line or " stopped early after" in line]
    assert len(ended) == 6 and "0 running" in ended[-1]
    assert "tensorboard" not in out.lower()  # Tune's own reporter, and the command it prints, are off
    client, logged = runs(store)
    trials = of_kind(logged, RunKind.TRIAL)
    ks = [int(t.data.params[schema.K]) for t in trials]
    assert sorted(ks) == [4, 5, 6, 7, 8, 10]  # each cell once
    for trial in trials:  # the stride that ran is the one logged, the sampled one beside it when it differs
        k, j = int(trial.data.params[schema.K]), int(trial.data.params[schema.J])
        assert j == 60 // k
        sampled = trial.data.params.get(schema.SAMPLED_PREFIX + schema.J)
        if sampled is not None:
            assert int(sampled) != j and 60 // int(sampled) == k
    cheapest = next(t for t in trials if t.data.params[schema.K] == "4")
    assert cheapest.info.status == "FINISHED"  # nothing dominates the cheapest cell: Pareto ASHA never stops it
    parent = of_kind(logged, RunKind.STUDY)[0]
    summary = json.loads(Path(client.download_artifacts(parent.info.run_id, schema.PARETO_JSON, str(tmp_path)))
                         .read_text())
    assert sorted(p["settings"]["k"] for p in summary["points"]) == sorted(ks)  # every trial drawn, stopped too
    stopped = [t for t in trials if t.info.status == "KILLED"]
    assert sorted(p["outcome"] for p in summary["points"]).count("stopped") == len(stopped)
    assert 4 in [p["settings"]["k"] for p in summary["front"]]


def test_bad_arguments_exit_2_before_anything_starts(tmp_path):
    zero = subprocess.run([sys.executable, "-m", "orchestrator.tune", "--space", str(REPO / "search_spaces" /
                           "stride_vs_cost.yaml"), "--concurrency", "0", "--store", str(tmp_path / "store")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert zero.returncode == 2 and zero.stderr.strip() == "error: --concurrency must be >= 1, got 0"
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({**SPACE, "search": {"w_nope": {"uniform": [0, 1]}}}))
    result = subprocess.run([sys.executable, "-m", "orchestrator.tune", "--space", str(space), "--store",
                             str(tmp_path / "store")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {space}: search.w_nope: unknown parameter; known: " \
        "w_ce, w_rep, w_rep_intermediate, w_pred, j, k, learning_rate, pred_distance, selection, tolerance, " \
        "scorer_width, scorer_epochs, scorer_learning_rate"
    assert not (tmp_path / "store").exists()
