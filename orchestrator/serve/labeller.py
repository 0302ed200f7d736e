"""The labeller a registered model runs: shard columns in, each video's top classes and scores out.

Its input is a video shard's columns, `id`, `num_frames`, `rgb` and `audio` (the quantised bytes; a server
takes them base64-encoded, which MLflow's scoring server decodes for `binary` columns); its output, each
video's best classes and scores, best first (`top_k`, a parameter, 20 by default), and how many frames the
model read of it (`frames`: an adaptive student's own count). Dequantisation is the
data format's own (`workloads.data.format`), done as the model's reader does it.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

from workloads.data.format import AUDIO_DIM, RGB_DIM
from workloads.errors import WorkloadError
from workloads.inference import Classifier, ModelCard, Predictions, load_weights

TOP_K_DEFAULT = 20
INPUT = Schema([ColSpec("string", "id"), ColSpec("long", "num_frames"), ColSpec("binary", "rgb"),
                ColSpec("binary", "audio")])
# `frames`: how many frames the model read of each video (an adaptive student stops when it is sure)
OUTPUT = Schema([ColSpec("string", "id"), ColSpec(Array("long"), "labels"), ColSpec(Array("double"), "scores"),
                 ColSpec("long", "frames")])
SIGNATURE = ModelSignature(INPUT, OUTPUT, ParamSchema([ParamSpec("top_k", "long", TOP_K_DEFAULT)]))
WEIGHTS, CARD = "weights", "card"  # the model's artifacts


class VideoLabeller(mlflow.pyfunc.PythonModel):
    """Shard columns in, each video's top-k classes and scores out."""

    def load_context(self, context) -> None:
        with open(context.artifacts[WEIGHTS], "rb") as handle:
            card, model = load_weights(handle.read(), "the model's weights")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.classifier = Classifier(card, model.to(device), device)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        top_k = int((params or {}).get("top_k", TOP_K_DEFAULT))
        if top_k < 1:
            raise BadRequest(f"params: top_k must be >= 1, got {top_k}")
        missing = [name for name in INPUT.input_names() if name not in model_input.columns]
        if missing:
            raise BadRequest(f"request: missing column(s) {', '.join(missing)}; send id, num_frames, rgb, audio")
        try:
            batches = list(self.classifier.predict_columns(
                [None if pd.isna(video) else video for video in model_input["id"]],
                [None if pd.isna(frames) else int(frames) for frames in model_input["num_frames"]],
                list(model_input["rgb"]), list(model_input["audio"]), top_k))
        except WorkloadError as error:  # names the video and the field
            raise BadRequest(str(error)) from None
        return frame_of(batches, top_k)


class BadRequest(MlflowException):
    """A request the model cannot label: answered 400 with this message alone. MLflow's scoring server
    answers any other error with a generic message and the stack trace (absolute paths in it), and puts
    the request's whole DataFrame before an MlflowException's message, by assigning `message`: that
    assignment is ignored here."""

    def __init__(self, text: str):
        self._text = text
        super().__init__(text, error_code=INVALID_PARAMETER_VALUE)

    message = property(lambda self: self._text, lambda self, value: None)


def frame_of(batches: list[Predictions], top_k: int) -> pd.DataFrame:
    ids = [video for batch in batches for video in batch.ids]
    labels = [row[:top_k].tolist() for batch in batches for row in batch.classes]
    scores = [row[:top_k].astype(float).tolist() for batch in batches for row in batch.scores]
    frames = [int(n) for batch in batches for n in batch.frames]
    return pd.DataFrame({"id": ids, "labels": labels, "scores": scores, "frames": frames})


def example(card: ModelCard) -> pd.DataFrame:
    """Two short videos of random bytes: a request's shape."""
    rng = np.random.default_rng(0)
    frames = [min(card.max_frames, 6), min(card.max_frames, 4)]
    return pd.DataFrame({"id": ["video-a", "video-b"], "num_frames": frames,
                         "rgb": [rng.integers(0, 256, n * RGB_DIM, dtype=np.uint8).tobytes() for n in frames],
                         "audio": [rng.integers(0, 256, n * AUDIO_DIM, dtype=np.uint8).tobytes() for n in frames]})
