"""A grid's experiment as MLflow holds it: its finished cell runs, typed, and the timing its parent runs
logged. Read from MLflow alone (through the tracking URI and its artifact store), so a report can be made
wherever the tracking server is reachable, without the grid's store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mlflow.tracking import MlflowClient

from orchestrator.errors import OrchestratorError

GRID_TAG = "fewer_frames.grid"  # the tag `orchestrator.tracking.tracker` puts on every run it creates
TIMING_PREFIX = "time_per_video_ms/"  # parent-run metrics the timing job logs: .../<family>/<all|k<k>>


@dataclass(frozen=True)
class CellRun:
    """One finished cell, from its run's params and metrics."""

    run_id: str
    name: str
    family: str
    mode: str  # skyline | baseline | serial | parallel
    selection: str
    k: int | None  # None: all frames (the skyline)
    variant: str
    intermediate: bool
    data_fraction: float
    seed: int
    size: str
    data: str  # the data set's id ("syn-..." for synthetic data); "" in runs logged before it was a param
    parallel_classifier: str
    metrics: dict[str, float] = field(default_factory=dict)
    finished: bool = True  # False: its last run FAILED (or was KILLED), and no run of it finished
    cell_id: str = ""
    weights: str = ""  # where its model is kept (`orchestrator.store.weights`); "" when not kept

    @property
    def gap(self) -> float:
        return self.metrics["gap"]

    @property
    def macs(self) -> float:
        return self.metrics.get("macs", math.nan)

    def metric(self, name: str) -> float | None:
        return self.metrics.get(name)


@dataclass(frozen=True)
class Timing:
    """Inference time per video (milliseconds) of each family's teacher ("all") and students ("k30"...),
    measured side by side in one task on one device, as the timing job logged it on a parent run."""

    run_id: str
    device: str
    milliseconds: dict[tuple[str, str], float]  # (family, "all" | "k<k>") -> ms per video


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str
    cells: list[CellRun]  # finished first, then those that only failed
    timing: Timing | None
    presets: list[str]  # the presets its parent runs ran, newest first


def _bool(text: str) -> bool:
    return text.strip().lower() == "true"


def _cell(run, finished: bool = True) -> CellRun:
    params, tags = run.data.params, run.data.tags
    try:
        k = params["k"]
        return CellRun(
            run_id=run.info.run_id, name=run.info.run_name or tags.get("cell_id", run.info.run_id),
            family=params["family"], mode=params["mode"], selection=params["selection"],
            k=None if k == "all" else int(k), variant=params["loss"], intermediate=_bool(params["intermediate"]),
            data_fraction=float(params["data_fraction"]), seed=int(params["seed"]), size=params.get("size", ""),
            data=params.get("data", ""), parallel_classifier=params.get("parallel_classifier", "shared"),
            metrics=dict(run.data.metrics), finished=finished, cell_id=tags.get("cell_id", ""),
            weights=tags.get("weights", ""))
    except (KeyError, ValueError) as error:
        raise OrchestratorError(f"MLflow run {run.info.run_id} ({run.info.run_name}): its params are not a "
                                f"cell's ({type(error).__name__}: {error})") from None


def _search(client: MlflowClient, experiment_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token,
                                  order_by=["attributes.start_time DESC"])
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _timing(parents: list) -> Timing | None:
    """The newest parent run's timing (every figure of it from that one run: one device, side by side)."""
    for run in parents:
        found = {name[len(TIMING_PREFIX):]: value for name, value in run.data.metrics.items()
                 if name.startswith(TIMING_PREFIX)}
        if found:
            ms = {tuple(key.split("/", 1)): value for key, value in found.items() if "/" in key}
            return Timing(run.info.run_id, run.data.tags.get("timing_device", "?"), ms)
    return None


def read_cell(run) -> CellRun:
    """One cell's run, typed; `OrchestratorError` when the run is not a cell's."""
    if run.data.tags.get(GRID_TAG) != "cell":
        raise OrchestratorError(f"MLflow run {run.info.run_id} ({run.info.run_name}) is not a grid cell's run")
    return _cell(run, finished=run.info.status == "FINISHED")


def read_experiment(client: MlflowClient, name: str) -> Experiment:
    """The experiment's cells (each once: the newest finished run of its id, else its newest failed or
    killed one) and timing. Raises OrchestratorError when there is no such experiment or no finished cell."""
    found = client.get_experiment_by_name(name)
    if found is None or found.lifecycle_stage != "active":
        raise OrchestratorError(f"MLflow experiment {name!r} does not exist at {client.tracking_uri}")
    cell_runs = _search(client, found.experiment_id,
                        f"tags.`{GRID_TAG}` = 'cell' and attributes.status = 'FINISHED'")
    newest: dict[str, Any] = {}
    for run in cell_runs:  # newest first
        newest.setdefault(run.data.tags.get("cell_id", run.info.run_id), run)
    if not newest:
        raise OrchestratorError(f"MLflow experiment {name!r} has no finished cells yet (run the grid first)")
    failed: dict[str, Any] = {}
    for run in _search(client, found.experiment_id,
                       f"tags.`{GRID_TAG}` = 'cell' and attributes.status != 'FINISHED'"):
        if run.info.status in ("FAILED", "KILLED") and run.data.tags.get("cell_id") not in newest:
            failed.setdefault(run.data.tags.get("cell_id", run.info.run_id), run)
    parents = _search(client, found.experiment_id, f"tags.`{GRID_TAG}` = 'parent'")
    presets = [run.data.tags["preset"] for run in parents if run.data.tags.get("preset")]
    cells = sorted((_cell(run) for run in newest.values()), key=lambda c: c.name)
    cells += sorted((_cell(run, finished=False) for run in failed.values()), key=lambda c: c.name)
    return Experiment(found.experiment_id, name, cells, _timing(parents), presets)
