"""The store's small files: JSON objects written atomically (a finished cell's result, a data set's marker,
a study's record), read back typed, and set aside when they cannot be read as what they should be.

A result file (`<root>/results/<cell id>.json`, `CellResult.to_json`) is written atomically and last, so
it is the proof that a cell is complete. A file that cannot be read as what it should be raises
`DamagedFile`; `set_aside` renames it (it is kept) so that what it recorded is done again.
"""

from __future__ import annotations

import json
import posixpath
from datetime import datetime, timezone
from typing import Any


from orchestrator.errors import OrchestratorError
from orchestrator.experiment.results import CellResult
from orchestrator.experiment.validation import Invalid
from orchestrator.store.layout import Store
from workloads.data.fs import is_file, resolve, write_bytes


class DamagedFile(OrchestratorError):
    """A file (or folder) in the store that cannot be read as what it should be; `location` names it."""

    what = ""  # said before the problem

    def __init__(self, location: str, problem: str):
        super().__init__(f"{location}: {self.what}{problem}")
        self.location, self.problem = location, problem

    def __reduce__(self):  # raised in a Ray task, it crosses to the driver whole
        return type(self), (self.location, self.problem)


def read_result(store: Store, cell_id: str) -> CellResult | None:
    """A finished cell's result, None when it has none yet; `DamagedFile` when its file is no result."""
    location = store.result(cell_id)
    found = read_json(location)
    try:
        return None if found is None else CellResult.from_json(found)
    except Invalid as error:
        raise DamagedFile(location, f"not a cell's result: {error}") from None


def write_result(store: Store, cell_id: str, result: CellResult) -> None:
    write_json(store.result(cell_id), result.to_json())


def read_json(location: str) -> dict[str, Any] | None:
    """The JSON object at `location`, None when there is no file; `DamagedFile` when it does not parse
    (cut short, say) or holds no object."""
    if not is_file(location):
        return None
    fs, path = resolve(location)
    with fs.open_input_stream(path) as stream:
        text = stream.read()
    try:
        value = json.loads(text)
    except ValueError as error:
        raise DamagedFile(location, f"cannot be read ({len(text)} bytes, cut short?): {error}") from None
    if not isinstance(value, dict):
        raise DamagedFile(location, f"holds {type(value).__name__}, not a JSON object")
    return value


def write_json(location: str, payload: dict[str, Any]) -> None:
    write_bytes(location, json.dumps(payload, indent=1, sort_keys=True, default=str).encode())


def set_aside(location: str) -> str:
    """Rename a damaged file to `<name>.unreadable-<UTC time>` beside it (kept for a look); its new name."""
    fs, path = resolve(location)
    aside = f"{posixpath.basename(path)}.unreadable-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}"
    fs.move(path, posixpath.join(posixpath.dirname(path), aside))
    return aside
