"""`benchmarks/gpu_check.py`, the GPU machine's one command, kept from rotting while no GPU is lent: its dry
run on the CPU (small models, the same code paths) writes both summaries and the rates `--plan` reads,
importing nothing the GPU machine lacks (Ray, MLflow, Optuna and boto3 are made unimportable here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.driver.cost import Rates

REPO = Path(__file__).resolve().parents[1]
ABSENT = ("ray", "mlflow", "optuna", "boto3", "botocore", "s3fs")
# Loaded by every Python process started with it on PYTHONPATH, the check's spawned replicas too.
BLOCKER = f'''
import sys

class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT!r}:
            raise ImportError(f"{{name}} is not on the GPU machine")
        return None

sys.meta_path.insert(0, _Absent())
'''


@pytest.mark.slow
def test_the_dry_run_writes_every_figure_without_ray_mlflow_optuna_or_boto3(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "sitecustomize.py").write_text(BLOCKER)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(blocked)}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(os.listdir(out)) == ["gpu_check.json", "gpu_check.md", "rates.json"]
    found = json.loads((out / "gpu_check.json").read_text())
    # every family, model, precision and batch size measured (or its error said)
    rows = found["throughput"]
    assert {(r["family"], r["k"], r["precision"], r["batch"]) for r in rows} == {
        (f, k, p, b) for f in ("hrnn", "netvlad", "nextvlad") for k in (None, 10)
        for p in ("float32", "float16", "bfloat16") for b in (4, 8)}
    assert all(r["train_videos_per_s"] > 0 and r["inference_videos_per_s"] > 0 for r in rows
               if r["precision"] == "float32")
    assert [r["family"] for r in found["cpu_vs_gpu"]] == ["hrnn", "netvlad", "nextvlad"]
    assert all(r["max_abs_logit_difference"] == 0.0 for r in found["cpu_vs_gpu"])  # the CPU against itself
    step = found["data_parallel"]["step"]
    assert step["backend"] == "gloo" and step["replicas"] == 2 and step["largest_weight_difference"] == 0.0
    assert found["data_parallel"]["checkpoint"] == {"largest_logit_difference": 0.0, "resumed_step": "ok"}
    assert found["reader"]["reader_videos_per_s_per_core"] > 0
    assert set(found["reader"]["cores_a_gpu_needs"]) == {"hrnn", "netvlad", "nextvlad"}
    assert set(found["cost"]["device_hours"]) == {"paper", "paper_full"} and found["skipped"] == []
    rates = Rates.load(str(out / "rates.json"))  # the format --plan --rates reads
    assert rates.size == "small" and ("hrnn", None) in rates.seconds and ("nextvlad", 10) in rates.seconds
    summary = (out / "gpu_check.md").read_text()
    assert "## Throughput (videos/s)" in summary and "| nextvlad | k=10 | bfloat16 | 8 |" in summary


def test_a_budget_too_short_skips_and_says_so_but_writes_the_rest(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--out", str(out), "--budget", "0"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads((out / "gpu_check.json").read_text())
    assert found["throughput"] == [] and len(found["skipped"]) == 36
    assert "not estimated" in json.dumps(found["cost"]["device_hours"])
