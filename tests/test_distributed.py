"""Data-parallel training in plain torch.distributed: two real processes on gloo, no Ray."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from workloads.data.batch import FrameSelection
from workloads.data.reader import VideoShards
from workloads.data.synth import SynthConfig, generate
from workloads.distributed import replicate, unwrap, world
from workloads.errors import WorkloadError
from workloads.metrics import TopKAccumulator
from workloads.models import FAMILIES, build_model
from workloads.evaluation import evaluate
from workloads.teacher_outputs import InMemoryTeacherCache, export_teacher
from workloads.train import TrainConfig, seed_everything, train_classifier, train_parallel, train_serial_student

CLASSES = 8
REPLICAS = 2


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three training shards of one row group each (128, 128, 64 videos): two replicas get unequal shares."""
    root = tmp_path_factory.mktemp("ddp-data")
    config = SynthConfig(num_classes=CLASSES, min_frames=10, max_frames=30)
    generate(str(root / "train"), 320, seed=3, split="train", config=config, videos_per_shard=128)
    generate(str(root / "val"), 200, seed=3, split="validate", config=config, videos_per_shard=128)
    return str(root / "train"), str(root / "val")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _replica(rank: int, port: int, train: str, val: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=REPLICAS)
    try:
        outcome = {}
        for family in sorted(FAMILIES):
            seed_everything(0)
            model = build_model(family, "small", CLASSES)
            shares = {"rank": rank, "world_size": REPLICAS}
            result = train_classifier(
                replicate(model, "cpu"),
                VideoShards(train, 16, shuffle=True, seed=0, **shares),
                VideoShards(val, 16, **shares),
                TrainConfig(epochs=2, learning_rate=3e-3),
            )
            shared = evaluate(model, VideoShards(val, 16, **shares))
            whole = evaluate(model, VideoShards(val, 64))  # this replica alone, on all of it
            outcome[family] = {
                "state": {k: v.clone() for k, v in model.state_dict().items()},
                "history": [(m.loss, m.val_gap, m.val_map) for m in result.history],
                "best": (result.best_epoch, result.gap, result.map),
                "shared": (shared.gap, shared.map, shared.videos),
                "whole": (whole.gap, whole.map, whole.videos),
                "world": world(),
            }
        # A serial student on the replicas, from the H-RNN teacher's outputs (every replica holds them all).
        teacher = build_model("hrnn", "small", CLASSES)
        teacher.load_state_dict(outcome["hrnn"]["state"])
        cache = InMemoryTeacherCache(export_teacher(teacher, VideoShards(train, 64)), teacher.classifier.state_dict())
        seed_everything(1)
        student = build_model("hrnn", "small", CLASSES, k=10)
        selection = FrameSelection("uniform", k=10)
        result = train_serial_student(
            replicate(student, "cpu"), cache,
            VideoShards(train, 16, selection, shuffle=True, seed=0, **shares),
            VideoShards(val, 16, selection, **shares), "rep+ce", TrainConfig(epochs=1, learning_rate=3e-3))
        outcome["serial"] = {"state": {k: v.clone() for k, v in student.state_dict().items()},
                             "history": [(m.loss, m.val_gap) for m in result.history]}
        # A parallel pair on the replicas: teacher and student averaged as one module.
        seed_everything(2)
        teacher, student = build_model("hrnn", "small", CLASSES), build_model("hrnn", "small", CLASSES, k=10)
        initial = {k: v.clone() for k, v in student.state_dict().items()}
        result, teacher_result = train_parallel(
            teacher, student, VideoShards(train, 16, shuffle=True, seed=0, **shares), VideoShards(val, 16, **shares),
            selection, "rep+ce", TrainConfig(epochs=2, learning_rate=3e-3))
        pair = torch.nn.ModuleDict({"teacher": teacher, "student": student})
        outcome["parallel"] = {"state": {k: v.clone() for k, v in pair.state_dict().items()}, "initial": initial,
                               "history": [(m.loss, m.val_gap, m.teacher_val_gap) for m in result.history],
                               "teacher": (teacher_result.best_epoch, teacher_result.gap)}
        torch.save(outcome, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def replicas(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp-out")
    mp.start_processes(_replica, args=(_free_port(), *data, str(out)), nprocs=REPLICAS, join=True,
                       start_method="spawn")
    return [torch.load(out / f"rank{rank}.pt") for rank in range(REPLICAS)]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_replicas_end_with_the_same_weights_and_scores(replicas, family):
    first, second = (r[family] for r in replicas)
    assert (first["world"], second["world"]) == ((0, REPLICAS), (1, REPLICAS))
    for name, value in first["state"].items():
        assert torch.equal(value, second["state"][name]), name
    # Scores and the loss are pooled over both shares, so both replicas log the same epochs.
    assert first["history"] == second["history"] and len(first["history"]) == 2
    assert first["best"] == second["best"]


def test_a_serial_student_trains_on_replicas_too(replicas):
    first, second = (r["serial"] for r in replicas)
    for name, value in first["state"].items():
        assert torch.equal(value, second["state"][name]), name
    assert first["history"] == second["history"] and first["history"][0][1] > 0.3


def test_a_parallel_pair_trains_on_replicas_too(replicas):
    first, second = (r["parallel"] for r in replicas)
    for name, value in first["state"].items():
        assert torch.equal(value, second["state"][name]), name
    assert first["history"] == second["history"] and first["teacher"] == second["teacher"]
    assert any(not torch.equal(value, first["state"][f"student.{name}"]) for name, value in first["initial"].items()
               if not name.startswith("classifier."))
    assert max(gap for _, gap, _ in first["history"]) > 0.3 and first["teacher"][1] > 0.3


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_scores_over_shares_are_the_scores_over_the_whole_data(replicas, family):
    outcome = replicas[0][family]
    gap, map_, videos = outcome["shared"]
    assert videos == 200 == outcome["whole"][2]
    assert gap == pytest.approx(outcome["whole"][0], abs=1e-9)
    assert map_ == pytest.approx(outcome["whole"][1], abs=1e-9)
    # The restored weights are the best epoch's: its validation scores come back.
    assert outcome["best"][1] == pytest.approx(gap, abs=1e-9)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_training_on_shares_learns(replicas, family):
    gap = replicas[0][family]["whole"][0]
    assert gap > 0.3, f"{family}: GAP {gap:.3f} after two epochs on two replicas"


def test_merged_accumulators_equal_one_fed_the_same_batches():
    rng = np.random.default_rng(0)
    # Scores on a coarse grid tie often, which takes the starter code's tie-breaking path.
    batches = [(np.round(rng.random((n, 30)), 1), (rng.random((n, 30)) < 0.1).astype(np.float32))
               for n in (5, 17, 1, 9)]
    one = TopKAccumulator(30)
    parts = [TopKAccumulator(30), TopKAccumulator(30), TopKAccumulator(30)]
    for (scores, labels), part in zip(batches, [parts[0], parts[0], parts[1], parts[2]]):
        one.add(scores, labels)
        part.add(scores, labels)
    merged = TopKAccumulator.merge(parts)
    assert merged.num_videos == one.num_videos == 32
    assert merged.gap() == one.gap()
    assert merged.mean_average_precision() == one.mean_average_precision()
    np.testing.assert_array_equal(merged.positives, one.positives)


def test_merge_refuses_different_shapes():
    with pytest.raises(WorkloadError, match="cannot merge"):
        TopKAccumulator.merge([TopKAccumulator(30), TopKAccumulator(31)])


def test_a_share_without_its_process_group_is_refused(data):
    model = build_model("hrnn", "small", CLASSES)
    with pytest.raises(WorkloadError, match="one share of 2 replicas, but this process group has 1"):
        evaluate(model, VideoShards(data[1], 16, rank=0, world_size=2))


def test_one_process_needs_no_process_group(data):
    model = build_model("hrnn", "small", CLASSES)
    assert replicate(model, "cpu") is model and unwrap(model) is model
