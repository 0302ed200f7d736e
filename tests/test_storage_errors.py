"""Clear one-line errors for a store on S3 that cannot be used, within about a minute, nothing written."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import OrchestratorError
from orchestrator.store.access import check_store

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


@pytest.mark.timeout(300)  # boto3's bounded retries give up in seconds; without them it would try for hours
def test_unreachable_endpoint(monkeypatch, s3_server):
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(OrchestratorError, match="cannot reach the S3 endpoint http://127.0.0.1"):
        check_store("s3://some-bucket/grid")


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
