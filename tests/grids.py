"""Grids the tests run as a user would (`python -m orchestrator.grid` in a process of its own, on a real local
Ray and a real SQLite MLflow store), and what they leave, read back through the tracking schema."""

import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from mlflow.tracking import MlflowClient

from orchestrator.tracking import schema
from orchestrator.tracking.schema import RunKind
from orchestrator.store.layout import Store
from orchestrator.tracking.uri import DATABASE, in_store
from ports import free_port, wait_until_answering

REPO = Path(__file__).resolve().parents[1]


class FinishedGrid(NamedTuple):
    store: Path
    printed: str  # its standard output
    seen_running: dict  # run name -> params, of each cell run seen RUNNING while the grid ran


def grid(*args, timeout=600, env=None):
    return subprocess.run([sys.executable, "-m", "orchestrator.grid", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})})


def tracking(store: Path) -> str:
    """The tracking URI a grid on `store` writes when given none."""
    return in_store(Store(str(store)))


def watched_grid(store: Path, *args) -> tuple[subprocess.CompletedProcess, dict]:
    """Run a grid, looking at its MLflow store while it runs: (the finished process, the params of each cell
    run seen RUNNING, by run name; a run only ever seen before its params landed is left out)."""
    process = subprocess.Popen([sys.executable, "-m", "orchestrator.grid", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=REPO)
    seen, database = {}, store / DATABASE
    while process.poll() is None:
        time.sleep(0.5)
        if not _migrated(database):
            continue  # an MLflow client opening the file now would migrate its schema alongside the grid's
        try:
            client = MlflowClient(tracking(store))
            running = client.search_runs(["1"], schema.both(schema.kind_filter(RunKind.CELL),
                                                            schema.status_filter("RUNNING")))
            # A run is created, then its params logged in a second call: a look that falls between the two
            # sees it with none, and the next look may find it already FINISHED; what each look saw is kept.
            for run in running:
                seen.setdefault(run.info.run_name, {}).update(run.data.params)
        except Exception:  # the database being created or written this very moment: look again
            pass
    out, err = process.communicate(timeout=60)
    seen = {name: params for name, params in seen.items() if params}
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
    client = MlflowClient(tracking(store))
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id], max_results=1000)


def of_kind(found: list, kind: RunKind) -> list:
    return [run for run in found if schema.kind_of(run) == kind]


def copy_store(store: Path, to: Path) -> Path:
    """A copy of a finished grid's store to damage or run again, every path into the store moved with it
    (in its results, and in its MLflow database: artifact locations, tags, params, model versions), so
    that what a grid run on the copy writes or deletes is in the copy, never in the original."""
    shutil.copytree(store, to)
    for result in (to / "results").glob("*.json"):
        result.write_text(result.read_text().replace(str(store), str(to)))
    moved = (("experiments", "artifact_location"), ("runs", "artifact_uri"), ("tags", "value"), ("params", "value"),
             ("logged_models", "artifact_location"), ("logged_model_params", "param_value"),
             ("model_versions", "source"), ("model_versions", "storage_location"), ("model_version_tags", "value"))
    with contextlib.closing(sqlite3.connect(to / DATABASE)) as db, db:
        for table, column in moved:
            db.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)", (str(store), str(to)))
    return to


@contextlib.contextmanager
def mlflow_ui_over(grid, store=None):
    """MLflow's UI over a finished grid's store (or `store`, a copy of it), started by the very command the
    grid printed (pasted into a shell, on a free port): its URL while it runs."""
    printed = re.search(r"open it: (.+?)  then ", grid.printed).group(1)
    if store is not None:
        printed = printed.replace(str(grid.store), str(store))
    port = free_port()
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    server = subprocess.Popen(["bash", "-c", printed.replace("--port 5000", f"--port {port}")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(url + "/health", server, "mlflow ui", timeout=120)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the shell and the server it started
        server.wait(timeout=30)
