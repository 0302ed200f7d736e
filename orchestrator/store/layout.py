"""Where everything of a grid lives, under one root (a local folder or a URI PyArrow opens):

    <root>/data/<data id>/{train,validate,test}/      synthetic shards generated on first use
    <root>/teachers/<teacher id>/cache/<key>/         teacher caches (Parquet parts, _manifest.json last)
    <root>/ray/<teacher id>/                          Ray Train checkpoints
    <root>/results/<cell id>.json                     a finished cell: its metrics and MLflow run id
    <root>/representations/<cell or teacher id>.parquet   E of the test split's representation sample
    <root>/predictions/<cell or teacher id>.parquet   each test video's top 20 (a paired bootstrap's input)
    <root>/predictions/<cell id>.adaptive.parquet     the same of a serial student read adaptively
    <root>/models/<cell or teacher id>.pt             a kept model's card and weights
    <root>/checked/<data id>.json                     the shards of a data set that were checked
    <root>/mlflow.db, <root>/mlartifacts/             the default MLflow store for a local root
"""

from __future__ import annotations

import os

from orchestrator.experiment.matrix import Cell
from orchestrator.experiment.modes import Mode
from workloads.data.fs import join


def owner_id(cell: Cell) -> str:
    """Whose files in the store hold a cell's model (its sample, predictions): a skyline's are its teacher's,
    written by the teacher's job; any other cell's are its own."""
    return cell.teacher.id if cell.mode is Mode.SKYLINE else cell.id


class Store:
    def __init__(self, root: str):
        self.root = root if "://" in root else os.path.abspath(root)

    @property
    def is_local(self) -> bool:
        return "://" not in self.root or self.root.startswith("file://")

    def path(self, *parts: str) -> str:
        return join(self.root, *parts)

    def data(self, data_id: str) -> str:
        return self.path("data", data_id)

    def teacher_cache(self, teacher_id: str, key: str) -> str:
        return self.path("teachers", teacher_id, "cache", key)

    def ray_storage(self) -> str:
        return self.path("ray")

    def teacher_run(self, teacher_id: str) -> str:
        """The teacher's Ray Train run folder: Ray names it after the run, and the run after the teacher."""
        return join(self.ray_storage(), teacher_id)

    def representations(self, owner_id: str) -> str:
        """The representation sample of a cell's or a teacher's model (`orchestrator.store.samples`)."""
        return self.path("representations", f"{owner_id}.parquet")

    def predictions(self, owner_id: str) -> str:
        """The test predictions of a cell's or a teacher's model (`orchestrator.store.predictions`)."""
        return self.path("predictions", f"{owner_id}.parquet")

    def adaptive_predictions(self, cell_id: str) -> str:
        """A serial student's test predictions read adaptively, at its calibrated threshold."""
        return self.path("predictions", f"{cell_id}.adaptive.parquet")

    def weights(self, owner_id: str) -> str:
        """A trained model's card and weights (`orchestrator.store.weights`): a teacher's by its id, a
        student's by its cell's."""
        return self.path("models", f"{owner_id}.pt")

    def result(self, cell_id: str) -> str:
        """A finished cell's result (`orchestrator.store.files`)."""
        return self.path("results", f"{cell_id}.json")
