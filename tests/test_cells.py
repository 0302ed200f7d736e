"""A cell resolved once into its recipe and run by its mode's runner (no Ray: `run_cell` is plain code),
its typed result, and the ids that name it everywhere."""

import dataclasses
import json

import pytest
import torch

from orchestrator.errors import OrchestratorError
from orchestrator.experiment.matrix import cell_stages, expand
from orchestrator.experiment.modes import Mode
from orchestrator.experiment.presets import load_preset
from orchestrator.experiment.results import CellResult
from orchestrator.jobs.cells import RUNNERS, resolve, run_cell
from orchestrator.jobs.data_sets import DataSet, data_id
from orchestrator.experiment.rows import row_key, row_label
from orchestrator.store import weights
from orchestrator.store.files import read_result, write_result
from orchestrator.store.layout import Store
from workloads.data.synth import SynthConfig, generate
from workloads.inference import ModelCard
from workloads.progress import EpochMetrics
from workloads.saliency import ScorerSettings


@pytest.fixture(scope="module")
def tiny():
    preset = load_preset("tiny")
    teachers, cells = expand(preset, data_id(preset.data))
    return preset, teachers, {cell.name: cell for cell in cells}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cells-data")
    config = SynthConfig(num_classes=10, min_frames=20, max_frames=60)
    for split, videos in (("train", 64), ("validate", 32), ("test", 32)):
        generate(str(root / split), videos, seed=0, split=split, config=config)
    return DataSet("d", str(root / "train"), str(root / "validate"), str(root / "test"), 10)


def test_ids_outlive_refactoring(tiny):
    """A cell's id names its result, MLflow run and cache in every store written so far: the tiny preset's
    ids are pinned here, so a change to what they hash (or how) cannot go unnoticed. (They last moved when
    training took the paper's defaults, #24: its L2, the serial students' frozen output layer, serial (a)'s
    epochs shared by its stages: a store's results from before were trained otherwise, and run again.)"""
    preset, teachers, cells = tiny
    assert data_id(preset.data) == "syn-591d7e805ac5077d"
    assert [t.id for t in teachers] == ["t-acf55bcf3b1ebf12"]
    assert cells["hrnn/skyline/all/s0"].id == "c-323103747d8a07a2"
    # tiny's serial students are read adaptively as well (#27), which their ids say; without it they are
    # the ids they were
    assert cells["hrnn/serial/rep+pred+ce/k10/s0"].id == "c-d7b2b0a2825d5e29"
    assert dataclasses.replace(cells["hrnn/serial/rep+pred+ce/k10/s0"], adaptive=None).id == "c-5bec088466ec3312"
    assert cells["hrnn/serial/rep+ce+intermediate/k10/s0"].id == "c-f2dfc3de46663a99"
    assert cells["hrnn/parallel/rep+ce/k10/s0"].id == "c-4178fcf7f4ab95e4"
    assert cells["hrnn/baseline/first/k10/s0"].id == "c-deb47b3af058e17a"


def test_a_cell_resolves_into_its_recipe(tiny):
    _, _, cells = tiny
    recipe = resolve(cells["hrnn/serial/rep+ce+intermediate/k10/s0"], 10, "cpu")
    assert recipe.model.block == 3 and recipe.teacher is None  # a 10-frame H-RNN student: blocks of 3
    assert (recipe.selection.name, recipe.selection.k) == ("uniform", 10)
    assert [stage.objective.weights for stage in recipe.stages] == [{"rep": 1.0, "ce": 1.0, "rep_intermediate": 1.0}]
    assert recipe.config.epochs == 1 and recipe.config.learning_rate == 0.003 and recipe.device == torch.device("cpu")
    assert recipe.cost.macs > 0 and recipe.cost.params == sum(p.numel() for p in recipe.model.parameters())
    pair = resolve(cells["hrnn/parallel/rep+ce/k10/s0"], 10, "auto")
    assert pair.teacher is not None and pair.teacher.block == 20 and [s.name for s in pair.stages] == ["parallel"]
    assert pair.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    baseline = cells["hrnn/baseline/first/k10/s0"]
    assert [s.objective.weights for s in cell_stages(baseline)] == [{"ce": 1.0}]
    # The same seed builds the same initial weights, whichever way the cell is resolved.
    again = resolve(baseline, 10, "cpu").model.state_dict()
    assert all(torch.equal(v, again[k]) for k, v in resolve(baseline, 10, "cpu").model.state_dict().items())


def test_a_content_student_reads_every_frame_and_pays_for_choosing(tiny):
    _, _, cells = tiny
    cell = cells["hrnn/serial/rep+pred+ce@salient_segments/k10/s0"]
    control = resolve(cells["hrnn/serial/rep+pred+ce/k10/s0"], 10, "cpu")
    recipe = resolve(cell, 10, "cpu")
    assert cell.chooses_by_content and recipe.selection is None  # the reader keeps every frame
    assert (recipe.content.rule, recipe.content.k) == ("salient_segments", 10)
    # The scorer over every frame of the longest videos (60): 1152 x 32 + 32 x 10 multiply-adds each
    choosing = 60 * (1152 * 32 + 32 * 10)
    assert recipe.cost.macs == control.cost.macs + choosing and recipe.cost.frame_macs == control.cost.frame_macs
    assert weights.slot(cell) == ("hrnn", 10)  # it competes for the k=10 model, and leaves with its scorer
    assert set(recipe.product.state_dict()) == {f"student.{k}" for k in recipe.model.state_dict()} | {
        f"scorer.{k}" for k in recipe.content.scorer.state_dict()}
    assert row_label(row_key(cell)) == "Serial Lrep + Lpred + LCE, frames by content (salient_segments)"
    # A narrower scorer (a preset's content.scorer, or a search's scorer_width) costs less and leaves as such
    narrow = dataclasses.replace(cell, scorer=ScorerSettings(width=8))
    assert resolve(narrow, 10, "cpu").cost.macs == control.cost.macs + 60 * (1152 * 8 + 8 * 10)
    card = weights.student_card(narrow, 10)
    assert card.scorer_width == 8 and card.build().scorer.frame_macs == 1152 * 8 + 8 * 10
    old = {k: v for k, v in weights.student_card(cell, 10).to_json().items() if k != "scorer_width"}
    assert ModelCard.from_json(old, "w").build().scorer.frame_macs == 1152 * 32 + 320  # a card kept before the field


def test_every_mode_but_the_skyline_has_a_runner(tiny):
    _, _, cells = tiny
    assert set(RUNNERS) == {Mode.BASELINE, Mode.SERIAL}  # parallel cells train in groups: `run_group`
    assert {cell.mode for cell in cells.values()} == {*RUNNERS, Mode.PARALLEL, Mode.SKYLINE} == set(Mode)
    with pytest.raises(OrchestratorError, match="cells of mode 'skyline' run as teachers"):
        resolve(cells["hrnn/skyline/all/s0"], 10, "cpu")


def test_a_serial_cell_without_its_teachers_cache_is_refused(tiny, data):
    _, _, cells = tiny
    with pytest.raises(OrchestratorError, match="needs its teacher's cache"):
        run_cell(cells["hrnn/serial/rep+pred+ce/k10/s0"], data, None, "cpu")


def test_a_baseline_and_a_parallel_pair_run_and_are_tested(tiny, data):
    _, _, cells = tiny
    seen = []
    baseline = run_cell(cells["hrnn/baseline/first/k10/s0"], data, None, "cpu", seen.append)
    assert isinstance(baseline, CellResult) and seen == list(baseline.history) and baseline.best_epoch == 1
    assert 0 < baseline.gap <= 1 and baseline.teacher_gap is None and baseline.device == "cpu"
    pair = run_cell(cells["hrnn/parallel/rep+ce/k10/s0"], data, None, "cpu")
    assert 0 < pair.gap <= 1 and 0 < pair.teacher_gap <= 1 and pair.history[0].teacher_val_gap is not None
    assert pair.macs == baseline.macs  # both models see 10 frames


def test_a_result_is_kept_and_read_back_typed(tmp_path):
    epoch = EpochMetrics(epoch=1, stage="train", loss=2.5, losses={"ce": 2.5}, val_gap=0.5, val_map=0.4, seconds=1.0)
    result = CellResult(gap=0.6, map=0.5, val_gap=0.5, val_map=0.4, best_epoch=1, train_seconds=3.0,
                        inference_seconds=0.1, macs=5, frame_macs=4, params=9, history=(epoch,), wall_seconds=4.0,
                        device="cpu", caches={"base": "s3://b/t/cache/base"})
    store = Store(str(tmp_path))
    write_result(store, "c-1", result.noted("hrnn/skyline/all/s0", "run-1"))
    assert read_result(store, "c-1") == dataclasses.replace(result, cell="hrnn/skyline/all/s0", run_id="run-1")
    assert read_result(store, "c-2") is None


def test_a_result_written_before_the_types_still_reads(tmp_path):
    """What `results/<cell id>.json` held before results were typed: no keys for what a cell lacks."""
    old = {"best_epoch": 1, "cell": "hrnn/serial/rep+pred+ce/k10/s0", "device": "cpu", "frame_macs": 4792320,
           "gap": 0.5016, "history": [{"epoch": 1, "loss": 23.1, "losses": {"ce": 5.6}, "seconds": 0.29,
                                       "stage": "train", "teacher_val_gap": None, "teacher_val_map": None,
                                       "val_gap": 0.545, "val_map": 0.333}],
           "inference_seconds": 0.03, "macs": 5244288, "map": 0.367, "params": 601010, "run_id": "abc",
           "train_seconds": 0.29, "val_gap": 0.545, "val_map": 0.333, "wall_seconds": 0.37}
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "c-9.json").write_text(json.dumps(old))
    result = read_result(Store(str(tmp_path)), "c-9")
    assert result.gap == 0.5016 and result.run_id == "abc" and result.history[0].losses == {"ce": 5.6}
    assert result.teacher_gap is None and result.caches is None


def test_the_weights_kept_are_each_registered_models_best_and_the_timing_job_gets_the_adaptive_ones(tiny):
    _, _, cells = tiny

    def scored(val_gap, adaptive_val_gap=None, kept=True):
        return CellResult(gap=0.5, map=0.4, val_gap=val_gap, val_map=0.4, best_epoch=1, train_seconds=1.0,
                          inference_seconds=1.0, macs=1, frame_macs=1, params=1, history=(), wall_seconds=1.0,
                          device="cpu", adaptive_val_gap=adaptive_val_gap, weights=f"m/{val_gap}.pt" if kept else None)
    a, b, c = (cells[f"hrnn/serial/{v}/k10/s0"] for v in ("rep_then_ce", "rep+pred+ce", "rep+ce+intermediate"))
    uniform = cells["hrnn/baseline/uniform/k10/s0"]
    # a: best read whole; b: best read adaptively; c: neither (it has no adaptive reading)
    results = {a.id: scored(0.6, 0.50), b.id: scored(0.5, 0.55), c.id: scored(0.4), uniform.id: scored(0.9)}
    order = list(cells.values())
    assert weights.losers(a, order, results) == [c]
    assert weights.best_adaptive(order, results) == {("hrnn", 10): "m/0.5.pt"}
    results[b.id] = scored(0.5, 0.55, kept=False)  # its weights dropped: the best adaptive reading still kept
    assert weights.best_adaptive(order, results) == {("hrnn", 10): "m/0.6.pt"}
    assert weights.best_adaptive(order, {uniform.id: scored(0.9)}) == {}  # baselines compete for nothing
