"""Where everything of a grid lives, under one root (a local folder or a URI PyArrow opens):

    <root>/data/<data id>/{train,validate,test}/      synthetic shards generated on first use
    <root>/teachers/<teacher id>/cache/<key>/         teacher caches (Parquet parts, _manifest.json last)
    <root>/ray/<teacher id>/                          Ray Train checkpoints
    <root>/results/<cell id>.json                     a finished cell: its metrics and MLflow run id
    <root>/mlflow.db, <root>/mlartifacts/             the default MLflow store for a local root

A result file is written atomically and last, so it is the proof that a cell is complete.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pyarrow.fs as pafs

from orchestrator.results import CellResult
from workloads.data.fs import join, resolve, write_bytes


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

    def result(self, cell_id: str) -> str:
        return self.path("results", f"{cell_id}.json")

    def read_result(self, cell_id: str) -> CellResult | None:
        """A finished cell's result, None when it has none yet."""
        found = self.read_json(self.result(cell_id))
        return None if found is None else CellResult.from_json(found)

    def write_result(self, cell_id: str, result: CellResult) -> None:
        self.write_json(self.result(cell_id), result.to_json())

    def read_json(self, location: str) -> dict[str, Any] | None:
        fs, path = resolve(location)
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(path) as stream:
            return json.loads(stream.read())

    def write_json(self, location: str, payload: dict[str, Any]) -> None:
        write_bytes(location, json.dumps(payload, indent=1, sort_keys=True, default=str).encode())
