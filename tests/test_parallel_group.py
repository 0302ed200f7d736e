"""Parallel students trained beside one teacher (`workloads.parallel_group`): each member trains exactly as
it would alone, keeps its own best epoch with the teacher's weights of then, and the group refuses what
would couple its members."""

import dataclasses

import pytest
import torch

from workloads.data.batch import FrameSelection
from workloads.data.reader import VideoShards
from workloads.data.synth import SynthConfig, generate
from workloads.errors import WorkloadError
from workloads.evaluation import evaluate
from workloads.models import build_model
from workloads.parallel_group import Member, train_parallel_group
from workloads.train import TrainConfig, seed_everything
from workloads.variants import stages

CLASSES = 10
CONFIG = TrainConfig(epochs=3, learning_rate=3e-3, seed=4)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("group-data")
    config = SynthConfig(num_classes=CLASSES, min_frames=20, max_frames=60)
    generate(str(root / "train"), 64, seed=1, split="train", config=config)
    generate(str(root / "val"), 32, seed=1, split="validate", config=config)
    return VideoShards(str(root / "train"), 16, shuffle=True, seed=0), VideoShards(str(root / "val"), 32)


def models(family="hrnn"):
    """The teacher and three students, each from a seed of its own: the same weights however grouped."""
    seed_everything(0)
    teacher = build_model(family, "small", CLASSES)
    students = {}
    for name, seed in (("rep", 1), ("rep+pred+ce", 2), ("intermediate", 3)):
        seed_everything(seed)
        students[name] = build_model(family, "small", CLASSES, k=10 if name != "rep+pred+ce" else 5)
    if family == "hrnn":
        students["intermediate"].match_intermediates_at("frames")
    else:
        del students["intermediate"]  # only the H-RNN has intermediate states
    return teacher, students


def member(name, student, **extra):
    k = 5 if name == "rep+pred+ce" else 10
    learns = stages("rep", intermediate=True, mode="parallel") if name == "intermediate" else name
    return Member(student, FrameSelection("uniform", k=k), learns, seed=len(name), **extra)


def history(result):
    return [(m.loss, m.val_gap, m.teacher_val_gap, sorted(m.losses.items())) for m in result.history]


def test_a_member_trains_the_same_alone_or_in_any_group(data):
    teacher, students = models()
    alone = train_parallel_group(teacher, [member("rep+pred+ce", students["rep+pred+ce"])], *data, CONFIG)
    teacher, students = models()
    grouped = train_parallel_group(teacher, [member(name, s) for name, s in students.items()], *data, CONFIG)
    mine = grouped[1]
    assert history(mine.result) == history(alone[0].result)
    assert (mine.result.best_epoch, mine.result.gap) == (alone[0].result.best_epoch, alone[0].result.gap)
    for name, value in mine.student_state.items():
        assert torch.equal(value, alone[0].student_state[name]), name
    for name, value in mine.teacher_state.items():
        assert torch.equal(value, alone[0].teacher_state[name]), name
    assert grouped[2].result.history[0].losses["rep_intermediate"] > 0
    assert all(len(r.result.history) == 3 and r.result.best_epoch >= 1 for r in grouped)
    assert all({"teacher_ce", "l2"} <= set(r.result.history[0].losses) for r in grouped)


def test_each_member_is_restored_to_its_own_best_epoch_with_the_teachers_weights_of_then(data):
    teacher, students = models()
    members = [member(name, s) for name, s in students.items()]
    results = train_parallel_group(teacher, members, *data, CONFIG)
    _, val = data
    for m, record in zip(members, results):
        record.restore(teacher, m.student)
        assert m.student.classifier is teacher.classifier
        assert evaluate(m.student, val, selection=m.selection).gap == pytest.approx(record.result.gap)
        best = record.result.history[record.result.best_epoch - 1]
        assert evaluate(teacher, val).gap == pytest.approx(best.teacher_val_gap)


def test_a_member_with_its_own_output_layer_trains_it(data):
    teacher, students = models("netvlad")
    own = member("rep+pred+ce", students["rep+pred+ce"], shared_classifier=False)
    head = {k: v.clone() for k, v in own.student.classifier.state_dict().items()}
    train_parallel_group(teacher, [member("rep", students["rep"]), own], *data, TrainConfig(epochs=1, seed=4))
    assert own.student.classifier is not teacher.classifier
    assert any(not torch.equal(v, own.student.classifier.state_dict()[k]) for k, v in head.items())


def test_a_group_refuses_what_would_couple_its_members(data):
    teacher, students = models()
    two = [member("rep", students["rep"]), member("rep+pred+ce", students["rep+pred+ce"])]
    with pytest.raises(WorkloadError, match="max_grad_norm"):
        train_parallel_group(teacher, two, *data, TrainConfig(epochs=1, max_grad_norm=1.0))
    longer = tuple(dataclasses.replace(stage, epochs=2) for stage in two[1].stages)
    uneven = [two[0], Member(two[1].student, two[1].selection, longer, seed=1)]
    with pytest.raises(WorkloadError, match="stages of the same epochs"):
        train_parallel_group(teacher, uneven, *data, TrainConfig(epochs=1))
    with pytest.raises(WorkloadError, match="targets come from the teacher"):
        Member(students["rep"], FrameSelection("uniform", k=10), "rep", seed=0, targets="test")
    with pytest.raises(WorkloadError, match="own output layer learns only"):
        Member(students["rep"], FrameSelection("uniform", k=10), "rep", seed=0, shared_classifier=False)
