"""Inference time measured side by side (`workloads.timing`): every model timed over its own batches."""

import pytest
import torch

from workloads.data.batch import FrameSelection
from workloads.data.reader import VideoShards
from workloads.data.synth import SynthConfig, generate
from workloads.models import build_model
from workloads.timing import milliseconds_per_video


def test_each_model_is_timed_over_its_own_frames_per_video(tmp_path):
    generate(str(tmp_path), 24, seed=0, config=SynthConfig(num_classes=5, min_frames=30, max_frames=30))
    teacher = build_model("hrnn", "small", 5)
    student = build_model("hrnn", "small", 5, k=10)
    everything = list(VideoShards(str(tmp_path), 8))
    ten = list(VideoShards(str(tmp_path), 8, FrameSelection("uniform", k=10)))
    assert ten[0].frames.shape[1] == 10 and everything[0].frames.shape[1] == 30
    found = milliseconds_per_video({"all": (teacher, everything), "k10": (student, ten)}, torch.device("cpu"), rounds=2)
    assert set(found) == {"all", "k10"} and all(ms > 0 for ms in found.values())
    assert not teacher.training  # timed as it predicts
    with pytest.raises(ValueError, match="at least one video"):
        milliseconds_per_video({"all": (teacher, [])}, torch.device("cpu"))
