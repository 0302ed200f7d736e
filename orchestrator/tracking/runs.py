"""A grid's experiment as MLflow holds it: its cells as `CellOutcome`s and the timing its parent runs
logged. Read from MLflow alone (through the tracking URI and its artifact store), so a report can be made
wherever the tracking server is reachable, without the grid's store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlflow.tracking import MlflowClient

from orchestrator.errors import OrchestratorError, masked, note
from orchestrator.experiment.outcome import CellOutcome
from orchestrator.tracking import schema
from orchestrator.tracking.schema import RunKind


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
    cells: list[CellOutcome]  # finished first, then those that only failed
    timing: Timing | None
    presets: list[str]  # the presets its parent runs ran, newest first


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
        found = schema.timing_of(run.data.metrics)
        if found:
            return Timing(run.info.run_id, run.data.tags.get(schema.TIMING_DEVICE_TAG, "?"), found)
    return None


def _finished(run) -> CellOutcome:
    """A FINISHED cell's run as a finished outcome; one that lost a metric every finished cell logs (deleted
    from the tracking store) is read as not finished, and said once: its scores cannot stand in a table."""
    lost = [name for name in schema.FINISHED_METRICS if name not in run.data.metrics]
    if lost:
        note(run.info.run_name or run.info.run_id, f"MLflow run {run.info.run_id} is FINISHED without its "
             f"metric(s) {', '.join(lost)}: left out of the numbers")
    return schema.outcome_of_run(run, finished=not lost)


def read_experiment(client: MlflowClient, name: str) -> Experiment:
    """The experiment's cells (each once: the newest finished run of its id, else its newest failed or
    killed one) and timing. Raises OrchestratorError when there is no such experiment or no finished cell."""
    found = client.get_experiment_by_name(name)
    if found is None or found.lifecycle_stage != "active":
        raise OrchestratorError(f"MLflow experiment {name!r} does not exist at {masked(client.tracking_uri)}")
    cells = schema.kind_filter(RunKind.CELL)
    newest: dict[str, Any] = {}
    for run in _search(client, found.experiment_id, schema.both(cells, schema.status_filter("FINISHED"))):
        newest.setdefault(schema.cell_id_of(run) or run.info.run_id, run)  # newest first
    if not newest:
        raise OrchestratorError(f"MLflow experiment {name!r} has no finished cells yet (run the grid first)")
    failed: dict[str, Any] = {}
    for run in _search(client, found.experiment_id, schema.both(cells, schema.status_filter("FINISHED", False))):
        if run.info.status in ("FAILED", "KILLED") and schema.cell_id_of(run) not in newest:
            failed.setdefault(schema.cell_id_of(run) or run.info.run_id, run)
    parents = _search(client, found.experiment_id, schema.kind_filter(RunKind.PARENT))
    presets = [run.data.tags[schema.PRESET_TAG] for run in parents if run.data.tags.get(schema.PRESET_TAG)]
    outcomes = sorted((_finished(run) for run in newest.values()), key=lambda c: c.name)
    if not any(outcome.finished for outcome in outcomes):
        raise OrchestratorError(f"MLflow experiment {name!r}: none of its finished cells' runs has its metrics")
    outcomes += sorted((schema.outcome_of_run(run, finished=False) for run in failed.values()), key=lambda c: c.name)
    return Experiment(found.experiment_id, name, outcomes, _timing(parents), presets)
