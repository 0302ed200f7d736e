"""A second driver on one MLflow experiment is refused while the first runs; a dead one's runs are ended."""

import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.errors import OrchestratorError
from orchestrator.experiment.results import Trial
from orchestrator.tracking import liveness, schema
from orchestrator.tracking.schema import DRIVER_TAG, HEARTBEAT_TAG, KIND_TAG, RunKind
from orchestrator.tracking.studies import log_trial, open_study
from orchestrator.tracking.tracker import Tracker


def exited_process(reap: bool) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    if reap:
        process.wait()
    else:  # exited but not waited for: a zombie, as under a PID 1 that never reaps
        while open(f"/proc/{process.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)
    return process


def test_this_process_is_alive_and_an_exited_one_is_not():
    now = time.time()
    assert liveness.alive(liveness.identity(), None, now)
    for reap in (True, False):
        process = exited_process(reap)
        host = socket.gethostname()
        assert not liveness.alive(f"{host}:{process.pid}:", now, now), f"reaped={reap}"
        process.wait()


def test_a_reused_pid_is_another_process():
    host, pid, start = liveness.identity().rsplit(":", 2)
    assert not liveness.alive(f"{host}:{pid}:{int(start) - 1}", time.time(), time.time())


def test_a_driver_on_another_host_lives_while_it_beats():
    now = time.time()
    assert liveness.alive("elsewhere:1:1", now - 10, now)
    assert not liveness.alive("elsewhere:1:1", now - liveness.SILENT_SECONDS - 1, now)
    assert not liveness.alive("elsewhere:1:1", None, now)
    assert not liveness.alive("garbled", now, now)


def parent_run(client, experiment_id, owner):
    run = client.create_run(experiment_id, run_name="grid-earlier", tags={KIND_TAG: RunKind.PARENT,
                                                                         DRIVER_TAG: owner, HEARTBEAT_TAG: str(int(time.time()))})
    return run.info.run_id


def test_a_second_driver_is_refused_while_the_first_runs(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = Tracker(uri, "exp", str(tmp_path / "artifacts"))
    first.start_parent("grid-1", {}, {})
    second = Tracker(uri, "exp", str(tmp_path / "artifacts"))
    with pytest.raises(OrchestratorError, match="belongs to a driver that is still running"):
        second.end_stale_runs()
    assert MlflowClient(uri).get_run(first.parent_id).info.status == "RUNNING"
    first.end_parent("FINISHED")
    assert second.end_stale_runs() == 0


def test_runs_of_drivers_that_died_are_ended(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, "exp", str(tmp_path / "artifacts"))
    process = exited_process(reap=True)
    dead = parent_run(tracker.client, tracker.experiment_id, f"{socket.gethostname()}:{process.pid}:")
    untagged = tracker.client.create_run(tracker.experiment_id, run_name="from an older version").info.run_id
    # A cell's run is created, filled and ended in one call: RUNNING, that call was cut short.
    cut_short = tracker.client.create_run(tracker.experiment_id, run_name="hrnn/baseline/first/k10/s0",
                                          tags={KIND_TAG: RunKind.CELL, schema.CELL_ID_TAG: "c-1"}).info.run_id
    assert tracker.end_stale_runs() == 3
    assert {tracker.client.get_run(r).info.status for r in (dead, untagged)} == {"KILLED"}
    assert tracker.client.get_run(dead).info.lifecycle_stage == "active"
    # Deleted (restorable), so the experiment shows the cell once, when it is logged again whole.
    assert tracker.client.get_run(cut_short).info.lifecycle_stage == "deleted"
    assert [r.info.run_id for r in tracker.client.search_runs([tracker.experiment_id])] == [untagged, dead]


def test_a_trial_whose_logging_was_cut_short_is_logged_again_whole(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, "exp", str(tmp_path / "artifacts"))
    study = open_study(tracker, "s", {})
    cut_short = tracker.client.create_run(tracker.experiment_id, run_name="trial t1", tags={
        schema.PARENT_TAG: study, KIND_TAG: RunKind.TRIAL, schema.TRIAL_ID_TAG: "t1"}).info.run_id
    trial = Trial(trial_id="t1", settings={"epochs": 2}, config={"stride": 3}, gap=0.5, map=0.4, macs=10**9,
                  test_gap=0.45, test_map=0.35, val_gaps=((1, 0.5),))
    template = SimpleNamespace(family="hrnn", variant="rep+ce")
    logged = log_trial(tracker, template, trial)
    assert tracker.client.get_run(cut_short).info.lifecycle_stage == "deleted"
    run = tracker.client.get_run(logged)
    assert run.info.status == "FINISHED" and run.data.metrics[schema.TEST_GAP] == 0.45
    assert log_trial(tracker, template, trial) is None  # once
    tracker.end_parent("FINISHED")


def test_the_heartbeat_stops_with_the_parent(tmp_path, monkeypatch):
    monkeypatch.setattr(liveness, "HEARTBEAT_SECONDS", 0.05)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, "exp", str(tmp_path / "artifacts"))
    run_id = tracker.start_parent("grid-1", {}, {})
    first = int(tracker.client.get_run(run_id).data.tags[HEARTBEAT_TAG])
    deadline = time.time() + 10
    while int(tracker.client.get_run(run_id).data.tags[HEARTBEAT_TAG]) == first and time.time() < deadline:
        time.sleep(0.1)
    assert int(tracker.client.get_run(run_id).data.tags[HEARTBEAT_TAG]) > first
    heartbeat = tracker._heartbeat
    tracker.end_parent("FINISHED")
    assert heartbeat.stopped.is_set() and not heartbeat.thread.is_alive()
    assert tracker.client.get_run(run_id).info.status == "FINISHED"
