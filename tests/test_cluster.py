"""cluster/: the configs validate and offer what the presets ask for; the local fake cluster autoscales
under `ray job submit -- python -m orchestrator.grid --preset smoke`; down.sh stops exactly it."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from orchestrator.experiment.matrix import expand
from orchestrator.experiment.modes import Mode
from orchestrator.experiment.presets import load_preset, preset_names
from orchestrator.tracking import schema
from orchestrator.tracking.schema import RunKind
from ports import free_port, group_alive

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
RAY = shutil.which("ray") or str(Path(sys.executable).parent / "ray")


def node_type_resources() -> dict[str, dict[str, set[str]]]:
    """Per config, per node type: the custom resources it offers."""
    aws = yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())
    local = yaml.safe_load((CLUSTER / "local.yaml").read_text().replace("@GCS_PORT@", "6390").replace("@HEAD_NODE_ID@", "h"))
    kuberay = yaml.safe_load((CLUSTER / "kuberay.yaml").read_text())
    offered = {name: {t: set(spec.get("resources", {})) - {"CPU", "GPU"} for t, spec in config["available_node_types"].items()}
               for name, config in (("aws-gpu", aws), ("local", local))}
    offered["kuberay"] = {g["groupName"]: set(json.loads(json.loads(g["rayStartParams"]["resources"])))
                          for g in kuberay["spec"]["workerGroupSpecs"]}
    return offered


@pytest.mark.parametrize("name", ["aws-gpu.yaml", "local.yaml"])
def test_cluster_configs_pass_rays_validator(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    text = (CLUSTER / name).read_text().replace("@GCS_PORT@", "6390").replace("@HEAD_NODE_ID@", "h")
    config = yaml.safe_load(text)
    if name != "local.yaml":  # filling in the defaults of the fake provider needs a file Ray's wheel lacks
        config = prepare_config(config)
    validate_config(config)
    workers = {t: s for t, s in config["available_node_types"].items() if t != config["head_node_type"]}
    assert {"gpu-student", "gpu-teacher"} <= set(workers)
    assert all(s["min_workers"] == 0 and s["max_workers"] >= 1 for s in workers.values())
    assert config["idle_timeout_minutes"] > 0
    head = config["available_node_types"][config["head_node_type"]]
    assert "GPU" not in head.get("resources", {})  # GPU work never lands on the head


def test_no_credentials_in_cluster_files():
    for path in CLUSTER.iterdir():
        text = path.read_text().lower()
        assert "aws_secret_access_key" not in text and "aws_access_key_id" not in text, path
        assert "-----begin" not in text, path


def test_kuberay_cluster_autoscales_gpu_groups_from_zero():
    cluster = yaml.safe_load((CLUSTER / "kuberay.yaml").read_text())
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["kind"] == "RayCluster"
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True and spec["autoscalerOptions"]["idleTimeoutSeconds"] > 0
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1
    # Every pod has a memory-backed /dev/shm (the object store; NCCL between a teacher's GPUs).
    for pod in [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]:
        volumes = {v["name"]: v for v in pod["volumes"]}
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/dev/shm")
        assert volumes[mount["name"]]["emptyDir"]["medium"] == "Memory"


@pytest.mark.parametrize("preset", preset_names())
def test_every_custom_resource_a_preset_asks_for_is_offered_by_a_node_type(preset):
    resources = load_preset(preset).resources
    wanted = set(resources.teacher.custom) | set(resources.cell.custom)
    for config, types in node_type_resources().items():
        offered = set().union(*types.values())
        assert wanted <= offered, f"{preset} asks for {wanted - offered}, which no node type of {config} offers"
    if preset == "paper":  # teachers and cells go to different node types
        assert resources.teacher.custom and resources.cell.custom
        assert not set(resources.teacher.custom) & set(resources.cell.custom)


def test_scripts_explain_themselves():
    for script in ("up.sh", "down.sh"):
        shown = subprocess.run([str(CLUSTER / script), "--help"], capture_output=True, text=True)
        assert shown.returncode == 0 and "--local" in shown.stdout
        wrong = subprocess.run([str(CLUSTER / script), "--bogus"], capture_output=True, text=True)
        assert wrong.returncode == 2 and "usage:" in wrong.stderr
        missing = subprocess.run([str(CLUSTER / script), "/no/such.yaml"], capture_output=True, text=True)
        assert missing.returncode == 2 and "no such cluster config" in missing.stderr


@pytest.mark.slow
def test_the_local_fake_cluster_autoscales_under_the_smoke_grid(s3_server, s3_bucket, tmp_path):
    state = tempfile.mkdtemp(prefix="ffc-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    dashboard = free_port()
    env = {**os.environ, "FEWER_FRAMES_LOCAL_CLUSTER": state, "FEWER_FRAMES_GCS_PORT": str(free_port()),
           "FEWER_FRAMES_DASHBOARD_PORT": str(dashboard), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    up = subprocess.run([str(CLUSTER / "up.sh"), "--local"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    group = int(Path(state, "pgid").read_text())
    try:
        assert f"http://127.0.0.1:{dashboard}" in up.stdout
        submit = [RAY, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}"]
        grid = ["python", "-m", "orchestrator.grid", "--preset", "smoke", "--override", str(REPO / "tests" / "cluster_smoke.yaml")]
        # A local store on a cluster that will grow is refused, before anything runs.
        refused = subprocess.run(submit + ["--", *grid, "--store", str(tmp_path / "local")], capture_output=True,
                                 text=True, env=env, cwd=tmp_path, timeout=300)
        assert refused.returncode != 0 and "a local store is only on this node" in refused.stdout
        # No --working-dir: the project is installed, and the fake nodes share one disk, where Ray deletes a
        # removed node's copy of the working directory under the others' feet.
        runtime = json.dumps({"env_vars": s3_server.env})
        tracking = f"sqlite:///{tmp_path}/mlflow.db"
        job = subprocess.run(submit + ["--runtime-env-json", runtime, "--", *grid, "--store", f"s3://{s3_bucket}/runs",
                                       "--tracking-uri", tracking], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=900)
        assert job.returncode == 0 and "succeeded" in job.stdout, job.stdout[-3000:] + job.stderr[-2000:]
        client = MlflowClient(tracking)
        runs = client.search_runs([client.get_experiment_by_name("fewer-frames-smoke").experiment_id], max_results=1000)
        cells = [r for r in runs if schema.kind_of(r) == RunKind.CELL]
        preset = load_preset("smoke", yaml.safe_load((REPO / "tests" / "cluster_smoke.yaml").read_text()))
        expected = len(expand(preset, "any")[1])  # every kind of cell, once
        assert len(cells) == expected and all(r.info.status == "FINISHED" for r in cells)
        assert {r.data.tags.get(schema.DEVICE_TAG) for r in cells} == {"cpu"}
        # The teacher trained on the two (fake) GPUs of a gpu-teacher node.
        skylines = [c for c in map(schema.outcome_of_run, cells) if c.mode is Mode.SKYLINE]
        assert len(skylines) == 1 and skylines[0].workers == 2
        monitor = "".join(p.read_text() for p in Path(state, "ray", "session_latest", "logs").glob("monitor.*"))
        assert "Adding" in monitor and "of type gpu-student" in monitor and "of type gpu-teacher" in monitor
    finally:
        down = subprocess.run([str(CLUSTER / "down.sh"), "--local"], capture_output=True, text=True, env=env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not group_alive(group)  # every process of the cluster is gone
    assert not Path(state).exists()
