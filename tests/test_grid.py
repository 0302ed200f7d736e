"""The orchestrator end to end: real local Ray, a real MLflow store on SQLite, synthetic data."""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
import re
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from grids import copy_store, grid, of_kind, runs, tracking
from orchestrator.cache.files import read_manifest
from orchestrator.driver.backlog import backlog, heaviest_first
from orchestrator.errors import OrchestratorError
from orchestrator.experiment.matrix import expand
from orchestrator.experiment.modes import Mode
from orchestrator.experiment.presets import load_preset
from orchestrator.experiment.rows import display_name
from orchestrator.tracking import schema
from orchestrator.tracking.schema import RunKind

REPO = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((REPO / "orchestrator" / "presets" / "tiny.yaml").read_text())


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

    fresh = backlog(teachers, cells, done=set(), cached=set())
    assert fresh.teachers == [teacher] and {c.id for c in fresh.ready} == {c.id for c in independent}
    assert fresh.blocked == {teacher.id: serial}
    # The longest kinds start first (a parallel pair trains its teacher too), baselines last
    assert [c.mode for c in fresh.ready] == sorted((c.mode for c in independent), key=lambda m: m != "parallel")
    # Released when the teacher's caches are written: before the baselines, after parallel pairs not yet
    # started (a group of them is the longest job: started last, the grid would end on it alone)
    fresh.ready = fresh.ready[-1:] + fresh.ready[:-1]  # a baseline first, as if the pairs had waited
    assert fresh.release(teacher) == heaviest_first(serial) and not fresh.blocked
    assert [c.mode for c in fresh.ready] == sorted((c.mode for c in cells if c.mode != "skyline"),
                                                   key=lambda m: ("parallel", "serial", "baseline").index(m))
    smoke_teachers, smoke_cells = expand(load_preset("smoke"), "d")
    smoke = backlog(smoke_teachers, smoke_cells, done=set(), cached=set())
    parallel = sum(c.mode == "parallel" for c in smoke_cells)
    assert smoke.waiting(8) == smoke.waiting() - parallel + 2  # a seed's pairs are one job
    cached = backlog(teachers, cells, done={skyline.id}, cached={teacher.id})
    assert cached.teachers == [] and {c.id for c in cached.ready} == {c.id for c in cells if c.mode != "skyline"}
    assert not cached.blocked
    assert [c.mode for c in cached.ready][:2] == ["parallel", "serial"] and cached.ready[-1].mode == "baseline"
    assert [c.intermediate for c in cached.ready if c.mode == "serial"][0]  # matching intermediate states first
    # Its caches lost while a serial cell still needs them: the teacher is fitted again (it resumes from its
    # final checkpoint and only exports), and the serial cells wait for it.
    lost = backlog(teachers, cells, done={skyline.id, serial[0].id}, cached=set())
    assert lost.teachers == [teacher] and lost.blocked == {teacher.id: serial[1:]}
    everything = {c.id for c in cells}
    assert backlog(teachers, cells, done=everything, cached=set()) == backlog([], [], set(), set())
    # A damaged cache is written again though no cell needs it: the store heals (a deleted one stays deleted).
    assert backlog(teachers, cells, done=everything, cached=set(), damaged={teacher.id}).teachers == [teacher]


@pytest.mark.slow
def test_the_tiny_grid_records_every_cell_live_and_whole(tiny_grid):
    store, printed, seen_running = tiny_grid
    assert "Teacher-Skyline" in printed and "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_DISABLE_TELEMETRY=true mlflow ui --backend-store-uri" in printed
    # Live: cell runs were RUNNING, with their params, while their cells trained.
    assert seen_running and all(schema.FAMILY in params for params in seen_running.values()), seen_running
    client, found = runs(store, "fewer-frames-tiny")
    parents, children = of_kind(found, RunKind.PARENT), of_kind(found, RunKind.CELL)
    assert len(parents) == 1 and len(children) == 8
    assert all(r.info.status == "FINISHED" for r in found)
    parent = parents[0]
    logged = [a.path for a in client.list_artifacts(parent.info.run_id)]
    assert {schema.SUMMARY, schema.REPORT_HTML, schema.REPORT_MD, "gap_vs_cost.png", "figure3_hrnn.png"} <= set(logged)
    # Serial students are read adaptively too: their reading, its curve, its predictions for the intervals
    for run in of_kind(found, RunKind.CELL):
        if (run.data.params[schema.MODE] == "serial" and run.data.params[schema.INTERMEDIATE] == "False"
                and run.data.params[schema.SELECTION] == "uniform"):
            assert {schema.ADAPTIVE_GAP, schema.ADAPTIVE_FRAMES, schema.ADAPTIVE_MACS,
                    schema.ADAPTIVE_THRESHOLD} <= set(run.data.metrics)
            assert 1 <= run.data.metrics[schema.ADAPTIVE_FRAMES] <= 10
            assert len(client.get_metric_history(run.info.run_id, schema.ADAPTIVE_CURVE[1])) == 10  # thresholds
            assert schema.ADAPTIVE_PREDICTIONS in [a.path for a in client.list_artifacts(run.info.run_id)]
    assert re.search(r"Adaptive reading at k=10 .* reads [\d.]+ of 10 frames on average, .* reading all 10: "
                     r"[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]; reaching its 10-frame GAP", printed), printed
    # A serial student on frames chosen by content, set against the best on uniform frames and its control
    assert re.search(r"Frames chosen by content \(salient_segments, .*\): serial rep\+pred\+ce on 10 of them reaches "
                     r"test GAP \d\.\d{3} .* against the same student on 10 uniform frames", printed), printed
    note = parent.data.tags[schema.NOTE_TAG]  # the run page's description: Table 1 at a glance, then Table 1
    assert note.startswith("**At a glance**") and "\n| H-RNN | 10 | " in note and "**Table 1: H-RNN" in note
    assert (store / "reports" / "fewer-frames-tiny" / schema.REPORT_HTML).is_file()
    assert "/#/experiments/1/runs?workflowType=machine_learning&viewStateShareKey=cells" in printed
    # Table 3's time: the timing job, the teacher and the k=10 student side by side, on the parent run.
    timed = schema.timing_of(parent.data.metrics)
    # The content student too: its scorer over every frame, its student over the 10 it picks; and the
    # student best read adaptively, with its kept weights
    assert set(timed) == {("hrnn", "all"), ("hrnn", "k10"), ("hrnn", "k10-salient_segments"), ("hrnn", "k10-adaptive")}
    assert min(timed.values()) > 0
    report = (store / "reports" / "fewer-frames-tiny" / schema.REPORT_MD).read_text()
    assert re.search(r"\| k=10, read adaptively \(rep_then_ce: [\d.]+ frames on average\) \| – \| [\d.]+ \| [\d.]+ \| "
                     r"[\d.]+ \| [\d.]+ \|", report), report
    # Table 1: each serial student on uniform frames read adaptively, a row of its own with its interval
    assert re.search(r"\| Serial Lrep, then LCE, read adaptively \| \d\.\d{3} \| \d\.\d{3} \| [+-]\d\.\d{3} \[", printed)
    assert parent.data.tags[schema.TIMING_DEVICE_TAG].startswith("cpu")
    cells = {r.info.run_name: schema.outcome_of_run(r) for r in children}
    assert "hrnn/serial/rep+pred+ce/k10/s0" in cells and "hrnn/skyline/all/s0" in cells
    skyline = next(r for r in children if r.info.run_name == "hrnn/skyline/all/s0")
    # One name a person reads for a row, in the terminal, the report and MLflow alike
    assert "  done  Serial Lrep, then LCE, k=10, seed 0 (hrnn/serial/rep_then_ce/k10/s0): GAP" in printed
    assert "| Serial Lrep, then LCE |" in printed
    for run in children:
        cell = cells[run.info.run_name]
        assert run.data.tags[schema.ROW_TAG] == display_name(cell), run.info.run_name
        assert run.data.tags[schema.PARENT_TAG] == parent.info.run_id and cell.cell_id.startswith("c-")
        assert {schema.FAMILY, schema.MODE, schema.SELECTION, schema.K, schema.J, schema.VARIANT, schema.INTERMEDIATE,
                schema.DATA_FRACTION, schema.SEED} <= set(run.data.params), run.info.run_name
        assert None not in (cell.gap, cell.map, cell.macs, cell.params, cell.train_seconds, cell.inference_seconds)
        curve = client.get_metric_history(run.info.run_id, schema.VAL_GAP)
        assert [m.step for m in curve] == ([1, 2] if cell.variant == "rep_then_ce" else [1])
        # The run began when its job began on its worker (told over the epoch channel), not when it was
        # queued, nor when its result came in: it spans the training, and each epoch ended within it.
        assert run.info.start_time <= curve[0].timestamp <= run.info.end_time, run.info.run_name
        assert run.info.end_time - run.info.start_time >= 1000 * cell.train_seconds, run.info.run_name
    # Each epoch's metrics were streamed to the driver, stamped with when the epoch ended: logged from the
    # result at the cell's end, both epochs would carry one time.
    two_stages = next(r for r in children if cells[r.info.run_name].variant == "rep_then_ce")
    stamps = [m.timestamp for m in client.get_metric_history(two_stages.info.run_id, schema.VAL_GAP)]
    assert stamps[0] < stamps[1] <= two_stages.info.end_time, stamps
    serial = next(r for r in children if r.info.run_name == "hrnn/serial/rep+pred+ce/k10/s0")
    assert serial.data.tags[schema.TEACHER_RUN_TAG] == skyline.info.run_id
    assert cells[serial.info.run_name].mode is Mode.SERIAL and cells[serial.info.run_name].k == 10
    assert serial.data.params[schema.J] == "6"
    # The teacher cache is tagged as a URI PyArrow can open, and it is complete.
    assert read_manifest(skyline.data.tags[schema.CACHE_URI_TAG]).videos == 96
    # Scores say where they come from; every cell but the skyline is compared with its teacher's representations.
    assert "GAP and mAP on the test split (" in printed
    for run in children:
        cell = cells[run.info.run_name]
        assert cell.test_split.endswith("/test") and cell.validation_split.endswith("/validate")
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
        assert schema.REPRESENTATIONS in artifacts and schema.PREDICTIONS in artifacts, run.info.run_name
        if cell.mode is not Mode.SKYLINE:
            assert 0 < cell.rep_cosine <= 1 and cell.rep_mse > 0, run.info.run_name
    # Every row is set against Uniform-k with a 95% interval over test videos: in the summary (from the store)
    # and in the report (from MLflow alone), the same intervals.
    interval = re.compile(r"\| First-k \| [\d.]+ \| [\d.]+ \| ([+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]) \|")
    report = (store / "reports" / "fewer-frames-tiny" / schema.REPORT_MD).read_text()
    assert interval.search(printed).group(1) == interval.search(report).group(1)
    assert "| Uniform-k | " in printed and "(reference)" in printed


@pytest.mark.slow
def test_a_rerun_of_a_finished_grid_trains_nothing_and_logs_each_cell_once(tiny_grid, tmp_path):
    store = copy_store(tiny_grid.store, tmp_path / "store")
    planned = grid("--plan", "--preset", "tiny", "--store", str(store))
    assert "8 done in the store, 0 to run" in planned.stdout and "| baseline | hrnn | 2/2 |" in planned.stdout
    # No --rates: measured here, briefly; nothing left to run, so nothing left to wait for
    assert re.search(r"calibrated on this machine in \d+ s", planned.stdout), planned.stdout
    assert re.search(r"device-hours on cpu here, 1 thread a cell, .*; total [\d.]+, of which left to run 0.00",
                     planned.stdout), planned.stdout
    assert "cell(s) at once: about 1 min of training and evaluation left" in planned.stdout

    again = grid("--preset", "tiny", "--store", str(store))
    assert again.returncode == 0, again.stderr
    assert "8 already done, 0 jobs to run" in again.stdout
    client, found = runs(store, "fewer-frames-tiny")
    cells = {r.info.run_name: r for r in of_kind(found, RunKind.CELL)}
    assert len(cells) == 8
    # Nothing trained: no second timing (the first stands, and the rerun's report reads it).
    first, rerun = sorted(of_kind(found, RunKind.PARENT), key=lambda r: r.info.start_time)
    assert not schema.timing_of(rerun.data.metrics)
    report = (store / "reports" / "fewer-frames-tiny" / schema.REPORT_MD).read_text()
    student = schema.outcome_of_run(cells["hrnn/serial/rep+pred+ce/k10/s0"])
    assert f"| k=10 | {student.frame_macs / 1e9:.3f} | {student.macs / 1e9:.3f} |" in report
    chooser = schema.outcome_of_run(cells["hrnn/serial/rep+pred+ce@salient_segments/k10/s0"])
    assert chooser.macs > student.macs and chooser.frame_macs == student.frame_macs  # the scorer is per video
    assert re.search(rf"\| k=10, frames by content \(salient_segments\) \| {chooser.frame_macs / 1e9:.3f} \| "
                     rf"{chooser.macs / 1e9:.3f} \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", report), report
    assert "Time per video: measured side by side" in report

    # A driver stopped after keeping a result but before noting its MLflow run in it: the next driver
    # adopts the run logged for exactly that result (the serial student's), or logs the one missing (the
    # baseline's, as if the driver stopped before logging it). Nothing trains again.
    serial, skyline = cells["hrnn/serial/rep+pred+ce/k10/s0"], cells["hrnn/skyline/all/s0"]
    baseline = cells["hrnn/baseline/uniform/k10/s0"]
    path = store / "results" / f"{student.cell_id}.json"
    kept = json.loads(path.read_text())
    path.write_text(json.dumps({**kept, "run_id": None}))
    lost = store / "results" / f"{schema.outcome_of_run(baseline).cell_id}.json"
    lost_kept = json.loads(lost.read_text())
    lost.write_text(json.dumps({**lost_kept, "run_id": None}))
    client.delete_run(baseline.info.run_id)
    mended = grid("--preset", "tiny", "--store", str(store))
    assert mended.returncode == 0 and "0 jobs to run" in mended.stdout, mended.stderr
    assert json.loads(path.read_text())["run_id"] == serial.info.run_id
    _, found = runs(store, "fewer-frames-tiny")
    cells = {r.info.run_name: r for r in of_kind(found, RunKind.CELL)}
    assert len(cells) == 8
    relogged = cells["hrnn/baseline/uniform/k10/s0"]
    assert relogged.info.run_id == json.loads(lost.read_text())["run_id"] != baseline.info.run_id
    assert relogged.info.status == "FINISHED" and schema.outcome_of_run(relogged).gap == schema.readable(lost_kept["gap"])
    assert cells["hrnn/serial/rep+pred+ce/k10/s0"].data.tags[schema.TEACHER_RUN_TAG] == skyline.info.run_id

    # The finished store under another experiment name: its finished cells are logged there (it held only
    # a parent run, and its report said to run the grid first); back under the first name, each cell's run
    # there is adopted again, none logged twice.
    other = grid("--preset", "tiny", "--store", str(store), "--experiment", "fewer-frames-again")
    assert other.returncode == 0 and "0 jobs to run" in other.stdout, other.stderr
    _, found = runs(store, "fewer-frames-again")
    there = {r.info.run_name: r for r in of_kind(found, RunKind.CELL)}
    assert sorted(there) == sorted(cells) and {r.info.status for r in there.values()} == {"FINISHED"}
    assert schema.outcome_of_run(there["hrnn/serial/rep+pred+ce/k10/s0"]).gap == schema.readable(kept["gap"])
    assert there["hrnn/serial/rep+pred+ce/k10/s0"].data.tags[schema.TEACHER_RUN_TAG] == \
        there["hrnn/skyline/all/s0"].info.run_id
    assert "| Serial Lrep + Lpred + LCE |" in (store / "reports" / "fewer-frames-again" / schema.REPORT_MD).read_text()
    # The two grids side by side: the same rows, a column group each, the differences with their intervals
    # (both scored the same test videos, with the same models: nothing between them)
    compared = subprocess.run([sys.executable, "-m", "orchestrator.report", "--experiment", "fewer-frames-tiny",
                               "--experiment", "fewer-frames-again", "--tracking-uri", tracking(store), "--format",
                               "md,csv"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert compared.returncode == 0, compared.stderr
    folder = store / "reports" / "fewer-frames-tiny_vs_fewer-frames-again"
    assert f"comparison of 'fewer-frames-tiny' and 'fewer-frames-again': {folder / schema.REPORT_MD}" in compared.stdout
    with open(folder / "table1_compared_hrnn.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["model", "k=10 A GAP", "k=10 A mAP", "k=10 B GAP", "k=10 B mAP", "k=10 B − A [95%]"]
    # 7 rows: Uniform, First, parallel, serial (a) and (e), (e) on frames chosen by content, the skyline
    assert [row[0] for row in rows[1:]][-1] == "Teacher-Skyline (all frames)" and len(rows) == 1 + 7
    assert all(row[1:3] == row[3:5] and row[5] == "+0.000 [+0.000, +0.000]" for row in rows[1:]), rows
    assert sorted(os.listdir(folder)) == [schema.REPORT_MD, "table1_compared_hrnn.csv"]
    back = grid("--preset", "tiny", "--store", str(store))
    assert back.returncode == 0, back.stderr
    _, found = runs(store, "fewer-frames-tiny")
    assert sorted(r.info.run_id for r in of_kind(found, RunKind.CELL)) == sorted(r.info.run_id for r in cells.values())


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
    status = {r.info.run_name: r.info.status for r in of_kind(found, RunKind.CELL)}
    assert status == {"hrnn/skyline/all/s0": "FINISHED", "hrnn/baseline/uniform/k10/s0": "FAILED",
                      "hrnn/serial/rep+ce/k10/s0": "FAILED"}
    failed = next(r for r in found if r.info.run_name == "hrnn/baseline/uniform/k10/s0")
    assert "block length must be >= 1" in failed.data.tags[schema.ERROR_TAG]
    assert not any(r.info.status == "RUNNING" for r in found)
    parent = of_kind(found, RunKind.PARENT)[0]
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
        with contextlib.suppress(ProcessLookupError):  # ended on its own: the asserts below say how
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    before = {p.name: json.loads(p.read_text())["run_id"] for p in results.glob("*.json")}
    assert 2 <= len(before) < 8, "the grid should have been killed half-way"
    _, found = runs(store, "fewer-frames-tiny")
    # The killed driver's parent run, and the live runs of the cells that were training.
    running = sorted(schema.kind_of(r) for r in found if r.info.status == "RUNNING")
    assert running.count(RunKind.PARENT) == 1 and set(running) <= {RunKind.CELL, RunKind.PARENT}, running

    again = grid("--preset", "tiny", "--store", str(store))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(before)} already done" in again.stdout, again.stdout
    assert f"ended {len(running)} run(s)" in again.stdout, again.stdout
    after = {p.name: json.loads(p.read_text())["run_id"] for p in results.glob("*.json")}
    # A result kept just before the kill, its run not yet noted (None), gets its run now.
    assert len(after) == 8 and all(after[name] == run_id for name, run_id in before.items() if run_id)
    _, found = runs(store, "fewer-frames-tiny")
    assert not any(r.info.status == "RUNNING" for r in found)
    cells = [(r.info.run_name, r.info.status) for r in of_kind(found, RunKind.CELL)]
    assert len(cells) == 8 and {status for _, status in cells} == {"FINISHED"}  # each cell once, whole


def test_a_second_grid_on_a_running_experiment_is_refused(tmp_path):
    from orchestrator.tracking.liveness import identity

    store = tmp_path / "store"
    store.mkdir()
    client = MlflowClient(tracking(store))
    experiment = client.create_experiment("fewer-frames-tiny")
    # This test's own process stands for a grid that is running now.
    running = client.create_run(experiment, run_name="tiny-now", tags={
        schema.KIND_TAG: RunKind.PARENT, schema.DRIVER_TAG: identity(), schema.HEARTBEAT_TAG: str(int(time.time()))})
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
                        baselines=[], serial=[], parallel=[], intermediate=[])  # the skyline alone
    driver = subprocess.Popen([sys.executable, "-m", "orchestrator.grid", "--preset", str(path), "--store", str(store)],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:  # stopped, with its local Ray, once Ray Train has recorded an epoch's checkpoint in the run's snapshot
        deadline = time.time() + 300
        while time.time() < deadline and not checkpoint_recorded(store) and driver.poll() is None:
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):  # ended on its own: the asserts below say how
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
    assert schema.outcome_of_run(run).resumed_at_epoch == skyline["resumed_at_epoch"]


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
    cells = {r.info.run_name: r for r in of_kind(found, RunKind.CELL)}
    assert set(cells) == {"hrnn/skyline/all/s0", "hrnn/baseline/uniform/k10/s0", "hrnn/serial/rep+ce/k10/s0"}
    for cell in map(schema.outcome_of_run, cells.values()):
        assert cell.validation_split == f"{data / 'train'} (held out: 25.00% of its videos, by id hash)"
        assert cell.test_split == str(data / "validate")
    # The teacher's cache holds the training videos only: the held-out ones never reach a student's training.
    assert 64 < read_manifest(cells["hrnn/skyline/all/s0"].data.tags[schema.CACHE_URI_TAG]).videos < 128


def test_the_plan_says_what_would_run_and_what_it_costs_and_writes_nothing(tmp_path):
    rates = tmp_path / "rates.json"
    per_video = {"all": [0.01, 0.002], "10": [0.002, 0.0005]}
    rates.write_text(json.dumps({"device": "cuda", "size": "small", "seconds_per_video": {"hrnn": per_video}}))
    store = tmp_path / "store"
    shown = grid("--plan", "--preset", "tiny", "--store", str(store), "--rates", str(rates))
    assert shown.returncode == 0, shown.stderr
    assert "teachers: 1 (hrnn/teacher/s0), 0 trained" in shown.stdout
    assert "cells: 8 (1 skyline, 2 baseline, 4 serial, 1 parallel), 0 done in the store, 8 to run" in shown.stdout
    assert "| serial | hrnn | 0/4 |  |" in shown.stdout and "| skyline | hrnn |  | 0/1 |" in shown.stdout
    # The tiny preset: 96 training, 48 validation videos, one epoch each.
    teacher = (96 * 0.01 + 48 * 0.002) + 2 * 96 * 0.002 + 48 * 0.002  # epochs, two exports (k=10 states), test
    cell = 96 * 0.002 + 48 * 0.0005 + 48 * 0.0005
    parallel = cell + 96 * 0.01 + 48 * 0.002
    total = (teacher + 5 * cell + parallel) / 3600
    assert f"total {total:,.2f}, of which left to run {total:,.2f}" in shown.stdout, shown.stdout
    assert not store.exists()  # nothing written, nothing started
    rates.write_text(json.dumps({"device": "cuda", "size": "paper", "seconds_per_video": {"hrnn": per_video}}))
    other = grid("--plan", "--preset", "tiny", "--store", str(store), "--rates", str(rates))
    assert "the rates are of paper-size models, this preset's are small; no estimate" in other.stdout
    rates.write_text("{}")
    bad = grid("--plan", "--preset", "tiny", "--store", str(store), "--rates", str(rates))
    assert bad.returncode == 2 and f"--rates {rates}: not a file" in bad.stderr


def test_the_plan_of_the_paper_lists_its_tables_cells_and_prices_it_beside_the_full_cross_product(tmp_path):
    rates = tmp_path / "rates.json"
    per_video = {what: [0.01, 0.002] if what == "all" else [0.002, 0.0005] for what in ("all", "6", "10", "15", "20", "30")}
    rates.write_text(json.dumps({"device": "cuda", "size": "paper",
                                 "seconds_per_video": {f: per_video for f in ("hrnn", "netvlad", "nextvlad")}}))
    hours = {}
    for preset in ("paper", "paper_full"):
        shown = grid("--plan", "--preset", preset, "--store", str(tmp_path / "store"), "--rates", str(rates))
        assert shown.returncode == 0, shown.stderr
        hours[preset] = float(re.search(r"; total ([\d,.]+),", shown.stdout).group(1).replace(",", ""))
        if preset == "paper":
            assert "cells: 94 (" in shown.stdout and "teachers: 6 (" in shown.stdout
            assert "the matrix is the union of 5 parts (94 distinct cells):" in shown.stdout
            assert ("- Table 6: NeXtVLAD, Uniform-k and the student at k=30: 3 cells: Teacher-Skyline (all frames); "
                    "Uniform-k at k=30; Serial Lrep + Lpred + LCE at k=30") in shown.stdout
        else:
            assert "cells: 972 (" in shown.stdout and "union of" not in shown.stdout
    assert hours["paper_full"] > 5 * hours["paper"] > 0
