"""Where everything of a grid lives, under one root (a local folder or a URI PyArrow opens):

    <root>/data/<data id>/{train,validate,test}/      synthetic shards generated on first use
    <root>/teachers/<teacher id>/cache/<key>/         teacher caches (Parquet parts, _manifest.json last)
    <root>/ray/<teacher id>/                          Ray Train checkpoints
    <root>/results/<cell id>.json                     a finished cell: its metrics and MLflow run id
    <root>/representations/<cell or teacher id>.parquet   E of the test split's representation sample
    <root>/checked/<data id>.json                     the shards of a data set that were checked
    <root>/mlflow.db, <root>/mlartifacts/             the default MLflow store for a local root

A result file is written atomically and last, so it is the proof that a cell is complete. A file here
that cannot be read as what it should be raises `DamagedFile`; `set_aside` renames it (it is kept) so that
what it recorded is done again.
"""

from __future__ import annotations

import json
import os
import posixpath
from datetime import datetime, timezone
from typing import Any

import pyarrow.fs as pafs

from orchestrator.errors import OrchestratorError
from orchestrator.experiment.results import CellResult
from orchestrator.experiment.validation import Invalid
from workloads.data.fs import join, resolve, write_bytes


class DamagedFile(OrchestratorError):
    """A file (or folder) in the store that cannot be read as what it should be; `location` names it."""

    what = ""  # said before the problem

    def __init__(self, location: str, problem: str):
        super().__init__(f"{location}: {self.what}{problem}")
        self.location, self.problem = location, problem

    def __reduce__(self):  # raised in a Ray task, it crosses to the driver whole
        return type(self), (self.location, self.problem)


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

    def weights(self, owner_id: str) -> str:
        """A trained model's card and weights (`orchestrator.store.weights`): a teacher's by its id, a student's
        by its cell's."""
        return self.path("models", f"{owner_id}.pt")

    def result(self, cell_id: str) -> str:
        return self.path("results", f"{cell_id}.json")

    def read_result(self, cell_id: str) -> CellResult | None:
        """A finished cell's result, None when it has none yet; `DamagedFile` when its file is no result."""
        location = self.result(cell_id)
        found = self.read_json(location)
        try:
            return None if found is None else CellResult.from_json(found)
        except Invalid as error:
            raise DamagedFile(location, f"not a cell's result: {error}") from None

    def write_result(self, cell_id: str, result: CellResult) -> None:
        self.write_json(self.result(cell_id), result.to_json())

    def read_json(self, location: str) -> dict[str, Any] | None:
        """The JSON object at `location`, None when there is no file; `DamagedFile` when it does not parse
        (cut short, say) or holds no object."""
        fs, path = resolve(location)
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(path) as stream:
            text = stream.read()
        try:
            value = json.loads(text)
        except ValueError as error:
            raise DamagedFile(location, f"cannot be read ({len(text)} bytes, cut short?): {error}") from None
        if not isinstance(value, dict):
            raise DamagedFile(location, f"holds {type(value).__name__}, not a JSON object")
        return value

    def write_json(self, location: str, payload: dict[str, Any]) -> None:
        write_bytes(location, json.dumps(payload, indent=1, sort_keys=True, default=str).encode())

    def set_aside(self, location: str) -> str:
        """Rename a damaged file to `<name>.unreadable-<UTC time>` beside it (kept for a look); its new name."""
        fs, path = resolve(location)
        aside = f"{posixpath.basename(path)}.unreadable-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}"
        fs.move(path, posixpath.join(posixpath.dirname(path), aside))
        return aside
