"""The student as a product, end to end on a tiny grid: the registry, batch prediction (here and on a local
Ray with Ray Data), serving with `mlflow models serve`, and bad input. Real MLflow on SQLite, real Ray."""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from commands import in_process
from grids import copy_store, mlflow_ui_over, tracking
from orchestrator.experiment.modes import Mode
from orchestrator.tracking import schema
from orchestrator.tracking.front_registry import validation_front
from orchestrator.tracking.schema import RunKind
from ports import free_port, wait_until_answering
from workloads.inference import read_submission

REPO = Path(__file__).resolve().parents[1]
STUDENT, TEACHER = "fewer-frames-hrnn-k10", "fewer-frames-hrnn-all"
ADAPTIVE = STUDENT + "-adaptive"  # the student best read adaptively: it stops per video by its calibrated rule
pytestmark = pytest.mark.slow


command = in_process  # `python -m module args`, in this process


@pytest.fixture(scope="module")
def grid(tiny_grid):
    store, printed = tiny_grid.store, tiny_grid.printed
    test_split = next(store.glob("data/syn-*/test"))
    return store, printed, tracking(store), MlflowClient(tracking(store)), test_split


def cell_runs(client):
    return {run.info.run_name: run for run in client.search_runs(["1"], schema.kind_filter(RunKind.CELL))}


def predict(grid, tmp_path, model, name, *args):
    _, _, tracking, _, test_split = grid
    out = tmp_path / name
    done = command("orchestrator.predict", "--model", model, "--data", str(test_split), "--out", str(out),
                   "--tracking-uri", tracking, *args)
    return done, out


def test_the_grid_registers_its_teacher_and_best_student_and_keeps_only_their_weights(grid, tmp_path):
    store, printed, _, client, _ = grid
    runs = {name: schema.outcome_of_run(run) for name, run in cell_runs(client).items()}
    students = [cell for cell in runs.values() if cell.mode.is_student]
    best = max(students, key=lambda cell: cell.val_gap)
    for name, cell in ((STUDENT, best), (TEACHER, runs["hrnn/skyline/all/s0"])):
        version = client.get_model_version_by_alias(name, "best")
        assert version.run_id == cell.run_id and version.tags[schema.CELL_ID_TAG] == cell.cell_id
        assert float(version.tags[schema.TEST_GAP]) == pytest.approx(cell.gap, abs=1e-5)
        assert float(version.tags[schema.MACS]) == pytest.approx(cell.macs, rel=1e-5)
        assert f"registered {name} version {version.version} (models:/{name}@best)" in printed
    assert client.get_model_version_by_alias(STUDENT, "best").tags[schema.K] == "10"
    # keep_weights: best. The store holds the teacher's, the winner's and the winner read adaptively's
    # models; the others' runs say why not.
    adaptive = max((c for c in students if c.adaptive_val_gap is not None), key=lambda c: c.adaptive_val_gap)
    kept = sorted(path.stem for path in (store / "models").glob("*.pt"))
    assert kept == sorted({best.cell_id, adaptive.cell_id, Path(runs["hrnn/skyline/all/s0"].weights).stem})
    dropped = schema.dropped(schema.WEIGHTS_TAG)
    for run in cell_runs(client).values():
        if schema.outcome_of_run(run).mode.is_student and run.info.run_id not in (best.run_id, adaptive.run_id):
            assert schema.WEIGHTS_TAG not in run.data.tags and "not the best hrnn k10 student" in run.data.tags[dropped]
    # The logged model is complete for inference: the card and weights, its code, pinned requirements, a
    # signature and an example.
    import mlflow

    mlflow.set_tracking_uri(grid[2])
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{STUDENT}@best", dst_path=str(tmp_path)))
    card = json.loads(next(folder.rglob("card.json")).read_text())
    assert (card["family"], card["k"], card["selection"], card["num_classes"]) == ("hrnn", 10, "uniform", 10)
    assert "torch==2.13.0" in (folder / "requirements.txt").read_text().split()
    described = (folder / "MLmodel").read_text()
    assert "signature:" in described and "binary" in described and "top_k" in described
    assert (folder / "code" / "workloads" / "inference.py").is_file() and (folder / "serving_input_example.json").is_file()


# Run in a process of its own, from the model's folder: the model loaded as `mlflow models serve` loads it,
# asked to label its own example, and every module of this project that it imported named with its file.
LOAD_ALONE = """
import json, sys
import mlflow.pyfunc
from mlflow.models import Model
folder = sys.argv[1]
example = Model.load(folder).load_input_example(folder)
labelled = mlflow.pyfunc.load_model(folder).predict(example)
print(json.dumps({"ids": list(labelled["id"]), "modules": {name: getattr(module, "__file__", None) or ""
                  for name, module in sys.modules.items() if name.split(".")[0] in ("orchestrator", "workloads")}}))
"""


def test_a_logged_model_carries_workloads_and_the_serving_package_only(grid, tmp_path):
    import mlflow

    mlflow.set_tracking_uri(grid[2])
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{STUDENT}@best", dst_path=str(tmp_path / "model")))
    code = folder / "code"
    shipped = {str(path.relative_to(code)) for path in code.rglob("*.py")}
    project = {str(path.relative_to(REPO)) for top in ("workloads", "orchestrator/serve") for path in
               (REPO / top).rglob("*.py")} | {"orchestrator/__init__.py"}
    assert shipped == project, sorted(shipped ^ project)
    alone = subprocess.run([sys.executable, "-c", LOAD_ALONE, str(folder)], capture_output=True, text=True,
                           timeout=300, cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": grid[2]})
    assert alone.returncode == 0, alone.stderr[-3000:]
    loaded = json.loads(alone.stdout.strip().splitlines()[-1])
    assert loaded["ids"] == ["video-a", "video-b"]
    assert loaded["modules"] and all(path.startswith(str(code)) for path in loaded["modules"].values()), loaded
    assert "orchestrator.serve.labeller" in loaded["modules"]


def test_predict_on_the_test_split_gives_the_cells_logged_gap_and_a_valid_submission(grid, tmp_path):
    client = grid[3]
    for name in (STUDENT, TEACHER):
        version = client.get_model_version_by_alias(name, "best")
        logged = schema.outcome_of_run(client.get_run(version.run_id))
        done, out = predict(grid, tmp_path, f"models:/{name}@best", f"{name}.csv", "--labels", "--top-k", "5")
        assert done.returncode == 0, done.stderr
        gap = float(done.stdout.split("GAP ")[1].split()[0])
        mean_ap = float(done.stdout.split("mAP ")[1].split()[0])
        assert gap == pytest.approx(logged.gap, abs=1e-4) and mean_ap == pytest.approx(logged.map, abs=1e-4)
        with open(out) as handle:
            rows = read_submission(handle, str(out))
        assert len(rows) == 48 and all(len(pairs) == 5 for pairs in rows.values())
        assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_predict_spreads_shards_over_a_ray_cluster_with_the_same_rows(grid, tmp_path):
    here, here_out = predict(grid, tmp_path, f"models:/{STUDENT}@best", "here.csv")
    spread_out = tmp_path / "ray.csv"
    # A process of its own: it starts (and stops) a local Ray cluster.
    spread = subprocess.run([sys.executable, "-m", "orchestrator.predict", "--model", f"models:/{STUDENT}@best",
                             "--data", str(grid[4]), "--out", str(spread_out), "--tracking-uri", grid[2],
                             "--address", "local"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert here.returncode == 0 and spread.returncode == 0, here.stderr + spread.stderr
    assert sorted(here_out.read_text().splitlines()) == sorted(spread_out.read_text().splitlines())


def shell_env() -> dict[str, str]:
    """A shell's environment with this Python's scripts first on PATH (`python`, `mlflow`), and no
    MLFLOW_TRACKING_URI: a printed command must carry its own."""
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    return {**env, "PATH": os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")}


def test_the_printed_predict_command_works_as_pasted_anywhere(grid, tmp_path):
    _, printed, tracking_uri, _, test_split = grid
    command = re.search(r"^label videos with the k=10 student: (.+)$", printed, re.MULTILINE).group(1)
    assert f"--data {test_split} " in command and f"--tracking-uri {tracking_uri}" in command
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=tmp_path, env=shell_env(),
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(tmp_path / "predictions.csv", newline="") as handle:
        assert len(read_submission(handle, "predictions.csv")) == 48
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]  # MLflow wrote nothing here


def test_publish_on_demand_registers_once_and_a_chosen_cell_leaves_best_alone(grid, tmp_path):
    """On a copy of the store (its registry changes; the session's grid is shared by tests running at once)."""
    store = copy_store(grid[0], tmp_path / "store")
    uri = tracking(store)
    client = MlflowClient(uri)
    before = client.get_model_version_by_alias(STUDENT, "best")
    again = command("orchestrator.publish", "--experiment", "fewer-frames-tiny", "--tracking-uri", uri)
    assert again.returncode == 0 and f"already registered {STUDENT} version {before.version}" in again.stdout, again.stderr
    chosen = command("orchestrator.publish", "--run-id", before.run_id, "--tracking-uri", uri)
    assert chosen.returncode == 0, chosen.stderr
    newest = max(client.search_model_versions(f"name = '{STUDENT}'"), key=lambda v: int(v.version))
    assert int(newest.version) == int(before.version) + 1 and f"models:/{STUDENT}/{newest.version}" in chosen.stdout
    assert client.get_model_version_by_alias(STUDENT, "best").version == before.version
    loser = next(run for run in cell_runs(client).values() if schema.dropped(schema.WEIGHTS_TAG) in run.data.tags)
    refused = command("orchestrator.publish", "--run-id", loser.info.run_id, "--tracking-uri", uri)
    assert refused.returncode == 2 and "its weights are not kept" in refused.stderr
    unknown = command("orchestrator.publish", "--run-id", "0" * 32, "--tracking-uri", uri)
    assert unknown.returncode == 2 and "no such MLflow run" in unknown.stderr


def test_publish_pareto_registers_the_validation_front_with_each_models_place(grid, tmp_path):
    """On a copy of the store (its registry changes): every front member with kept weights registered once,
    aliased by its place, the cheapest first; a member whose weights are not kept named, exit 1."""
    store = copy_store(grid[0], tmp_path / "store")
    client, uri = MlflowClient(tracking(store)), tracking(store)
    cells = [schema.outcome_of_run(run) for run in cell_runs(client).values()]
    front = validation_front([c for c in cells if c.family == "hrnn"])
    assert front and all(not any(o.val_gap >= c.val_gap and o.macs < c.macs for o in cells if o.finished
                                 and (o.mode is Mode.SKYLINE or o.mode.is_student)) for c in front)
    kept = [c for c in front if c.weights]
    done = command("orchestrator.publish", "--experiment", "fewer-frames-tiny", "--pareto", "--tracking-uri", uri)
    assert done.returncode == (0 if len(kept) == len(front) else 1), done.stdout + done.stderr
    versions = {v.version: v for v in client.search_model_versions("name = 'fewer-frames-hrnn-pareto'")}
    assert len(versions) == len(kept)
    for place, cell in enumerate(front, 1):
        if not cell.weights:
            assert f"place {place} of {len(front)} ({cell.name}): not registered: its weights are not kept" in done.stderr
            continue
        version = client.get_model_version_by_alias("fewer-frames-hrnn-pareto", f"front-{place}")
        assert version.tags[schema.CELL_ID_TAG] == cell.cell_id
        assert version.tags[schema.PARETO_PLACE_TAG] == f"{place} of {len(front)}, cheapest first"
        assert f"models:/fewer-frames-hrnn-pareto@front-{place}" in done.stdout
    # Again: nothing new, the same places
    again = command("orchestrator.publish", "--experiment", "fewer-frames-tiny", "--pareto", "--tracking-uri", uri)
    assert again.returncode == done.returncode and "already registered fewer-frames-hrnn-pareto" in again.stdout
    assert len(client.search_model_versions("name = 'fewer-frames-hrnn-pareto'")) == len(kept)


def test_publish_with_every_winners_weights_gone_fails_and_names_them(grid, tmp_path):
    """Nothing registered is not success: exit 1, each winner named with why (a copy of the store)."""
    store = copy_store(grid[0], tmp_path / "store")
    client = MlflowClient(tracking(store))
    for model in client.search_registered_models():
        client.delete_registered_model(model.name)
    shutil.rmtree(store / "models")
    done = command("orchestrator.publish", "--experiment", "fewer-frames-tiny", "--tracking-uri", tracking(store))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"error: 3 of 3 model(s) not registered (why above): {TEACHER}, {STUDENT}, {ADAPTIVE}" in done.stderr
    assert done.stdout.count("its weights are no longer at") == 3 and not client.search_registered_models()


def _post(url: str, body: dict):
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_the_served_student_answers_a_request_of_shard_columns(grid, tmp_path):
    _, _, tracking, _, test_split = grid
    _, out = predict(grid, tmp_path, f"models:/{STUDENT}@best", "expected.csv", "--top-k", "3")
    with open(out) as handle:
        expected = read_submission(handle, str(out))
    videos = pq.read_table(next(test_split.glob("*.parquet"))).slice(0, 2).to_pylist()
    port = free_port()
    # The grid's printed command, pasted into a shell in another folder (on a free port)
    printed = re.search(r"^serve it: (.+)$", grid[1], re.MULTILINE).group(1)
    assert f"models:/{STUDENT}@best" in printed and "-p 5001" in printed
    server = subprocess.Popen(["bash", "-c", printed.replace("-p 5001", f"-p {port}")], env=shell_env(), cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(url + "/ping", server, "mlflow models serve")
        columns = ["id", "num_frames", "rgb", "audio"]
        data = [[v["id"], v["num_frames"], base64.b64encode(v["rgb"]).decode(), base64.b64encode(v["audio"]).decode()]
                for v in videos]
        answer = _post(url + "/invocations", {"dataframe_split": {"columns": columns, "data": data},
                                              "params": {"top_k": 3}})["predictions"]
        assert [row["id"] for row in answer] == [v["id"] for v in videos]
        for row, video in zip(answer, videos):
            assert [(c, pytest.approx(s, rel=1e-5)) for c, s in zip(row["labels"], row["scores"])] == \
                expected[row["id"]]
            assert row["frames"] == min(10, video["num_frames"])  # what the k=10 student read of it
        first, frames = videos[0]["id"], videos[0]["num_frames"]
        bad = {  # each refused with 400 and the project's one line (MLflow's generic one had the stack trace)
            "frames that the bytes do not hold": ((0, 1, frames + 1), {}, f"request, video '{first}': field 'rgb' "
                                                  f"holds {frames * 1024} bytes, expected num_frames x 1024"),
            "no frames": ((0, 1, 0), {}, f"video '{first}': field 'num_frames' must be a whole number in "
                          "[1, 2147483647], got 0"),
            "negative frames": ((0, 1, -3), {}, "got -3"),
            "frames past an int32": ((0, 1, 10**12), {}, "got 1000000000000"),
            "a null id": ((0, 0, None), {}, "request, row 0: field 'id' must be a non-empty string, got None"),
            "top_k 0": (None, {"top_k": 0}, "params: top_k must be >= 1, got 0"),
            "top_k negative": (None, {"top_k": -2}, "params: top_k must be >= 1, got -2"),
        }
        for case, (change, params, message) in bad.items():
            rows = [list(row) for row in data]
            if change is not None:
                rows[change[0]][change[1]] = change[2]
            with pytest.raises(urllib.error.HTTPError) as refused:
                _post(url + "/invocations", {"dataframe_split": {"columns": columns, "data": rows}, "params": params})
            answer = json.loads(refused.value.read())
            assert refused.value.code == 400 and message in answer["message"], (case, answer)
            assert "stack_trace" not in answer and "Traceback" not in answer["message"], case
            assert answer["message"].startswith(("request", "params")), (case, answer)  # not the request's DataFrame
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert not list(tmp_path.glob("mlflow.db")) and not (tmp_path / "mlruns").exists()  # MLflow wrote nothing here


def test_the_adaptive_student_predicts_and_answers_saying_how_many_frames_it_read(grid, tmp_path):
    _, _, tracking_uri, client, test_split = grid
    students = [schema.outcome_of_run(run) for run in cell_runs(client).values()]
    cell = max((c for c in students if c.adaptive_val_gap is not None), key=lambda c: c.adaptive_val_gap)
    version = client.get_model_version_by_alias(ADAPTIVE, "best")
    assert version.run_id == cell.run_id and "coarse to fine" in client.get_registered_model(ADAPTIVE).description
    # Over the test split's folder: the GAP of the cell's adaptive reading, and the frames it read
    done, out = predict(grid, tmp_path, f"models:/{ADAPTIVE}@best", "adaptive.csv", "--labels")
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split("GAP ")[1].split()[0]) == pytest.approx(cell.adaptive_gap, abs=1e-4)
    read = float(done.stdout.split("the model read ")[1].split()[0])
    assert read == pytest.approx(cell.adaptive_frames, abs=0.051) and 1 <= read <= 10
    with open(out) as handle:
        expected = read_submission(handle, str(out))
    # Served: each video's answer says how many of its 10 frames it read
    videos = pq.read_table(next(test_split.glob("*.parquet"))).slice(0, 3).to_pylist()
    port = free_port()
    serve = ["mlflow", "models", "serve", "-m", f"models:/{ADAPTIVE}@best", "--env-manager", "local", "-h", "127.0.0.1",
             "-p", str(port)]
    env = {**shell_env(), "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen(serve, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(url + "/ping", server, "mlflow models serve")
        data = [[v["id"], v["num_frames"], base64.b64encode(v["rgb"]).decode(), base64.b64encode(v["audio"]).decode()]
                for v in videos]
        columns = ["id", "num_frames", "rgb", "audio"]
        answer = _post(url + "/invocations", {"dataframe_split": {"columns": columns, "data": data},
                                              "params": {"top_k": 20}})["predictions"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    for row, video in zip(answer, videos):
        assert 1 <= row["frames"] <= min(10, video["num_frames"])
        assert [(c, pytest.approx(s, rel=1e-5)) for c, s in zip(row["labels"], row["scores"])] == expected[row["id"]]


def test_bad_input_is_one_line_and_leaves_no_file(grid, tmp_path):
    _, _, tracking, _, _ = grid
    from workloads.data.synth import SynthConfig, generate

    other = tmp_path / "other"
    generate(str(other), 4, seed=0, config=SynthConfig(num_classes=12, min_frames=4, max_frames=8))
    no_audio = tmp_path / "no-audio"
    no_audio.mkdir()
    pq.write_table(pq.read_table(next(other.glob("*.parquet"))).drop_columns(["audio"]), no_audio / "a.parquet")
    copied = tmp_path / "copied"
    shutil.copytree(grid[4], copied)
    shard = next(copied.glob("*.parquet"))
    before = shard.read_bytes()
    cases = [
        (["--model", "models:/fewer-frames-nope@best"], "no registered model 'fewer-frames-nope'"),
        (["--model", f"models:/{STUDENT}@champion"], f"'{STUDENT}' has no alias 'champion' (its aliases: best)"),
        (["--data", str(other)], "a shard of 12 classes; the model predicts 10"),
        (["--data", str(no_audio)], "column 'audio' must be binary, found missing"),
        (["--out", str(tmp_path / "missing" / "out.csv")], f"its folder {tmp_path / 'missing'} does not exist"),
        (["--out", str(tmp_path)], f"--out {tmp_path}: a folder; give the CSV file's name"),
        # one of --data's own shards (a copy here: the session's grid is read by other tests)
        (["--data", str(copied), "--out", str(shard)], "a video shard's name (.parquet); the predictions are a CSV"),
    ]
    for change, message in cases:
        args = dict(zip(["--model", "--data", "--out"], [f"models:/{STUDENT}@best", str(grid[4]), str(tmp_path / "o.csv")]))
        args.update(dict(zip(change[::2], change[1::2])))
        done = command("orchestrator.predict", *[x for pair in args.items() for x in pair], "--tracking-uri", tracking)
        assert done.returncode == 2 and message in done.stderr, (change, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
        assert not (tmp_path / "o.csv").exists() and not list(tmp_path.glob(".o.csv*"))
    assert shard.read_bytes() == before


@pytest.fixture
def served_copy(tiny_grid, tmp_path):
    """MLflow's UI over a copy of the session's grid (a test publishes through it): (its URL, a client)."""
    store = copy_store(tiny_grid.store, tmp_path / "store")
    with mlflow_ui_over(tiny_grid, store) as url:
        yield url, MlflowClient(tracking(store))


def test_a_tracking_uri_with_a_password_is_accepted_and_never_shown(grid, served_copy, tmp_path):
    """MLflow's client takes `http://user:password@host`; so do report, publish and predict, and no line
    they print or file they write holds the password. Unreachable, the error shows it masked."""
    test_split = grid[4]
    mlflow_ui, client = served_copy
    secret = "s3cret-pw"
    uri = mlflow_ui.replace("http://", f"http://fewer:{secret}@")
    shown = mlflow_ui.replace("http://", "http://fewer:***@")
    report = command("orchestrator.report.__main__", "--experiment", "fewer-frames-tiny", "--tracking-uri", uri,
                     "--out", str(tmp_path / "report"))
    # a model logged through the server (MLflow's own "View run ... at URL" line would print the URI whole)
    publish = command("orchestrator.publish", "--run-id", client.get_model_version_by_alias(STUDENT, "best").run_id,
                      "--tracking-uri", uri)
    labelled = command("orchestrator.predict", "--model", f"models:/{STUDENT}@best", "--data", str(test_split),
                       "--out", str(tmp_path / "out.csv"), "--tracking-uri", uri)
    for done in (report, publish, labelled):
        assert done.returncode == 0, done.stdout + done.stderr
        assert secret not in done.stdout + done.stderr
    assert shown in (tmp_path / "report" / schema.REPORT_MD).read_text()
    assert not [path for path in (tmp_path / "report").iterdir() if secret.encode() in path.read_bytes()]
    closed = f"http://fewer:{secret}@127.0.0.1:{free_port()}"
    for module, args in (("orchestrator.report.__main__", ["--experiment", "x"]), ("orchestrator.publish", ["--experiment", "x"]),
                         ("orchestrator.predict", ["--model", "models:/x@best", "--data", str(test_split),
                                                   "--out", str(tmp_path / "o.csv")])):
        done = command(module, *args, "--tracking-uri", closed)
        assert done.returncode == 2 and "http://fewer:***@127.0.0.1" in done.stderr, done.stderr
        assert secret not in done.stdout + done.stderr and "no MLflow server answers there" in done.stderr
