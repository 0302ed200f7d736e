"""A kept model (`orchestrator.store.weights`) as an MLflow Model: complete for inference anywhere.

The package holds the card and weights file (family, size and settings, frame selection k and stride,
class count), the code that reads it (`workloads` and this serving package as MLflow code paths, entered
through `labeller_model.py`, so it loads in any environment with the pinned requirements: nothing else of
the orchestrator travels with it), an input/output signature and an example (`orchestrator.serve.labeller`).
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

import workloads
from orchestrator.serve.labeller import CARD, SIGNATURE, WEIGHTS, example
from workloads.inference import ModelCard

# What the model needs at inference, pinned to what it was made with.
REQUIREMENTS = ("torch", "numpy", "pyarrow", "pandas", "mlflow")
SERVING = Path(__file__).resolve().parent  # this package
NAME = "model"  # the artifact a model is logged as


def requirements() -> list[str]:
    """Pinned to the versions here; torch's local label (`+cpu`) dropped, as no index serves it by that name."""
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in REQUIREMENTS]


def log_package(run_id: str, weights_file: str, card: ModelCard, tracking_uri: str) -> str:
    """Log the model on the MLflow run `run_id` (its artifact `model`); returns the logged model's URI."""
    with tempfile.TemporaryDirectory() as scratch:
        card_file = os.path.join(scratch, "card.json")
        Path(card_file).write_text(json.dumps(card.to_json(), indent=1))
        code = [_clean_copy(Path(workloads.__file__).parent, scratch), _serving_copy(scratch)]
        mlflow.set_tracking_uri(tracking_uri)
        with _quiet("mlflow"), mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name=NAME, python_model=str(SERVING / "labeller_model.py"),
                artifacts={WEIGHTS: weights_file, CARD: card_file}, code_paths=code, signature=SIGNATURE,
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


def _serving_copy(scratch: str) -> str:
    """The `orchestrator` package as a model ships it: its `__init__` (the path to this package) and this
    package, nothing else of it."""
    root = os.path.join(scratch, "code", SERVING.parent.name)
    os.makedirs(root)
    shutil.copy2(SERVING.parent / "__init__.py", root)
    shutil.copytree(SERVING, os.path.join(root, SERVING.name), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root
