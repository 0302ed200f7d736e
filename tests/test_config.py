"""Presets through the one validator: the real workloads objects built from them, errors at their key."""

from dataclasses import dataclass

import pytest

from orchestrator.errors import OrchestratorError
from orchestrator.experiment.presets import load_override, load_preset
from orchestrator.experiment.validation import Invalid, build, checking
from orchestrator.jobs.data_sets import data_id
from orchestrator.tracking.schema import PARALLEL_CLASSIFIER, cell_params
from workloads.data.synth import SynthConfig
from workloads.train import TrainConfig


def test_a_synthetic_preset_builds_the_generators_own_config():
    tiny = load_preset("tiny")
    generator = tiny.data.synthetic.generator
    assert isinstance(generator, SynthConfig)
    assert (generator.num_classes, generator.min_frames, generator.max_frames) == (10, 20, 60)
    assert generator.mean_labels == SynthConfig().mean_labels  # what the preset leaves out is the generator's
    # Every generator setting can be given; one that differs from the generator's default is a new data set.
    noisier = load_preset("tiny", {"data": {"synthetic": {"frame_noise": 0.3}}})
    assert noisier.data.synthetic.generator.frame_noise == 0.3
    assert data_id(noisier.data) != data_id(tiny.data)
    assert data_id(load_preset("tiny", {"data": {"synthetic": {"frame_noise": SynthConfig().frame_noise}}}).data) \
        == data_id(tiny.data)


def test_training_settings_per_family_and_role():
    paper = load_preset("paper")
    assert paper.train_settings("netvlad", "teacher").batch_size == 80
    assert paper.train_settings("hrnn", "student").batch_size == 256
    config = paper.train_settings("nextvlad", "student").config(seed=3, device="cpu")
    assert isinstance(config, TrainConfig) and config.learning_rate == 0.0002 and config.seed == 3


def test_an_override_file_is_read_and_named(tmp_path):
    assert load_override(None) is None
    path = tmp_path / "override.yaml"
    path.write_text("ks: [7]\n")
    assert load_preset("tiny", load_override(str(path))).ks == (7,)
    path.write_text("- a list\n")
    with pytest.raises(OrchestratorError, match=f"{path}: an override is a YAML mapping"):
        load_override(str(path))
    with pytest.raises(OrchestratorError, match="missing.yaml: cannot read the override"):
        load_override(str(tmp_path / "missing.yaml"))


@dataclass(frozen=True)
class Inner:
    rate: float

    def __post_init__(self):
        with checking("rate"):
            TrainConfig(learning_rate=self.rate)


@dataclass(frozen=True)
class Outer:
    inner: Inner
    items: tuple[int, ...] = ()

    def __post_init__(self):
        if len(self.items) > 2:
            raise Invalid("items", "at most two")


@pytest.mark.parametrize("raw, message", [
    ({"inner": {"rate": 0}}, "f.yaml: inner.rate: need learning_rate > 0"),  # a workloads error, relabelled
    ({"inner": {"rate": "fast"}}, "f.yaml: inner.rate: expected float, got 'fast'"),
    ({"inner": {}}, "f.yaml: inner.rate: missing"),
    ({"inner": {"rate": 1}, "items": [1, "2"]}, r"f.yaml: items\[1\]: expected int, got '2'"),
    ({"inner": {"rate": 1}, "items": [1, 2, 3]}, "f.yaml: items: at most two"),
    ({"inner": {"rate": 1}, "colour": 1}, "f.yaml: colour: unknown key; known here: inner, items"),
])
def test_the_validator_names_the_file_and_the_key_path(raw, message):
    with pytest.raises(OrchestratorError, match=message):
        build(Outer, raw, "f.yaml")
    assert build(Outer, {"inner": {"rate": 1}, "items": [1]}, "f.yaml") == Outer(Inner(1.0), (1,))


def test_parallel_rows_for_table_4_and_the_parallel_classifier():
    from orchestrator.experiment.matrix import expand

    tiny = load_preset("tiny", {"parallel_intermediate": ["rep", "rep+ce"]})
    _, cells = expand(tiny, "d")
    names = [c.name for c in cells if c.mode == "parallel"]
    assert names == ["hrnn/parallel/rep+ce/k10/s0", "hrnn/parallel/rep+intermediate/k10/s0",
                     "hrnn/parallel/rep+ce+intermediate/k10/s0"]
    plain = next(c for c in cells if c.name == "hrnn/parallel/rep+ce/k10/s0")
    _, again = expand(load_preset("tiny"), "d")
    assert plain.id == next(c for c in again if c.name == plain.name).id  # shared: the ids it always had
    own = load_preset("tiny", {"parallel_classifier": "own"})
    _, cells = expand(own, "d")
    mine = next(c for c in cells if c.mode == "parallel")
    assert mine.parallel_classifier == "own" and mine.id != plain.id and cell_params(mine)[PARALLEL_CLASSIFIER] == "own"
    with pytest.raises(OrchestratorError, match="parallel_classifier: one of shared, own"):
        load_preset("tiny", {"parallel_classifier": "both"})
    with pytest.raises(OrchestratorError, match="parallel_classifier: a parallel student's own output layer"):
        load_preset("tiny", {"parallel_classifier": "own", "parallel": ["rep"]})
    with pytest.raises(OrchestratorError, match="parallel_intermediate: unknown parallel variant 'pred'"):
        load_preset("tiny", {"parallel_intermediate": ["pred"]})


def test_modes_and_roles_are_types_and_an_unknown_one_is_an_error():
    from orchestrator.experiment.modes import Mode, Role

    tiny = load_preset("tiny")
    assert tiny.train_settings("hrnn", Role.TEACHER) == tiny.teacher_train
    assert tiny.train_settings("hrnn", Role.STUDENT) == tiny.student_train
    with pytest.raises(ValueError, match="'tacher' is not a valid Role"):
        tiny.train_settings("hrnn", "tacher")  # never counted as a student's
    assert [mode for mode in Mode if mode.is_student] == [Mode.SERIAL, Mode.PARALLEL]
    assert [mode for mode in Mode if mode.reads_cache] == [Mode.SERIAL]
    assert Mode.parse("parallel", "run r") is Mode.PARALLEL and Mode.SERIAL == "serial"
    with pytest.raises(OrchestratorError, match="run r: unknown mode 'teacher'; known: skyline, baseline, serial"):
        Mode.parse("teacher", "run r")


def test_a_matrix_of_parts_is_the_union_of_their_cross_products_and_a_part_only_narrows():
    from orchestrator.experiment.matrix import expand
    two = {"ks": [10, 20], "parts": [{"name": "all at k=10", "ks": [10]},
                                     {"name": "uniform at k=20", "ks": [20], "baselines": ["uniform"], "serial": [],
                                      "parallel": [], "intermediate": []}]}
    preset = load_preset("tiny", two)
    teachers, cells = expand(preset, "d")
    # the skyline once, 6 + 1 content student at k=10; at k=20 Uniform-k alone (no serial student: no content one)
    assert len(teachers) == 1 and len(cells) == 8 + 1
    assert {c.name for c in cells if c.k == 20} == {"hrnn/baseline/uniform/k20/s0"}
    assert all(c.teacher is None or c.teacher is teachers[0] for c in cells)  # one teacher object: one job
    # An override of the preset's lists narrows its parts too: a part left without a k is out.
    narrowed = load_preset("tiny", {**two, "ks": [10]})
    assert [name for name, product in ((p.name, q) for p, q in narrowed.part_products()) if product is None] == \
        ["uniform at k=20"] and len(expand(narrowed, "d")[1]) == 8
    with pytest.raises(OrchestratorError, match=r"parts\[1\]\.baselines: unknown frame selector 'unifrm'"):
        load_preset("tiny", {"parts": [{"name": "a"}, {"name": "b", "baselines": ["unifrm"]}]})
    with pytest.raises(OrchestratorError, match=r"parts: every part names none of the preset's"):
        load_preset("tiny", {"parts": [{"name": "a", "ks": [20]}]})
    with pytest.raises(OrchestratorError, match=r"parts\[0\]: .*missing|parts\[0\]\.name: missing"):
        load_preset("tiny", {"parts": [{"ks": [10]}]})


def test_content_students_are_checked_and_made_beside_their_controls():
    from orchestrator.experiment.matrix import expand
    with pytest.raises(OrchestratorError, match=r"content\.rules: unknown content selection 'salient_frames'"):
        load_preset("tiny", {"content": {"rules": ["salient_frames"]}})
    with pytest.raises(OrchestratorError, match=r"content\.serial: unknown serial variant 'rep\+pc'"):
        load_preset("tiny", {"content": {"serial": ["rep+pc"]}})
    with pytest.raises(OrchestratorError, match=r"content\.rules: must not be empty"):
        load_preset("tiny", {"content": {"rules": []}})
    # Only for a variant and k the uniform serial students also have: each content student has its control
    wide = {"ks": [10, 20], "content": {"rules": ["salient", "salient_segments"], "serial": ["rep+pred+ce", "pred"],
                                       "ks": [10, 30]}}
    made = [c.name for c in expand(load_preset("tiny", wide), "d")[1] if c.chooses_by_content]
    assert made == ["hrnn/serial/rep+pred+ce@salient/k10/s0", "hrnn/serial/rep+pred+ce@salient_segments/k10/s0"]
    every = {"content": {"rules": ["salient"], "serial": []}}  # no variants named: every serial student's
    assert [c.name for c in expand(load_preset("tiny", every), "d")[1] if c.chooses_by_content] == [
        "hrnn/serial/rep_then_ce@salient/k10/s0", "hrnn/serial/rep+pred+ce@salient/k10/s0"]


def test_the_frame_scorer_is_set_by_the_preset_and_a_default_leaves_ids_as_they_were():
    from orchestrator.experiment.matrix import expand
    from orchestrator.tracking import schema
    for scorer, message in (({"width": 0}, "width must be an integer >= 1, got 0"),
                            ({"learning_rate": -1.0}, "learning_rate must be > 0"),
                            ({"depth": 2}, "unknown key; known here: epochs, frames_per_video, learning_rate, width")):
        with pytest.raises(OrchestratorError, match=rf"content\.scorer(\.depth)?: .*{message}"):
            load_preset("tiny", {"content": {"scorer": scorer}})
    plain = {c.name: c for c in expand(load_preset("tiny"), "d")[1]}
    narrow = {c.name: c for c in expand(load_preset("tiny", {"content": {"scorer": {"width": 8, "epochs": 2}}}), "d")[1]}
    content = "hrnn/serial/rep+pred+ce@salient_segments/k10/s0"
    assert (narrow[content].scorer.width, narrow[content].scorer.epochs) == (8, 2) and plain[content].scorer.width == 32
    # Only the content students change: every other cell, uniform controls included, keeps its id
    assert {n for n in plain if plain[n].id != narrow[n].id} == {content}
    params = schema.cell_params(narrow[content])
    assert (params[schema.SCORER_PREFIX + "width"], params[schema.SCORER_PREFIX + "epochs"]) == (8, 2)
    assert not any(k.startswith(schema.SCORER_PREFIX) for k in schema.cell_params(plain["hrnn/serial/rep+pred+ce/k10/s0"]))


def test_what_each_cell_trains_is_its_preset_settings_and_is_recorded_as_params():
    from orchestrator.experiment.matrix import expand
    from orchestrator.experiment.outcome import CellOutcome
    from orchestrator.tracking import schema
    preset = load_preset("tiny", {"teacher_train": {"epochs": 4}, "student_train": {"epochs": 2},
                                  "stage_epochs": "split", "intermediate_points": "block_ends",
                                  "serial_classifier": "tuned", "parallel_targets": "eval"})
    teachers, cells = expand(preset, "d")
    by_name = {c.name: c for c in cells}
    pair = by_name["hrnn/parallel/rep+ce/k10/s0"]
    assert pair.train == teachers[0].train and pair.train.epochs == 4  # a pair on its teacher's schedule
    serial = by_name["hrnn/serial/rep_then_ce/k10/s0"]
    assert CellOutcome.of(serial, None).epochs == 2  # its two stages share the student's 2 epochs
    params = schema.cell_params(serial)
    assert params[schema.EPOCHS_TRAINED] == 2 and params[schema.STAGE_EPOCHS] == "split"
    assert params[schema.SERIAL_CLASSIFIER] == "tuned" and params[schema.TRAIN_PREFIX + "regularization_penalty"] == 2.0
    assert schema.cell_params(pair)[schema.PARALLEL_TARGETS] == "eval"
    matched = by_name["hrnn/serial/rep+ce+intermediate/k10/s0"]
    assert schema.cell_params(matched)[schema.INTERMEDIATE_POINTS] == "block_ends"
    assert schema.INTERMEDIATE_POINTS not in schema.cell_params(serial)  # only where it matches states
    for key, value, message in (("serial_classifier", "own", "serial_classifier: one of shared, tuned"),
                                ("parallel_targets", "test", "parallel_targets: one of train, eval"),
                                ("intermediate_points", "steps", "intermediate_points: one of block_ends, frames"),
                                ("stage_epochs", "split", "2 stages to share 1 epochs among")):
        with pytest.raises(OrchestratorError, match=message):
            load_preset("tiny", {key: value})
