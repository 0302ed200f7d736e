"""MLflow: one experiment per grid, a parent run per invocation, a child run per cell, nothing left RUNNING.

Only the driver talks to MLflow (a `sqlite:` store exists only where it was opened). The `Tracker` opens
the experiment and its parent run (a grid's, or a study's, reopened when the study resumes); the cells'
runs are `Tracker.cells` (`orchestrator.tracking.cell_runs`), a study's trials `orchestrator.tracking.
studies`. The parent run is ended KILLED on SIGINT/SIGTERM, and any RUNNING run a crashed driver left in
the experiment is ended at the next start (cell and trial runs deleted). A parent run carries its
driver's identity and a heartbeat (`orchestrator.tracking.liveness`), so a second driver on the same
experiment while the first still runs is refused instead of ending the first one's runs and training the
same cells again.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from typing import Any, Iterator

import mlflow
from mlflow.tracking import MlflowClient

from orchestrator.errors import OrchestratorError, masked
from orchestrator.tracking import liveness, schema
from orchestrator.tracking.cell_runs import CellRuns
from orchestrator.tracking.schema import RunKind


UI_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_DISABLE_TELEMETRY=true"  # before a printed `mlflow ui`


class Tracker:
    def __init__(self, tracking_uri: str, experiment: str, artifact_location: str | None):
        mlflow.set_tracking_uri(tracking_uri)
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=artifact_location)
        else:
            self.experiment_id = found.experiment_id
        # model training, so that the experiment's own page opens on its runs, not MLflow's GenAI overview
        self.client.set_experiment_tag(self.experiment_id, schema.EXPERIMENT_KIND_TAG, schema.MODEL_TRAINING)
        self.experiment = experiment
        self.parent_id: str | None = None
        self.cells = CellRuns(self.client, self.experiment_id, lambda: self.parent_id)
        self._heartbeat: liveness.Heartbeat | None = None

    def end_stale_runs(self) -> int:
        """End the runs that drivers no longer running left RUNNING in this experiment: parent runs KILLED;
        cell runs deleted (MLflow's restorable delete), since a RUNNING one is a cell cut short, and its cell
        is logged again whole, from its kept result or by running it again. Refuses (and ends nothing)
        while a parent run's driver still runs: two drivers would train the same cells."""
        stale = self.client.search_runs([self.experiment_id], filter_string=schema.status_filter("RUNNING"),
                                        max_results=10_000)
        for run in stale:
            self.refuse_if_driven(run)
        for run in stale:
            self.client.set_terminated(run.info.run_id, status="KILLED")
            if schema.kind_of(run) in (RunKind.CELL, RunKind.TRIAL):
                self.client.delete_run(run.info.run_id)
        return len(stale)

    def refuse_if_driven(self, run) -> None:
        """Raise when `run` is RUNNING and the driver that opened it still runs."""
        owner = run.data.tags.get(schema.DRIVER_TAG)
        beat = float(run.data.tags[schema.HEARTBEAT_TAG]) if run.data.tags.get(schema.HEARTBEAT_TAG) else None
        now = time.time()
        if run.info.status == "RUNNING" and owner and liveness.alive(owner, beat, now):
            heard = f", last heard from {now - beat:.0f} s ago" if beat is not None else ""
            raise OrchestratorError(
                f"MLflow experiment {self.experiment!r}: run {run.info.run_name!r} ({run.info.run_id}) belongs to "
                f"a driver that is still running ({owner}{heard}); stop it or let it finish, or use another "
                f"--experiment (a driver on another host counts as gone after {liveness.SILENT_SECONDS} s of silence)")

    def share_cells_view(self) -> None:
        """Save the experiment's "cells" view in MLflow (a shared view, an experiment tag the UI reads): every
        cell run in one flat list, best test GAP first, with the columns that compare them. Without it the
        runs view opens on the parent runs, collapsed, their metric columns hidden."""
        self.client.set_experiment_tag(self.experiment_id, schema.SHARED_VIEW_TAG + schema.CELLS_VIEW,
                                       schema.cells_view())

    def how_to_open(self) -> str:
        """How to see the experiment: the URL of its cells view in MLflow's model-training mode (the UI opens
        on GenAI pages otherwise), and for a SQLite store the command that serves the UI first."""
        view = (f"#/experiments/{self.experiment_id}/runs?workflowType=machine_learning"
                f"&viewStateShareKey={schema.CELLS_VIEW}")
        if self.tracking_uri.startswith(("http://", "https://")):
            return f"runs view: {masked(self.tracking_uri).rstrip('/')}/{view}"
        # MLflow's job runner and its default workers take about 2 GB for a UI one person reads: off, and one
        return (f"open it: {UI_ENV} mlflow ui --backend-store-uri {self.tracking_uri} --host 127.0.0.1 "
                f"--port 5000 --workers 1  then http://127.0.0.1:5000/{view}")

    def parent_with_metrics(self, names: list[str]) -> str | None:
        """The newest grid parent run of this experiment that holds all of these metrics, if any."""
        for run in self.client.search_runs([self.experiment_id], filter_string=schema.kind_filter(RunKind.PARENT),
                                           order_by=["attributes.start_time DESC"], max_results=100):
            if all(name in run.data.metrics for name in names):
                return run.info.run_id
        return None

    def start_parent(self, name: str, params: dict[str, Any], tags: dict[str, str],
                     kind: RunKind = RunKind.PARENT) -> str:
        """Open a new parent run (a grid's; a study's with `kind`), beating while it is open."""
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={schema.KIND_TAG: kind, **tags, **_driver_tags()})
        self.parent_id = run.info.run_id
        self.client.log_batch(self.parent_id, params=schema.params(params))
        self._beat_while_open()
        return self.parent_id

    def reopen_parent(self, run) -> str:
        """Take up an earlier driver's parent run again (an interrupted study's), beating while it is open."""
        self.refuse_if_driven(run)
        self.parent_id = run.info.run_id
        self.client.update_run(self.parent_id, status="RUNNING")
        for key, value in _driver_tags().items():
            self.client.set_tag(self.parent_id, key, value)
        self._beat_while_open()
        return self.parent_id

    def log_on_parent(self, metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None,
                      files: list[str] = ()) -> None:
        """Metrics, tags and files (as artifacts of their names) on the open parent run."""
        if metrics:
            self.client.log_batch(self.parent_id, metrics=schema.metrics_now(metrics))
        for path in files:
            self.client.log_artifact(self.parent_id, path)
        for key, value in (tags or {}).items():
            self.client.set_tag(self.parent_id, key, value)

    def _beat_while_open(self) -> None:
        client, run_id = MlflowClient(self.tracking_uri), self.parent_id
        self._heartbeat = liveness.Heartbeat(
            lambda: client.set_tag(run_id, schema.HEARTBEAT_TAG, str(int(time.time()))))

    def end_parent(self, status: str, summary: str | None = None) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self.parent_id is None:
            return
        try:
            if summary:
                self.client.log_text(self.parent_id, summary, schema.SUMMARY)
        finally:
            self.client.set_terminated(self.parent_id, status=status)
            self.parent_id = None

    @contextmanager
    def ending_parent(self) -> Iterator[ParentOutcome]:
        """The open parent run, ended when the block ends: with the outcome's status and summary, KILLED on
        an interruption (Ctrl-C, SIGTERM), FAILED on an error."""
        outcome = ParentOutcome()
        try:
            yield outcome
        except KeyboardInterrupt:
            self.end_parent("KILLED")
            raise
        except BaseException:
            self.end_parent("FAILED")
            raise
        self.end_parent(outcome.status, outcome.summary)


@dataclasses.dataclass
class ParentOutcome:
    """How a parent run is to end when its work ends without an error."""

    status: str = "FINISHED"
    summary: str | None = None


def _driver_tags() -> dict[str, str]:
    return {schema.DRIVER_TAG: liveness.identity(), schema.HEARTBEAT_TAG: str(int(time.time()))}
