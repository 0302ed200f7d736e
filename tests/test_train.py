import dataclasses
import io
import os
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from workloads.data.batch import FrameSelection, subsample
from workloads.data.reader import VideoShards
from workloads.data.synth import SynthConfig, generate
from workloads.errors import WorkloadError
from workloads.losses import Objective
from workloads.models import FAMILIES, build_model
from workloads.evaluation import evaluate
from workloads.parallel_pair import ParallelPair, parallel_losses
from workloads.progress import load_progress
from workloads.precision import cpu_has_bfloat16
from workloads.teacher_outputs import InMemoryTeacherCache, export_teacher, student_intermediate_positions
from workloads.train import (
    PREFETCH_BATCHES,
    TrainConfig,
    _prefetched,
    seed_everything,
    train_classifier,
    train_parallel,
    train_serial_student,
)
from workloads.variants import PARALLEL_VARIANTS, SERIAL_VARIANTS, Stage

CLASSES = 10
SELECTION = FrameSelection("uniform", k=10)
FAST = TrainConfig(epochs=1, learning_rate=3e-3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-data")
    config = SynthConfig(num_classes=CLASSES, min_frames=20, max_frames=60)
    generate(str(root / "train"), 96, seed=1, split="train", config=config)
    generate(str(root / "val"), 48, seed=1, split="validate", config=config)
    return str(root / "train"), str(root / "val")


def loaders(data, selection=None, shuffle=True):
    train, val = data
    return VideoShards(train, 16, selection, shuffle=shuffle, seed=0), VideoShards(val, 48, selection)


@pytest.fixture(scope="module")
def teachers(data):
    """A briefly trained teacher of every family and its in-memory cache (with I_T for H-RNN)."""
    built = {}
    for family in FAMILIES:
        seed_everything(0)
        teacher = build_model(family, "small", CLASSES)
        train_classifier(teacher, *loaders(data), FAST)
        positions = None
        if teacher.supports_intermediates:
            positions = student_intermediate_positions(build_model(family, "small", CLASSES, k=10), SELECTION)
        everything = VideoShards(list(data), 48)
        cache = InMemoryTeacherCache(export_teacher(teacher, everything, intermediate_positions=positions),
                                     teacher.classifier.state_dict())
        built[family] = (teacher, cache)
    return built


def parameters(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed(before, model):
    return {name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_teacher_and_baseline_train_and_report_every_epoch(data, family):
    seen = []
    seed_everything(0)
    model = build_model(family, "small", CLASSES, k=10)
    result = train_classifier(model, *loaders(data, SELECTION), TrainConfig(epochs=2, learning_rate=3e-3), seen.append)
    assert [m.epoch for m in seen] == [1, 2] and result.history == seen
    assert 1 <= result.best_epoch <= 2 and 0 < result.gap <= 1 and result.train_seconds > 0
    # The model holds the best epoch's weights: evaluating again gives the best epoch's GAP.
    assert evaluate(model, loaders(data, SELECTION)[1]).gap == pytest.approx(result.gap)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("variant", list(SERIAL_VARIANTS))
def test_serial_variants_update_only_the_student(data, teachers, family, variant):
    teacher, cache = teachers[family]
    teacher_before = parameters(teacher)
    classifier_before = {k: v.clone() for k, v in cache.classifier_state().items()}
    seed_everything(0)
    student = build_model(family, "small", CLASSES, k=10)
    student_before = parameters(student)
    result = train_serial_student(student, cache, *loaders(data, SELECTION), variant, FAST)
    assert result.history and np.isfinite(result.history[-1].loss)
    assert changed(teacher_before, teacher) == set()
    assert all(torch.equal(v, cache.classifier_state()[k]) for k, v in classifier_before.items())
    assert changed(student_before, student)
    assert student.classifier is not teacher.classifier


@pytest.mark.parametrize("classifier", ["shared", "tuned"])
def test_a_serial_students_output_layer_is_the_teachers_frozen_or_tuned_in_the_second_stage(data, teachers, classifier):
    teacher, cache = teachers["hrnn"]
    student = build_model("hrnn", "small", CLASSES, k=10)
    seen = []

    def snapshot(metrics):
        seen.append((metrics.stage, {k: v.clone() for k, v in student.classifier.state_dict().items()}))

    # Stage 1 of variant (a) trains on Lrep alone: the plugged-in classifier comes out untouched. Shared (the
    # paper's text), it stays the teacher's through LCE too; tuned, LCE trains it on.
    train_serial_student(student, cache, *loaders(data, SELECTION), "rep_then_ce",
                         TrainConfig(epochs=2, learning_rate=3e-3), snapshot, classifier=classifier)
    stages = [stage for stage, _ in seen]
    assert stages == ["rep", "rep", "finetune", "finetune"]
    teacher_head = cache.classifier_state()
    for stage, state in seen:
        same = all(torch.equal(state[k], teacher_head[k]) for k in teacher_head)
        assert same == (stage == "rep" or classifier == "shared"), stage
    with pytest.raises(WorkloadError, match="one of shared, tuned, got 'own'"):
        train_serial_student(student, cache, *loaders(data, SELECTION), "rep_then_ce", FAST, classifier="own")


def test_serial_intermediate_matching(data, teachers):
    teacher, cache = teachers["hrnn"]
    record = next(iter(cache.records.values()))
    student = build_model("hrnn", "small", CLASSES, k=10)
    n = int(record.positions.size)
    assert record.intermediates.shape == (n, teacher.representation_dim)
    seed_everything(0)
    stages = (Stage(Objective({"rep": 1.0, "rep_intermediate": 1.0, "ce": 1.0})),)
    result = train_serial_student(student, cache, *loaders(data, SELECTION), stages, FAST)
    assert "rep_intermediate" in result.history[0].losses
    with pytest.raises(WorkloadError, match="no intermediate states"):
        train_serial_student(build_model("netvlad", "small", CLASSES), teachers["netvlad"][1],
                             *loaders(data, SELECTION), stages, FAST)


def test_exported_intermediates_are_the_teachers_states_at_the_students_positions(data, teachers):
    teacher, cache = teachers["hrnn"]
    batch = next(iter(VideoShards(data[0], 4)))
    positions = student_intermediate_positions(build_model("hrnn", "small", CLASSES, k=10), SELECTION)
    for row, video_id in enumerate(batch.ids):
        record = cache.records[video_id]
        wanted = positions(int(batch.num_frames[row]))
        assert record.positions.tolist() == wanted.tolist()
        with torch.no_grad():
            direct = teacher.eval().states_at(batch.frames[row : row + 1], batch.mask[row : row + 1],
                                              batch.positions[row : row + 1], torch.from_numpy(wanted)[None])
        assert np.allclose(record.intermediates, direct[0].numpy(), atol=1e-5)
        assert np.allclose(record.representation, teacher(batch.frames[row : row + 1], batch.mask[row : row + 1]).representation[0].detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_parallel_student_losses_never_reach_the_teacher(data, family):
    seed_everything(0)
    teacher = build_model(family, "small", CLASSES)
    student = build_model(family, "small", CLASSES, k=10)
    student.classifier = teacher.classifier
    batch = next(iter(VideoShards(data[0], 8)))
    objective = Objective.parse("rep+pred+ce")
    teacher_loss, student_loss, _ = parallel_losses(teacher, student, batch, SELECTION, objective)
    grads = torch.autograd.grad(student_loss, list(teacher.parameters()), allow_unused=True)
    assert all(g is None or not g.any() for g in grads)
    student_only = [p for n, p in student.named_parameters() if not n.startswith("classifier.")]
    assert any(g is not None and g.any() for g in torch.autograd.grad(student_loss, student_only, allow_unused=True))
    assert any(g is not None and g.any() for g in torch.autograd.grad(teacher_loss, list(teacher.parameters()), allow_unused=True))


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("variant", PARALLEL_VARIANTS)
def test_parallel_variants_train_both(data, family, variant):
    seed_everything(0)
    teacher = build_model(family, "small", CLASSES)
    student = build_model(family, "small", CLASSES, k=10)
    before_t, before_s = parameters(teacher), parameters(student)
    student_result, teacher_result = train_parallel(teacher, student, *loaders(data), SELECTION, variant, FAST)
    metrics = student_result.history[0]
    assert metrics.stage == "parallel" and metrics.teacher_val_gap is not None
    assert "teacher_ce" in metrics.losses and "rep" in metrics.losses
    assert changed(before_t, teacher) and changed(before_s, student)
    assert student.classifier is teacher.classifier
    assert teacher_result.best_epoch == student_result.best_epoch


def test_parallel_intermediate_matching(data):
    seed_everything(0)
    teacher = build_model("hrnn", "small", CLASSES)
    student = build_model("hrnn", "small", CLASSES, k=10)
    stages = (Stage(Objective({"rep": 1.0, "rep_intermediate": 1.0}), name="parallel"),)
    result, _ = train_parallel(teacher, student, *loaders(data), SELECTION, stages, FAST)
    assert result.history[0].losses["rep_intermediate"] > 0


def test_training_is_deterministic(data):
    runs = []
    for _ in range(2):
        seed_everything(3)
        model = build_model("nextvlad", "small", CLASSES)
        result = train_classifier(model, *loaders(data), TrainConfig(epochs=2, learning_rate=3e-3, seed=3))
        runs.append((result.history[-1].loss, result.gap, parameters(model)))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    assert all(torch.equal(runs[0][2][k], runs[1][2][k]) for k in runs[0][2])


def test_bad_configuration():
    with pytest.raises(WorkloadError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(WorkloadError, match="unknown serial variant"):
        train_serial_student(build_model("hrnn", "small", CLASSES), None, [], [], "rep+magic", FAST)
    with pytest.raises(WorkloadError, match="deterministic frame selection"):
        student_intermediate_positions(build_model("hrnn", "small", CLASSES, k=10), FrameSelection("random", k=10))


@pytest.mark.slow
def test_serial_lrep_student_matches_the_teachers_representation(tmp_path):
    """The paper's Figure 3 claim: a student trained on Lrep alone, seeing 30 of 120 frames, computes
    nearly the teacher's representation on videos neither has trained on (cosine similarity >= 0.9)."""
    torch.set_num_threads(2)
    config = SynthConfig(num_classes=20, min_frames=120, max_frames=120, difficulty=0.3)
    generate(str(tmp_path / "train"), 2000, seed=2, split="train", config=config, workers=2, videos_per_shard=1000)
    generate(str(tmp_path / "held_out"), 300, seed=2, split="validate", config=config)
    train, held_out = str(tmp_path / "train"), str(tmp_path / "held_out")
    seed_everything(0)
    teacher = build_model("hrnn", "small", 20)
    config5 = TrainConfig(epochs=5, learning_rate=3e-3, lr_decay=0.9)
    teacher_result = train_classifier(teacher, VideoShards(train, 32, shuffle=True), VideoShards(held_out, 128), config5)
    assert teacher_result.gap > 0.8
    cache = InMemoryTeacherCache(export_teacher(teacher, VideoShards([train, held_out], 128)),
                                 teacher.classifier.state_dict())
    selection = FrameSelection("uniform", k=30)
    seed_everything(1)
    student = build_model("hrnn", "small", 20, k=30)
    rep_only = (Stage(Objective({"rep": 1.0}), name="rep"),)
    train_serial_student(student, cache, VideoShards(train, 32, selection, shuffle=True),
                         VideoShards(held_out, 128, selection), rep_only, config5)
    student.eval()
    similarities = []
    with torch.no_grad():
        for batch in VideoShards(held_out, 128, selection):
            ours = student(batch.frames, batch.mask, batch.positions).representation
            theirs = cache.targets(batch.ids, torch.device("cpu")).representation
            similarities.append(torch.nn.functional.cosine_similarity(ours, theirs))
    assert float(torch.cat(similarities).mean()) >= 0.9


def test_serial_training_announces_batches_to_a_teacher_that_prefetches():
    class Recording:
        def __init__(self):
            self.calls = []

        def prefetch(self, ids):
            self.calls.append(("prefetch", ids[0]))

    batches = [SimpleNamespace(ids=[f"v{i}"]) for i in range(PREFETCH_BATCHES + 3)]
    teacher = Recording()
    seen = []
    for batch in _prefetched(batches, teacher):
        teacher.calls.append(("targets", batch.ids[0]))
        seen.append(batch)
    assert seen == batches  # same batches, same order
    calls = teacher.calls
    for i, batch in enumerate(batches):  # every batch announced before it is used, PREFETCH_BATCHES ahead
        announced, used = calls.index(("prefetch", f"v{i}")), calls.index(("targets", f"v{i}"))
        assert announced < used
        assert sum(kind == "prefetch" for kind, _ in calls[:used]) == min(i + PREFETCH_BATCHES + 1, len(batches))
    assert list(_prefetched(batches, object())) == batches  # a source without prefetch: passed through


@pytest.mark.parametrize("variant, stop_after", [(None, 1), ("rep_then_ce", 1), ("rep_then_ce", 2), ("rep_then_ce", 3),
                                                 ("parallel rep+ce", 1)])
def test_a_resumed_loop_ends_exactly_where_an_uninterrupted_one_does(data, teachers, variant, stop_after):
    """Resuming from the `Progress` after any epoch (inside a stage or at a stage's end) gives the same
    weights and history, to the bit, as never stopping: a classifier, a serial student, a parallel pair."""
    config = TrainConfig(epochs=2, learning_rate=3e-3)

    def run(resume=None):
        seed_everything(0)
        progress = []
        if variant is None:
            model = build_model("hrnn", "small", CLASSES)
            result = train_classifier(model, *loaders(data), config, resume=resume, on_progress=progress.append)
        elif variant.startswith("parallel"):
            teacher, student = build_model("hrnn", "small", CLASSES), build_model("hrnn", "small", CLASSES, k=10)
            result, _ = train_parallel(teacher, student, *loaders(data), SELECTION, variant.split()[1], config,
                                       resume=resume, on_progress=progress.append)
            model = torch.nn.ModuleDict({"teacher": teacher, "student": student})
        else:
            model = build_model("hrnn", "small", CLASSES, k=10)
            result = train_serial_student(model, teachers["hrnn"][1], *loaders(data, SELECTION), variant, config,
                                          resume=resume, on_progress=progress.append)
        return model, result, progress

    whole, whole_result, progress = run()
    assert [p.epoch for p in progress] == list(range(1, len(whole_result.history) + 1))
    resumed, resumed_result, rest = run(resume=saved_and_loaded(progress[stop_after - 1]))
    assert [p.epoch for p in rest] == list(range(stop_after + 1, len(whole_result.history) + 1))
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert [(m.epoch, m.stage, m.loss, m.val_gap) for m in resumed_result.history] == \
        [(m.epoch, m.stage, m.loss, m.val_gap) for m in whole_result.history]
    assert (resumed_result.best_epoch, resumed_result.gap) == (whole_result.best_epoch, whole_result.gap)


def saved(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def saved_and_loaded(progress):
    """Through a file, as a checkpoint goes: `torch.save`, then `load_progress`."""
    return load_progress(io.BytesIO(saved(progress)))


class RunsCode:
    def __reduce__(self):
        return os.system, ("echo this should never run",)


def test_a_progress_holding_anything_but_tensors_and_records_is_refused(data):
    progress = []
    train_classifier(build_model("hrnn", "small", CLASSES), *loaders(data), FAST, on_progress=progress.append)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        load_progress(io.BytesIO(saved(dataclasses.replace(progress[-1], scaler={"scale": RunsCode()}))))


def test_a_progress_at_a_new_best_epoch_saves_its_weights_once(data):
    progress = []
    train_classifier(build_model("hrnn", "small", CLASSES), *loaders(data), FAST, on_progress=progress.append)
    first = progress[0]  # the first epoch is always a new best
    assert first.result.best_epoch == 1 and first.best_state is first.model
    apart = dataclasses.replace(first, best_state={k: v.clone() for k, v in first.best_state.items()})
    assert len(saved(apart)) - len(saved(first)) > 0.95 * len(saved(first.model))
    loaded = saved_and_loaded(first)
    assert all(torch.equal(loaded.best_state[name], value) for name, value in first.model.items())


def test_resuming_a_finished_loop_trains_nothing(data):
    seed_everything(0)
    progress = []
    model = build_model("hrnn", "small", CLASSES)
    result = train_classifier(model, *loaders(data), FAST, on_progress=progress.append)
    again = build_model("hrnn", "small", CLASSES)
    resumed = train_classifier(again, *loaders(data), FAST, resume=progress[-1], on_progress=progress.append)
    assert len(progress) == 1 and resumed.best_epoch == result.best_epoch and resumed.gap == result.gap
    for name, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name


def test_a_parallel_student_with_its_own_output_layer(data):
    seed_everything(0)
    teacher, student = build_model("hrnn", "small", CLASSES), build_model("hrnn", "small", CLASSES, k=10)
    own = {k: v.clone() for k, v in student.classifier.state_dict().items()}
    teacher_head = {k: v.clone() for k, v in teacher.classifier.state_dict().items()}
    batch = next(iter(VideoShards(data[0], 8)))
    _, student_loss, _ = parallel_losses(teacher, student, batch, SELECTION, Objective.parse("rep+ce"), shared=False)
    grads = torch.autograd.grad(student_loss, list(teacher.parameters()), allow_unused=True)
    assert all(g is None or not g.any() for g in grads)  # the student's losses still stop at the student
    train_parallel(teacher, student, *loaders(data), SELECTION, "rep+ce", FAST, shared_classifier=False)
    assert student.classifier is not teacher.classifier
    assert any(not torch.equal(v, student.classifier.state_dict()[k]) for k, v in own.items())  # trained by its LCE
    assert any(not torch.equal(v, teacher.classifier.state_dict()[k]) for k, v in teacher_head.items())
    with pytest.raises(WorkloadError, match="own output layer learns only from LCE or Lpred"):
        train_parallel(teacher, student, *loaders(data), SELECTION, "rep", FAST, shared_classifier=False)


def test_a_parallel_students_targets_come_from_the_teachers_training_pass_or_an_evaluation_pass(data):
    seed_everything(0)
    teacher = build_model("hrnn", "small", CLASSES)
    student = build_model("hrnn", "small", CLASSES, k=10)
    batch = next(iter(VideoShards(data[0], 8)))
    objective = Objective.parse("rep")
    student.eval()  # the student's own dropout off: what differs is the teacher's
    teacher.train()
    with torch.no_grad():
        evaluated = teacher.eval()(batch.frames, batch.mask, batch.positions).representation
        teacher.train()
        chosen = subsample(batch, SELECTION)
        mine = student(chosen.frames, chosen.mask, chosen.positions).representation
    _, loss, _ = parallel_losses(teacher, student, batch, SELECTION, objective, shared=False, targets="eval")
    assert torch.allclose(loss, (mine - evaluated).pow(2).sum(-1).mean(), rtol=1e-5) and teacher.training
    # P_T passes the teacher's dropout: drawn anew by every training pass, fixed in evaluation mode.
    pred = Objective.parse("pred")
    trained = [parallel_losses(teacher, student, batch, SELECTION, pred, shared=False)[1] for _ in range(2)]
    evaluated = [parallel_losses(teacher, student, batch, SELECTION, pred, shared=False, targets="eval")[1]
                 for _ in range(2)]
    assert not torch.allclose(*trained) and torch.equal(*evaluated)
    with pytest.raises(WorkloadError, match="train or eval mode, got 'test'"):
        ParallelPair(teacher, student, SELECTION, targets="test")


def test_the_papers_l2_penalises_the_output_layers_weights_as_the_starter_code_does(data):
    config = dataclasses.replace(FAST, l2_penalty=1.0)  # 2 x 1.0 x ||W||^2 / 2: large enough to see
    weights = {}
    for name, settings in (("off", dataclasses.replace(config, regularization_penalty=0.0)), ("on", config)):
        seed_everything(0)
        model = build_model("hrnn", "small", CLASSES, k=10)
        start = sum(p.pow(2).sum() for p in model.classifier.parameters() if p.ndim > 1).item()
        result = train_classifier(model, *loaders(data, SELECTION), settings)
        weights[name] = sum(p.pow(2).sum() for p in model.classifier.parameters() if p.ndim > 1).item()
        if name == "on":  # the first batch's penalty: 2 x 1.0 x ||W||^2 / 2 of the initial weights, and more
            assert result.history[0].losses["l2"] > 0 and start > 0
        else:
            assert "l2" not in result.history[0].losses
    assert weights["on"] < weights["off"]
    assert TrainConfig().regularization_penalty == 2.0 and TrainConfig().l2_penalty == 1e-8  # the paper's


@pytest.mark.parametrize("setting, expected", [("auto", torch.float32), ("float16", torch.float32),
                                               ("bfloat16", torch.bfloat16), ("float32", torch.float32)])
def test_a_presets_precision_setting_reaches_the_loop_and_its_result(data, setting, expected):
    """From a preset's `student_train` to the training loop: on a CPU auto and float16 train in float32
    (mixed precision is CUDA's), bfloat16 runs the model under bfloat16 autocast there too (where the CPU
    has it)."""
    from orchestrator.experiment.presets import load_preset

    preset = load_preset("tiny", {"student_train": {"precision": setting}})
    config = dataclasses.replace(preset.train_settings("hrnn", "student").config(seed=0, device="cpu"), epochs=1)
    assert config.precision == setting
    seed_everything(0)
    model = build_model("hrnn", "small", CLASSES)
    seen = set()
    model.classifier.register_forward_hook(lambda module, args, out: seen.add(out.dtype) if model.training else None)
    if setting == "bfloat16" and not cpu_has_bfloat16():  # a CPU without AVX-512 BF16 or AMX: refused by name
        with pytest.raises(WorkloadError, match="precision bfloat16: this CPU has no bfloat16 support in oneDNN"):
            train_classifier(model, *loaders(data), config)
        return
    result = train_classifier(model, *loaders(data), config)
    assert seen == {expected}
    assert result.precision == {torch.float32: "float32", torch.bfloat16: "bfloat16"}[expected]


def test_an_unknown_precision_is_refused_by_name():
    with pytest.raises(WorkloadError, match="precision must be one of auto, bfloat16, float16, float32, got 'half'"):
        TrainConfig(precision="half")
