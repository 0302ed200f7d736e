"""`ray job submit -- python -m orchestrator.grid` against a real `ray start --head` on this machine."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
RAY = shutil.which("ray") or str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_job_submit_runs_the_grid_on_a_started_cluster(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    gcs, dashboard = free_port(), free_port()
    # Ray's sockets live under --temp-dir, and a Unix socket path may not exceed 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    start = subprocess.run(
        [RAY, "start", "--head", "--num-cpus", "2", "--port", str(gcs), "--dashboard-host", "127.0.0.1",
         "--dashboard-port", str(dashboard), "--disable-usage-stats", "--temp-dir", temp_dir],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert start.returncode == 0, start.stderr
    try:
        store = tmp_path / "store"
        job = subprocess.run(
            [RAY, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--working-dir", str(REPO), "--",
             "python", "-m", "orchestrator.grid", "--preset", "tiny", "--store", str(store)],
            capture_output=True, text=True, env=env, timeout=600,
        )
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout and "Teacher-Skyline" in job.stdout
        client = MlflowClient(f"sqlite:///{store}/mlflow.db")
        experiment = client.get_experiment_by_name("fewer-frames-tiny")
        found = client.search_runs([experiment.experiment_id])
        assert len(found) == 9 and all(r.info.status == "FINISHED" for r in found)
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)
