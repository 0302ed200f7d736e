"""The ledger of one driver: the cells it knows of (finished, failed, and running with their live MLflow
runs) and how each is recorded. A result is kept in the store first (no run id), then logged in MLflow,
then its run id noted: a driver stopped in between has lost no training, and the next one logs the cell's
run exactly once (adopting the run logged for exactly that result, if there is one).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from orchestrator.errors import note, one_line, say
from orchestrator.experiment.matrix import Cell
from orchestrator.experiment.modes import Mode
from orchestrator.experiment.results import CellResult
from orchestrator.experiment.rows import display_name
from orchestrator.store import weights
from orchestrator.store.files import DamagedFile, read_result, set_aside, write_result
from orchestrator.store.layout import Store, owner_id
from orchestrator.tracking import schema
from orchestrator.tracking.cell_runs import CellRuns
from workloads.data.fs import is_file
from workloads.progress import EpochMetrics


class Ledger:
    """The cells a driver knows of, and how each is recorded: in the store, then in MLflow (`runs`)."""

    def __init__(self, store: Store, runs: CellRuns):
        self.store, self.runs = store, runs
        self.results: dict[str, CellResult] = {}
        self.failed: list[str] = []
        self.live: dict[str, str] = {}  # cell id -> the RUNNING run of a cell that is training
        self.skylines: dict[str, Cell] = {}  # teacher id -> its skyline cell, whose run a student's names

    def began(self, cell: Cell, at: float) -> None:
        """The cell's job began on its worker at unix time `at`: its run is RUNNING from then, with its
        params, so that its duration is the cell's; unless it was recorded already (its start heard late)
        or runs already (a retried teacher's second start)."""
        if cell.id not in self.results and cell.id not in self.live:
            self.live[cell.id] = self.runs.start(cell, self.tags(cell), at)

    def epoch(self, cell_id: str, metrics: EpochMetrics, ended: float) -> None:
        """An epoch of a running cell ended (at unix time `ended`): its metrics on the cell's run."""
        if cell_id in self.live:
            self.runs.log_epoch(self.live[cell_id], metrics, ended)

    def discard(self, cell: Cell) -> None:
        """The cell stopped before its end and runs again (later, or in another invocation): its run goes,
        so the cell shows once."""
        run_id = self.live.pop(cell.id, None)
        if run_id is not None:
            self.runs.discard(run_id)

    def discard_all(self) -> None:
        """The driver stops: every live run goes (a run MLflow cannot delete now is ended at the next start)."""
        for run_id in self.live.values():
            try:
                self.runs.discard(run_id)
            except Exception:  # noqa: BLE001 - MLflow itself gone: the next start ends what is left RUNNING
                pass
        self.live.clear()

    def load(self, cells: list[Cell]) -> list[Cell]:
        """Read the kept results of `cells`; returns those whose MLflow run was never noted, or was logged
        in another experiment (a grid over a finished store under a new experiment name logs its finished
        cells there). A result file that cannot be read is set aside (renamed, kept) and its cell runs again."""
        self.skylines.update({c.teacher.id: c for c in cells if c.mode is Mode.SKYLINE})
        for cell in cells:
            try:
                found = read_result(self.store, cell.id)
            except DamagedFile as damaged:
                aside = set_aside(damaged.location)
                note(cell.name, f"{damaged}; set aside as {aside}, and the cell runs again")
                continue
            if found is not None:
                self.results[cell.id] = found
        here = self.runs.logged_here() if any(result.run_id for result in self.results.values()) else set()
        return [cell for cell in cells if cell.id in self.results and self.results[cell.id].run_id not in here]

    def unfinished(self, cells: list[Cell]) -> list[Cell]:
        """Those of `cells` neither recorded nor failed."""
        failed = set(self.failed)
        return [cell for cell in cells if cell.id not in self.results and cell.name not in failed]

    def tags(self, cell: Cell, result: CellResult | None = None) -> dict[str, str]:
        """A skyline's run points at its teacher's cache and checkpoint; a student's at its teacher's run; a
        finished cell's says where it trained and where its model is kept."""
        if cell.mode is Mode.SKYLINE:
            return {} if result is None else skyline_tags(result)
        tags = {} if result is None else {schema.DEVICE_TAG: result.device}
        if result is not None and result.weights:
            tags[schema.WEIGHTS_TAG] = result.weights
        teacher = self.results.get(self.skylines[cell.teacher.id].id) if cell.teacher else None
        if teacher is not None and teacher.run_id:
            tags[schema.TEACHER_RUN_TAG] = teacher.run_id
        return tags

    def record(self, cell: Cell, result: CellResult) -> CellResult:
        """Keep a finished cell's result, then log its run."""
        kept = result.noted(cell.name, None)
        write_result(self.store, cell.id, kept)
        return self.log(cell, kept)

    def log(self, cell: Cell, result: CellResult) -> CellResult:
        """Log a kept result's MLflow run, or adopt the run an earlier driver logged for exactly this result
        (the same test GAP, to the bit), and note it in the kept result, which is returned. Any other
        FINISHED run of the cell (logged for a result since lost) is retired: each cell shows once."""
        owner = owner_id(cell)
        kept = {schema.REPRESENTATIONS: self.store.representations(owner),
                schema.PREDICTIONS: self.store.predictions(owner),
                schema.ADAPTIVE_PREDICTIONS: self.store.adaptive_predictions(cell.id)}
        artifacts = {name: location for name, location in kept.items() if is_file(location)}
        tags = self.tags(cell, result)
        adopted = self.runs.logged_run(cell.id, result.gap)
        if adopted is not None:
            self.discard(cell)
            self.runs.retag(adopted, tags)  # what holds now: where its weights are kept, say
        run_id = adopted or self.runs.finish(cell, result, tags, artifacts, run_id=self.live.pop(cell.id, None))
        self.runs.retire(cell.id, keep=run_id)
        noted = result.noted(cell.name, run_id)
        write_result(self.store, cell.id, noted)
        self.results[cell.id] = noted
        say(f"  done  {display_name(cell)} ({cell.name}): GAP {noted.gap:.3f}  mAP {noted.map:.3f}  "
            f"({noted.train_seconds:.0f} s)")
        if noted.run_snapshot:
            note(cell.name, noted.run_snapshot)
        return noted

    def measured(self, cell: Cell, metrics: dict[str, float]) -> None:
        """Add metrics measured after a cell was recorded (how close its representations are to a teacher
        that finished later) to its kept result and its run."""
        kept = dataclasses.replace(self.results[cell.id], **metrics)
        write_result(self.store, cell.id, kept)
        self.results[cell.id] = kept
        if kept.run_id is not None:
            self.runs.log_metrics(kept.run_id, metrics)

    def drop_weights(self, cell: Cell, why: str) -> None:
        """Delete a student's kept weights (`orchestrator.store.weights`), and say so on its result and run."""
        kept = self.results[cell.id]
        weights.delete(kept.weights)
        kept = dataclasses.replace(kept, weights=None)
        write_result(self.store, cell.id, kept)
        self.results[cell.id] = kept
        if kept.run_id is not None:
            self.runs.drop_tag(kept.run_id, schema.WEIGHTS_TAG, f"deleted: {why}")

    def fitted(self, skyline: Cell, result: CellResult, why: str) -> CellResult:
        """Record a teacher's fit as its skyline's result; for a teacher done before, whose caches were only
        written again (`why`) from its final checkpoint, point its kept result and its run at them instead
        (tag `cache_rebuilt`): its skyline shows once."""
        if skyline.id in self.results and result.resumed_at_epoch >= len(result.history):
            return self._rebuilt(skyline, result, why)
        return self.record(skyline, result)

    def _rebuilt(self, skyline: Cell, result: CellResult, reason: str) -> CellResult:
        earlier = self.results[skyline.id]
        kept = dataclasses.replace(earlier, caches=result.caches, checkpoint=result.checkpoint,
                                   run_snapshot=result.run_snapshot)
        write_result(self.store, skyline.id, kept)
        if kept.run_id is None:  # kept by a driver stopped before it logged the run
            kept = self.log(skyline, kept)
        self.results[skyline.id] = kept
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        self.runs.set_tags(kept.run_id, {**self.tags(skyline, result),
                                         schema.CACHE_REBUILT_TAG: f"{stamp}: {reason}"[:5000]})
        note(skyline.name, f"caches written again from the teacher's final checkpoint ({reason})")
        return kept

    def fail(self, cell: Cell, error: BaseException | str) -> None:
        self.runs.fail(cell, error, run_id=self.live.pop(cell.id, None))
        self.failed.append(cell.name)
        say(f"  FAILED {display_name(cell)} ({cell.name}): {one_line(error)}")


def skyline_tags(result: CellResult) -> dict[str, str]:
    """A teacher's (skyline) run points at its cache and its checkpoint, and says where it trained."""
    tags = {schema.CACHE_URI_TAG: result.caches["base"], schema.CHECKPOINT_TAG: str(result.checkpoint),
            schema.DEVICE_TAG: result.device}
    if result.weights:
        tags[schema.WEIGHTS_TAG] = result.weights
    if result.run_snapshot:  # Ray Train's record of the teacher's run was unreadable and set aside
        tags[schema.RUN_SNAPSHOT_TAG] = result.run_snapshot
    return tags
