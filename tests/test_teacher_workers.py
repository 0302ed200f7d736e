"""A teacher trained by Ray Train on two data-parallel workers (real local Ray, gloo on CPU)."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from orchestrator.cache.reader import ParquetTeacherCache
from orchestrator.cache.files import read_manifest
from orchestrator.experiment.settings import TeacherResources, TrainSettings
from orchestrator.jobs.data_sets import DataSet
from orchestrator.driver.session import start_ray
from orchestrator.experiment.matrix import TeacherSpec
from orchestrator.jobs.teacher_runs import SNAPSHOT
from orchestrator.jobs.teachers import TeacherJob, fit_teacher
from workloads.data.batch import FrameSelection
from workloads.data.reader import VideoShards
from workloads.data.synth import SynthConfig, generate
from workloads.models import build_model
from workloads.evaluation import evaluate
from workloads import memory
from workloads.teacher_outputs import export_teacher, student_intermediate_positions

CLASSES = 8
K = 10


@pytest.fixture(scope="module")
def local_ray():
    ray = start_ray("local")  # as the grid starts it
    yield ray
    ray.shutdown()


def test_ray_workers_start_with_the_allocator_settings_that_keep_batches_off_page_faults(local_ray):
    @local_ray.remote(num_cpus=0)
    class Worker:  # Ray Train's workers are actors of the job, as this one
        def settings(self):
            return {name: os.environ.get(name) for name in memory.DEFAULTS}

    # ours, or the value this process has (a user's, or ours set by a command run in this process)
    expected = {name: os.environ.get(name, str(value)) for name, value in memory.DEFAULTS.items()}
    assert local_ray.get(Worker.remote().settings.remote()) == expected


@pytest.fixture(scope="module")
def trained(local_ray, tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher-workers")
    config = SynthConfig(num_classes=CLASSES, min_frames=20, max_frames=40)
    # Three shards (128, 128, 64 videos): the workers export different parts of the cache.
    generate(str(root / "train"), 320, seed=5, split="train", config=config, videos_per_shard=128)
    generate(str(root / "validate"), 96, seed=5, split="validate", config=config)
    generate(str(root / "test"), 96, seed=5, split="test", config=config)
    data = DataSet("d", str(root / "train"), str(root / "validate"), str(root / "test"), CLASSES)
    result = fit(data, str(root / "store"))
    model = build_model("hrnn", "small", CLASSES)
    model.load_state_dict(torch.load(os.path.join(result.checkpoint, "model.pt")))
    return data, result, model, str(root / "store")


SPEC = TeacherSpec("hrnn", "small", (), "d", 1.0, 0, TrainSettings(epochs=2, learning_rate=0.003, batch_size=32))


def fit(data, store):
    return fit_teacher(TeacherJob(SPEC, data, store, ((K, "frames"),), 40, TeacherResources(num_workers=2)))


@pytest.mark.slow
def test_two_workers_train_one_teacher_and_report_it_once(trained):
    data, result, model, _ = trained
    assert result.workers == 2 and result.device == "cpu"
    assert [epoch.epoch for epoch in result.history] == [1, 2]
    # The reported test scores are over the whole test split, though each worker scored half of it.
    test = evaluate(model, VideoShards(data.test, 48))
    assert result.gap == pytest.approx(test.gap, abs=1e-6) and result.map == pytest.approx(test.map, abs=1e-6)
    assert test.gap > 0.3


@pytest.mark.slow
def test_the_workers_caches_hold_every_video_once_as_the_checkpoint_computes_it(trained):
    data, result, model, _ = trained
    student = build_model("hrnn", "small", CLASSES, k=K)
    student.match_intermediates_at("frames")  # the students that match after each frame, Eq. 3
    positions = student_intermediate_positions(student, FrameSelection("uniform", k=K))
    for key, uri in result.caches.items():
        manifest = read_manifest(uri)
        assert manifest.parts == tuple(f"part-{i:05d}.parquet" for i in range(3)) and manifest.videos == 320
        expected = list(export_teacher(model, VideoShards(data.train, 64), intermediate_positions=None if key == "base" else positions))
        ids = [r.id for r in expected]
        assert len(set(ids)) == 320
        targets = ParquetTeacherCache(uri).targets(ids, torch.device("cpu"))
        np.testing.assert_allclose(targets.representation.numpy(), np.stack([r.representation for r in expected]), atol=1e-5)
        np.testing.assert_allclose(targets.probabilities.numpy(), np.stack([r.probabilities for r in expected]), atol=1e-5)
        if key != "base":
            first = expected[0].intermediates
            np.testing.assert_allclose(targets.intermediates[0, : first.shape[0]].numpy(), first, atol=1e-5)


@pytest.mark.slow
def test_a_later_fit_of_the_same_teacher_resumes_from_its_checkpoint_and_trains_nothing(trained):
    data, result, model, store = trained
    assert result.resumed_at_epoch == 0
    again = fit(data, store)
    assert again.resumed_at_epoch == 2 and again.history == result.history
    assert again.gap == pytest.approx(result.gap, abs=1e-9)
    resumed = build_model("hrnn", "small", CLASSES)
    resumed.load_state_dict(torch.load(os.path.join(again.checkpoint, "model.pt")))
    for name, value in model.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


@pytest.mark.slow
def test_a_fit_after_an_unreadable_snapshot_resumes_from_the_newest_complete_checkpoint(trained):
    data, result, _, store = trained
    run = Path(store, "ray", SPEC.id)
    recorded = next(run.glob("checkpoint_2*"))
    # What a driver stopped at the wrong moment leaves: a snapshot cut short, and checkpoints never recorded,
    # one uploaded halfway (newest) and one complete but older than the recorded one.
    cut = run / "checkpoint_2999-01-01_00-00-00.000000"
    cut.mkdir()
    (cut / "progress.pt").write_bytes((recorded / "progress.pt").read_bytes()[:4096])
    shutil.copytree(recorded, run / "checkpoint_2000-01-01_00-00-00.000000")
    snapshot = (run / SNAPSHOT).read_bytes()
    (run / SNAPSHOT).write_bytes(snapshot[: len(snapshot) // 2])

    again = fit(data, store)
    assert again.resumed_at_epoch == 2 and again.history == result.history
    assert again.gap == pytest.approx(result.gap, abs=1e-9)
    assert again.run_snapshot.startswith(f"{run / SNAPSHOT} cannot be read ({len(snapshot) // 2} bytes, cut short?)")
    assert "(3 found)" in again.run_snapshot
    aside = list(run.glob(f"{SNAPSHOT}.unreadable-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == snapshot[: len(snapshot) // 2]
    # Ray's new snapshot names the one checkpoint left; the unrecorded ones are gone.
    assert [p.name for p in run.glob("checkpoint_2*")] == [Path(again.checkpoint).name]
