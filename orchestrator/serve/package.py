"""A kept model (`orchestrator.store.weights`) as an MLflow Model: complete for inference anywhere.

The package holds the card and weights file (family, size and settings, frame selection k and stride,
class count), the code that reads it (`workloads` and `orchestrator` as MLflow code paths, entered through
`labeller_model.py`, so it loads in any environment with the pinned requirements), an input/output signature and an example. Its input is a
video shard's columns, `id`, `num_frames`, `rgb` and `audio` (the quantised bytes; a server takes them
base64-encoded, which MLflow's scoring server decodes for `binary` columns); its output, each video's
best classes and scores, best first (`top_k`, a parameter, 20 by default). Dequantisation is the data
format's own (`workloads.data.format`), done as the model's reader does it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

import orchestrator
import workloads
from workloads.data.format import AUDIO_DIM, RGB_DIM
from workloads.inference import Classifier, ModelCard, Predictions, load_weights

TOP_K_DEFAULT = 20
INPUT = Schema([ColSpec("string", "id"), ColSpec("long", "num_frames"), ColSpec("binary", "rgb"),
                ColSpec("binary", "audio")])
OUTPUT = Schema([ColSpec("string", "id"), ColSpec(Array("long"), "labels"), ColSpec(Array("double"), "scores")])
SIGNATURE = ModelSignature(INPUT, OUTPUT, ParamSchema([ParamSpec("top_k", "long", TOP_K_DEFAULT)]))
# What the model needs at inference, pinned to what it was made with.
REQUIREMENTS = ("torch", "numpy", "pyarrow", "pandas", "mlflow")


class VideoLabeller(mlflow.pyfunc.PythonModel):
    """Shard columns in, each video's top-k classes and scores out."""

    def load_context(self, context) -> None:
        with open(context.artifacts["weights"], "rb") as handle:
            card, model = load_weights(handle.read(), "the model's weights")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.classifier = Classifier(card, model.to(device), device)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        top_k = int((params or {}).get("top_k", TOP_K_DEFAULT))
        missing = [name for name in INPUT.input_names() if name not in model_input.columns]
        if missing:
            raise ValueError(f"request: missing column(s) {', '.join(missing)}; send id, num_frames, rgb, audio")
        batches = self.classifier.predict_columns(
            model_input["id"].astype(str).tolist(), model_input["num_frames"].astype(int).tolist(),
            list(model_input["rgb"]), list(model_input["audio"]), top_k)
        return frame_of(list(batches), top_k)


def frame_of(batches: list[Predictions], top_k: int) -> pd.DataFrame:
    ids = [video for batch in batches for video in batch.ids]
    labels = [row[:top_k].tolist() for batch in batches for row in batch.classes]
    scores = [row[:top_k].astype(float).tolist() for batch in batches for row in batch.scores]
    return pd.DataFrame({"id": ids, "labels": labels, "scores": scores})


def example(card: ModelCard) -> pd.DataFrame:
    """Two short videos of random bytes: a request's shape."""
    rng = np.random.default_rng(0)
    frames = [min(card.max_frames, 6), min(card.max_frames, 4)]
    return pd.DataFrame({"id": ["video-a", "video-b"], "num_frames": frames,
                         "rgb": [rng.integers(0, 256, n * RGB_DIM, dtype=np.uint8).tobytes() for n in frames],
                         "audio": [rng.integers(0, 256, n * AUDIO_DIM, dtype=np.uint8).tobytes() for n in frames]})


def requirements() -> list[str]:
    """Pinned to the versions here; torch's local label (`+cpu`) dropped, as no index serves it by that name."""
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in REQUIREMENTS]


def log_package(run_id: str, weights_file: str, card: ModelCard, tracking_uri: str) -> str:
    """Log the model on the MLflow run `run_id` (its artifact `model`); returns the logged model's URI."""
    with tempfile.TemporaryDirectory() as scratch:
        card_file = os.path.join(scratch, "card.json")
        Path(card_file).write_text(json.dumps(card.to_json(), indent=1))
        code = [_clean_copy(Path(package.__file__).parent, scratch) for package in (workloads, orchestrator)]
        mlflow.set_tracking_uri(tracking_uri)
        with _quiet("mlflow"), mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(Path(__file__).with_name("labeller_model.py")),
                artifacts={"weights": weights_file, "card": card_file}, code_paths=code, signature=SIGNATURE,
                input_example=example(card), pip_requirements=requirements(), metadata={"card": card.to_json()})
    return info.model_uri


@contextlib.contextmanager
def _quiet(logger: str):
    """MLflow's INFO lines while it logs a model (validating the example) say nothing a user acts on."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def _clean_copy(package: Path, scratch: str) -> str:
    """The package's source without caches: what the model's code path ships."""
    target = os.path.join(scratch, "code", package.name)
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target
