import math

import pytest
import torch

from workloads.errors import WorkloadError
from workloads.losses import LOSSES, Objective, TeacherTargets
from workloads.models import ModelOutput


def output(representation, logits, intermediates=None, positions=None):
    return ModelOutput(torch.tensor(representation), None if intermediates is None else torch.tensor(intermediates),
                       None if positions is None else torch.tensor(positions), torch.tensor(logits))


def test_cross_entropy_sums_classes_and_averages_videos():
    out = output([[0.0]], [[0.0, 2.0]])
    labels = torch.tensor([[1.0, 0.0]])
    expected = -math.log(0.5) - math.log(1 - 1 / (1 + math.exp(-2)))
    total, parts = Objective({"ce": 1.0})(out, labels)
    assert float(total) == pytest.approx(expected) and parts["ce"] == pytest.approx(expected)


def test_representation_losses():
    out = output([[1.0, 2.0], [0.0, 0.0]], [[0.0], [0.0]], intermediates=[[[1.0], [5.0]], [[2.0], [9.0]]],
                 positions=[[4, 9], [4, -1]])
    teacher = TeacherTargets(torch.tensor([[0.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.5], [0.5]]),
                             torch.tensor([[[0.0], [3.0]], [[0.0], [0.0]]]))
    labels = torch.zeros(2, 1)
    _, parts = Objective({"rep": 1.0, "rep_intermediate": 1.0})(out, labels, teacher)
    assert parts["rep"] == pytest.approx((5 + 1) / 2)
    # video 0: 1 + 4; video 1: 4 (its second step is padding and does not count)
    assert parts["rep_intermediate"] == pytest.approx((5 + 4) / 2)


def test_prediction_losses():
    logits = torch.tensor([[0.3, -1.2, 2.0]])
    same = TeacherTargets(torch.zeros(1, 1), torch.sigmoid(logits))
    out = output([[0.0]], logits.tolist())
    for distance in ("kl", "mse"):
        _, parts = Objective({"pred": 1.0}, pred_distance=distance)(out, torch.zeros(1, 3), same)
        assert parts["pred"] == pytest.approx(0.0, abs=1e-6)
    target = TeacherTargets(torch.zeros(1, 1), torch.tensor([[0.9, 0.1, 0.5]]))
    p = torch.sigmoid(logits)[0].tolist()
    t = [0.9, 0.1, 0.5]
    kl = sum(ti * math.log(ti / pi) + (1 - ti) * math.log((1 - ti) / (1 - pi)) for ti, pi in zip(t, p))
    mse = sum((ti - pi) ** 2 for ti, pi in zip(t, p))
    assert Objective({"pred": 1.0})(out, torch.zeros(1, 3), target)[1]["pred"] == pytest.approx(kl, rel=1e-5)
    assert Objective({"pred": 1.0}, "mse")(out, torch.zeros(1, 3), target)[1]["pred"] == pytest.approx(mse, rel=1e-5)


def test_weighted_sum_from_config():
    objective = Objective.parse("rep+pred+ce", weights={"pred": 0.01, "rep": 0.001})
    assert objective.weights == {"rep": 0.001, "pred": 0.01, "ce": 1.0}
    out = output([[1.0]], [[0.0]])
    teacher = TeacherTargets(torch.tensor([[0.0]]), torch.tensor([[0.5]]))
    total, parts = objective(out, torch.tensor([[1.0]]), teacher)
    assert float(total) == pytest.approx(0.001 * parts["rep"] + 0.01 * parts["pred"] + parts["ce"])
    assert objective.needs_teacher and not Objective.parse("ce").needs_teacher


def test_bad_objectives():
    with pytest.raises(WorkloadError, match="unknown loss"):
        Objective.parse("rep+style")
    with pytest.raises(WorkloadError, match="non-zero weight"):
        Objective({"ce": 0.0})
    with pytest.raises(WorkloadError, match=">= 0"):
        Objective({"ce": -1.0})
    with pytest.raises(WorkloadError, match="pred distance"):
        Objective({"pred": 1.0}, pred_distance="cosine")
    with pytest.raises(WorkloadError, match="needs the teacher"):
        Objective({"rep": 1.0})(output([[0.0]], [[0.0]]), torch.zeros(1, 1))
    assert set(LOSSES) == {"ce", "rep", "rep_intermediate", "pred"}
