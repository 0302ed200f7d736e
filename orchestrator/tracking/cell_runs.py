"""A grid's cell runs. A cell's run is created RUNNING, with its params, when the cell starts; its per-epoch
metrics arrive as the epochs end (`orchestrator.driver.live`); its result and artifacts fill it when the
cell finishes, and it ends FINISHED or FAILED. A cell stopped before its end (the grid interrupted, the
cell to be run again) has its run deleted (MLflow's restorable delete), so each cell shows once; so is a
FINISHED run logged for a result since lost. A run logged for exactly a kept result is found again
(`logged_run`), so a driver stopped between logging a run and noting it logs none twice.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import traceback
from typing import Callable

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from orchestrator.experiment.matrix import Cell
from orchestrator.experiment.results import CellResult
from orchestrator.experiment.rows import display_name
from orchestrator.tracking import schema
from orchestrator.tracking.schema import RunKind
from workloads.data.fs import resolve
from workloads.progress import EpochMetrics


class CellRuns:
    def __init__(self, client: MlflowClient, experiment_id: str, parent_id: Callable[[], str | None]):
        self.client, self.experiment_id, self.parent_id = client, experiment_id, parent_id
        self._streamed: dict[str, set[int]] = {}  # run id -> epochs whose metrics were logged as they ended

    def start(self, cell: Cell, tags: dict[str, str] | None = None, at: float | None = None) -> str:
        """A RUNNING run for a cell that started at unix time `at` (None: now), with its params: `finish` or
        `fail` ends it."""
        all_tags = {schema.PARENT_TAG: self.parent_id() or "", schema.KIND_TAG: RunKind.CELL,
                    schema.CELL_ID_TAG: cell.id, schema.ROW_TAG: display_name(cell), **(tags or {})}
        run_id = self.client.create_run(self.experiment_id, run_name=cell.name, tags=all_tags,
                                        start_time=None if at is None else int(at * 1000)).info.run_id
        self.client.log_batch(run_id, params=schema.params(schema.cell_params(cell)))
        return run_id

    def log_epoch(self, run_id: str, epoch: EpochMetrics, ended: float) -> None:
        """One epoch's metrics on a live run, stamped with when the epoch ended (unix seconds)."""
        self.client.log_batch(run_id, metrics=schema.epoch_metrics(epoch, int(ended * 1000)))
        self._streamed.setdefault(run_id, set()).add(epoch.epoch)

    def discard(self, run_id: str) -> None:
        """Delete (restorably) a live run whose cell stopped before its end and runs again later."""
        self.client.set_terminated(run_id, status="KILLED")
        self.client.delete_run(run_id)
        self._streamed.pop(run_id, None)

    def finish(self, cell: Cell, result: CellResult, tags: dict[str, str], artifacts: dict[str, str],
               run_id: str | None = None) -> str:
        """Fill a cell's run (`run_id`, started by `start`; else one created now) with its result, tags and
        `artifacts` (name -> a file in the store), and end it FINISHED."""
        run_id = run_id or self.start(cell)
        status = RunStatus.to_string(RunStatus.FAILED)
        try:
            self.set_tags(run_id, tags)
            self.client.log_batch(run_id, params=schema.params(schema.role_params(result)),
                                  metrics=schema.result_metrics(result, self._streamed.pop(run_id, set())))
            history = [dataclasses.asdict(epoch) for epoch in result.history]
            self.client.log_text(run_id, json.dumps(history, indent=1), schema.HISTORY)
            for name, location in artifacts.items():
                self._log_file(run_id, location, name)
            status = RunStatus.to_string(RunStatus.FINISHED)
        finally:
            self.client.set_terminated(run_id, status=status)
        return run_id

    def fail(self, cell: Cell, error: BaseException | str, run_id: str | None = None) -> str:
        """End a cell's run (or one created now) FAILED, with its error's last line as a tag and all of it
        as an artifact."""
        run_id = run_id or self.start(cell)
        try:
            text = error if isinstance(error, str) else "".join(traceback.format_exception(error))
            self.client.set_tag(run_id, schema.ERROR_TAG,
                                text.strip().splitlines()[-1][:5000] if text.strip() else "failed")
            self.client.log_text(run_id, text, schema.ERROR_TEXT)
        finally:
            self.client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.FAILED))
        return run_id

    def logged_run(self, cell_id: str, gap: float) -> str | None:
        """The FINISHED run of this experiment that holds this cell's result (its test GAP as it was logged)."""
        return next((run.info.run_id for run in self._finished(cell_id)
                     if run.data.metrics.get(schema.GAP) == schema.readable(gap)), None)  # as logged

    def retire(self, cell_id: str, keep: str) -> int:
        """Delete (restorably) the FINISHED runs of this cell other than `keep`, so the experiment shows the
        cell once: a run logged for a result that was lost since (its file damaged) and the cell trained
        again. Returns how many were deleted."""
        retired = [run.info.run_id for run in self._finished(cell_id) if run.info.run_id != keep]
        for run_id in retired:
            self.client.delete_run(run_id)
        return len(retired)

    def logged_here(self) -> set[str]:
        """The ids of this experiment's cell runs (not deleted): a kept result noting a run that is not
        among them was logged in another experiment over the same store."""
        found, token = set(), None
        while True:
            page = self.client.search_runs([self.experiment_id], schema.kind_filter(RunKind.CELL),
                                           max_results=1000, page_token=token)
            found.update(run.info.run_id for run in page)
            token = page.token
            if not token:
                return found

    def _finished(self, cell_id: str) -> list:
        return self.client.search_runs([self.experiment_id], max_results=100, filter_string=schema.both(
            schema.tag_filter(schema.CELL_ID_TAG, cell_id), schema.status_filter("FINISHED")))

    def log_metrics(self, run_id: str, values: dict[str, float]) -> None:
        self.client.log_batch(run_id, metrics=schema.metrics_now(values))

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    def drop_tag(self, run_id: str, key: str, why: str) -> None:
        """Remove a tag that no longer holds (if the run has it), leaving `<key>_dropped` with why."""
        if key in self.client.get_run(run_id).data.tags:
            self.client.delete_tag(run_id, key)
        self.client.set_tag(run_id, schema.dropped(key), why[:5000])

    def retag(self, run_id: str, tags: dict[str, str]) -> None:
        """Set `tags` on a run logged earlier (adopted for the same result), taking back any `<key>_dropped`
        of a key set again."""
        current = self.client.get_run(run_id).data.tags
        for key in tags:
            if schema.dropped(key) in current:
                self.client.delete_tag(run_id, schema.dropped(key))
        self.set_tags(run_id, tags)

    def _log_file(self, run_id: str, location: str, name: str) -> None:
        """A file of the store (local or on object storage) as the run's artifact `name`."""
        fs, path = resolve(location)
        with fs.open_input_stream(path) as stream, tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, name), "wb") as out:
                out.write(stream.read())
            self.client.log_artifact(run_id, os.path.join(folder, name))
