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


def test_the_timing_job_times_the_best_adaptive_reading_with_its_own_weights(tmp_path):
    """Where an adaptive student stops depends on its weights: the job times the kept ones, by their rule."""
    from orchestrator.experiment.presets import load_preset
    from orchestrator.jobs.data_sets import DataSet
    from orchestrator.jobs.timing import time_models, timing_job
    from orchestrator.store import weights
    from workloads.inference import ModelCard

    generate(str(tmp_path / "test"), 16, seed=0, config=SynthConfig(num_classes=5, min_frames=30, max_frames=30))
    data = DataSet("d", str(tmp_path / "test"), str(tmp_path / "test"), str(tmp_path / "test"), 5)
    card = ModelCard("hrnn", "small", 5, "uniform", 10, 30, stopping={"threshold": 0.05, "steps": [2, 5, 10]})
    kept = weights.save(str(tmp_path / "models" / "s.pt"), card, card.build())
    preset = load_preset("tiny", {"content": None})
    _, found = time_models(timing_job(preset, data, {("hrnn", 10): kept}))
    assert set(found) == {("hrnn", "all"), ("hrnn", "k10"), ("hrnn", "k10-adaptive")}
    assert all(ms > 0 for ms in found.values())
    with pytest.raises(Exception, match="s.pt"):  # weights that are not one's: named
        (tmp_path / "models" / "s.pt").write_bytes(b"cut")
        time_models(timing_job(preset, data, {("hrnn", 10): kept}))
    # A content student is timed with its preset's frame scorer: its width is what the scorer's time depends on
    assert timing_job(load_preset("tiny", {"content": {"scorer": {"width": 8}}}), data).scorer.width == 8
