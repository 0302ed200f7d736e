"""The data layer and the teacher cache on a real S3-compatible server (SeaweedFS on 127.0.0.1)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from s3_server import start_s3_server

from orchestrator.cache.reader import ParquetTeacherCache
from orchestrator.cache.files import MANIFEST, read_manifest, write_teacher_cache
from orchestrator.tracking import schema
from workloads.data.batch import FrameSelection
from workloads.data.reader import VideoShards
from workloads.data.synth import SynthConfig, generate
from workloads.inference import read_submission
from workloads.teacher_outputs import TeacherRecord
from youtube8m_records import random_videos, write_tfrecord


def test_synthetic_shards_on_s3_read_back_as_locally(s3_bucket, tmp_path):
    config = SynthConfig(num_classes=7, min_frames=10, max_frames=40)
    generate(f"s3://{s3_bucket}/data/train", 40, seed=2, config=config, videos_per_shard=16)
    generate(str(tmp_path), 40, seed=2, config=config, videos_per_shard=16)
    selection = FrameSelection("uniform", k=5)
    remote = list(VideoShards(f"s3://{s3_bucket}/data/train", 16, selection))
    local = list(VideoShards(str(tmp_path), 16, selection))
    assert [b.ids for b in remote] == [b.ids for b in local]
    assert all(torch.equal(a.frames, b.frames) and torch.equal(a.labels, b.labels) for a, b in zip(remote, local))


def test_converter_writes_to_s3(s3_server, s3_bucket, tmp_path):
    write_tfrecord(tmp_path / "train0000.tfrecord", random_videos(6, seed=5))
    env = {**os.environ, **s3_server.env, "PYTHONPATH": os.path.dirname(__file__) + os.pathsep + os.path.dirname(os.path.dirname(__file__))}
    result = subprocess.run([sys.executable, "-m", "workloads.data.convert", "--out", f"s3://{s3_bucket}/yt8m",
                             str(tmp_path / "train0000.tfrecord")], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    objects = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert [k for k in objects if not k.endswith("/")] == ["yt8m/train0000.parquet"]  # "/" keys: folder markers
    assert sum(len(b.ids) for b in VideoShards(f"s3://{s3_bucket}/yt8m", 4)) == 6


@pytest.mark.slow
def test_a_split_converts_bucket_to_bucket_on_ray_stops_and_resumes_doing_only_what_is_missing(s3_server, s3_bucket,
                                                                                              tmp_path):
    client = s3_server.client()
    out_bucket = f"{s3_bucket}-shards"
    client.create_bucket(Bucket=out_bucket)
    videos = {}
    for i in range(8):
        videos[i] = random_videos(5, seed=10 + i, prefix=f"f{i}-")
        data = write_tfrecord(tmp_path / f"train{i:04d}.tfrecord", videos[i])
        client.put_object(Bucket=s3_bucket, Key=f"frame/train/train{i:04d}.tfrecord", Body=data)
    client.put_object(Bucket=s3_bucket, Key="frame/train/train0009.tfrecord", Body=b"\x00" * 20)  # corrupt
    env = {**os.environ, **s3_server.env}
    env.pop("RAY_ADDRESS", None)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, "-m", "orchestrator.convert", f"s3://{s3_bucket}/frame/train/",
               f"s3://{s3_bucket}/frame/train/train0001.tfrecord",  # named twice: converted once
               "--out", f"s3://{out_bucket}/yt8m/train",
               "--cpus", str(os.cpu_count())]  # one file at a time, so the stop comes with files left

    def shards():
        listed = client.list_objects_v2(Bucket=out_bucket, Prefix="yt8m/train/").get("Contents", [])
        return sorted(o["Key"].rsplit("/", 1)[1] for o in listed if not o["Key"].endswith("/"))

    # Stopped for real: once two shards are out, the object store stalls (every task hangs on it) and the
    # driver gets SIGTERM, as from `ray job stop` or a batch scheduler.
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=repo)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None and len([s for s in shards() if not s.startswith(".")]) < 2:
        time.sleep(0.1)
    s3_server.process.send_signal(signal.SIGSTOP)
    try:
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=120)
    finally:
        s3_server.process.send_signal(signal.SIGCONT)
    assert first.returncode == 130, out + err
    assert "converted shards are kept; run the same command again to convert the rest" in err
    kept = [s for s in shards() if not s.startswith(".")]
    assert 2 <= len(kept) < 8, kept
    # A rerun converts only what is missing: here also a shard cut short under its name (no footer), beside
    # a temporary file a killed task left; the corrupt file fails again, named, and the others convert.
    cut = client.get_object(Bucket=out_bucket, Key=f"yt8m/train/{kept[0]}")["Body"].read()[:500]
    client.put_object(Bucket=out_bucket, Key=f"yt8m/train/{kept[0]}", Body=cut)
    client.put_object(Bucket=out_bucket, Key=f"yt8m/train/.{kept[0]}.tmp-0123456789ab", Body=cut)
    # and one a task killed between a move's copy and its delete left beside a complete shard
    client.put_object(Bucket=out_bucket, Key=f"yt8m/train/.{kept[1]}.tmp-abcdefabcdef", Body=cut)
    # The planted ones, and any that a task the stop killed left (mid-write, or mid-move).
    hidden = [s for s in shards() if s.startswith(".")]
    again = subprocess.run(command, capture_output=True, text=True, env=env, cwd=repo, timeout=300)
    assert again.returncode == 1, again.stdout + again.stderr
    redone = 9 - len(kept) + 1
    assert f"converted {redone - 1} of {redone} files" in again.stdout
    assert f"{len(kept) - 1} already converted, skipped" in again.stdout
    assert {f".{kept[0]}.tmp-0123456789ab", f".{kept[1]}.tmp-abcdefabcdef"} <= set(hidden)
    assert f"{len(hidden)} temporary file(s) of a stopped run removed" in again.stdout
    assert (f"\n  s3://{s3_bucket}/frame/train/train0009.tfrecord: record 0 at byte 0: length checksum mismatch"
            in again.stderr)  # the project's line, not Ray's wrapper (`workloads.data.tfrecord.RecordError: ...`)
    assert shards() == [f"train{i:04d}.parquet" for i in range(8)]  # nothing hidden left either
    read = VideoShards(f"s3://{out_bucket}/yt8m/train", 8, dequantize=False)
    assert sorted(i for b in read for i in b.ids) == sorted(v[0] for vs in videos.values() for v in vs)


def _records(count, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(count):
        yield TeacherRecord(f"v{i:04d}", rng.random(8, dtype=np.float32), rng.random(3, dtype=np.float32))


def test_teacher_cache_on_s3_and_its_manifest_is_written_last(s3_server, s3_bucket):
    location = f"s3://{s3_bucket}/teachers/t-1/cache/base"

    def dying():
        yield from _records(200)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_teacher_cache(location, [list(_records(5)), dying()], {"w": torch.ones(1)}, {})
    assert read_manifest(location) is None  # killed mid-write: no manifest, the cache is absent
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket).get("Contents", [])}
    assert f"teachers/t-1/cache/base/{MANIFEST}" not in keys
    assert not any("part-00001" in k for k in keys)  # nothing half-written under a final name

    records = list(_records(300, seed=1))
    write_teacher_cache(location, [records[:200], records[200:]], {"w": torch.ones(1)}, {"teacher_id": "t-1"})
    cache = ParquetTeacherCache(location)
    targets = cache.targets(["v0250", "v0003"], torch.device("cpu"))
    assert np.array_equal(targets.representation[0].numpy(), records[250].representation)
    assert np.array_equal(targets.probabilities[1].numpy(), records[3].probabilities)


@pytest.mark.slow
def test_a_grid_on_s3_loses_its_store_stops_cleanly_resumes_and_keeps_everything_there(tmp_path):
    """The S3 endpoint goes away mid-grid: one line, exit 2, no MLflow run RUNNING, finished cells kept;
    back, the same command finishes the rest, and everything the grid keeps is on S3."""
    server = start_s3_server()  # its own: it is stopped under the grid
    try:
        bucket = "grid"
        server.client().create_bucket(Bucket=bucket)
        env = {**os.environ, **server.env}
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        tracking = f"sqlite:///{tmp_path}/mlflow.db"
        # The tiny grid's three cells that make every kind of thing the store keeps: a baseline, the
        # teacher's skyline (its checkpoint and caches) and a serial student that reads them (registered
        # read adaptively too).
        fewer = tmp_path / "fewer.yaml"
        fewer.write_text(yaml.safe_dump({"baselines": ["uniform"], "serial": ["rep_then_ce"], "parallel": [],
                                         "intermediate": []}))
        command = [sys.executable, "-m", "orchestrator.grid", "--preset", "tiny", "--override", str(fewer),
                   "--store", f"s3://{bucket}/runs", "--tracking-uri", tracking]

        def keys():
            pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
            return [o["Key"] for page in pages for o in page.get("Contents", [])]

        def results():
            return [k for k in keys() if k.startswith("runs/results/") and k.endswith(".json")]

        grid = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=repo)
        deadline = time.monotonic() + 400
        while grid.poll() is None and time.monotonic() < deadline and not results():
            time.sleep(0.5)
        assert grid.poll() is None, "the grid ended before any cell finished"
        server.halt()
        out, err = grid.communicate(timeout=300)  # it stops on its own once it finds the store gone
        assert grid.returncode == 2, out[-2000:] + err[-2000:]
        assert "Traceback" not in err
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines[-1].startswith(f"error: s3://{bucket}/runs: cannot reach the S3 endpoint"), err[-2000:]
        assert "lost it mid-grid" in lines[-1]
        client = MlflowClient(tracking)
        experiment = client.get_experiment_by_name("fewer-frames-tiny")
        assert not [r for r in client.search_runs([experiment.experiment_id]) if r.info.status == "RUNNING"]

        server.resume()
        kept = len(results())
        assert kept >= 1
        first = subprocess.run(command, capture_output=True, text=True, env=env, cwd=repo, timeout=600)
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
        assert f"{kept} already done" in first.stdout
        found = keys()
        assert len(results()) == 3
        assert any(k.startswith("runs/teachers/") and k.endswith("_manifest.json") for k in found)
        assert any(k.startswith("runs/ray/") and k.endswith("model.pt") for k in found)  # the Ray Train checkpoint
        assert any(k.startswith("runs/mlartifacts/") and k.endswith(schema.SUMMARY) for k in found)  # MLflow artifacts
        # The report, made from MLflow with its artifacts on S3 (Figure 3 reads the representation samples there).
        assert "report (the paper's tables and figures): the parent run's report.html artifact" in first.stdout
        assert "note  report" not in first.stdout
        assert any(k.startswith("runs/mlartifacts/") and k.endswith("figure3_hrnn.png") for k in found)
        report = subprocess.run([sys.executable, "-m", "orchestrator.report", "--experiment", "fewer-frames-tiny",
                                 "--tracking-uri", tracking, "--out", str(tmp_path / "report")],
                                capture_output=True, text=True, env=env, cwd=repo, timeout=300)
        assert report.returncode == 0 and (tmp_path / "report" / "figure3_hrnn.png").is_file(), report.stderr
        # The teacher and the best student are kept on S3, registered with their MLflow Models on S3, and
        # predict reads the test split from S3 and writes its CSV there, with the student's logged GAP.
        # (and the best student read adaptively, when it is another: three registered models either way, its
        # weights logged with the card that reads by its stopping rule)
        assert sum(k.startswith("runs/models/") and k.endswith(".pt") for k in found) in (2, 3)
        assert sum(k.startswith("runs/mlartifacts/") and k.endswith("/MLmodel") for k in found) == 3
        assert "registered fewer-frames-hrnn-k10 version 1" in first.stdout, first.stdout[-2000:]
        student = schema.outcome_of_run(client.get_run(client.get_model_version_by_alias("fewer-frames-hrnn-k10",
                                                                                          "best").run_id))
        test_split = student.test_split
        assert test_split.startswith(f"s3://{bucket}/runs/data/")
        predicted = subprocess.run([sys.executable, "-m", "orchestrator.predict", "--model",
                                    "models:/fewer-frames-hrnn-k10@best", "--data", test_split,
                                    "--out", f"s3://{bucket}/out/submission.csv", "--labels", "--tracking-uri", tracking],
                                   capture_output=True, text=True, env=env, cwd=repo, timeout=300)
        assert predicted.returncode == 0, predicted.stderr
        assert abs(float(predicted.stdout.split("GAP ")[1].split()[0]) - student.gap) < 1e-4
        body = server.client().get_object(Bucket=bucket, Key="out/submission.csv")["Body"].read().decode()
        assert len(read_submission(body.splitlines(keepends=True), "submission.csv")) == 48
        again = subprocess.run(command, capture_output=True, text=True, env=env, cwd=repo, timeout=600)
        assert again.returncode == 0 and "3 already done, 0 jobs to run" in again.stdout
    finally:
        server.stop()


@pytest.mark.slow
def test_a_search_on_s3_keeps_its_study_there_and_resumes(s3_server, s3_bucket, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"name": "s3-study", "family": "hrnn", "variant": "rep+pred+ce", "epochs": 1,
                                     "search": {"w_rep": {"loguniform": [1.0e-3, 1.0]}}}))
    env = {**os.environ, **s3_server.env}
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, "-m", "orchestrator.tune", "--space", str(space), "--preset", "tiny", "--trials", "2",
               "--store", f"s3://{s3_bucket}/runs", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    first = subprocess.run(command, capture_output=True, text=True, env=env, cwd=repo, timeout=600)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    keys = [o["Key"] for page in s3_server.client().get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
            for o in page.get("Contents", [])]
    assert any(k.startswith("runs/tune/s3-study/") for k in keys)  # Tune's experiment state
    assert "runs/tune/s3-study.best.yaml" in keys and "runs/tune/s3-study.json" in keys
    assert any(k.startswith("runs/mlartifacts/") and k.endswith(schema.PARETO_PNG) for k in keys)
    again = subprocess.run(command, capture_output=True, text=True, env=env, cwd=repo, timeout=600)
    assert again.returncode == 0 and "resuming study s3-study" in again.stdout
