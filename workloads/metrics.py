"""GAP@k and mAP with the YouTube-8M starter code's conventions (`eval_util.py`), vectorised.

Both metrics look only at each video's top-k (class, score, label) triplets, as the starter code's
`top_k_by_class` does (same `numpy.argpartition` call, so the same triplets on ties at the k-th place):

- GAP: all videos' triplets pooled and sorted by score; AP = sum over hits of (hits so far / rank),
  divided by the number of ALL positive labels in the data, not only those that made a top-k.
- mAP: per class, AP over that class's triplets divided by the class's positive count; the mean over the
  classes that have at least one positive label (`filter_empty_classes`, the starter code's default since
  2019; the option turns it off for the older convention).

Ties between equal scores are broken exactly as the starter code's `AveragePrecisionCalculator` breaks
them: the triplets go through a heap in the order the starter code pushes them, are shuffled by
`random.seed(0)`, then stably sorted. That path runs in Python and costs about a second per million
triplets, so it is taken only when some scores are tied; without ties every order gives the same result
and the sort is done in NumPy.

`TopKAccumulator` collects triplets batch by batch (what an evaluation loop wants); `gap` and
`mean_average_precision` are the one-shot forms for dense (videos x classes) arrays.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

import numpy as np

from workloads.errors import WorkloadError

TOP_K = 20


@dataclass(frozen=True)
class TopKPredictions:
    """Each video's top-k classes and scores (the submission format's content) with what scoring needs
    besides: whether each class is one of the video's labels, and how many labels the video has. Enough
    to score any resample of the videos (`workloads.bootstrap`) without the data set."""

    ids: tuple[str, ...]
    classes: np.ndarray  # (videos, k) int
    scores: np.ndarray  # (videos, k) float, each row in the order the model ranked them
    hits: np.ndarray  # (videos, k) bool
    label_counts: np.ndarray  # (videos,) int


class TopKAccumulator:
    """Keeps each video's top-k (class, score, label) triplets and every class's positive count."""

    def __init__(self, num_classes: int, top_k: int = TOP_K):
        if top_k <= 0:
            raise WorkloadError(f"top_k must be a positive integer, got {top_k}")
        self.num_classes = num_classes
        self.top_k = min(top_k, num_classes)
        self.positives = np.zeros(num_classes, dtype=np.int64)
        self.num_videos = 0
        self._batches: list[np.ndarray] = []
        self._videos: list[np.ndarray] = []
        self._classes: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._ids: list[str | None] = []  # each video's id, None where it was not given
        self._label_counts: list[np.ndarray] = []  # each video's number of labels, -1 where not given

    def add(self, predictions: np.ndarray, labels: np.ndarray, ids: list[str] | None = None) -> None:
        """predictions: (videos, classes) scores; labels: (videos, classes), > 0 marks a positive; `ids`
        name the videos, for `predictions()`."""
        predictions = np.asarray(predictions)
        labels = np.asarray(labels)
        if predictions.ndim != 2 or predictions.shape[1] != self.num_classes:
            raise WorkloadError(
                f"predictions must be (videos, {self.num_classes}), got shape {predictions.shape}"
            )
        if labels.shape != predictions.shape:
            raise WorkloadError(f"labels shape {labels.shape} differs from predictions {predictions.shape}")
        if predictions.shape[0] == 0:
            return
        # The starter code's exact call, so ties at the k-th place keep the same classes.
        top = np.argpartition(predictions, -self.top_k, axis=1)[:, -self.top_k :]
        rows = np.arange(predictions.shape[0])[:, None]
        positive = labels > 0
        self.add_top(top, predictions[rows, top], positive[rows, top], positive.sum(axis=0), ids=ids,
                     label_counts=positive.sum(axis=1))

    def add_top(self, classes: np.ndarray, scores: np.ndarray, hits: np.ndarray, positives: np.ndarray,
                ids: list[str] | None = None, label_counts: np.ndarray | None = None) -> None:
        """Videos given by their top-k triplets alone: (videos, k) classes, scores and whether each class
        is one of the video's labels, and the videos' positive count per class. What `add` keeps of
        dense scores, so the top-k of videos scored elsewhere (a batch prediction's workers) pool here."""
        classes, scores, hits = np.asarray(classes), np.asarray(scores), np.asarray(hits, dtype=bool)
        if classes.ndim != 2 or classes.shape[1] != self.top_k or scores.shape != classes.shape \
                or hits.shape != classes.shape:
            raise WorkloadError(f"top-{self.top_k} triplets must be three (videos, {self.top_k}) arrays, "
                                f"got {classes.shape}, {scores.shape}, {hits.shape}")
        n = classes.shape[0]
        if n == 0:
            return
        if ids is not None and len(ids) != n:
            raise WorkloadError(f"{len(ids)} video ids for {n} videos")
        self._ids.extend([None] * n if ids is None else ids)
        self._label_counts.append(np.full(n, -1, dtype=np.int64) if label_counts is None
                                  else np.asarray(label_counts, dtype=np.int64))
        self._batches.append(np.full(n * self.top_k, len(self._batches)))
        self._videos.append(np.repeat(np.arange(self.num_videos, self.num_videos + n), self.top_k))
        self._classes.append(classes.ravel())
        self._scores.append(scores.ravel())
        self._labels.append(hits.ravel())
        self.positives += np.asarray(positives, dtype=np.int64)
        self.num_videos += n

    @classmethod
    def merge(cls, parts: list[TopKAccumulator]) -> TopKAccumulator:
        """One accumulator holding the videos of `parts`, one part after another, as if they had been added
        to it in that order (how data-parallel replicas pool their shares of an evaluation)."""
        if not parts:
            raise WorkloadError("nothing to merge")
        merged = cls(parts[0].num_classes, parts[0].top_k)
        for part in parts:
            if (part.num_classes, part.top_k) != (merged.num_classes, merged.top_k):
                raise WorkloadError(f"cannot merge top-{part.top_k} of {part.num_classes} classes into "
                                    f"top-{merged.top_k} of {merged.num_classes}")
            batch_offset = len(merged._batches)
            merged._batches.extend(b + batch_offset for b in part._batches)
            merged._videos.extend(v + merged.num_videos for v in part._videos)
            merged._classes.extend(part._classes)
            merged._scores.extend(part._scores)
            merged._labels.extend(part._labels)
            merged._ids.extend(part._ids)
            merged._label_counts.extend(part._label_counts)
            merged.positives += part.positives
            merged.num_videos += part.num_videos
        return merged

    def predictions(self) -> TopKPredictions:
        """Every video's top-k as `TopKPredictions`, in the order added; each row ranked by score. Needs
        every video's id and label count (`add` with `ids`)."""
        if None in self._ids or any((counts < 0).any() for counts in self._label_counts):
            raise WorkloadError("predictions need every video's id and label count")
        _, _, classes, scores, hits = self._triplets()
        shape = (self.num_videos, self.top_k)
        classes, scores, hits = classes.reshape(shape), scores.reshape(shape), hits.reshape(shape)
        ranked = np.argsort(-scores, axis=1, kind="stable")
        counts = np.concatenate(self._label_counts) if self._label_counts else np.zeros(0, dtype=np.int64)
        return TopKPredictions(tuple(self._ids), np.take_along_axis(classes, ranked, 1),
                               np.take_along_axis(scores, ranked, 1), np.take_along_axis(hits, ranked, 1), counts)

    def _triplets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(batch, video, class, score, is_positive) of every kept triplet."""
        if not self._videos:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty, np.zeros(0), np.zeros(0, dtype=bool)
        return (
            np.concatenate(self._batches),
            np.concatenate(self._videos),
            np.concatenate(self._classes),
            np.concatenate(self._scores),
            np.concatenate(self._labels),
        )

    def gap(self) -> float:
        batches, videos, classes, scores, hits = self._triplets()
        total_positives = int(self.positives.sum())
        if scores.size == 0 or total_positives == 0:
            return 0.0
        # The starter code pushes each batch's per-class lists flattened: batch, then class, then video.
        order = np.lexsort((videos, classes, batches))
        return _average_precision(scores[order], hits[order], total_positives)

    def per_class_average_precision(self) -> np.ndarray:
        """AP of every class (0 for a class without positives), each over its own triplets."""
        _, videos, classes, scores, hits = self._triplets()
        aps = np.zeros(self.num_classes)
        if scores.size == 0:
            return aps
        # Each class's calculator sees its triplets in video order, across batches.
        order = np.lexsort((videos, classes))
        classes, scores, hits = classes[order], scores[order], hits[order]
        bounds = np.searchsorted(classes, np.arange(self.num_classes + 1))
        if _has_ties_within(classes, scores):
            for c in np.flatnonzero(self.positives):
                lo, hi = bounds[c], bounds[c + 1]
                aps[c] = _average_precision(scores[lo:hi], hits[lo:hi], int(self.positives[c]))
            return aps
        # No ties: one sort of all triplets by (class, -score) and per-class running hit counts.
        order = np.lexsort((-scores, classes))
        classes, hits = classes[order], hits[order]
        starts = bounds[classes]
        ranks = np.arange(classes.size) - starts + 1
        running = np.cumsum(hits)
        hits_in_class = running - np.concatenate([[0], running])[starts]
        precision_at_hits = np.where(hits, hits_in_class / ranks, 0.0)
        sums = np.bincount(classes, weights=precision_at_hits, minlength=self.num_classes)
        present = self.positives > 0
        aps[present] = sums[present] / self.positives[present]
        return aps

    def mean_average_precision(self, filter_empty_classes: bool = True) -> float:
        """Mean per-class AP; over classes with a positive label unless `filter_empty_classes` is off.

        Off reproduces the 2017-2018 starter code, whose mean counted every class (empty ones as AP 0).
        """
        aps = self.per_class_average_precision()
        if filter_empty_classes:
            aps = aps[self.positives > 0]
        return float(aps.mean()) if aps.size else 0.0


def gap(predictions: np.ndarray, labels: np.ndarray, top_k: int = TOP_K) -> float:
    """Global average precision over each video's top_k predictions: (videos, classes) arrays."""
    acc = TopKAccumulator(np.asarray(predictions).shape[-1], top_k)
    acc.add(predictions, labels)
    return acc.gap()


def mean_average_precision(
    predictions: np.ndarray, labels: np.ndarray, top_k: int = TOP_K, filter_empty_classes: bool = True
) -> float:
    """Mean over classes with positives of per-class AP over each video's top_k predictions."""
    acc = TopKAccumulator(np.asarray(predictions).shape[-1], top_k)
    acc.add(predictions, labels)
    return acc.mean_average_precision(filter_empty_classes)


def _has_ties(sorted_scores: np.ndarray) -> bool:
    return bool(np.any(sorted_scores[1:] == sorted_scores[:-1]))


def _has_ties_within(classes: np.ndarray, scores: np.ndarray) -> bool:
    order = np.lexsort((scores, classes))
    same_class = classes[order][1:] == classes[order][:-1]
    return bool(np.any(same_class & (scores[order][1:] == scores[order][:-1])))


def _average_precision(scores: np.ndarray, hits: np.ndarray, total_positives: int) -> float:
    """AP of triplets given in the starter code's push order, over `total_positives` positives."""
    if scores.size == 0 or total_positives == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    if _has_ties(scores[order]):
        order = _starter_code_order(scores, hits)
    ranked_hits = hits[order]
    cumulative = np.cumsum(ranked_hits)
    ranks = np.arange(1, ranked_hits.size + 1)
    return float(np.sum(np.where(ranked_hits, cumulative / ranks, 0.0)) / total_positives)


def _starter_code_order(scores: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """The order in which `AveragePrecisionCalculator.peek_ap_at_n` ranks triplets, ties included.

    It pushes (score, label) pairs onto a heap, reads the heap's array back, shuffles it with
    `random.seed(0); random.sample(...)` and sorts by score with Python's stable sort.
    """
    heap: list[tuple[float, float, int]] = []
    for i, (score, hit) in enumerate(zip(scores.tolist(), hits.astype(float).tolist())):
        # The index rides along but never decides: equal (score, label) pairs are interchangeable.
        heapq.heappush(heap, (score, hit, i))
    heap_order = np.fromiter((entry[2] for entry in heap), dtype=np.int64, count=len(heap))
    shuffle = np.array(random.Random(0).sample(range(len(heap)), len(heap)), dtype=np.int64)
    shuffled = heap_order[shuffle]
    return shuffled[np.argsort(-scores[shuffled], kind="stable")]
