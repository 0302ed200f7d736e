"""Students that read as many frames as each video needs (`workloads.adaptive`): the coarse-to-fine order,
predictions after each step, where each video stops, and the threshold calibrated on validation."""

import numpy as np
import pytest
import torch

from workloads.adaptive import (Point, anytime, calibrate, coarse_to_fine, curve, frames_read, macs_of, prefix,
                                stops)
from workloads.data.batch import FrameSelection, subsample
from workloads.data.reader import VideoShards
from workloads.data.synth import SynthConfig, generate
from workloads.errors import WorkloadError
from workloads.flops import ModelCost
from workloads.models import build_model


def test_every_prefix_of_the_order_is_spread_over_the_video():
    assert coarse_to_fine(8).tolist() == [0, 4, 2, 6, 1, 5, 3, 7]
    for k in (1, 3, 10, 30):
        assert sorted(coarse_to_fine(k).tolist()) == list(range(k))
    assert coarse_to_fine(10)[:2].tolist() == [0, 5]  # two frames: the start and the middle
    assert prefix(300, 30, 3).tolist() == [0, 70, 150]  # 3 of uniform-30's 0, 10, ..., 290: start, quarter, middle
    assert prefix(300, 30, 30).tolist() == list(range(0, 300, 10))
    assert prefix(5, 30, 4).tolist() == [0, 1, 2, 3]  # a video shorter than k: its own 5 frames, in the same order


def test_a_video_stops_once_its_prediction_settles():
    # 3 steps, 2 videos, 25 classes: video 0 settles after step 2, video 1 keeps moving
    p = np.full((3, 2, 25), 0.1)
    p[1, 0, 0], p[2, 0, 0] = 0.5, 0.51
    p[1, 1, 0], p[2, 1, 0] = 0.5, 0.9
    assert stops(p, 0.05).tolist() == [2, 2]  # step 1 moved 0.4 from step 0 for both
    p[1, 0, 0] = 0.11  # video 0 barely moves from step 0 to 1
    assert stops(p, 0.05).tolist() == [1, 2]
    assert stops(p, 0.0).tolist() == [2, 2]  # threshold 0: every video reads everything
    assert stops(p[:1], 1.0).tolist() == [0, 0]


def test_multiply_adds_count_every_step_run():
    cost = ModelCost(macs=10 * 100 + 50, frame_macs=10 * 100, video_macs=50, params=1)
    read = frames_read(np.array([300, 3]), 10, (2, 5, 10))
    assert read.tolist() == [[2, 2], [5, 3], [10, 3]]
    spent = macs_of(read, np.array([1, 2]), cost, 10)
    assert spent.tolist() == [(2 * 100 + 50) + (5 * 100 + 50), (2 * 100 + 50) + (3 * 100 + 50) * 2]


def test_the_calibrated_threshold_is_the_most_frugal_within_tolerance():
    points = [Point(0.0, 0.80, 30, 9e6), Point(0.01, 0.795, 18, 6e6), Point(0.05, 0.78, 9, 3e6)]
    assert calibrate(points, 0.01).threshold == 0.01
    assert calibrate(points, 0.03).threshold == 0.05
    assert calibrate(points, 0.0).threshold == 0.0


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("adaptive")
    generate(str(root), 24, seed=3, config=SynthConfig(num_classes=30, min_frames=8, max_frames=60))
    return next(iter(VideoShards(str(root), 24)))


@pytest.mark.parametrize("family", ["hrnn", "netvlad"])
def test_each_steps_prediction_is_the_student_on_the_frames_read(batch, family):
    torch.manual_seed(0)
    student = build_model(family, "small", 30, k=10).eval()
    probabilities = anytime(student, batch, 10, (2, 5, 10))
    assert probabilities.shape == (3, 24, 30)
    uniform = subsample(batch, FrameSelection("uniform", k=10))
    with torch.no_grad():
        whole = torch.sigmoid(student(uniform.frames, uniform.mask, uniform.positions).logits).numpy()
    np.testing.assert_allclose(probabilities[-1], whole, rtol=1e-5, atol=1e-6)  # all k read: the student itself
    labels = batch.labels.numpy()
    cost = ModelCost(macs=1000, frame_macs=900, video_macs=100, params=1)
    points = curve(probabilities, labels, batch.num_frames.numpy(), 10, (2, 5, 10), (0.0, 1.0), cost)
    everything, first = points
    assert everything.frames == pytest.approx(np.minimum(batch.num_frames.numpy(), 10).mean())
    assert first.frames == pytest.approx(np.minimum(batch.num_frames.numpy(), 5).mean())  # stops at step 2
    assert first.macs < everything.macs


@pytest.mark.parametrize("threshold", [0.0, 0.02, 1.0])
def test_the_adaptive_student_stops_each_video_where_the_reading_did(batch, threshold):
    """The product (`AdaptiveStudent`, handed the k frames a reader gives) and the test split's reading
    (`anytime`, `stops`) agree video by video: the prediction at the stop and the frames read."""
    from workloads.adaptive import AdaptiveStudent, chosen

    torch.manual_seed(0)
    student = build_model("hrnn", "small", 30, k=10).eval()
    steps = (2, 5, 10)
    probabilities = anytime(student, batch, 10, steps)
    stop = stops(probabilities, threshold)
    selected = subsample(batch, FrameSelection("uniform", k=10))
    logits, read = AdaptiveStudent(student, 10, steps, threshold).read(selected.frames, selected.mask,
                                                                       selected.positions)
    np.testing.assert_allclose(torch.sigmoid(logits).numpy(), chosen(probabilities, stop), rtol=1e-5, atol=1e-6)
    expected = frames_read(batch.num_frames.numpy(), 10, steps)[stop, np.arange(len(stop))]
    assert read.tolist() == expected.tolist()
    if threshold == 0.0:
        assert (stop == 2).all()  # never calm enough: every video reads all it has of its 10
    with pytest.raises(WorkloadError, match="threshold is >= 0"):
        AdaptiveStudent(student, 10, steps, -0.1)


def test_steps_must_rise_to_k(batch):
    with pytest.raises(WorkloadError, match="steps must rise from >= 1 to k=10"):
        anytime(build_model("netvlad", "small", 30, k=10), batch, 10, (5, 2, 10))


def test_a_prefix_of_a_selected_batch_is_what_the_reading_has_after_m_steps(batch):
    from workloads.adaptive import read_prefix

    selected = subsample(batch, FrameSelection("uniform", k=10))
    for m in (1, 4, 10):
        cut = read_prefix(selected, m)
        for row, n in enumerate(batch.num_frames.tolist()):
            assert cut.positions[row][cut.mask[row]].tolist() == prefix(n, 10, m).tolist()
        assert bool((cut.frames[~cut.mask] == 0).all())


def test_a_student_trained_on_prefixes_sees_every_count_and_refuses_intermediates(tmp_path):
    from workloads.data.batch import FrameSelection as Selection
    from workloads.teacher_outputs import InMemoryTeacherCache, export_teacher
    from workloads.train import TrainConfig, seed_everything, train_serial_student
    from workloads.variants import stages

    generate(str(tmp_path / "t"), 48, seed=1, config=SynthConfig(num_classes=10, min_frames=20, max_frames=40))
    generate(str(tmp_path / "v"), 16, seed=1, split="validate", config=SynthConfig(num_classes=10, min_frames=20,
                                                                                   max_frames=40))
    teacher = build_model("hrnn", "small", 10)
    cache = InMemoryTeacherCache(export_teacher(teacher, VideoShards([str(tmp_path / "t"), str(tmp_path / "v")], 16)),
                                 teacher.classifier.state_dict())
    seed_everything(0)
    student = build_model("hrnn", "small", 10, k=10)
    widths = set()
    student.register_forward_pre_hook(lambda module, args: widths.add(int(args[1].sum(1).max())) if module.training else None)
    train = VideoShards(str(tmp_path / "t"), 8, Selection("uniform", k=10), shuffle=True, seed=0)
    val = VideoShards(str(tmp_path / "v"), 16, Selection("uniform", k=10))
    config = TrainConfig(epochs=2, learning_rate=3e-3)
    train_serial_student(student, cache, train, val, "rep+ce", config, prefixes=(2, 5, 10))
    assert widths == {2, 5, 10}  # 12 batches: every count drawn
    with pytest.raises(WorkloadError, match="reads all its frames: no prefixes"):
        train_serial_student(build_model("hrnn", "small", 10, k=10), cache, train, val,
                             stages("rep+ce", intermediate=True), config, prefixes=(2, 10))


def test_a_registered_adaptive_student_reads_by_its_rule_and_says_how_many_frames(batch):
    from workloads.adaptive import AdaptiveStudent
    from workloads.inference import Classifier, ModelCard, load_weights, weights_bytes

    rule = {"threshold": 1.0, "steps": [2, 5, 10]}  # every video stops at its second step: 5 frames at most
    plain = ModelCard("hrnn", "small", 30, "uniform", 10, 60, stopping=rule)
    assert not isinstance(plain.build(), AdaptiveStudent)  # the rule kept, all k read
    card = ModelCard("hrnn", "small", 30, "uniform", 10, 60, stopping=rule, adaptive=True)
    assert card.reads.startswith("up to k=10 frames (every 6th, uniform), coarse to fine")
    torch.manual_seed(0)
    model = card.build()
    loaded_card, loaded = load_weights(weights_bytes(card, model), "m.pt")
    assert loaded_card == card and isinstance(loaded, AdaptiveStudent) and loaded.threshold == 1.0
    selected = subsample(batch, FrameSelection("uniform", k=10))
    predictions = Classifier(loaded_card, loaded).predict(selected, top_k=5)
    assert predictions.frames.tolist() == np.minimum(batch.num_frames.numpy(), 5).tolist()
    whole = Classifier(plain, plain.build()).predict(selected, top_k=5)
    assert whole.frames.tolist() == np.minimum(batch.num_frames.numpy(), 10).tolist()
    with pytest.raises(WorkloadError, match="an adaptive reading needs a stopping rule and uniform frames"):
        ModelCard("hrnn", "small", 30, "uniform", 10, 60, adaptive=True)
    with pytest.raises(WorkloadError, match="steps must rise"):
        ModelCard("hrnn", "small", 30, "uniform", 10, 60, stopping={"threshold": 0.1, "steps": [5, 2]})
