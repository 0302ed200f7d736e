"""GAP and mAP against hand-computed cases and against the starter code's algorithm run step by step."""

import heapq
import random

import numpy as np
import pytest

from workloads.metrics import TopKAccumulator, gap, mean_average_precision


def starter_code_ap(scores, labels, total_positives):
    """The YouTube-8M AveragePrecisionCalculator path, literally: heap, seeded shuffle, stable sort."""
    heap = []
    for s, a in zip(scores, labels):
        heapq.heappush(heap, (s, a))
    if not heap or total_positives == 0:
        return 0.0
    predictions = np.array([h[0] for h in heap])
    actuals = np.array([h[1] for h in heap])
    random.seed(0)
    shuffled = random.sample(range(len(predictions)), len(predictions))
    predictions, actuals = predictions[shuffled], actuals[shuffled]
    order = sorted(range(len(predictions)), key=lambda k: predictions[k], reverse=True)
    ap, hits = 0.0, 0.0
    for i, k in enumerate(order):
        if actuals[k] > 0:
            hits += 1
            ap += hits / (i + 1) / total_positives
    return ap


def starter_code_metrics(predictions, labels, top_k=20, batch_size=None):
    """GAP accumulated per batch as eval.py does, and per-class APs over the top-k triplets."""
    num_classes = predictions.shape[1]
    k = min(top_k, num_classes)
    batch_size = batch_size or predictions.shape[0]
    gap_scores, gap_labels, gap_positives = [], [], 0
    class_scores = [[] for _ in range(num_classes)]
    class_labels = [[] for _ in range(num_classes)]
    for start in range(0, predictions.shape[0], batch_size):
        p, l = predictions[start : start + batch_size], labels[start : start + batch_size]
        per_class_s = [[] for _ in range(num_classes)]
        per_class_l = [[] for _ in range(num_classes)]
        for row in range(p.shape[0]):
            for c in np.argpartition(p[row], -k)[-k:]:
                per_class_s[c].append(p[row, c])
                per_class_l[c].append(l[row, c])
        for c in range(num_classes):
            gap_scores += per_class_s[c]
            gap_labels += per_class_l[c]
            class_scores[c] += per_class_s[c]
            class_labels[c] += per_class_l[c]
        gap_positives += int(l.sum())
    positives = labels.sum(axis=0)
    gap_value = starter_code_ap(gap_scores, gap_labels, gap_positives)
    aps = np.array([starter_code_ap(class_scores[c], class_labels[c], positives[c]) for c in range(num_classes)])
    return gap_value, aps, positives


def test_hand_computed_gap_and_map():
    p = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3]])
    l = np.array([[1, 0, 0], [0, 0, 1]])
    # top-2 triplets pooled: 0.9 hit, 0.8 miss, 0.5 miss, 0.3 hit over 2 positives: (1/1 + 2/4) / 2
    assert gap(p, l, top_k=2) == pytest.approx(0.75)
    # class 0: [0.9 hit] -> 1; class 1 has no positive (left out); class 2: 0.5 miss, 0.3 hit -> 1/2
    assert mean_average_precision(p, l, top_k=2) == pytest.approx(0.75)
    # the older convention averages over every class, an empty class counting 0
    assert mean_average_precision(p, l, top_k=2, filter_empty_classes=False) == pytest.approx(0.5)


def test_positives_outside_the_top_k_still_count():
    p = np.array([[0.9, 0.8, 0.1]])
    l = np.array([[1, 0, 1]])
    # top-1 keeps only the 0.9 hit, yet both positives are in the denominator
    assert gap(p, l, top_k=1) == pytest.approx(0.5)
    assert mean_average_precision(p, l, top_k=1) == pytest.approx((1.0 + 0.0) / 2)


def test_videos_without_labels_and_no_positives_at_all():
    p = np.array([[0.9, 0.1], [0.8, 0.7]])
    l = np.array([[1, 0], [0, 0]])  # the second video has no label
    # pooled: 0.9 hit, 0.8 miss, 0.7 miss, 0.1 miss; one positive
    assert gap(p, l) == pytest.approx(1.0)
    assert gap(p, np.zeros_like(l)) == 0.0
    assert mean_average_precision(p, np.zeros_like(l)) == 0.0


def test_ties_are_broken_as_the_starter_code_breaks_them():
    # Every score tied: the rank of the hits depends only on the heap and the seeded shuffle.
    p = np.full((6, 4), 0.5)
    l = np.zeros((6, 4))
    l[[0, 2, 5], [1, 3, 0]] = 1
    expected_gap, expected_aps, positives = starter_code_metrics(p, l, top_k=2)
    assert gap(p, l, top_k=2) == pytest.approx(expected_gap, abs=1e-12)
    acc = TopKAccumulator(4, top_k=2)
    acc.add(p, l)
    assert np.allclose(acc.per_class_average_precision(), expected_aps, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("quantum", [None, 0.25, 0.05])
def test_matches_the_starter_code_on_random_data(seed, quantum):
    rng = np.random.default_rng(seed)
    videos, classes = int(rng.integers(1, 60)), int(rng.integers(2, 40))
    p = rng.random((videos, classes))
    if quantum:  # coarse scores make many ties, as saturated sigmoids do
        p = np.round(p / quantum) * quantum
    l = (rng.random((videos, classes)) < 0.1).astype(float)
    batch = int(rng.integers(1, videos + 1))
    expected_gap, expected_aps, positives = starter_code_metrics(p, l, top_k=5, batch_size=batch)
    acc = TopKAccumulator(classes, top_k=5)
    for start in range(0, videos, batch):
        acc.add(p[start : start + batch], l[start : start + batch])
    assert acc.gap() == pytest.approx(expected_gap, abs=1e-12)
    assert np.allclose(acc.per_class_average_precision(), expected_aps, atol=1e-12)
    present = positives > 0
    expected_map = expected_aps[present].mean() if present.any() else 0.0
    assert acc.mean_average_precision() == pytest.approx(expected_map, abs=1e-12)


def test_top_k_larger_than_classes_and_bad_shapes():
    p = np.array([[0.2, 0.9]])
    l = np.array([[1, 1]])
    assert gap(p, l, top_k=20) == pytest.approx(1.0)
    with pytest.raises(Exception, match="positive integer"):
        gap(p, l, top_k=0)
    with pytest.raises(Exception, match="labels shape"):
        gap(p, l[:, :1])


def test_perfect_and_worst_rankings():
    rng = np.random.default_rng(3)
    l = (rng.random((200, 50)) < 0.05).astype(float)
    l[l.sum(1) == 0, 0] = 1
    assert gap(l + rng.random(l.shape) * 0.1, l) == pytest.approx(1.0)
    assert mean_average_precision(l + rng.random(l.shape) * 0.1, l) == pytest.approx(1.0)
    assert gap(-l + rng.random(l.shape) * 0.1, l) < 0.1
