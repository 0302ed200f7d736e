import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# A test's teacher trains for a second or two, and Ray Train's controller looks at its workers every 2 s
# (when they have started, when they are done): a quarter of a second takes about 5 s off every grid run
# that fits a teacher. Inherited by the grids the tests start, their local Ray and its actors.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")

import itertools

import pytest

from s3_server import start_s3_server

_buckets = itertools.count()


@pytest.fixture(scope="session")
def s3_server():
    server = start_s3_server()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    """A fresh bucket on the test S3 server, with the standard AWS variables pointing at it."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    name = f"test-{os.getpid()}-{next(_buckets)}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def tiny_grid(tmp_path_factory):
    """The session's one tiny grid, run as the README's command runs it and watched while it runs, for the
    tests that look at what it left (they copy its store to change it, never change it): a
    `grids.FinishedGrid`. Under pytest-xdist the first worker to ask runs it, the others wait for it and
    read what it left (the folder above each worker's own temporary folder is shared by all of them)."""
    import json

    from filelock import FileLock

    from grids import FinishedGrid, watched_grid

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    folder, finished = shared / "tiny_grid", shared / "tiny_grid.json"
    with FileLock(str(shared / "tiny_grid.lock")):
        if not finished.exists():
            done, seen = watched_grid(folder / "store", "--preset", "tiny", "--store", str(folder / "store"))
            finished.write_text(json.dumps({"returncode": done.returncode, "stdout": done.stdout,
                                            "stderr": done.stderr, "seen": seen}))
        done = json.loads(finished.read_text())
    assert done["returncode"] == 0, done["stdout"] + done["stderr"]
    return FinishedGrid(folder / "store", done["stdout"], done["seen"])


@pytest.fixture(scope="session")
def mlflow_ui(tiny_grid):
    """MLflow's UI over the session's tiny grid's store, as the grid says to open it: its URL."""
    from grids import mlflow_ui_over

    with mlflow_ui_over(tiny_grid) as url:
        yield url
