"""A trained model as a product: what it needs to label new videos (its `ModelCard`: family, size, the
frames it reads, its classes), its top-k labels per video from shards or from shard columns sent to a
server, YouTube-8M's submission format (`VideoId,LabelConfidencePairs`), and GAP/mAP of predictions
pooled from anywhere.

Weights travel as one file: the card (JSON) and the state dict, read back with torch's weights-only
unpickler, so a model file in a shared store cannot run code in whoever loads it.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa
import torch

from workloads.data.batch import FrameSelection, VideoBatch
from workloads.data.format import SCHEMA
from workloads.data.reader import VideoShards, check_table, decode_rows
from workloads.errors import DataError, WorkloadError
from workloads.metrics import TOP_K, TopKAccumulator
from workloads.models import ModelSpec, VideoModel
from workloads.adaptive import AdaptiveStudent, check_steps
from workloads.saliency import RULES, WIDTH, ContentStudent, FrameScorer

SUBMISSION_HEADER = "VideoId,LabelConfidencePairs"
MAX_FRAMES_FIELD = 2**31 - 1  # a shard's num_frames is an int32
CARD_VERSION = 1


@dataclass(frozen=True)
class ModelCard:
    """Everything besides the weights that labelling a video with the model needs."""

    family: str
    size: str
    num_classes: int
    selection: str  # a frame selector, a content selection rule (`workloads.saliency`), or "all" (a teacher)
    k: int | None  # frames the model reads; None for "all"
    max_frames: int  # the longest videos of its data (the nominal stride j = max_frames // k)
    overrides: dict[str, Any] = field(default_factory=dict)  # the family's settings that differ from the size's
    source: dict[str, str] = field(default_factory=dict)  # where it was trained (cell name and id)
    # A k-frame student's stopping rule, calibrated on validation (`workloads.adaptive`): {"threshold": t,
    # "steps": [frames read after each step]}; empty when it was not read adaptively. With `adaptive` the
    # model reads by it (a registered "-adaptive" model); without, it reads all k.
    stopping: dict[str, Any] = field(default_factory=dict)
    adaptive: bool = False
    scorer_width: int = WIDTH  # a content student's frame scorer's (`ScorerSettings.width`)

    def __post_init__(self) -> None:
        self.model_spec.config()  # names an unknown family, size or setting
        self.frame_selection  # names an unknown selector
        if self.chooses_by_content and self.k is None:
            raise WorkloadError(f"model card: frames chosen by content ({self.selection}) need k")
        if self.adaptive and (not self.stopping or self.selection != "uniform"):
            raise WorkloadError("model card: an adaptive reading needs a stopping rule and uniform frames")
        if self.stopping:
            check_steps(tuple(self.stopping.get("steps", ())), self.k or 0)
            if not self.stopping.get("threshold", -1) >= 0:
                raise WorkloadError(f"model card: a stopping threshold is >= 0, got {self.stopping.get('threshold')}")
        if self.num_classes < 1:
            raise WorkloadError(f"model card: num_classes must be >= 1, got {self.num_classes}")
        if not isinstance(self.scorer_width, int) or self.scorer_width < 1:
            raise WorkloadError(f"model card: scorer_width must be an integer >= 1, got {self.scorer_width!r}")

    @property
    def model_spec(self) -> ModelSpec:
        return ModelSpec(self.family, self.size, tuple(sorted(self.overrides.items())))

    @property
    def chooses_by_content(self) -> bool:
        return self.selection in RULES

    @property
    def frame_selection(self) -> FrameSelection | None:
        """The frames the reader keeps: None (every frame) for a teacher and for a model choosing by content."""
        return None if self.selection == "all" or self.chooses_by_content else FrameSelection(self.selection, k=self.k)

    @property
    def reads(self) -> str:
        """What the model reads of a video, in words."""
        if self.k is None:
            return "every frame"
        if self.chooses_by_content:
            return f"k={self.k} frames chosen by content ({self.selection}: a frame scorer reads every frame)"
        if self.adaptive:
            return (f"up to k={self.k} frames (every {self.stride}th, uniform), coarse to fine, each video stopping "
                    f"once its prediction settles (threshold {self.stopping['threshold']:g})")
        return f"k={self.k} frames (every {self.stride}th, {self.selection})"

    @property
    def stride(self) -> int:
        return 1 if self.k is None else max(1, self.max_frames // self.k)

    def build(self) -> VideoModel | ContentStudent | AdaptiveStudent:
        model = self.model_spec.build(self.num_classes, k=self.k)
        if self.chooses_by_content:
            return ContentStudent(model, FrameScorer(self.num_classes, self.scorer_width), self.selection, self.k)
        if self.adaptive:
            return AdaptiveStudent(model, self.k, tuple(self.stopping["steps"]), self.stopping["threshold"])
        return model

    def to_json(self) -> dict[str, Any]:
        return {"version": CARD_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, value: dict[str, Any], where: str) -> ModelCard:
        value = dict(value)
        if value.pop("version", None) != CARD_VERSION:
            raise WorkloadError(f"{where}: not a model card of version {CARD_VERSION}")
        try:
            return cls(**value)
        except (TypeError, KeyError, ValueError) as error:
            raise WorkloadError(f"{where}: malformed model card: {error}") from None


def weights_bytes(card: ModelCard, model: VideoModel | ContentStudent | AdaptiveStudent) -> bytes:
    """One file holding the card and the model's weights (what a trained cell keeps)."""
    buffer = io.BytesIO()
    torch.save({"card": json.dumps(card.to_json()), "state": model.state_dict()}, buffer)
    return buffer.getvalue()


def load_weights(data: bytes, where: str, device: torch.device | str = "cpu") -> tuple[ModelCard, VideoModel]:
    """The card and the model (in eval mode, on `device`) of a file `weights_bytes` wrote."""
    try:
        saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        card = ModelCard.from_json(json.loads(saved["card"]), where)
        model = card.build()
        model.load_state_dict(saved["state"])
    except (KeyError, TypeError, ValueError, RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise WorkloadError(f"{where}: not a model's weights ({type(error).__name__}: {first})") from None
    return card, model.eval().to(device)


@dataclass(frozen=True)
class Predictions:
    """A batch of videos' best classes, best first, and the videos' labels when the data had any."""

    ids: list[str]
    classes: np.ndarray  # (videos, top) int64
    scores: np.ndarray  # (videos, top) float32, descending
    labels: list[np.ndarray]  # each video's label classes (empty for unlabelled videos)
    frames: np.ndarray | None = None  # (videos,) frames the model read of each (None: not said)


def logits_and_frames(model, batch: VideoBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(the model's logits, the frames it read of each video): a model that chooses how many (`read`: an
    adaptive or content student) says so; any other reads every frame it is handed."""
    if hasattr(model, "read"):
        return model.read(batch.frames, batch.mask, batch.positions)
    return model.predict_logits(batch.frames, batch.mask, batch.positions), batch.mask.sum(1)


class Classifier:
    """A loaded model with its card: top-k labels of batches, of shards and of shard columns."""

    def __init__(self, card: ModelCard, model: VideoModel, device: torch.device | str = "cpu"):
        self.card, self.model, self.device = card, model.eval(), torch.device(device)

    @torch.no_grad()
    def predict(self, batch: VideoBatch, top_k: int) -> Predictions:
        batch = batch.to(self.device)
        logits, read = logits_and_frames(self.model, batch)
        scores = torch.sigmoid(logits.float()).cpu().numpy()  # as `workloads.evaluation` scores
        top = min(max(top_k, TOP_K), self.card.num_classes)  # what the CSV shows and what GAP needs
        # The starter code's call (`argpartition`), so ties at the last place keep the same classes.
        classes = np.argpartition(scores, -top, axis=1)[:, -top:]
        picked = np.take_along_axis(scores, classes, axis=1)
        order = np.argsort(-picked, axis=1, kind="stable")
        labels = batch.labels.cpu().numpy()
        return Predictions(list(batch.ids), np.take_along_axis(classes, order, axis=1).astype(np.int64),
                           np.take_along_axis(picked, order, axis=1), [np.flatnonzero(row) for row in labels],
                           read.cpu().numpy())

    def shard(self, location: str, batch_size: int) -> VideoShards:
        """A shard read with the model's frame selection, after checking it is for the model's classes."""
        reader = VideoShards(location, batch_size, self.card.frame_selection)  # its class count from the footer
        if reader.num_classes != self.card.num_classes:
            raise DataError(f"{location}: a shard of {reader.num_classes} classes; the model predicts "
                            f"{self.card.num_classes}")
        return reader

    def predict_shard(self, location: str, batch_size: int, top_k: int) -> Iterator[Predictions]:
        for batch in self.shard(location, batch_size):
            yield self.predict(batch, top_k)

    def predict_columns(self, ids: list[str], num_frames: list[int], rgb: list[bytes], audio: list[bytes],
                        top_k: int, batch_size: int = 64) -> Iterator[Predictions]:
        """Videos sent as shard columns (a server's request): checked as a shard's rows would be, each id a
        non-empty string and each frame count one a shard can hold."""
        for row, (video, frames) in enumerate(zip(ids, num_frames)):
            if not isinstance(video, str) or not video:
                raise DataError(f"request, row {row}: field 'id' must be a non-empty string, got {video!r}")
            if not isinstance(frames, int) or not 1 <= frames <= MAX_FRAMES_FIELD:
                raise DataError(f"request, video {video!r}: field 'num_frames' must be a whole number in "
                                f"[1, {MAX_FRAMES_FIELD}], got {frames!r}")
        try:
            table = pa.table({"id": pa.array(ids, pa.string()),
                              "labels": pa.array([[] for _ in ids], SCHEMA.field("labels").type),
                              "num_frames": pa.array(num_frames, pa.int32()),
                              "rgb": pa.array(rgb, pa.binary()), "audio": pa.array(audio, pa.binary())})
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as error:
            raise DataError(f"request: the columns are not a video shard's (id, num_frames, rgb, audio): {error}") from None
        check_table(table, self.card.num_classes, "request")
        for start in range(0, len(ids), batch_size):
            rows = np.arange(start, min(start + batch_size, len(ids)))
            yield self.predict(decode_rows(table, rows, self.card.frame_selection, self.card.num_classes), top_k)


def submission_lines(predictions: Predictions, top_k: int) -> list[str]:
    """YouTube-8M's submission rows (the starter code's `format_lines`): id, then class and score pairs,
    best first, separated by spaces. An id holding a comma, a quote or a line break is quoted as RFC 4180
    (and Python's `csv`, pandas and Kaggle's reader) has it."""
    return [_quoted(video) + "," + " ".join(f"{c} {s:g}" for c, s in zip(classes[:top_k].tolist(),
                                                                          scores[:top_k].tolist()))
            for video, classes, scores in zip(predictions.ids, predictions.classes, predictions.scores)]


def _quoted(field: str) -> str:
    return '"' + field.replace('"', '""') + '"' if any(c in field for c in ',"\r\n') else field


def read_submission(lines: Iterable[str], where: str) -> dict[str, list[tuple[int, float]]]:
    """A submission file's rows as {video id: [(class, score), ...]}, strictly: the header, one row per
    video (its id quoted when it holds a comma, quote or line break), pairs of an integer class and a float
    score in descending order."""
    rows = csv.reader(lines, strict=True)
    try:
        header = next(rows, [])
        if header != SUBMISSION_HEADER.split(","):
            raise DataError(f"{where}: line 1 is {','.join(header)!r}, expected {SUBMISSION_HEADER!r}")
        found: dict[str, list[tuple[int, float]]] = {}
        for row in rows:
            found.update([_ranked(row, found, f"{where}: line {rows.line_num}")])
    except csv.Error as error:
        raise DataError(f"{where}: line {rows.line_num}: {error}") from None
    return found


def _ranked(row: list[str], found: dict, where: str) -> tuple[str, list[tuple[int, float]]]:
    fields = row[1].split() if len(row) == 2 else []
    if len(row) != 2 or not row[0] or len(fields) % 2:
        raise DataError(f"{where} is not 'id,class score class score ...'")
    if row[0] in found:
        raise DataError(f"{where}: video {row[0]!r} appears twice")
    try:
        ranked = [(int(fields[i]), float(fields[i + 1])) for i in range(0, len(fields), 2)]
    except ValueError:
        raise DataError(f"{where}: a class that is not an integer or a score that is not a number") from None
    if any(a[1] < b[1] for a, b in zip(ranked, ranked[1:])):
        raise DataError(f"{where}: scores are not in descending order")
    return row[0], ranked


class Scores:
    """GAP@20 and mAP of predictions pooled batch by batch (from any number of workers)."""

    def __init__(self, num_classes: int):
        self.accumulator = TopKAccumulator(num_classes)
        self.labelled = 0

    def add(self, predictions: Predictions) -> None:
        top = self.accumulator.top_k
        classes = predictions.classes[:, :top]
        hits = np.array([np.isin(row, labels) for row, labels in zip(classes, predictions.labels)], dtype=bool)
        hits = hits.reshape(classes.shape)
        every = np.concatenate(predictions.labels) if predictions.labels else np.zeros(0, np.int64)
        positives = np.bincount(every.astype(np.int64), minlength=self.accumulator.num_classes)
        self.accumulator.add_top(classes, predictions.scores[:, :top], hits, positives)
        self.labelled += sum(1 for labels in predictions.labels if labels.size)

    def gap(self) -> float:
        return self.accumulator.gap()

    def map(self) -> float:
        return self.accumulator.mean_average_precision()
