"""Clear one-line errors for a store on S3 that cannot be used, within about a minute, nothing written."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from s3_server import start_s3_server

from orchestrator.errors import OrchestratorError
from orchestrator.storage import check_store

REPO = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_usable_bucket_passes(s3_bucket):
    check_store(f"s3://{s3_bucket}/grid")
    check_store("/a/local/folder")  # local stores are not checked here


def test_missing_bucket(s3_bucket):
    with pytest.raises(OrchestratorError, match="bucket 'no-such-bucket' does not exist"):
        check_store("s3://no-such-bucket/grid")


def test_wrong_credentials(s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(OrchestratorError, match="access to bucket .* denied: check the credentials"):
        check_store(f"s3://{s3_bucket}/grid")


def test_unreachable_endpoint(monkeypatch, s3_server):
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    with pytest.raises(OrchestratorError, match="cannot reach the S3 endpoint http://127.0.0.1"):
        check_store("s3://some-bucket/grid")
    assert time.monotonic() - start < 60


def test_grid_with_wrong_credentials_exits_2_and_writes_nothing(s3_server, s3_bucket, tmp_path):
    env = {**os.environ, **s3_server.env, "AWS_SECRET_ACCESS_KEY": "wrong"}
    tracking = tmp_path / "mlflow.db"
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.grid", "--preset", "tiny", "--store", f"s3://{s3_bucket}/grid",
         "--tracking-uri", f"sqlite:///{tracking}"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error: s3://") and "denied" in lines[0]
    assert "Traceback" not in result.stderr and not tracking.exists()
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket=s3_bucket)


@pytest.mark.slow
def test_a_grid_that_loses_its_store_stops_cleanly_and_resumes(tmp_path):
    """The S3 endpoint goes away mid-grid: one line, exit 2, no MLflow run RUNNING, finished cells kept;
    back, the same command finishes the rest."""
    server = start_s3_server()
    try:
        server.client().create_bucket(Bucket="grid")
        env = {**os.environ, **server.env}
        tracking = f"sqlite:///{tmp_path}/mlflow.db"
        command = [sys.executable, "-m", "orchestrator.grid", "--preset", "tiny", "--store", "s3://grid/runs",
                   "--tracking-uri", tracking]
        grid = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        deadline = time.monotonic() + 400
        while grid.poll() is None and time.monotonic() < deadline and not _results(server):
            time.sleep(0.5)
        assert grid.poll() is None, "the grid ended before any cell finished"
        server.halt()
        lost_at = time.monotonic()
        out, err = grid.communicate(timeout=300)
        assert time.monotonic() - lost_at < 120
        assert grid.returncode == 2, out[-2000:] + err[-2000:]
        assert "Traceback" not in err
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines[-1].startswith("error: s3://grid/runs: cannot reach the S3 endpoint"), err[-2000:]
        assert "lost it mid-grid" in lines[-1]
        client = MlflowClient(tracking)
        experiment = client.get_experiment_by_name("fewer-frames-tiny")
        runs = client.search_runs([experiment.experiment_id])
        assert runs and not [r for r in runs if r.info.status == "RUNNING"]

        server.resume()
        kept = len(_results(server))
        assert kept >= 1
        again = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
        assert f"{kept} already done" in again.stdout
        assert len(_results(server)) == 7
    finally:
        server.stop()


def _results(server) -> list[str]:
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket="grid", Prefix="runs/results/")
    return [o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith(".json")]
