"""One grid invocation's jobs on Ray: teachers and cells started as their inputs become ready, collected as
they finish and recorded through the ledger (in the store, then MLflow), their epochs streamed to their
live runs meanwhile. A teacher cache found damaged is written again (`orchestrator.driver.healing`); a store
that goes away stops the grid, every job in flight cancelled and its live run deleted.
"""

from __future__ import annotations

import dataclasses
import math

from orchestrator.driver.backlog import Backlog, InFlight, backlog
from orchestrator.driver.console import Counts, GridProgress
from orchestrator.driver.healing import CacheHealer
from orchestrator.driver.ledger import Ledger
from orchestrator.driver.live import EpochChannel
from orchestrator.driver.pace import Pace
from orchestrator.driver.session import cell_slots, is_storage_failure, teacher_task
from orchestrator.driver.similarity import Similarity
from orchestrator.errors import OrchestratorError, one_line
from orchestrator.experiment.groups import grouped
from orchestrator.experiment.matrix import Cell, TeacherSpec, expand
from orchestrator.experiment.modes import Mode
from orchestrator.experiment.presets import Preset
from orchestrator.experiment.results import CellResult
from orchestrator.jobs.cells import Kept
from orchestrator.jobs.data_sets import DataSet
from orchestrator.jobs.parallel_groups import run_cells
from orchestrator.jobs.teachers import TeacherJob
from orchestrator.store import weights
from orchestrator.store.access import store_lost
from orchestrator.store.layout import Store

LIVE_SECONDS = 2.0  # how often the driver looks for epochs that ended, while no job finishes


class Scheduler:
    def __init__(self, preset: Preset, ledger: Ledger, data: DataSet, ray):
        self.preset, self.ledger, self.data, self.ray = preset, ledger, data, ray
        self.teachers, self.cells = expand(preset, data.id)
        self.by_id = {cell.id: cell for cell in self.cells}
        self.similarity = Similarity(self.teachers, self.cells, ledger)
        self.healer = CacheHealer(ledger, self.job)
        self.in_flight = InFlight()
        self.started = 0  # jobs started by this invocation
        self.pace = Pace()  # how long the cells left will take
        self.todo = Backlog()
        self.epochs = EpochChannel()  # per-epoch metrics from the jobs, for their live runs
        resources = preset.resources.cell
        self.cell_task = ray.remote(run_cells).options(num_cpus=resources.cpus, num_gpus=resources.gpus,
                                                       resources=resources.custom or None)
        self.teacher_task = teacher_task(ray)

    def job(self, teacher: TeacherSpec) -> TeacherJob:
        matched = tuple(sorted({(c.k, c.intermediate_points) for c in self.cells if c.teacher == teacher and c.intermediate}))
        return TeacherJob(teacher, self.data, self.ledger.store.root, matched, self.preset.data.max_frames,
                          self.preset.resources.teacher)

    def run(self) -> None:
        unlogged = self.ledger.load(self.cells)
        for cell in sorted(unlogged, key=lambda c: c.mode is not Mode.SKYLINE):  # a run names its teacher's
            self.ledger.log(cell, self.ledger.results[cell.id])
        for teacher in self.teachers:  # students recorded before their teacher (in an earlier run, say)
            self.similarity.measure_against(teacher)
        damaged = {teacher.id for teacher in self.teachers if self.healer.check(teacher)}
        self.todo = backlog(self.teachers, self.cells, set(self.ledger.results), set(self.healer.caches), damaged)
        for teacher in self.todo.teachers:
            self._start_teacher(teacher)
        self._drain()
        jobs = len(self.in_flight) + self.todo.waiting(self.preset.resources.cell.parallel_group)
        print(f"{len(self.cells)} cells, {len(self.ledger.results)} already done, {jobs} jobs to run", flush=True)
        progress = GridProgress(self._counts())
        try:
            while len(self.in_flight):
                ready, _ = self.ray.wait(self.in_flight.refs(), num_returns=1, timeout=LIVE_SECONDS)
                self._stream()  # a finished job's last epochs before its result
                if ready:
                    self._collect(ready[0])
                    self._drain()
                progress.update(self._counts())
        except BaseException:
            self._abandon()
            raise
        finally:
            progress.close()
            self.epochs.close()

    def _counts(self) -> Counts:
        """Where the grid stands. Ray does not say which submitted task runs: as many cells as the cluster
        holds now (beside the teachers training) are counted running, the rest queued."""
        teachers, jobs = len(self.in_flight.teachers), list(self.in_flight.cells.values())
        slots = cell_slots(self.ray, self.preset.resources, teachers) if jobs else 0
        running = sum(len(job) for job in jobs[:slots])
        submitted = sum(map(len, jobs))
        return Counts(done=len(self.ledger.results), running=running, failed=len(self.ledger.failed),
                      total=len(self.cells), teachers=teachers, queued=submitted - running,
                      left_seconds=self.pace.left(self.ledger.unfinished(self.cells)))

    def _stream(self) -> None:
        """Start the runs of the jobs that started, and log the epochs that ended, since the last look."""
        for cell_id, metrics, at in self.epochs.receive():
            if metrics is None:  # its job began on its worker (a queued cell has no run yet)
                self.ledger.began(self.by_id[cell_id], at)
            else:
                self.ledger.epoch(cell_id, metrics, at)

    def _start_teacher(self, teacher: TeacherSpec) -> None:
        """Start fitting a teacher; its skyline's run is live from now, unless the skyline is done already
        (the teacher's caches are only written again)."""
        job, skyline = self.job(teacher), self.ledger.skylines[teacher.id]
        if skyline.id not in self.ledger.results:  # its run begins when its training does (`_stream`)
            job = dataclasses.replace(job, on_epoch=self.epochs.sender(skyline.id))
        self.in_flight.teachers[self.teacher_task.remote(job)] = job
        self.started += 1

    def _collect(self, ref) -> None:
        """Record what a finished job computed, or its error; stop when the store is gone."""
        job = self.in_flight.pop(ref)
        try:
            value, error = self.ray.get(ref), None
        except Exception as failure:  # the job's own error, re-raised by Ray: record it, carry on
            value, error = None, failure
        if error is not None and is_storage_failure(error):
            _stop_if_store_lost(self.ledger.store)  # a store that went away is no cell's fault: stop, rerun them later
        try:
            if isinstance(job, TeacherJob):
                self._teacher_done(job.spec, value, error)
            elif error is None:
                for cell, result in zip(job, value):
                    self._cell_done(cell, result, len(job))
            elif len(job) > 1 or not self.healer.heal(job[0], error, self.in_flight, self.todo, self._start_teacher):
                for cell in job:  # a group trained together fails together
                    self.ledger.fail(cell, error)
        except Exception as failure:  # writing its result or its MLflow run failed
            if not is_storage_failure(failure):
                raise
            _stop_if_store_lost(self.ledger.store)
            name = job.spec.name if isinstance(job, TeacherJob) else ", ".join(cell.name for cell in job)
            raise OrchestratorError(f"{name}: recording it failed: {one_line(failure)}") from None

    def _cell_done(self, cell: Cell, result: CellResult, group: int) -> None:
        """Record a finished cell (of a job of `group` cells, which share its wall time); under
        `keep_weights: best` the students of its family and k that are the best neither read whole nor read
        adaptively lose their kept weights."""
        self.ledger.record(cell, self.similarity.measured(cell, result))
        self.pace.finished(cell, result.wall_seconds / group)
        if self.preset.keep_weights == "best":
            for loser in weights.losers(cell, self.cells, self.ledger.results):
                self.ledger.drop_weights(loser, f"not the best {cell.family} k{cell.k} student (validation GAP, whole or adaptive)")

    def _teacher_done(self, teacher: TeacherSpec, result: CellResult | None, error: BaseException | None) -> None:
        skyline = self.ledger.skylines[teacher.id]
        if error is not None:
            if skyline.id not in self.ledger.results:
                self.ledger.fail(skyline, error)
            for cell in self.todo.blocked.pop(teacher.id, []):
                self.ledger.fail(cell, f"its teacher {teacher.name} failed: {one_line(error)}")
            return
        self.ledger.fitted(skyline, result, self.healer.why(teacher))
        self.pace.finished(skyline, result.wall_seconds)
        self.similarity.measure_against(teacher)
        self.healer.fitted(teacher, result.caches)
        self.todo.release(teacher)

    def _drain(self) -> None:
        """Start ready cells while there are slots for them: parallel cells whose teachers would train
        alike as one job (`orchestrator.experiment.groups`)."""
        running = len(self.in_flight.cells)
        while self.todo.ready and running < self._slots():
            job = grouped(self.todo.ready, self.preset.resources.cell.parallel_group)[0]
            self.todo.ready = [cell for cell in self.todo.ready if cell not in job]
            self._submit(job)
            running += 1

    def _slots(self) -> float:
        """How many cells may run now. Ray has no priorities, and a teacher's Train workers ask for their
        CPUs only once its trainer has started, after cells queued meanwhile have taken them; so while
        teachers train (everything serial waits on them), cells leave the teachers' CPUs free."""
        training = len(self.in_flight.teachers)
        if not training or self.preset.resources.separate_node_types():
            return math.inf
        return cell_slots(self.ray, self.preset.resources, training)

    def _submit(self, job: tuple[Cell, ...]) -> None:
        """Start one cell, or a group of parallel cells, as one Ray task (each cell's epochs to its own run)."""
        store, cache = self.ledger.store, self.healer.cache_of(job[0])
        kept = tuple(Kept(sample=store.representations(cell.id), predictions=store.predictions(cell.id),
                          weights=store.weights(cell.id) if weights.slot(cell) else None,
                          adaptive_predictions=store.adaptive_predictions(cell.id) if cell.adaptive else None)
                     for cell in job)
        senders = tuple(self.epochs.sender(cell.id) for cell in job)
        ref = self.cell_task.remote(job, self.data, cache, self.preset.resources.cell.device, senders, kept)
        self.in_flight.cells[ref] = job
        self.started += 1

    def _abandon(self) -> None:
        """Cancel the jobs in flight and delete their live runs: the grid stops, and a rerun does them
        again (and logs them once)."""
        self.in_flight.cancel(self.ray)
        self.ledger.discard_all()


def _stop_if_store_lost(store: Store) -> None:
    """Raise when the store is gone: every job after would fail the same way, and none is at fault."""
    lost = store_lost(store.root)
    if lost is not None:
        raise lost
