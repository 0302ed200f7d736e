"""The variants: every way a model learns, by name, as stages of weighted losses."""

import re

import pytest

from workloads.errors import WorkloadError
from workloads.losses import LOSSES
from workloads.variants import (
    epochs_trained,
    DEFAULT_WEIGHTS,
    INTERMEDIATE_VARIANTS,
    PARALLEL_VARIANTS,
    SERIAL_VARIANTS,
    classifier_stages,
    stages,
)

WEIGHTS = {"ce": 1.0, "rep": 0.01, "pred": 0.5, "rep_intermediate": 0.002}


def summed(variant, **options):
    return [(stage.name, stage.objective.weights) for stage in stages(variant, WEIGHTS, **options)]


def test_the_papers_serial_variants():
    assert SERIAL_VARIANTS == ("rep_then_ce", "rep+ce", "pred", "pred+ce", "rep+pred+ce")  # (a)-(e)
    # (a): Lrep alone, then a fresh stage fine-tuning on LCE; each sums one loss, so weights do not apply.
    assert summed("rep_then_ce") == [("rep", {"rep": 1.0}), ("finetune", {"ce": 1.0})]
    assert summed("rep+ce") == [("train", {"rep": 0.01, "ce": 1.0})]
    assert summed("pred") == [("train", {"pred": 0.5})]
    assert summed("pred+ce") == [("train", {"pred": 0.5, "ce": 1.0})]
    assert summed("rep+pred+ce") == [("train", {"rep": 0.01, "pred": 0.5, "ce": 1.0})]


def test_parallel_variants_and_the_classifier():
    assert PARALLEL_VARIANTS == ("rep", "rep+ce", "rep+pred+ce")
    assert summed("rep", mode="parallel") == [("parallel", {"rep": 0.01})]
    assert [(s.name, s.objective.weights) for s in classifier_stages()] == [("train", {"ce": 1.0})]
    # A loss the weights do not name weighs 1.
    assert stages("rep+ce")[0].objective.weights == {"rep": 1.0, "ce": 1.0}
    assert DEFAULT_WEIGHTS == {name: 1.0 for name in LOSSES}


def test_intermediate_matching_joins_the_first_stage():
    assert summed("rep+ce", intermediate=True) == [("train", {"rep": 0.01, "ce": 1.0, "rep_intermediate": 0.002})]
    assert summed("rep_then_ce", intermediate=True) == [("rep", {"rep": 1.0, "rep_intermediate": 0.002}),
                                                        ("finetune", {"ce": 1.0})]
    assert INTERMEDIATE_VARIANTS == ("rep_then_ce", "rep+ce", "rep+pred+ce")
    with pytest.raises(WorkloadError, match="variant 'pred' learns no representation"):
        stages("pred", intermediate=True)


def test_the_pred_distance_reaches_the_objective():
    assert stages("pred+ce", pred_distance="mse")[0].objective.pred_distance == "mse"
    with pytest.raises(WorkloadError, match="pred distance must be one of"):
        stages("pred", pred_distance="cosine")


@pytest.mark.parametrize("variant, mode, message", [
    ("rep+magic", "serial", "unknown serial variant 'rep+magic'"),
    ("rep", "serial", "unknown serial variant 'rep'"),  # Lrep alone is a parallel variant only
    ("pred", "parallel", "unknown parallel variant 'pred'"),
    ("ce", "serial", "unknown serial variant 'ce'"),
    ("ce", "sideways", "unknown training mode 'sideways'"),
])
def test_unknown_variants_are_refused(variant, mode, message):
    with pytest.raises(WorkloadError, match=re.escape(message)):
        stages(variant, mode=mode)


def test_a_zero_weight_on_a_variants_only_loss_is_refused():
    with pytest.raises(WorkloadError, match="at least one loss with a non-zero weight"):
        stages("pred", {"pred": 0.0})


def test_each_variant_is_registered_once_with_its_label_in_the_papers_words():
    from workloads.variants import REGISTRY, find_variant

    assert {name: variant.label for name, variant in REGISTRY.items()} == {
        "ce": "LCE", "rep_then_ce": "Lrep, then LCE", "rep": "Lrep", "rep+ce": "Lrep + LCE", "pred": "Lpred",
        "pred+ce": "Lpred + LCE", "rep+pred+ce": "Lrep + Lpred + LCE"}
    assert find_variant("rep", "parallel").learns_representation and not find_variant("pred+ce").learns_representation
    with pytest.raises(WorkloadError, match="unknown serial variant 'rep'"):
        find_variant("rep")


def test_a_variant_of_several_stages_shares_its_epochs_or_trains_each_stage_all_of_them():
    split = stages("rep_then_ce", epochs=5, stage_epochs="split")
    assert [stage.epochs for stage in split] == [3, 2] and epochs_trained(5, "rep_then_ce", "split") == 5
    assert [stage.epochs for stage in stages("rep_then_ce", epochs=5)] == [None, None]  # each: the config's
    assert epochs_trained(5, "rep_then_ce", "each") == 10 and epochs_trained(5, "rep+ce", "each") == 5
    assert stages("rep+ce", epochs=1, stage_epochs="split")[0].epochs is None  # one stage: nothing to share
    with pytest.raises(WorkloadError, match="2 stages to share 1 epochs among: give it at least 2"):
        stages("rep_then_ce", epochs=1, stage_epochs="split")
    with pytest.raises(WorkloadError, match="stage_epochs is one of split, each"):
        stages("rep+ce", stage_epochs="half")
