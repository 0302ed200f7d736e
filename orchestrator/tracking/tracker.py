"""MLflow: one experiment per grid, a parent run per invocation, a child run per cell, nothing left RUNNING.

Only the driver talks to MLflow (a `sqlite:` store exists only where it was opened). A cell's run is
created RUNNING, with its params, when the cell starts; its per-epoch metrics arrive as the epochs end
(`orchestrator.driver.live`); its result and artifacts fill it when the cell finishes, and it ends FINISHED or
FAILED. A cell stopped before its end (the grid interrupted, the cell to be run again) has its run deleted
(MLflow's restorable delete), so each cell shows once. The parent run is ended KILLED on SIGINT/SIGTERM,
and any RUNNING run a crashed driver left in the experiment is ended at the next start (cell runs
deleted). A parent run carries its driver's identity and a heartbeat (`orchestrator.tracking.liveness`), so a
second driver on the same experiment while the first still runs is refused instead of ending the first
one's runs and training the same cells again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from typing import Any, Iterator

import mlflow
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

from orchestrator.tracking import liveness
from orchestrator.errors import OrchestratorError
from orchestrator.experiment.matrix import Cell
from orchestrator.experiment.results import CellResult, Trial
from workloads.progress import EpochMetrics
from workloads.data.fs import resolve

GRID_TAG = "fewer_frames.grid"
STUDY_TAG = "fewer_frames.study"
DRIVER_TAG = "fewer_frames.driver"  # liveness.identity() of the process that opened a parent run
HEARTBEAT_TAG = "fewer_frames.heartbeat"  # unix seconds, refreshed while that process runs
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # + a key: a saved runs view, opened with ?viewStateShareKey=<key>
CELLS_VIEW = "cells"
TRIAL_OUTCOME_TAG = "trial_outcome"  # finished | stopped by ASHA after epoch N (validation GAP g) | failed
_VIEW_PARAMS = ("family", "mode", "selection", "loss", "k", "intermediate", "data_fraction", "seed")
_VIEW_METRICS = ("gap", "map", "best_val_gap", "macs", "rep_cosine", "train_seconds")


def _params(values: dict[str, Any]) -> list[Param]:
    return [Param(k, str(v)[:6000]) for k, v in values.items()]


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
        self.experiment = experiment
        self.parent_id: str | None = None
        self._streamed: dict[str, set[int]] = {}  # run id -> epochs whose metrics were logged as they ended
        self._heartbeat: tuple[threading.Event, threading.Thread] | None = None

    def end_stale_runs(self) -> int:
        """End the runs that drivers no longer running left RUNNING in this experiment: parent runs KILLED;
        cell runs deleted (MLflow's restorable delete), since a RUNNING one is a cell cut short, and its cell
        is logged again whole, from its kept result or by running it again. Refuses (and ends nothing)
        while a parent run's driver still runs: two drivers would train the same cells."""
        stale = self.client.search_runs([self.experiment_id], filter_string="attributes.status = 'RUNNING'",
                                        max_results=10_000)
        for run in stale:
            self.refuse_if_driven(run)
        for run in stale:
            self.client.set_terminated(run.info.run_id, status="KILLED")
            if run.data.tags.get(GRID_TAG) in ("cell", "trial"):
                self.client.delete_run(run.info.run_id)
        return len(stale)

    def refuse_if_driven(self, run) -> None:
        """Raise when `run` is RUNNING and the driver that opened it still runs."""
        owner = run.data.tags.get(DRIVER_TAG)
        beat = float(run.data.tags[HEARTBEAT_TAG]) if run.data.tags.get(HEARTBEAT_TAG) else None
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
        self.client.set_experiment_tag(self.experiment_id, SHARED_VIEW_TAG + CELLS_VIEW, json.dumps({
            "searchFilter": f"tags.`{GRID_TAG}` = 'cell'", "orderByKey": "metrics.`gap`", "orderByAsc": False,
            "selectedColumns": [f"params.`{name}`" for name in _VIEW_PARAMS] + [f"metrics.`{name}`" for name in
                                                                              _VIEW_METRICS]}))

    def how_to_open(self) -> str:
        """How to see the experiment: the URL of its cells view in MLflow's model-training mode (the UI opens
        on GenAI pages otherwise), and for a SQLite store the command that serves the UI first."""
        view = (f"#/experiments/{self.experiment_id}/runs?workflowType=machine_learning"
                f"&viewStateShareKey={CELLS_VIEW}")
        if self.tracking_uri.startswith(("http://", "https://")):
            return f"runs view: {self.tracking_uri.rstrip('/')}/{view}"
        return (f"open it: mlflow ui --backend-store-uri {self.tracking_uri} --host 127.0.0.1 --port 5000  "
                f"then http://127.0.0.1:5000/{view}")

    def parent_with_metrics(self, names: list[str]) -> str | None:
        """The newest parent run of this experiment that holds all of these metrics, if any."""
        for run in self.client.search_runs([self.experiment_id], filter_string=f"tags.`{GRID_TAG}` = 'parent'",
                                           order_by=["attributes.start_time DESC"], max_results=100):
            if all(name in run.data.metrics for name in names):
                return run.info.run_id
        return None

    def start_parent(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={GRID_TAG: "parent", **tags, **_driver_tags()})
        self.parent_id = run.info.run_id
        self.client.log_batch(self.parent_id, params=_params(params))
        self._beat_while_open()
        return self.parent_id

    def _beat_while_open(self) -> None:
        """Refresh the parent run's heartbeat every HEARTBEAT_SECONDS until `end_parent`."""
        stop, client, run_id = threading.Event(), MlflowClient(self.tracking_uri), self.parent_id

        def beat():
            while not stop.wait(liveness.HEARTBEAT_SECONDS):
                try:
                    client.set_tag(run_id, HEARTBEAT_TAG, str(int(time.time())))
                except Exception:  # a missed beat only makes the run look idle sooner; the driver goes on
                    pass

        thread = threading.Thread(target=beat, name="mlflow-heartbeat", daemon=True)
        thread.start()
        self._heartbeat = (stop, thread)

    def end_parent(self, status: str, summary: str | None = None) -> None:
        if self._heartbeat is not None:
            stop, thread = self._heartbeat
            stop.set()
            thread.join()
            self._heartbeat = None
        if self.parent_id is None:
            return
        try:
            if summary:
                self.client.log_text(self.parent_id, summary, "summary.md")
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

    def open_study(self, name: str, params: dict[str, Any]) -> str:
        """The study's parent run: the one an earlier, interrupted invocation opened (reopened, so that
        its trials stay together), else a new one."""
        found = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{GRID_TAG}` = 'study' and "
                                        f"tags.`{STUDY_TAG}` = '{name}'", order_by=["attributes.start_time DESC"],
                                        max_results=1)
        if found:
            self.refuse_if_driven(found[0])
            self.parent_id = found[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
            for key, value in _driver_tags().items():
                self.client.set_tag(self.parent_id, key, value)
        else:
            run = self.client.create_run(self.experiment_id, run_name=name,
                                         tags={GRID_TAG: "study", STUDY_TAG: name, **_driver_tags()})
            self.parent_id = run.info.run_id
            self.client.log_batch(self.parent_id, params=_params(params))
        self._beat_while_open()
        return self.parent_id

    def log_trial(self, template: Cell, trial: Trial) -> str | None:
        """One trial as a child run of the study, once (a resumed study skips those logged whole): FINISHED,
        KILLED for a trial ASHA stopped (tagged with the epoch and validation GAP it stopped at), FAILED with
        its error. Its `trial_outcome` tag, set last, marks a run logged whole."""
        logged = self.client.search_runs([self.experiment_id], filter_string=f"tags.mlflow.parentRunId = "
                                         f"'{self.parent_id}' and tags.trial_id = '{trial.trial_id}'", max_results=100)
        # Whole: its outcome tag is set (runs of studies logged before there were outcomes: FINISHED).
        if any(run.info.status != "RUNNING" and TRIAL_OUTCOME_TAG in run.data.tags or run.info.status == "FINISHED"
               for run in logged):
            return None
        for run in logged:  # its logging cut short (an interrupted driver, or MLflow failing): logged again whole
            self.client.delete_run(run.info.run_id)
        tags = {"mlflow.parentRunId": self.parent_id or "", GRID_TAG: "trial", "trial_id": trial.trial_id}
        run_id = self.client.create_run(self.experiment_id, run_name=f"trial {trial.trial_id}", tags=tags).info.run_id
        status = RunStatus.to_string(RunStatus.FAILED)
        try:
            params = {"family": template.family, "variant": template.variant, **trial.settings, **trial.config}
            now = int(time.time() * 1000)
            metrics = [Metric(name, float(getattr(trial, name)), now, 0)
                       for name in ("gap", "map", "macs", "test_gap", "test_map") if getattr(trial, name) is not None]
            metrics += [Metric("val_gap", float(gap), now, int(epoch)) for epoch, gap in trial.val_gaps]
            self.client.log_batch(run_id, metrics=metrics, params=_params(params))
            if trial.error:
                self.client.set_tag(run_id, "error", trial.error[:5000])
            self.client.set_tag(run_id, TRIAL_OUTCOME_TAG, _trial_outcome(trial))
            status = {"finished": "FINISHED", "stopped": "KILLED"}.get(trial.outcome, "FAILED")
        finally:
            self.client.set_terminated(run_id, status=status)
        return run_id

    def retire_runs(self, cell_id: str, keep: str) -> int:
        """Delete (restorably) the FINISHED runs of this cell other than `keep`, so the experiment shows the
        cell once: a run logged for a result that was lost since (its file damaged) and the cell trained
        again. Returns how many were deleted."""
        found = self.client.search_runs([self.experiment_id], filter_string=f"tags.cell_id = '{cell_id}' and "
                                        "attributes.status = 'FINISHED'", max_results=100)
        retired = [run.info.run_id for run in found if run.info.run_id != keep]
        for run_id in retired:
            self.client.delete_run(run_id)
        return len(retired)

    def log_file(self, run_id: str, location: str, name: str) -> None:
        """A file of the store (local or on object storage) as the run's artifact `name`."""
        fs, path = resolve(location)
        with fs.open_input_stream(path) as stream, tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, name), "wb") as out:
                out.write(stream.read())
            self.client.log_artifact(run_id, os.path.join(folder, name))

    def log_metrics(self, run_id: str, values: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(name, float(value), now, 0) for name, value in values.items()])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    def drop_tag(self, run_id: str, key: str, why: str) -> None:
        """Remove a tag that no longer holds (if the run has it), leaving `<key>_dropped` with why."""
        if key in self.client.get_run(run_id).data.tags:
            self.client.delete_tag(run_id, key)
        self.client.set_tag(run_id, f"{key}_dropped", why[:5000])

    def retag(self, run_id: str, tags: dict[str, str]) -> None:
        """Set `tags` on a run logged earlier (adopted for the same result), taking back any `<key>_dropped`
        of a key set again."""
        current = self.client.get_run(run_id).data.tags
        for key in tags:
            if f"{key}_dropped" in current:
                self.client.delete_tag(run_id, f"{key}_dropped")
        self.set_tags(run_id, tags)

    def logged_run(self, cell_id: str, gap: float) -> str | None:
        """The FINISHED run of this experiment that holds this cell's result (its test GAP, to the bit)."""
        found = self.client.search_runs([self.experiment_id], filter_string=f"tags.cell_id = '{cell_id}' and "
                                        "attributes.status = 'FINISHED'", max_results=100)
        return next((run.info.run_id for run in found if run.data.metrics.get("gap") == float(gap)), None)

    def start_cell(self, cell: Cell, tags: dict[str, str] | None = None) -> str:
        """A RUNNING run for a cell that starts now, with its params: `log_cell` fills and ends it."""
        all_tags = {"mlflow.parentRunId": self.parent_id or "", GRID_TAG: "cell", "cell_id": cell.id, **(tags or {})}
        run_id = self.client.create_run(self.experiment_id, run_name=cell.name, tags=all_tags).info.run_id
        self.client.log_batch(run_id, params=_params(cell.params()))
        return run_id

    def log_epoch(self, run_id: str, epoch: EpochMetrics, ended: float) -> None:
        """One epoch's metrics on a live run, stamped with when the epoch ended (unix seconds)."""
        self.client.log_batch(run_id, metrics=_epoch_metrics(epoch, int(ended * 1000)))
        self._streamed.setdefault(run_id, set()).add(epoch.epoch)

    def discard(self, run_id: str) -> None:
        """Delete (restorably) a live run whose cell stopped before its end and runs again later."""
        self.client.set_terminated(run_id, status="KILLED")
        self.client.delete_run(run_id)
        self._streamed.pop(run_id, None)

    def log_cell(self, cell: Cell, result: CellResult | None, error: BaseException | str | None = None,
                 tags: dict[str, str] | None = None, artifacts: dict[str, str] | None = None,
                 run_id: str | None = None) -> str:
        """Fill and end a cell's run (`run_id`, started by `start_cell`; else one created now): FINISHED with
        its metrics and `artifacts` (name -> a file in the store), or FAILED with the error."""
        run_id = run_id or self.start_cell(cell)
        status = RunStatus.to_string(RunStatus.FAILED)
        try:
            self.set_tags(run_id, tags or {})
            roles = {} if result is None else {k: v for k, v in (("validation_split", result.validation_split),
                                                                   ("test_split", result.test_split)) if v}
            self.client.log_batch(run_id, params=_params(roles))
            if error is not None:
                text = error if isinstance(error, str) else "".join(traceback.format_exception(error))
                self.client.set_tag(run_id, "error", text.strip().splitlines()[-1][:5000] if text.strip() else "failed")
                self.client.log_text(run_id, text, "error.txt")
            else:
                self.client.log_batch(run_id, metrics=_metrics(result, self._streamed.pop(run_id, set())))
                history = [dataclasses.asdict(epoch) for epoch in result.history]
                self.client.log_text(run_id, json.dumps(history, indent=1), "history.json")
                for name, location in (artifacts or {}).items():
                    self.log_file(run_id, location, name)
                status = RunStatus.to_string(RunStatus.FINISHED)
        finally:
            self.client.set_terminated(run_id, status=status)
        return run_id


@dataclasses.dataclass
class ParentOutcome:
    """How a parent run is to end when its work ends without an error."""

    status: str = "FINISHED"
    summary: str | None = None


def _trial_outcome(trial: Trial) -> str:
    if trial.outcome == "stopped" and trial.val_gaps:
        epoch, gap = max(trial.val_gaps)
        return f"stopped by ASHA after epoch {epoch} (validation GAP {gap:.4f})"
    return trial.outcome


def _driver_tags() -> dict[str, str]:
    return {DRIVER_TAG: liveness.identity(), HEARTBEAT_TAG: str(int(time.time()))}


# A cell's numbers logged as metrics: the scores, costs and times, and a teacher's workers and resumption.
_METRICS = ("gap", "map", "macs", "frame_macs", "params", "train_seconds", "inference_seconds", "best_epoch",
            "teacher_gap", "teacher_map", "workers", "resumed_at_epoch", "rep_cosine", "rep_mse")


def _epoch_metrics(epoch: EpochMetrics, now: int) -> list[Metric]:
    metrics = [Metric("val_gap", float(epoch.val_gap), now, epoch.epoch),
               Metric("val_map", float(epoch.val_map), now, epoch.epoch),
               Metric("train_loss", float(epoch.loss), now, epoch.epoch)]
    if epoch.teacher_val_gap is not None:
        metrics.append(Metric("teacher_val_gap", float(epoch.teacher_val_gap), now, epoch.epoch))
    return metrics


def _metrics(result: CellResult, streamed: set[int] = frozenset()) -> list[Metric]:
    """A result's metrics, with the per-epoch ones of the epochs not `streamed` while it trained."""
    now = int(time.time() * 1000)
    metrics = [Metric(name, float(getattr(result, name)), now, 0) for name in _METRICS
               if getattr(result, name) is not None]
    # "val_gap" is the per-epoch curve below; the best epoch's value is "best_val_gap".
    metrics.append(Metric("best_val_gap", float(result.val_gap), now, 0))
    metrics.append(Metric("best_val_map", float(result.val_map), now, 0))
    for epoch in result.history:
        if epoch.epoch not in streamed:
            metrics += _epoch_metrics(epoch, now)
    return metrics
