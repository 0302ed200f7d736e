"""Intervals: each model's test predictions kept, GAP resampled over test videos (paired: every model on the
same draws), and the findings' and tables' verdicts taken from the intervals, not from two means."""

import dataclasses

import numpy as np
import pytest

from orchestrator.experiment.matrix import expand
from orchestrator.experiment.outcome import CellOutcome
from orchestrator.experiment.presets import load_preset
from orchestrator.experiment.results import CellResult
from orchestrator.report.accuracy import by_k
from orchestrator.report.evidence import Evidence
from orchestrator.report.findings import findings
from orchestrator.store.files import DamagedFile
from orchestrator.store.predictions import read_predictions, write_predictions
from workloads.bootstrap import Interval, Resampled, Resamples, mean, resampled_gap, resampled_mean
from workloads.errors import WorkloadError
from workloads.metrics import TopKAccumulator, TopKPredictions

CLASSES = 30


def scored(skill: float, seed: int, videos: int = 400, first: int = 0) -> tuple[TopKAccumulator, np.ndarray, np.ndarray]:
    """A model's scores on `videos` test videos (the same labels for every model: the split is fixed):
    `skill` scales how far a true class stands out of the noise, which is mostly the videos' own (what is
    hard for one model is hard for all) and partly the model's."""
    truth = np.random.default_rng(1234)
    labels = (truth.random((first + videos, CLASSES)) < 0.06).astype(np.float32)[first:]
    shared = truth.normal(size=(first + videos, CLASSES))[first:]
    noise = 0.9 * shared + 0.45 * np.random.default_rng(seed).normal(size=labels.shape)
    scores = 1 / (1 + np.exp(-(skill * labels + noise)))
    accumulator = TopKAccumulator(CLASSES)
    accumulator.add(scores, labels, ids=[f"video{first + i:05d}" for i in range(videos)])
    return accumulator, scores, labels


def test_a_resample_scores_as_the_resampled_videos_would():
    accumulator, scores, labels = scored(2.0, seed=0, videos=300)
    predictions = accumulator.predictions()
    resamples = Resamples.of(predictions.ids, resamples=40)
    gaps = resampled_gap(predictions, resamples, accumulator.gap())
    for row in range(5):  # the videos drawn, with their repeats, scored the starter code's way
        drawn = np.repeat(np.arange(300), resamples.counts[row])
        again = TopKAccumulator(CLASSES)
        again.add(scores[drawn], labels[drawn])
        assert gaps.draws[row] == pytest.approx(again.gap(), abs=1e-12)
    once = Resamples(resamples.ids, resamples.kept, np.ones((1, 300), np.int32))
    assert resampled_gap(predictions, once, 0.0).draws[0] == pytest.approx(accumulator.gap(), abs=1e-12)


def test_predictions_keep_each_videos_top_k_ranked_with_its_ids_and_label_count():
    accumulator, scores, labels = scored(1.0, seed=3, videos=10)
    predictions = accumulator.predictions()
    assert predictions.ids[0] == "video00000" and predictions.classes.shape == (10, 20)
    assert np.all(np.diff(predictions.scores, axis=1) <= 0)  # ranked
    assert np.array_equal(predictions.label_counts, (labels > 0).sum(axis=1))
    assert np.array_equal(predictions.hits, labels[np.arange(10)[:, None], predictions.classes] > 0)
    unnamed = TopKAccumulator(CLASSES)
    unnamed.add(scores, labels)
    with pytest.raises(WorkloadError, match="every video's id"):
        unnamed.predictions()


def test_a_paired_difference_is_narrower_than_either_score_and_says_what_it_shows():
    strong, _, _ = scored(2.3, seed=1)
    weak, _, _ = scored(2.0, seed=2)
    resamples = Resamples.of(strong.predictions().ids)
    a = resampled_gap(strong.predictions(), resamples, strong.gap())
    b = resampled_gap(weak.predictions(), resamples, weak.gap())
    difference = (a - b).interval()
    assert difference.estimate == pytest.approx(strong.gap() - weak.gap())
    assert difference.verdict == "holds" and str(difference).startswith(f"{difference.estimate:+.3f} [+")
    alone = a.interval()
    assert difference.high - difference.low < alone.high - alone.low  # pairing removes the videos' own spread
    assert (b - a).interval().verdict == "reversed"
    same = resampled_gap(scored(2.0, seed=9)[0].predictions(), resamples, 0.0)
    assert Interval(0.0, -0.01, 0.02).verdict == "not shown"
    assert (a - a).interval() == Interval(0.0, 0.0, 0.0) and (same - b).interval().low < 0 < (same - b).interval().high


def test_scores_of_other_videos_or_without_predictions_have_no_interval():
    ours, _, _ = scored(2.0, seed=1)
    theirs, _, _ = scored(2.0, seed=1, first=50)  # other test videos
    a = resampled_gap(ours.predictions(), Resamples.of(ours.predictions().ids), ours.gap())
    b = resampled_gap(theirs.predictions(), Resamples.of(theirs.predictions().ids), theirs.gap())
    assert (a - b).draws is None and (a - b).interval() is None
    assert (a - Resampled(0.5)).interval() is None and mean([a, Resampled(0.5)]).draws is None
    with pytest.raises(WorkloadError, match="same test videos"):
        resampled_gap(theirs.predictions(), Resamples.of(ours.predictions().ids), 0.0)
    assert mean([a, a]).interval() == a.interval()  # a row's seeds averaged draw by draw


def test_a_large_split_is_resampled_within_a_subset_and_rescaled():
    accumulator, _, _ = scored(2.0, seed=4, videos=2000)
    predictions = accumulator.predictions()
    whole = resampled_gap(predictions, Resamples.of(predictions.ids), accumulator.gap()).interval()
    subset = Resamples.of(predictions.ids, max_videos=500)
    assert subset.kept.size == 500 and subset.shrink == pytest.approx(0.5)
    rescaled = resampled_gap(predictions, subset, accumulator.gap()).interval()
    width = lambda i: i.high - i.low  # noqa: E731
    assert 0.6 < width(rescaled) / width(whole) < 1.6 and rescaled.low < accumulator.gap() < rescaled.high


def test_a_mean_of_per_video_values_is_resampled_too():
    ids = [f"v{i}" for i in range(200)]
    values = np.random.default_rng(0).normal(1.0, 0.1, 200)
    resampled = resampled_mean(list(reversed(ids)), values[::-1], Resamples.of(ids))
    assert resampled.estimate == pytest.approx(values.mean())
    interval = resampled.interval()
    assert interval.low < values.mean() < interval.high and interval.high - interval.low < 0.05


def test_predictions_round_trip_through_the_store_and_a_damaged_file_is_named(tmp_path):
    accumulator, _, _ = scored(1.5, seed=5, videos=25)
    predictions = accumulator.predictions()
    location = str(tmp_path / "predictions" / "c-1.parquet")
    write_predictions(location, predictions)
    back = read_predictions(location)
    assert back.ids == predictions.ids and np.array_equal(back.classes, predictions.classes)
    assert np.array_equal(back.hits, predictions.hits) and np.array_equal(back.label_counts, predictions.label_counts)
    assert np.allclose(back.scores, predictions.scores)
    assert read_predictions(str(tmp_path / "none.parquet")) is None
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DamagedFile, match=r"bad.parquet: not test predictions"):
        read_predictions(str(tmp_path / "bad.parquet"))


SKILLS = {"skyline/all": 3.0, "serial/rep_then_ce": 2.4, "serial/rep+ce": 2.2, "serial/rep+pred+ce": 2.0,
          "serial/rep_then_pred+ce": 2.0, "serial/pred+ce": 2.0, "baseline/uniform": 1.6, "baseline/random": 1.5,
          "baseline/first": 0.6, "baseline/middle": 0.6, "baseline/last": 0.6, "baseline/first_middle_last": 1.0}


def graded_grid(skills: dict[str, float], override: dict | None = None,
                adaptive: dict[str, float] | None = None) -> tuple[list[CellOutcome], Evidence]:
    """The smoke preset's H-RNN cells at k=30 (at k=10 those `skills` names "/k10") on all the data, each scored on one test split with the skill of
    its row (each seed its own noise), and the evidence of their predictions. The rows `adaptive` names are
    also read adaptively, with its skill, reading 40% of their frames and multiply-adds."""
    smoke = load_preset("smoke", override)
    _, cells = expand(smoke, "d")
    outcomes, kept, kept_adaptive = [], {}, {}
    # Each cell's noise by its place among the paper's cells (content students after them), as it always was
    cells = [c for c in cells if not c.chooses_by_content] + [c for c in cells if c.chooses_by_content]
    for index, cell in enumerate(cells):
        label = f"{cell.mode}/{cell.selection if cell.mode in ('baseline', 'skyline') else cell.variant}"
        label += (f"@{cell.selection}" if cell.chooses_by_content else "") + ("/k10" if cell.k == 10 else "")
        if cell.family != "hrnn" or label not in skills or cell.intermediate or cell.data_fraction != 1:
            continue
        accumulator, _, _ = scored(skills[label], seed=index)
        gap = accumulator.gap()
        result = CellResult(gap=gap, map=0.0, val_gap=gap, val_map=0.0, best_epoch=1, train_seconds=1.0,
                            inference_seconds=1.0, macs=1, frame_macs=1, params=1, history=(), wall_seconds=1.0,
                            device="cpu")
        if label in (adaptive or {}):
            read, _, _ = scored(adaptive[label], seed=1000 + index)
            result = dataclasses.replace(result, adaptive_gap=read.gap(), adaptive_map=0.1, adaptive_frames=0.4 * cell.k,
                                         adaptive_macs=0.4, adaptive_threshold=0.05, adaptive_val_gap=read.gap())
            kept_adaptive[cell.id] = read.predictions()
        outcomes.append(CellOutcome.of(cell, result))
        kept[cell.id] = accumulator.predictions()
    return outcomes, Evidence(lambda c: kept.get(c.cell_id), lambda c: None, lambda c: kept_adaptive.get(c.cell_id))


def test_the_findings_hold_only_where_the_intervals_exclude_zero():
    cells, evidence = graded_grid(SKILLS)
    ordering, closed = findings(cells, evidence)[:2]
    assert ordering.startswith("Paper's ordering at k=30") and ": holds (each step's difference, 95% interval: +" in ordering
    assert "[95% interval" in closed and closed.endswith("holds")
    # Uniform-k as good as the students: the ordering is not shown, whatever the means say.
    level = dict(SKILLS, **{"baseline/uniform": 2.4, "baseline/random": 1.0})
    ordering = findings(*graded_grid(level))[0]
    assert "not shown (a 95% interval includes 0)" in ordering
    reversed_ = dict(SKILLS, **{"baseline/uniform": 3.2})
    assert "DOES NOT HOLD" in findings(*graded_grid(reversed_))[0]


def test_a_content_student_is_set_against_the_best_serial_student_on_more_frames_and_its_control():
    skills = dict(SKILLS, **{"serial/rep+ce@salient/k10": 2.7, "serial/rep+ce@salient_segments/k10": 1.0,
                             "serial/rep+ce/k10": 1.2})
    both = {"content": {"rules": ["salient", "salient_segments"]}}
    cells, evidence = graded_grid(skills, both)
    lines = [line for line in findings(cells, evidence) if line.startswith("Frames chosen by content")]
    # Table 1 has their rows at k=10; at k=30, where none runs, nothing is said missing
    table = by_k("hrnn", cells, None, evidence)
    assert any(row[0].endswith("frames by content (salient_segments)") for row in table.rows)
    assert not [note for note in table.notes if "frames by content" in note], table.notes
    salient, segments = lines
    assert "(salient, a frame scorer trained from the teacher cache): serial rep+ce on 10 of them" in salient
    assert "of the best serial student on validation (rep_then_ce) on 30 uniform frames: " in salient
    assert "against the same student on 10 uniform frames" in salient
    assert "with at most 15 frames: holds (" in salient  # its interval reaches 0, or lies above it
    assert segments.endswith("with at most 15 frames: DOES NOT HOLD (its interval lies below 0)")


def test_every_row_of_table_1_carries_its_difference_from_uniform_with_an_interval():
    cells, evidence = graded_grid(SKILLS)
    table = by_k("hrnn", cells, None, evidence)
    assert table.header[1:4] == ["k=30 GAP", "k=30 mAP", "k=30 GAP − Uniform [95%]"]
    rows = {row[0]: row for row in table.rows}
    assert rows["Uniform-k"][3] == "(reference)"
    low, high = (float(x) for x in rows["First-k"][3].split("[")[1].rstrip("]").split(","))
    assert high < 0 and float(rows["Serial Lrep, then LCE"][3].split()[0]) > 0
    assert rows["Teacher-Skyline (all frames)"][3].startswith("+")
    # Scores alone (no predictions kept): the difference without an interval.
    plain = {row[0]: row for row in by_k("hrnn", cells, None).rows}
    assert plain["First-k"][3] == f"{float(rows['First-k'][3].split()[0]):+.3f}"


def test_a_student_read_adaptively_has_a_table_1_row_with_its_interval_and_the_frames_it_read():
    cells, evidence = graded_grid(SKILLS, adaptive={"serial/rep_then_ce": 2.35})
    table = by_k("hrnn", cells, None, evidence)
    rows = {row[0]: row for row in table.rows}
    row = rows["Serial Lrep, then LCE, read adaptively"]
    read = [c for c in cells if c.adaptive_gap is not None and c.k == 30]
    assert len(read) == 2 and row[1].startswith(f"{np.mean([c.adaptive_gap for c in read]):.3f} ± ")
    assert row[2] == "0.100 ± 0.000"
    low, high = (float(x) for x in row[3].split("[")[1].rstrip("]").split(","))
    assert 0 < low < high  # better than Uniform-k (skill 1.6), paired on the same videos
    # right below the students, above the skyline; the frames and multiply-adds it read in a note
    assert [r[0] for r in table.rows][-2:] == ["Serial Lrep, then LCE, read adaptively", "Teacher-Skyline (all frames)"]
    assert ("Serial Lrep, then LCE, read adaptively: each video stops once its prediction settles (the threshold "
            "calibrated on validation), reading on average 12.0 of 30 frames (40% of its multiply-adds)") in table.notes
    # No adaptive reading: no such row
    assert not [r for r in by_k("hrnn", graded_grid(SKILLS)[0], None).rows if "read adaptively" in r[0]]


def test_a_store_predictions_file_of_other_shape_is_damaged(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"id": ["a"], "classes": [[1, 2]]}), str(tmp_path / "p.parquet"))
    with pytest.raises(DamagedFile, match="p.parquet: not test predictions: columns"):
        read_predictions(str(tmp_path / "p.parquet"))
    unequal = TopKPredictions(("a", "b"), np.array([[1, 2], [3, 4]]), np.ones((2, 2)), np.ones((2, 2), bool),
                              np.array([1, 1]))
    write_predictions(str(tmp_path / "ok.parquet"), unequal)
    assert read_predictions(str(tmp_path / "ok.parquet")).classes.tolist() == [[1, 2], [3, 4]]


def test_a_damaged_predictions_file_costs_its_interval_not_the_summary(tmp_path):
    cells, evidence = graded_grid(SKILLS)
    (tmp_path / "bad.parquet").write_bytes(b"cut short")
    damaged = Evidence(lambda c: read_predictions(str(tmp_path / "bad.parquet")), lambda c: None)
    row = [c for c in cells if c.mode == "baseline" and c.selection == "uniform"]
    assert damaged.gap(row).draws is None and damaged.gap(row).estimate == evidence.gap(row).estimate
    assert "not shown (no interval: test predictions not kept)" in findings(cells, damaged)[0]
