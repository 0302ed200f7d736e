import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from workloads.errors import WorkloadError
from workloads.flops import model_cost
from workloads.models import FAMILIES, build_model, family_config

CLASSES = 11


def frames_and_mask(lengths, width, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(len(lengths), width, 1152, generator=g)
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    return frames * mask.unsqueeze(-1), mask


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_shapes(family):
    model = build_model(family, "small", CLASSES).eval()
    frames, mask = frames_and_mask([30, 12, 1], 30)
    out = model(frames, mask)
    assert out.representation.shape == (3, model.representation_dim)
    assert out.logits.shape == (3, CLASSES)
    assert torch.isfinite(out.logits).all()
    if model.supports_intermediates:
        assert out.intermediates.shape[:2] == out.intermediate_positions.shape
        assert out.intermediates.shape[-1] == model.representation_dim
    else:
        assert out.intermediates is None and out.intermediate_positions is None


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("lengths", [[20, 20, 20], [20, 7, 1]])
def test_inference_without_intermediates_gives_forwards_logits_to_the_bit(family, lengths):
    """`predict_logits` skips what only training reads (H-RNN: its upper LSTM runs in one call when every
    video fills every block, step by step otherwise), and the numbers stay `forward`'s."""
    torch.manual_seed(0)
    model = build_model(family, "paper" if family == "hrnn" else "small", CLASSES, k=20).eval()
    frames, mask = frames_and_mask(lengths, 20)
    with torch.no_grad():
        assert torch.equal(model.predict_logits(frames, mask), model(frames, mask).logits)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("training", [False, True])
def test_padding_never_changes_outputs(family, training):
    torch.manual_seed(0)
    model = build_model(family, "small", CLASSES).train(training)
    frames, mask = frames_and_mask([25, 9, 17, 3], 25)
    padded = torch.cat([frames, torch.randn(4, 40, 1152)], dim=1)  # garbage after the end
    padded_mask = torch.cat([mask, torch.zeros(4, 40, dtype=torch.bool)], dim=1)
    torch.manual_seed(1)
    a = model(frames, mask)
    torch.manual_seed(1)
    b = model(padded, padded_mask)
    assert torch.allclose(a.representation, b.representation, atol=1e-5)
    assert torch.allclose(a.logits, b.logits, atol=1e-4)


def test_hrnn_blocks_and_intermediates():
    teacher = build_model("hrnn", "small", CLASSES).eval()
    student = build_model("hrnn", "small", CLASSES, k=30).eval()
    assert teacher.block == 20 and student.block == 5
    assert build_model("hrnn", "small", CLASSES, k=10).block == 3
    frames, mask = frames_and_mask([45, 20, 7], 45)
    out = teacher(frames, mask)
    assert out.intermediate_positions.tolist() == [[19, 39, 44], [19, -1, -1], [6, -1, -1]]
    # The representation is the state after each video's last block.
    assert torch.allclose(out.representation[1], out.intermediates[1, 0])
    assert torch.allclose(out.representation[0], out.intermediates[0, 2])
    # states_at a block end equals that block's intermediate; -1 and out-of-video queries are zero.
    positions = torch.arange(45).expand(3, -1)
    query = torch.tensor([[19, 39, 44], [19, 44, -1], [6, 3, -1]])
    states = teacher.states_at(frames, mask, positions, query)
    assert torch.allclose(states[0], out.intermediates[0], atol=1e-5)
    assert torch.allclose(states[1, 0], out.intermediates[1, 0], atol=1e-5)
    assert torch.allclose(states[1, 1], out.representation[1], atol=1e-5)  # past the end: the last state
    assert (states[1, 2] == 0).all() and (states[2, 2] == 0).all()
    # A partial block: the state at frame 3 is the one a 4-frame video would end with.
    short = teacher(frames[2:3, :4], mask[2:3, :4])
    assert torch.allclose(states[2, 1], short.representation[0], atol=1e-5)
    # The student's intermediate positions are its blocks' last frames, in video positions.
    assert student.intermediate_positions(np.arange(0, 300, 10)).tolist() == [40, 90, 140, 190, 240, 290]


def test_hrnn_positions_follow_the_selected_frames():
    model = build_model("hrnn", "small", CLASSES, k=6).eval()
    frames, mask = frames_and_mask([6], 6)
    positions = torch.tensor([[0, 50, 100, 150, 200, 250]])
    out = model(frames, mask, positions)
    assert out.intermediate_positions.tolist() == [[100, 250]]


def test_classifier_sharing():
    teacher = build_model("nextvlad", "small", CLASSES)
    student = build_model("nextvlad", "small", CLASSES, k=30)
    student.share_classifier(teacher)
    assert student.classifier is teacher.classifier
    with pytest.raises(WorkloadError, match="cannot share a classifier"):
        build_model("hrnn", "small", CLASSES).share_classifier(teacher)


def test_registry_errors():
    with pytest.raises(WorkloadError, match="unknown model family 'resnet'"):
        build_model("resnet", "small", CLASSES)
    with pytest.raises(WorkloadError, match="unknown size 'huge'"):
        build_model("hrnn", "huge", CLASSES)
    with pytest.raises(WorkloadError, match="unknown hrnn model setting"):
        build_model("hrnn", "small", CLASSES, clusters=3)
    assert family_config("hrnn", "paper").hidden == 1024
    assert build_model("hrnn", "small", CLASSES, hidden=8).config.hidden == 8


def test_paper_hyper_parameters():
    hrnn = family_config("hrnn", "paper")
    assert (hrnn.hidden, hrnn.layers, hrnn.teacher_block_frames, hrnn.classifier, hrnn.mixtures) == (1024, 2, 20, "moe", 2)
    netvlad = family_config("netvlad", "paper")
    assert (netvlad.rgb_clusters, netvlad.audio_clusters, netvlad.hidden, netvlad.mixtures) == (256, 128, 1024, 2)
    nextvlad = family_config("nextvlad", "paper")
    assert (nextvlad.clusters, nextvlad.groups, nextvlad.expansion, nextvlad.hidden,
            nextvlad.gating_reduction, nextvlad.dropout) == (128, 8, 2, 2048, 8, 0.5)


# The paper's Table 3 (H-RNN) and Table 6 (NeXtVLAD) in multiply-adds; its own k=20 entry is 20% off
# linear, so agreement means within 3.5%.
@pytest.mark.parametrize(
    "family, frames, student, paper_giga",
    [("hrnn", 300, False, 5.058), ("hrnn", 30, True, 0.520), ("nextvlad", 300, False, 1.337), ("nextvlad", 30, True, 0.134)],
)
def test_frame_macs_agree_with_the_paper(family, frames, student, paper_giga):
    cost = model_cost(family, "paper", frames, 3862, k=frames if student else None)
    assert cost.frame_macs / 1e9 == pytest.approx(paper_giga, rel=0.035)
    assert cost.macs == cost.frame_macs + cost.video_macs and cost.video_macs > 0


def test_nextvlad_parameters_and_student_savings():
    assert model_cost("nextvlad", "paper", 1, 3862).params == pytest.approx(89e6, rel=0.01)
    teacher = model_cost("hrnn", "small", 300, 50)
    student = model_cost("hrnn", "small", 30, 50, k=30)
    assert student.frame_macs * 10 == teacher.frame_macs
    assert student.macs < 0.2 * teacher.macs


def test_flops_cli_prints_one_json_line():
    result = subprocess.run(
        [sys.executable, "-m", "workloads.flops", "--family", "netvlad", "--size", "small", "--frames", "30", "--classes", "7"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert set(record) >= {"macs", "frame_macs", "video_macs", "params"}
    assert record["macs"] == record["frame_macs"] + record["video_macs"]
    bad = subprocess.run([sys.executable, "-m", "workloads.flops", "--family", "vit"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown model family 'vit'" in bad.stderr and "Traceback" not in bad.stderr


def test_hrnn_intermediates_after_each_frame_are_the_running_state_eq_3():
    """`frames` (the paper's Eq. 3): a student's intermediate after its i-th frame is what it would make of
    the video cut after that frame; every frame but the last has one, a short video's past its end none."""
    torch.manual_seed(0)
    model = build_model("hrnn", "small", CLASSES, k=10)
    model.match_intermediates_at("frames")
    model.train()
    frames, mask = torch.randn(2, 10, 1152), torch.ones(2, 10, dtype=torch.bool)
    mask[1, 7:] = False
    positions = torch.arange(10).expand(2, -1) * 6
    out = model(frames, mask, positions)
    assert out.intermediates.shape == (2, 9, model.representation_dim)
    assert out.intermediate_positions[0].tolist() == list(range(0, 54, 6))
    assert out.intermediate_positions[1].tolist() == [0, 6, 12, 18, 24, 30, -1, -1, -1]
    model.eval()  # evaluation needs no intermediates: the cheap block ends
    for frame in (0, 3, 5, 8):
        cut = model.encode(frames[:1, :frame + 1], mask[:1, :frame + 1], positions[:1, :frame + 1])[0]
        assert torch.allclose(cut, out.intermediates[0, frame], atol=1e-5), frame
    assert model(frames, mask, positions).intermediates.shape[1] == 4  # blocks of 3: 4 block ends
    assert model.intermediate_positions(np.arange(10) * 6).tolist() == list(range(0, 54, 6))
    with pytest.raises(WorkloadError, match="one of block_ends, frames"):
        model.match_intermediates_at("steps")
