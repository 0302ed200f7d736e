"""The orchestrator end to end: real local Ray, a real MLflow store on SQLite, synthetic data."""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from orchestrator.experiment.presets import load_preset
from orchestrator.errors import OrchestratorError
from orchestrator.grid import plan
from orchestrator.experiment.matrix import expand

REPO = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((REPO / "orchestrator" / "presets" / "tiny.yaml").read_text())


def grid(*args, timeout=600, env=None):
    return subprocess.run([sys.executable, "-m", "orchestrator.grid", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})})


def watched_grid(store: Path, *args):
    """Run a grid, looking at its MLflow store while it runs: (the finished process, the params of each cell
    run seen RUNNING, by run name)."""
    process = subprocess.Popen([sys.executable, "-m", "orchestrator.grid", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=REPO)
    seen, database = {}, store / "mlflow.db"
    while process.poll() is None:
        time.sleep(0.5)
        if not _migrated(database):
            continue  # an MLflow client opening the file now would migrate its schema alongside the grid's
        try:
            client = MlflowClient(f"sqlite:///{database}")
            for run in client.search_runs(["1"], "attributes.status = 'RUNNING'"):
                if run.data.tags.get("fewer_frames.grid") == "cell":
                    seen[run.info.run_name] = dict(run.data.params)
        except Exception:  # the database being created or written this very moment: look again
            pass
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err), seen


def _migrated(database: Path) -> bool:
    """Whether the grid has finished creating its MLflow database (it has created an experiment), read
    without MLflow, which would run the schema's migrations itself."""
    if not database.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1)) as db:
            return db.execute("SELECT count(*) FROM experiments WHERE name != 'Default'").fetchone()[0] > 0
    except sqlite3.Error:  # no table yet, or the file locked this moment
        return False


def runs(store: Path, experiment: str):
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id], max_results=1000)


def write_preset(tmp_path: Path, **changes) -> Path:
    preset = {**TINY, **changes}
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(preset))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"batch": 3}, "batch: unknown key; known here: "),
        ({"teacher_train": {"epochs": "five"}}, "teacher_train.epochs: expected int"),
        ({"families": ["hrnn", "resnet"]}, "families: unknown model family 'resnet'"),
        ({"serial": ["rep+magic"]}, "serial: unknown serial variant 'rep+magic'"),
        ({"ks": [10, 500]}, "ks: k=500 is outside"),
        ({"data": {"synthetic": {"train_videos": 10, "colour": True}}}, "data.synthetic.colour: unknown key"),
        ({"resources": {"teacher": {"num_workers": 3}}}, "hrnn's teacher batch_size 16 does not divide among 3 workers"),
        ({"resources": {"teacher": {"num_workers": 0}}}, "resources.teacher.num_workers: must be >= 1"),
    ],
)
def test_bad_presets_name_the_key_and_file(tmp_path, change, message):
    path = write_preset(tmp_path, **change)
    with pytest.raises(OrchestratorError, match="preset.yaml") as error:
        load_preset(str(path))
    assert message in str(error.value)


def test_bad_preset_on_the_command_line_exits_2_without_a_traceback(tmp_path):
    result = grid("--preset", str(write_preset(tmp_path, batch=3)), "--store", str(tmp_path / "store"))
    assert result.returncode == 2 and "batch: unknown key" in result.stderr and "Traceback" not in result.stderr
    result = grid("--preset", "no-such-preset", "--store", str(tmp_path / "store"))
    assert result.returncode == 2 and "unknown preset 'no-such-preset'" in result.stderr
    assert not (tmp_path / "store" / "mlflow.db").exists()


def test_shipped_presets_are_valid():
    smoke = load_preset("smoke")
    assert smoke.families == ("hrnn",) and len(smoke.ks) >= 2 and len(smoke.seeds) >= 2
    assert set(smoke.baselines) == {"uniform", "random", "first", "middle", "last", "first_middle_last"}
    assert len(smoke.serial) == 5 and len(smoke.parallel) == 3 and smoke.intermediate
    paper = load_preset("paper")
    assert set(paper.ks) == {6, 10, 15, 20, 30} and set(paper.families) == {"hrnn", "netvlad", "nextvlad"}
    assert set(paper.data_fractions) == {0.1, 0.25, 0.5, 1.0} and paper.size == "paper"


def test_the_plan_fits_a_teacher_only_when_a_cell_needs_it():
    teachers, cells = expand(load_preset("tiny"), "d")
    teacher = teachers[0]
    skyline = next(c for c in cells if c.mode == "skyline")
    serial = [c for c in cells if c.mode == "serial"]
    independent = [c for c in cells if c.mode in ("baseline", "parallel")]

    fresh = plan(teachers, cells, done=set(), cached=set())
    assert fresh.teachers == [teacher] and fresh.ready == independent and fresh.blocked == {teacher.id: serial}
    cached = plan(teachers, cells, done={skyline.id}, cached={teacher.id})
    assert cached.teachers == [] and cached.ready == [c for c in cells if c.mode != "skyline"] and not cached.blocked
    # Its caches lost while a serial cell still needs them: the teacher is fitted again (it resumes from its
    # final checkpoint and only exports), and the serial cells wait for it.
    lost = plan(teachers, cells, done={skyline.id, serial[0].id}, cached=set())
    assert lost.teachers == [teacher] and lost.blocked == {teacher.id: serial[1:]}
    everything = {c.id for c in cells}
    assert plan(teachers, cells, done=everything, cached=set()) == plan([], [], set(), set())
    # A damaged cache is written again though no cell needs it: the store heals (a deleted one stays deleted).
    assert plan(teachers, cells, done=everything, cached=set(), damaged={teacher.id}).teachers == [teacher]


@pytest.mark.slow
def test_tiny_grid_end_to_end_then_a_rerun_does_nothing(tmp_path):
    store = tmp_path / "store"
    first, seen_running = watched_grid(store, "--preset", "tiny", "--store", str(store))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Teacher-Skyline" in first.stdout and "mlflow ui --backend-store-uri" in first.stdout
    # Live: cell runs were RUNNING, with their params, while their cells trained.
    assert seen_running and all("family" in params for params in seen_running.values()), seen_running
    client, found = runs(store, "fewer-frames-tiny")
    parents = [r for r in found if r.data.tags.get("fewer_frames.grid") == "parent"]
    children = [r for r in found if r.data.tags.get("fewer_frames.grid") == "cell"]
    assert len(parents) == 1 and len(children) == 7
    assert all(r.info.status == "FINISHED" for r in found)
    parent = parents[0]
    logged = [a.path for a in client.list_artifacts(parent.info.run_id)]
    assert {"summary.md", "report.html", "report.md", "gap_vs_cost.png", "figure3_hrnn.png"} <= set(logged), logged
    assert parent.data.tags["mlflow.note.content"].startswith("**Table 1: H-RNN")  # the run page's description
    assert (store / "reports" / "fewer-frames-tiny" / "report.html").is_file()
    assert "/#/experiments/1/runs?workflowType=machine_learning&viewStateShareKey=cells" in first.stdout
    # Table 3's time: the timing job, the teacher and the k=10 student side by side, on the parent run.
    timed = {name: value for name, value in parent.data.metrics.items() if name.startswith("time_per_video_ms/")}
    assert set(timed) == {"time_per_video_ms/hrnn/all", "time_per_video_ms/hrnn/k10"} and min(timed.values()) > 0
    assert parent.data.tags["timing_device"].startswith("cpu")
    names = {r.info.run_name: r for r in children}
    assert "hrnn/serial/rep+pred+ce/k10/s0" in names and "hrnn/skyline/all/s0" in names
    skyline = names["hrnn/skyline/all/s0"]
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["cell_id"].startswith("c-")
        for key in ("family", "mode", "selection", "k", "j", "loss", "intermediate", "data_fraction", "seed"):
            assert key in run.data.params, (run.info.run_name, key)
        for key in ("gap", "map", "macs", "params", "train_seconds", "inference_seconds"):
            assert key in run.data.metrics, (run.info.run_name, key)
        curve = client.get_metric_history(run.info.run_id, "val_gap")
        assert [m.step for m in curve] == ([1, 2] if run.data.params["loss"] == "rep_then_ce" else [1])
    # Each epoch's metrics were streamed to the driver, stamped with when the epoch ended: logged from the
    # result at the cell's end, both epochs would carry one time.
    two_stages = next(r for r in children if r.data.params["loss"] == "rep_then_ce")
    stamps = [m.timestamp for m in client.get_metric_history(two_stages.info.run_id, "val_gap")]
    assert stamps[0] < stamps[1] <= two_stages.info.end_time, stamps
    serial = names["hrnn/serial/rep+pred+ce/k10/s0"]
    assert serial.data.tags["teacher_run_id"] == skyline.info.run_id
    assert serial.data.params["mode"] == "serial" and serial.data.params["k"] == "10" and serial.data.params["j"] == "6"
    # The teacher cache is tagged as a URI PyArrow can open, and it is complete.
    cache_uri = skyline.data.tags["cache_uri"]
    assert json.loads((Path(cache_uri) / "_manifest.json").read_text())["videos"] == 96
    # Scores say where they come from; every cell but the skyline is compared with its teacher's representations.
    assert "GAP and mAP on the test split (" in first.stdout
    for run in children:
        assert run.data.params["test_split"].endswith("/test") and run.data.params["validation_split"].endswith("/validate")
        assert "representations.parquet" in [a.path for a in client.list_artifacts(run.info.run_id)]
        if run.info.run_name != "hrnn/skyline/all/s0":
            assert 0 < run.data.metrics["rep_cosine"] <= 1 and run.data.metrics["rep_mse"] > 0, run.info.run_name

    planned = grid("--plan", "--preset", "tiny", "--store", str(store))
    assert "7 done in the store, 0 to run" in planned.stdout and "| baseline | hrnn | 2/2 |" in planned.stdout

    started = time.perf_counter()
    again = grid("--preset", "tiny", "--store", str(store))
    assert again.returncode == 0, again.stderr
    assert time.perf_counter() - started < 30
    assert "7 already done, 0 jobs to run" in again.stdout
    _, found = runs(store, "fewer-frames-tiny")
    assert len([r for r in found if r.data.tags.get("fewer_frames.grid") == "cell"]) == 7
    # Nothing trained: no second timing (the first stands, and the rerun's report reads it).
    rerun = max((r for r in found if r.data.tags.get("fewer_frames.grid") == "parent"), key=lambda r: r.info.start_time)
    assert rerun.info.run_id != parent.info.run_id and not any(m.startswith("time_per_video_ms/") for m in rerun.data.metrics)
    assert "| k=10 | 0.005 | 0.005 |" in (store / "reports" / "fewer-frames-tiny" / "report.md").read_text()
    assert "Time per video: measured side by side" in (store / "reports" / "fewer-frames-tiny" / "report.md").read_text()

    # A driver stopped after keeping a result but before noting its MLflow run in it: the next driver
    # adopts the run logged for exactly that result, or logs the one missing. Nothing trains again.
    path = store / "results" / f"{serial.data.tags['cell_id']}.json"
    kept = json.loads(path.read_text())
    path.write_text(json.dumps({**kept, "run_id": None}))
    adopted = grid("--preset", "tiny", "--store", str(store))
    assert adopted.returncode == 0 and "0 jobs to run" in adopted.stdout, adopted.stderr
    assert json.loads(path.read_text())["run_id"] == serial.info.run_id
    client.delete_run(serial.info.run_id)  # as if the driver stopped before logging it
    path.write_text(json.dumps({**kept, "run_id": None}))
    logged = grid("--preset", "tiny", "--store", str(store))
    assert logged.returncode == 0 and "0 jobs to run" in logged.stdout, logged.stderr
    _, found = runs(store, "fewer-frames-tiny")
    cells = {r.info.run_name: r for r in found if r.data.tags.get("fewer_frames.grid") == "cell"}
    assert len(cells) == 7
    relogged = cells["hrnn/serial/rep+pred+ce/k10/s0"]
    assert relogged.info.run_id == json.loads(path.read_text())["run_id"] != serial.info.run_id
    assert relogged.info.status == "FINISHED" and relogged.data.metrics["gap"] == kept["gap"]
    assert relogged.data.tags["teacher_run_id"] == skyline.info.run_id


@pytest.mark.slow
def test_a_failing_cell_is_recorded_and_the_others_go_on(tmp_path):
    # Students of this preset cannot be built (a negative block length), the teacher can.
    path = write_preset(tmp_path, model_overrides={"hrnn": {"student_block_frames": -1}}, intermediate=[],
                        serial=["rep+ce"], parallel=[], baselines=["uniform"])
    store = tmp_path / "store"
    result = grid("--preset", str(path), "--store", str(store))
    assert result.returncode == 1
    assert "2 cell(s) failed" in result.stderr
    assert "hrnn/baseline/uniform/k10/s0" in result.stderr and "hrnn/serial/rep+ce/k10/s0" in result.stderr
    client, found = runs(store, "fewer-frames-tiny")
    status = {r.info.run_name: r.info.status for r in found if r.data.tags.get("fewer_frames.grid") == "cell"}
    assert status == {"hrnn/skyline/all/s0": "FINISHED", "hrnn/baseline/uniform/k10/s0": "FAILED",
                      "hrnn/serial/rep+ce/k10/s0": "FAILED"}
    failed = next(r for r in found if r.info.run_name == "hrnn/baseline/uniform/k10/s0")
    assert "block length must be >= 1" in failed.data.tags["error"]
    assert not any(r.info.status == "RUNNING" for r in found)
    parent = next(r for r in found if r.data.tags.get("fewer_frames.grid") == "parent")
    assert parent.info.status == "FAILED"


@pytest.mark.slow
def test_killed_driver_then_rerun_does_only_what_is_missing(tmp_path):
    store = tmp_path / "store"
    results = store / "results"
    # Its own session, so that the kill takes the local Ray processes it started along with it.
    driver = subprocess.Popen([sys.executable, "-m", "orchestrator.grid", "--preset", "tiny", "--store", str(store)],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and len(list(results.glob("*.json"))) < 2 and driver.poll() is None:
            time.sleep(0.2)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    before = {p.name: json.loads(p.read_text())["run_id"] for p in results.glob("*.json")}
    assert 2 <= len(before) < 7, "the grid should have been killed half-way"
    _, found = runs(store, "fewer-frames-tiny")
    # The killed driver's parent run, and the live runs of the cells that were training.
    running = sorted(r.data.tags.get("fewer_frames.grid") for r in found if r.info.status == "RUNNING")
    assert running.count("parent") == 1 and set(running) <= {"cell", "parent"}, running

    again = grid("--preset", "tiny", "--store", str(store))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(before)} already done" in again.stdout, again.stdout
    assert f"ended {len(running)} run(s)" in again.stdout, again.stdout
    after = {p.name: json.loads(p.read_text())["run_id"] for p in results.glob("*.json")}
    # A result kept just before the kill, its run not yet noted (None), gets its run now.
    assert len(after) == 7 and all(after[name] == run_id for name, run_id in before.items() if run_id)
    _, found = runs(store, "fewer-frames-tiny")
    assert not any(r.info.status == "RUNNING" for r in found)
    cells = [(r.info.run_name, r.info.status) for r in found if r.data.tags.get("fewer_frames.grid") == "cell"]
    assert len(cells) == 7 and {status for _, status in cells} == {"FINISHED"}  # each cell once, whole


def test_a_second_grid_on_a_running_experiment_is_refused(tmp_path):
    from orchestrator.tracking.liveness import identity
    from orchestrator.tracking.tracker import DRIVER_TAG, HEARTBEAT_TAG

    store = tmp_path / "store"
    store.mkdir()
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    experiment = client.create_experiment("fewer-frames-tiny")
    # This test's own process stands for a grid that is running now.
    running = client.create_run(experiment, run_name="tiny-now", tags={"fewer_frames.grid": "parent", DRIVER_TAG: identity(),
                                                                       HEARTBEAT_TAG: str(int(time.time()))})
    result = grid("--preset", "tiny", "--store", str(store))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "run 'tiny-now'" in result.stderr and "still running" in result.stderr
    assert client.get_run(running.info.run_id).info.status == "RUNNING"
    assert not (store / "results").exists()


def checkpoint_recorded(store: Path) -> bool:
    """Whether a teacher's run snapshot names a checkpoint. A checkpoint folder alone is not enough: a worker
    uploads it before the controller records it, and a run stopped in between rightly starts afresh."""
    for snapshot in store.glob("ray/t-*/checkpoint_manager_snapshot.json"):
        try:
            if json.loads(snapshot.read_text()).get("latest_checkpoint_result"):
                return True
        except json.JSONDecodeError:  # being written
            pass
    return False


@pytest.mark.slow
def test_a_teacher_stopped_mid_training_resumes_from_its_last_epoch(tmp_path):
    store = tmp_path / "store"
    path = write_preset(tmp_path, data={"synthetic": {"train_videos": 640, "validate_videos": 64, "classes": 10,
                                                      "min_frames": 40, "max_frames": 60, "seed": 0}, "max_frames": 60},
                        teacher_train={"epochs": 6, "learning_rate": 0.003, "batch_size": 16},
                        baselines=[], serial=["rep+ce"], parallel=[], intermediate=[])
    driver = subprocess.Popen([sys.executable, "-m", "orchestrator.grid", "--preset", str(path), "--store", str(store)],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:  # stopped, with its local Ray, once Ray Train has recorded an epoch's checkpoint in the run's snapshot
        deadline = time.time() + 300
        while time.time() < deadline and not checkpoint_recorded(store) and driver.poll() is None:
            time.sleep(0.1)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    assert checkpoint_recorded(store) and not (store / "results").exists(), "stopped too late"

    again = grid("--preset", str(path), "--store", str(store))
    assert again.returncode == 0, again.stdout + again.stderr
    skyline = next(json.loads(p.read_text()) for p in (store / "results").glob("*.json")
                   if json.loads(p.read_text())["cell"] == "hrnn/skyline/all/s0")
    assert 1 <= skyline["resumed_at_epoch"] < 6
    assert len(list(store.glob("ray/t-*/checkpoint_2*"))) == 1  # one kept; none left over from the stop
    assert [epoch["epoch"] for epoch in skyline["history"]] == [1, 2, 3, 4, 5, 6]
    _, found = runs(store, "fewer-frames-tiny")
    run = next(r for r in found if r.info.run_name == "hrnn/skyline/all/s0")
    assert run.data.metrics["resumed_at_epoch"] == skyline["resumed_at_epoch"]


@pytest.mark.slow
def test_a_grid_on_converted_data_validates_on_held_out_training_videos_and_tests_on_validate(tmp_path):
    """The paper's roles on real data: a share of train/ picks the best epoch, validate/ is the test split."""
    from workloads.data.synth import SynthConfig, generate

    data = tmp_path / "yt8m"
    config = SynthConfig(num_classes=10, min_frames=20, max_frames=60)
    generate(str(data / "train"), 128, seed=4, split="train", config=config)
    generate(str(data / "validate"), 48, seed=4, split="validate", config=config)
    path = write_preset(tmp_path, data={"uri": str(data), "holdout": 0.25, "max_frames": 60}, baselines=["uniform"],
                        serial=["rep+ce"], parallel=[], intermediate=[])
    store = tmp_path / "store"
    result = grid("--preset", str(path), "--store", str(store))
    assert result.returncode == 0, result.stdout + result.stderr
    _, found = runs(store, "fewer-frames-tiny")
    cells = {r.info.run_name: r for r in found if r.data.tags.get("fewer_frames.grid") == "cell"}
    assert set(cells) == {"hrnn/skyline/all/s0", "hrnn/baseline/uniform/k10/s0", "hrnn/serial/rep+ce/k10/s0"}
    for run in cells.values():
        assert run.data.params["validation_split"] == f"{data / 'train'} (held out: 25.00% of its videos, by id hash)"
        assert run.data.params["test_split"] == str(data / "validate")
    # The teacher's cache holds the training videos only: the held-out ones never reach a student's training.
    manifest = json.loads((Path(cells["hrnn/skyline/all/s0"].data.tags["cache_uri"]) / "_manifest.json").read_text())
    assert 64 < manifest["videos"] < 128


def test_the_plan_says_what_would_run_and_what_it_costs_and_writes_nothing(tmp_path):
    rates = tmp_path / "rates.json"
    per_video = {"all": [0.01, 0.002], "10": [0.002, 0.0005]}
    rates.write_text(json.dumps({"device": "cuda", "size": "small", "seconds_per_video": {"hrnn": per_video}}))
    store = tmp_path / "store"
    shown = grid("--plan", "--preset", "tiny", "--store", str(store), "--rates", str(rates))
    assert shown.returncode == 0, shown.stderr
    assert "teachers: 1 (hrnn/teacher/s0), 0 trained" in shown.stdout
    assert "cells: 7 (1 skyline, 2 baseline, 3 serial, 1 parallel), 0 done in the store, 7 to run" in shown.stdout
    assert "| serial | hrnn | 0/3 |  |" in shown.stdout and "| skyline | hrnn |  | 0/1 |" in shown.stdout
    # The tiny preset: 96 training, 48 validation videos, one epoch each.
    teacher = (96 * 0.01 + 48 * 0.002) + 2 * 96 * 0.002 + 48 * 0.002  # epochs, two exports (k=10 states), test
    cell = 96 * 0.002 + 48 * 0.0005 + 48 * 0.0005
    parallel = cell + 96 * 0.01 + 48 * 0.002
    total = (teacher + 5 * cell + parallel) / 3600
    assert f"total {total:,.1f}, of which left to run {total:,.1f}" in shown.stdout, shown.stdout
    assert not store.exists()  # nothing written, nothing started
    rates.write_text(json.dumps({"device": "cuda", "size": "paper", "seconds_per_video": {"hrnn": per_video}}))
    other = grid("--plan", "--preset", "tiny", "--store", str(store), "--rates", str(rates))
    assert "the rates are of paper-size models, this preset's are small; no estimate" in other.stdout
    rates.write_text("{}")
    bad = grid("--plan", "--preset", "tiny", "--store", str(store), "--rates", str(rates))
    assert bad.returncode == 2 and f"--rates {rates}: not a file" in bad.stderr
