"""A model as a product, without Ray or MLflow: cards and weights files, top-k labels of shards and of shard
columns, the submission format, and GAP/mAP pooled from predictions."""

import csv

import numpy as np
import pytest
import torch

from workloads.data.batch import FrameSelection
from workloads.data.reader import VideoShards
from workloads.data.synth import SynthConfig, generate
from workloads.errors import DataError, WorkloadError
from workloads.evaluation import evaluate
from workloads.inference import (SUBMISSION_HEADER, Classifier, ModelCard, Predictions, Scores, load_weights,
                                 read_submission,
                                 submission_lines, weights_bytes)
from workloads.metrics import TopKAccumulator

CLASSES = 12


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    generate(str(folder), 70, seed=3, config=SynthConfig(num_classes=CLASSES, min_frames=8, max_frames=40), workers=1,
             videos_per_shard=32)
    return str(folder)


def student(k=5) -> tuple[ModelCard, torch.nn.Module]:
    card = ModelCard("hrnn", "small", CLASSES, "uniform", k, 40, {}, {"cell": "test"})
    torch.manual_seed(0)
    return card, card.build().eval()


def test_a_weights_file_holds_the_card_and_loads_into_the_same_model():
    card, model = student()
    loaded_card, loaded = load_weights(weights_bytes(card, model), "w.pt")
    assert loaded_card == card and card.stride == 8 and card.frame_selection == FrameSelection("uniform", k=5)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(WorkloadError, match="w.pt: not a model's weights"):
        load_weights(b"not torch", "w.pt")
    with pytest.raises(WorkloadError, match="unknown frame selector"):
        ModelCard("hrnn", "small", CLASSES, "sideways", 5, 40)


def test_predictions_of_shards_score_as_the_evaluation_does(shards):
    card, model = student()
    classifier = Classifier(card, model)
    scores = Scores(CLASSES)
    rows = []
    for shard in VideoShards(shards, 16).shards:
        for predictions in classifier.predict_shard(shard, 16, top_k=3):
            scores.add(predictions)
            rows += submission_lines(predictions, 3)
            assert (np.diff(predictions.scores, axis=1) <= 0).all()  # best first
    expected = evaluate(model, VideoShards(shards, 16, FrameSelection("uniform", k=5)))
    assert scores.gap() == pytest.approx(expected.gap, abs=1e-9) and scores.map() == pytest.approx(expected.map, abs=1e-9)
    parsed = read_submission([SUBMISSION_HEADER + "\n", *(row + "\n" for row in rows)], "out.csv")
    assert len(parsed) == 70 and all(len(pairs) == 3 for pairs in parsed.values())


def test_top_triplets_pool_exactly_as_dense_scores():
    rng = np.random.default_rng(0)
    predictions, labels = rng.random((50, 30)), (rng.random((50, 30)) > 0.9).astype(float)
    dense = TopKAccumulator(30)
    dense.add(predictions, labels)
    pooled = TopKAccumulator(30)
    top = np.argpartition(predictions, -20, axis=1)[:, -20:]
    rows = np.arange(50)[:, None]
    pooled.add_top(top, predictions[rows, top], labels[rows, top] > 0, (labels > 0).sum(axis=0))
    assert pooled.gap() == dense.gap() and pooled.mean_average_precision() == dense.mean_average_precision()
    with pytest.raises(WorkloadError, match="three"):
        pooled.add_top(top[:, :5], predictions[rows, top][:, :5], labels[rows, top][:, :5] > 0, np.zeros(30))


def test_shard_columns_are_checked_like_a_shard_and_labelled_like_one(shards):
    card, model = student()
    classifier = Classifier(card, model)
    batch = next(iter(VideoShards(shards, 4, dequantize=False)))  # quantised bytes, every frame
    ids, frames = batch.ids, batch.num_frames.tolist()
    rgb = [batch.frames[i, :n, :1024].numpy().tobytes() for i, n in enumerate(frames)]
    audio = [batch.frames[i, :n, 1024:].numpy().tobytes() for i, n in enumerate(frames)]
    served = next(classifier.predict_columns(ids, frames, rgb, audio, top_k=4))
    from_shard = next(classifier.predict_shard(VideoShards(shards, 4).shards[0], 4, top_k=4))
    assert served.ids == from_shard.ids and np.array_equal(served.classes, from_shard.classes)
    np.testing.assert_allclose(served.scores, from_shard.scores, rtol=1e-6)
    with pytest.raises(DataError, match=r"request, video '.*': field 'rgb' holds 10 bytes"):
        next(classifier.predict_columns(ids[:1], frames[:1], [b"0123456789"], audio[:1], top_k=4))


def test_ids_with_a_comma_a_quote_or_a_line_break_are_quoted_and_read_back(tmp_path):
    """A submission is CSV: such ids are quoted as RFC 4180 has it, and read back whole by our own reader and
    by Python's csv module (as pandas and Kaggle's reader are)."""
    ids = ["plain", "a,b", 'say "hi"', "two\nlines", "cr\r", ""]
    predictions = Predictions(ids, np.tile(np.array([[3, 1]]), (len(ids), 1)),
                              np.tile(np.array([[0.9, 0.25]], np.float32), (len(ids), 1)), [np.array([])] * len(ids))
    out = tmp_path / "out.csv"
    out.write_text(SUBMISSION_HEADER + "\n" + "".join(row + "\n" for row in submission_lines(predictions, 2)), newline="")
    with open(out, newline="") as handle:
        assert list(csv.reader(handle))[1:] == [[video, "3 0.9 1 0.25"] for video in ids]
    with pytest.raises(DataError, match="line 9 is not 'id,class score"):  # the empty id: refused, named by its line
        with open(out, newline="") as handle:
            read_submission(handle, str(out))
    ids.pop()
    out.write_text(SUBMISSION_HEADER + "\n" + "".join(row + "\n" for row in submission_lines(
        Predictions(ids, predictions.classes[:-1], predictions.scores[:-1], predictions.labels[:-1]), 2)), newline="")
    with open(out, newline="") as handle:
        assert read_submission(handle, str(out)) == {video: [(3, pytest.approx(0.9)), (1, 0.25)] for video in ids}


@pytest.mark.parametrize("lines, problem", [
    (["VideoId,Labels\n"], "line 1"),
    ([SUBMISSION_HEADER, "v1,1 0.5 2\n"], "line 2 is not"),
    ([SUBMISSION_HEADER, "v1,1 0.2 2 0.5\n"], "descending"),
    ([SUBMISSION_HEADER, "v1,1 0.5\n", "v1,2 0.5\n"], "appears twice"),
    ([SUBMISSION_HEADER, "v1,x 0.5\n"], "not an integer"),
    ([SUBMISSION_HEADER, '"v1,1 0.5\n'], "line 2: unexpected end of data"),
])
def test_a_malformed_submission_is_named_by_line(lines, problem):
    with pytest.raises(DataError, match=problem):
        read_submission(lines, "out.csv")
