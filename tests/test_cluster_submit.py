"""`ray job submit -- python -m orchestrator.grid` against a real `ray start --head` on this machine."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ports import free_port, stop_group

REPO = Path(__file__).resolve().parents[1]
RAY = shutil.which("ray") or str(Path(sys.executable).parent / "ray")


@pytest.mark.slow
def test_job_submit_runs_the_grid_on_a_started_cluster(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    gcs, dashboard = free_port(), free_port()
    # Ray's sockets live under --temp-dir, and a Unix socket path may not exceed 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    # The job agent on a port of its own choosing (0, as `cluster/up.sh --local` starts its head): on its
    # default, 52365, another Ray of the suite (a test's local one beside this) keeps it from binding, and
    # every submission is refused with "No available agent to submit job" for as long as that Ray lives.
    # In a session of its own: the cluster's processes keep `ray start`'s process group, and stopping
    # that group stops this cluster alone (`ray stop` would stop every Ray on the machine, a test's
    # running beside this one included).
    start = subprocess.Popen(
        [RAY, "start", "--head", "--num-cpus", "2", "--port", str(gcs), "--dashboard-host", "127.0.0.1",
         "--dashboard-port", str(dashboard), "--dashboard-agent-listen-port", "0", "--disable-usage-stats",
         "--temp-dir", temp_dir],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )
    _, err = start.communicate(timeout=120)
    assert start.returncode == 0, err
    try:
        store = tmp_path / "store"
        submit = [RAY, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--working-dir", str(REPO), "--",
                  "python", "-m", "orchestrator.grid", "--preset", "tiny", "--store", str(store)]
        job = subprocess.run(submit, capture_output=True, text=True, env=env, timeout=600)
        deadline = time.monotonic() + 180
        # `ray start` returns before the head's job agent answers (seconds later on a loaded machine): the
        # submission is refused, nothing ran, and the same command is given again, as a user would
        while "No available agent to submit job" in job.stderr and time.monotonic() < deadline:
            time.sleep(2)
            job = subprocess.run(submit, capture_output=True, text=True, env=env, timeout=600)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout and "Teacher-Skyline" in job.stdout
        client = MlflowClient(f"sqlite:///{store}/mlflow.db")
        experiment = client.get_experiment_by_name("fewer-frames-tiny")
        found = client.search_runs([experiment.experiment_id])
        assert len(found) == 9 and all(r.info.status == "FINISHED" for r in found)
    finally:
        stop_group(start.pid)
        shutil.rmtree(temp_dir, ignore_errors=True)
