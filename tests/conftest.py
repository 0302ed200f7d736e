import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# A test's teacher trains for a second or two, and Ray Train's controller looks at its workers every 2 s
# (when they have started, when they are done): a quarter of a second takes about 5 s off every grid run
# that fits a teacher. Inherited by the grids the tests start, their local Ray and its actors.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")

import itertools
import signal
import subprocess
import sys

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
    tests that look at what it left (they copy its store to change it): a `grids.FinishedGrid`."""
    from grids import FinishedGrid, watched_grid

    store = tmp_path_factory.mktemp("tiny_grid") / "store"
    done, seen = watched_grid(store, "--preset", "tiny", "--store", str(store))
    assert done.returncode == 0, done.stdout + done.stderr
    return FinishedGrid(store, done.stdout, seen)


@pytest.fixture(scope="session")
def mlflow_ui(tiny_grid):
    """MLflow's UI over the session's tiny grid's store, started by the very command the grid printed
    (pasted into a shell, on a free port): its URL."""
    import re

    from ports import free_port, wait_until_answering

    printed = re.search(r"open it: (.+?)  then ", tiny_grid.printed).group(1)
    port = free_port()
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    server = subprocess.Popen(["bash", "-c", printed.replace("--port 5000", f"--port {port}")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_until_answering(url + "/health", server, "mlflow ui", timeout=120)
    yield url
    os.killpg(server.pid, signal.SIGTERM)  # the shell and the server it started
    server.wait(timeout=30)
