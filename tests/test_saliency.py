"""Frames chosen by content (`workloads.saliency`): the rules, a scorer trained from teacher outputs alone
finding the frames that show a video's class, and the batches a content-selecting student reads."""

import numpy as np
import pytest
import torch

from workloads.data.batch import VideoBatch
from workloads.errors import WorkloadError
from workloads.inference import Classifier, ModelCard, load_weights, weights_bytes
from workloads.saliency import (RULES, ContentSelected, ContentSelector, ContentStudent, FrameScorer, ScorerSettings,
                                best_of_segments, top_k, train_scorer)
from workloads.teacher_outputs import InMemoryTeacherCache, TeacherRecord

CLASSES = 6


def test_the_rules_pick_sorted_distinct_frames():
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.0, 0.7, 0.3, 0.6])
    assert top_k(scores, 3).tolist() == [1, 3, 5]
    assert best_of_segments(scores, 2).tolist() == [1, 5]  # the best of frames 0-3, the best of 4-7
    assert best_of_segments(scores, 4).tolist() == [1, 3, 5, 7]
    assert best_of_segments(scores[:3], 5).tolist() == [0, 1, 2]  # shorter than k: every frame
    assert top_k(np.zeros(4), 2).tolist() == [0, 1]  # a tie: the earlier
    assert set(RULES) == {"salient", "salient_segments"}


def _videos(count: int, seed: int) -> tuple[VideoBatch, np.ndarray]:
    """Videos of 40 frames of noise in which 8 frames (a shot) show the video's class pattern; and which."""
    rng = np.random.default_rng(seed)
    patterns = np.random.default_rng(99).standard_normal((CLASSES, 1152)).astype(np.float32) * 0.15
    frames = rng.standard_normal((count, 40, 1152)).astype(np.float32) * 0.15
    shows = np.zeros((count, 40), bool)
    labels = np.zeros((count, CLASSES), np.float32)
    for v in range(count):
        label, start = v % CLASSES, int(rng.integers(0, 32))
        frames[v, start:start + 8] += patterns[label]
        shows[v, start:start + 8] = True
        labels[v, label] = 1
    positions = torch.arange(40).expand(count, 40).clone()
    batch = VideoBatch([f"v{seed}-{v}" for v in range(count)], torch.from_numpy(frames), torch.ones(count, 40, dtype=torch.bool),
                       positions, torch.from_numpy(labels), torch.full((count,), 40))
    return batch, shows


def _teacher(batch: VideoBatch) -> InMemoryTeacherCache:
    """A teacher that knows each video's class (its P_T: 0.9 on it, 0.05 elsewhere)."""
    records = [TeacherRecord(i, np.zeros(4, np.float32), (0.05 + 0.85 * batch.labels[row]).numpy())
               for row, i in enumerate(batch.ids)]
    return InMemoryTeacherCache(records, {})


def test_a_scorer_trained_on_teacher_outputs_finds_the_frames_that_show_the_class():
    torch.manual_seed(0)
    train, _ = _videos(96, seed=1)
    scorer = FrameScorer(CLASSES)
    losses = train_scorer(scorer, _teacher(train), [train], ScorerSettings(epochs=40, learning_rate=0.01),
                          torch.device("cpu"))
    assert losses[-1] < losses[0]
    assert torch.all(scorer.prior > 0)  # the mean prediction over the training frames
    test, shows = _videos(24, seed=2)
    picked = ContentSelector(scorer, "salient", k=4).picks(test)
    hits = np.mean([shows[v, p].mean() for v, p in enumerate(picked)])
    assert hits > 0.75  # 8 of 40 frames show the class: frames taken blindly would hit 20%


def test_a_content_selected_batch_holds_the_picked_frames_in_time_order():
    batch, _ = _videos(3, seed=4)
    batch = batch._replace(mask=batch.mask.clone(), num_frames=torch.tensor([40, 40, 5]))
    batch.mask[2, 5:] = False
    selector = ContentSelector(FrameScorer(CLASSES), "salient_segments", k=4)
    picked = selector.pick(batch)
    assert picked.frames.shape == (3, 4, 1152)
    for row, picks in enumerate(selector.picks(batch)):
        assert picked.positions[row, : picks.size].tolist() == picks.tolist() == sorted(picks.tolist())
        assert torch.equal(picked.frames[row, : picks.size], batch.frames[row, picks])
    assert picked.mask[2].tolist() == [True, True, True, True]  # 5 frames, 4 segments: one each
    assert selector.macs(200) == 200 * (1152 * 32 + 32 * CLASSES)


def test_content_selected_data_passes_epochs_through():
    class Shards(list):
        epoch = None

        def set_epoch(self, epoch):
            self.epoch = epoch

    batch, _ = _videos(2, seed=5)
    shards = Shards([batch])
    data = ContentSelected(shards, ContentSelector(FrameScorer(CLASSES), "salient", k=3))
    data.set_epoch(4)
    assert shards.epoch == 4
    assert [b.frames.shape[1] for b in data] == [3]


def test_unknown_rules_and_bad_k_are_refused():
    with pytest.raises(WorkloadError, match="unknown content selection 'best'.*salient"):
        ContentSelector(FrameScorer(CLASSES), "best", k=3)
    with pytest.raises(WorkloadError, match="k >= 1"):
        ContentSelector(FrameScorer(CLASSES), "salient", k=0)


def test_a_content_student_leaves_with_its_scorer_and_predicts_from_every_frame():
    card = ModelCard("hrnn", "small", CLASSES, "salient", 4, 40)
    assert card.frame_selection is None and card.chooses_by_content  # the reader hands it every frame
    assert card.reads == "k=4 frames chosen by content (salient: a frame scorer reads every frame)"
    torch.manual_seed(0)
    model = card.build()
    torch.nn.init.normal_(model.scorer.net[1].weight)
    loaded_card, loaded = load_weights(weights_bytes(card, model), "m.pt")
    assert loaded_card == card and isinstance(loaded, ContentStudent)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    batch, _ = _videos(5, seed=6)
    picked = loaded.selector.pick(batch)
    with torch.no_grad():
        expected = loaded.student.predict_logits(picked.frames, picked.mask, picked.positions)
        assert torch.allclose(loaded.predict_logits(batch.frames, batch.mask, batch.positions), expected)
    predictions = Classifier(loaded_card, loaded).predict(batch, top_k=3)
    assert predictions.classes.shape == (5, CLASSES)  # top 20 at most: every class of 6
    with pytest.raises(WorkloadError, match=r"frames chosen by content \(salient\) need k"):
        ModelCard("hrnn", "small", CLASSES, "salient", None, 40)
