"""python -m orchestrator.grid : run a preset's whole experiment matrix on Ray and record it in MLflow.

With no arguments: preset `smoke`, local Ray, store `./runs`, MLflow at `sqlite:///runs/mlflow.db`,
synthetic data generated into the store on first use. Under `ray job submit` the same command runs on
the cluster (`RAY_ADDRESS` is set there). Re-running skips every finished cell; exit status 0 when every
cell finished, 1 when some failed (named at the end), 2 for a bad preset or arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

from orchestrator.driver import session as driver
from orchestrator.store import weights
from orchestrator.cache.files import DamagedCache, MissingCache, set_aside
from orchestrator.jobs.cells import run_cell
from orchestrator.experiment.presets import Preset, load_override, load_preset
from orchestrator.driver.console import Counts, GridProgress
from orchestrator.jobs.data_sets import DataSet
from orchestrator.errors import OrchestratorError, note
from orchestrator.driver.live import EpochChannel
from orchestrator.experiment.matrix import Cell, TeacherSpec, expand
from orchestrator.driver.plan import show_plan
from orchestrator.report.build import report_folder, report_on_parent
from orchestrator.experiment.results import CellResult
from orchestrator.store.samples import rep_metrics
from orchestrator.store.access import is_storage_failure, store_lost
from orchestrator.store.layout import Store
from orchestrator.report.summary import summarize
from orchestrator.jobs.teachers import TeacherJob, cache_key, check_caches
from orchestrator.jobs.timing import time_on_parent

LIVE_SECONDS = 2.0  # how often the driver looks for epochs that ended, while no job finishes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.grid", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smoke", help="a shipped preset (smoke, tiny, paper) or a YAML file")
    parser.add_argument("--override", help="a YAML file merged into the preset (e.g. the best configuration of a search)")
    parser.add_argument("--store", default="runs", help="folder or URI for data, checkpoints, caches and results")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<store>/mlflow.db)")
    parser.add_argument("--experiment", help="MLflow experiment (default: fewer-frames-<preset>)")
    parser.add_argument("--data", help="a folder or URI with train/ and validate/ shards (default: the preset's)")
    parser.add_argument("--plan", action="store_true",
                        help="print what the preset would run and what the store holds already; run nothing")
    parser.add_argument("--rates", help="with --plan: seconds per video from `benchmarks/paper_cost.py --save`, "
                                        "for the device-hours of the grid")
    return parser.parse_args(argv)


@dataclass
class Plan:
    """What a grid has left to do, given the cells already done and the teachers whose caches exist."""

    teachers: list[TeacherSpec] = field(default_factory=list)  # to fit: train, or export their caches again
    ready: list[Cell] = field(default_factory=list)  # may start now
    blocked: dict[str, list[Cell]] = field(default_factory=lambda: defaultdict(list))  # by the teacher they read


def plan(teachers: list[TeacherSpec], cells: list[Cell], done: set[str], cached: set[str],
         damaged: set[str] = frozenset()) -> Plan:
    """A teacher is fitted when its skyline is not done, when a cache of it was found damaged (the store
    heals), or when a cell that needs it is not done and its caches are incomplete (caches deleted on
    purpose stay deleted until a cell needs them); a serial cell waits for its teacher's caches unless they
    exist already."""
    todo = Plan()
    for teacher in teachers:
        mine = [c for c in cells if c.teacher == teacher]
        skyline_done = all(c.id in done for c in mine if c.mode == "skyline")
        needed = teacher.id not in cached and any(c.id not in done for c in mine)
        if not skyline_done or teacher.id in damaged or needed:
            todo.teachers.append(teacher)
    for cell in cells:
        if cell.id in done or cell.mode == "skyline":
            continue
        if cell.mode == "serial" and cell.teacher.id not in cached:
            todo.blocked[cell.teacher.id].append(cell)
        else:
            todo.ready.append(cell)
    return todo


class Grid:
    """One invocation: schedules teachers and cells on Ray as their inputs become ready, and records each
    (in the store, then MLflow) as it finishes. A teacher cache found damaged (at the start, or by a
    student reading it) is written again from the teacher's final checkpoint, once per invocation, and
    the students that need it wait for it."""

    def __init__(self, preset: Preset, ledger: driver.Ledger, data: DataSet, ray):
        self.preset, self.ledger, self.data, self.ray = preset, ledger, data, ray
        self.teachers, self.cells = expand(preset, data.id)
        self.skylines = {c.teacher.id: c for c in self.cells if c.mode == "skyline"}
        # What a cell's representations are compared with: its teacher's (a baseline's: the teacher of its
        # family, data fraction and seed; a parallel pair's own, in its sample).
        teacher_of = {(t.family, t.size, t.model, t.data_fraction, t.seed): t for t in self.teachers}
        self.references = {c.id: c.teacher or teacher_of[(c.family, c.size, c.model, c.data_fraction, c.seed)]
                           for c in self.cells if c.mode in ("baseline", "serial")}
        self.caches: dict[str, dict[str, str]] = {}  # teacher id -> its complete caches (key -> URI)
        self.rebuilds: dict[str, str] = {}  # teacher id -> why its caches are written again
        self.retried: set[str] = set()  # cells run again after finding their cache gone mid-rewrite
        self.in_flight: dict = {}  # Ray ObjectRef -> the TeacherJob or Cell it computes
        self.started = 0  # jobs started by this invocation
        self.todo = Plan()
        self.epochs = EpochChannel()  # per-epoch metrics from the jobs, for their live runs
        resources = preset.resources.cell
        self.cell_task = ray.remote(run_cell).options(num_cpus=resources.cpus, num_gpus=resources.gpus,
                                                      resources=resources.custom or None)
        self.teacher_task = driver.teacher_task(ray)

    @property
    def store(self) -> Store:
        return self.ledger.store

    def job(self, teacher: TeacherSpec) -> TeacherJob:
        ks = tuple(sorted({c.k for c in self.cells if c.teacher is teacher and c.intermediate}))
        return TeacherJob(teacher, self.data, self.store.root, ks, self.preset.data.max_frames,
                          self.preset.resources.teacher)

    def run(self) -> None:
        unlogged = self.ledger.load(self.cells)
        for cell in sorted(unlogged, key=lambda c: c.mode != "skyline"):  # a cell's run names its teacher's
            self.ledger.log(cell, self.ledger.results[cell.id], self.tags(cell, self.ledger.results[cell.id]))
        for teacher in self.teachers:  # students recorded before their teacher (in an earlier run, say)
            self.measure_against(teacher)
        damaged = {teacher.id for teacher in self.teachers if self.check_caches(teacher)}
        self.todo = plan(self.teachers, self.cells, set(self.ledger.results), set(self.caches), damaged)
        for teacher in self.todo.teachers:
            self.start_teacher(teacher)
        self.drain()
        waiting = len(self.in_flight) + len(self.todo.ready) + sum(map(len, self.todo.blocked.values()))
        print(f"{len(self.cells)} cells, {len(self.ledger.results)} already done, {waiting} jobs to run", flush=True)
        progress = GridProgress(self.counts())
        try:
            while self.in_flight:
                ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=LIVE_SECONDS)
                self.stream()  # a finished job's last epochs before its result
                if ready:
                    self.collect(ready[0])
                    self.drain()
                progress.update(self.counts())
        except BaseException:
            self.abandon()
            raise
        finally:
            progress.close()
            self.epochs.close()

    def counts(self) -> Counts:
        """Where the grid stands. Ray does not say which submitted task runs: as many cells as the cluster
        holds now (beside the teachers training) are counted running, the rest queued."""
        jobs = list(self.in_flight.values())
        teachers, submitted = sum(isinstance(j, TeacherJob) for j in jobs), sum(isinstance(j, Cell) for j in jobs)
        running = min(submitted, driver.cell_slots(self.ray, self.preset.resources, teachers)) if submitted else 0
        return Counts(done=len(self.ledger.results), running=running, failed=len(self.ledger.failed),
                      total=len(self.cells), teachers=teachers, queued=submitted - running)

    def stream(self) -> None:
        """Log the epochs that ended since the last look on their cells' live runs."""
        for cell_id, metrics, ended in self.epochs.receive():
            self.ledger.epoch(cell_id, metrics, ended)

    def check_caches(self, teacher: TeacherSpec) -> bool:
        """Note a teacher's caches when they are complete and its skyline is done; a damaged one is set
        aside, and the reason its caches are written again is kept for its skyline's run. Whether one
        was damaged."""
        caches, damaged = check_caches(self.job(teacher))
        done = self.skylines[teacher.id].id in self.ledger.results
        for problem in damaged:
            note(teacher.name, f"{problem}; set aside, to be written again from the teacher's checkpoint")
        if caches is not None and done:
            self.caches[teacher.id] = caches
        elif done:
            self.rebuilds[teacher.id] = "; ".join(damaged) or "its caches were missing"
        return bool(damaged)

    def start_teacher(self, teacher: TeacherSpec) -> None:
        """Start fitting a teacher; its skyline's run is live from now, unless the skyline is done already
        (the teacher's caches are only written again)."""
        job, skyline = self.job(teacher), self.skylines[teacher.id]
        if skyline.id not in self.ledger.results:
            self.ledger.start(skyline)
            job = dataclasses.replace(job, on_epoch=self.epochs.sender(skyline.id))
        self.in_flight[self.teacher_task.remote(job)] = job
        self.started += 1

    def collect(self, ref) -> None:
        """Record what a finished job computed, or its error; stop when the store is gone."""
        job = self.in_flight.pop(ref)
        try:
            value, error = self.ray.get(ref), None
        except Exception as failure:  # the job's own error, re-raised by Ray: record it, carry on
            value, error = None, failure
        if error is not None and is_storage_failure(error):
            self.stop_if_store_lost()  # a store that went away is no cell's fault: stop, rerun them later
        try:
            if isinstance(job, TeacherJob):
                self.teacher_done(job.spec, value, error)
            elif error is None:
                self.ledger.record(job, self.measured(job, value), self.tags(job, value))
                if self.preset.keep_weights == "best":
                    for loser in weights.losers(job, self.cells, self.ledger.results):
                        self.ledger.drop_weights(loser, f"not the best {job.family} k{job.k} student by validation GAP")
            elif not self.heal(job, error):
                self.ledger.fail(job, error)
        except Exception as failure:  # writing its result or its MLflow run failed
            if not is_storage_failure(failure):
                raise
            self.stop_if_store_lost()
            name = job.spec.name if isinstance(job, TeacherJob) else job.name
            raise OrchestratorError(f"{name}: recording it failed: {driver.one_line(failure)}") from None

    def heal(self, cell: Cell, error: BaseException) -> bool:
        """Whether a serial cell that failed on its teacher's cache runs again: a damaged (or gone) cache is
        written again from the teacher's checkpoint once per invocation, the teacher's serial cells waiting;
        a cell that found it gone as another set it aside waits too, or reruns once if the rewrite ended."""
        damaged, missing = driver.cause(error, DamagedCache), driver.cause(error, MissingCache)
        if (damaged is None and missing is None) or cell.mode != "serial":
            return False
        teacher = cell.teacher
        self.ledger.discard(cell)  # it runs again once the cache is written
        if any(isinstance(job, TeacherJob) and job.spec == teacher for job in self.in_flight.values()):
            self.todo.blocked[teacher.id].append(cell)
            return True
        if teacher.id in self.rebuilds:
            if missing is None or teacher.id not in self.caches or cell.id in self.retried:
                return False
            self.retried.add(cell.id)
            self.todo.ready.insert(0, cell)
            return True
        problem = damaged or missing
        aside = set_aside(problem.location)
        note(cell.name, f"{problem}; {f'{aside} set aside, ' if aside else ''}the cache is written again from "
                        "the teacher's checkpoint, and the cell runs after")
        self.caches.pop(teacher.id, None)
        self.rebuilds[teacher.id] = problem.problem
        # It waits for the new cache, and so do the teacher's serial cells not started yet.
        self.todo.blocked[teacher.id] += [cell] + [c for c in self.todo.ready if c.teacher == teacher]
        self.todo.ready = [c for c in self.todo.ready if c.teacher != teacher]
        self.start_teacher(teacher)
        return True

    def teacher_done(self, teacher: TeacherSpec, result: CellResult | None, error: BaseException | None) -> None:
        skyline = self.skylines[teacher.id]
        if error is not None:
            if skyline.id not in self.ledger.results:
                self.ledger.fail(skyline, error)
            for cell in self.todo.blocked.pop(teacher.id, []):
                self.ledger.fail(cell, f"its teacher {teacher.name} failed: {driver.one_line(error)}")
            return
        why = self.rebuilds.get(teacher.id, "its caches were missing")
        self.ledger.fitted(skyline, result, self.tags(skyline, result), why)
        self.measure_against(teacher)
        self.caches[teacher.id] = result.caches
        # Serial cells first: they were waiting for this teacher while the others could run.
        self.todo.ready[:0] = self.todo.blocked.pop(teacher.id, [])

    def measured(self, cell: Cell, result: CellResult) -> CellResult:
        """`result` with how close the cell's representations are to its teacher's (when both samples are
        there: a baseline may finish before its teacher, and is measured when the teacher does)."""
        reference = self.references.get(cell.id)
        metrics = rep_metrics(self.store.representations(cell.id),
                              None if reference is None else self.store.representations(reference.id))
        return result if metrics is None else dataclasses.replace(result, **metrics)

    def measure_against(self, teacher: TeacherSpec) -> None:
        """Measure the recorded cells compared with `teacher` that were recorded before it."""
        for cell in self.cells:
            found = self.ledger.results.get(cell.id)
            if found is None or found.rep_cosine is not None or self.references.get(cell.id) != teacher:
                continue
            metrics = rep_metrics(self.store.representations(cell.id), self.store.representations(teacher.id))
            if metrics is not None:
                self.ledger.measured(cell, metrics)

    def tags(self, cell: Cell, result: CellResult | None = None) -> dict[str, str]:
        """A skyline's run points at its teacher's cache; a student's at its teacher's run; a finished
        cell's says where it trained."""
        if cell.mode == "skyline":
            return {} if result is None else driver.skyline_tags(result)
        tags = {} if result is None else {"device": result.device}
        if result is not None and result.weights:
            tags["weights"] = result.weights
        teacher_run = self.ledger.run_id(self.skylines[cell.teacher.id]) if cell.teacher else None
        if teacher_run:
            tags["teacher_run_id"] = teacher_run
        return tags

    def drain(self) -> None:
        """Start ready cells while there are slots for them."""
        running = sum(1 for job in self.in_flight.values() if isinstance(job, Cell))
        while self.todo.ready and running < self.slots():
            self.submit(self.todo.ready.pop(0))
            running += 1

    def slots(self) -> float:
        """How many cells may run now. Ray has no priorities, and a teacher's Train workers ask for their
        CPUs only once its trainer has started, after cells queued meanwhile have taken them; so while
        teachers train (everything serial waits on them), cells leave the teachers' CPUs free."""
        training = sum(1 for job in self.in_flight.values() if isinstance(job, TeacherJob))
        if not training or self.preset.resources.separate_node_types():
            return math.inf
        return driver.cell_slots(self.ray, self.preset.resources, training)

    def submit(self, cell: Cell) -> None:
        cache = None
        if cell.mode == "serial":
            cache = self.caches[cell.teacher.id][cache_key(cell.teacher, cell.k if cell.intermediate else None)]
        device, sample = self.preset.resources.cell.device, self.store.representations(cell.id)
        kept = self.store.weights(cell.id) if weights.slot(cell) else None
        self.ledger.start(cell, self.tags(cell))
        self.in_flight[self.cell_task.remote(cell, self.data, cache, device, self.epochs.sender(cell.id), sample,
                                             kept)] = cell
        self.started += 1

    def stop_if_store_lost(self) -> None:
        """Raise when the store is gone: every job after would fail the same way, and none is at fault."""
        lost = store_lost(self.store.root)
        if lost is not None:
            raise lost

    def abandon(self) -> None:
        """Cancel the jobs in flight and delete their live runs: the grid stops, and a rerun does them
        again (and logs them once)."""
        for ref in self.in_flight:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # already finished, or its worker already gone: nothing left to stop
                pass
        self.in_flight.clear()
        for cell in [c for c in self.cells if c.id in self.ledger.live]:
            try:
                self.ledger.discard(cell)
            except Exception:  # MLflow itself gone: the next start ends what is left RUNNING
                pass


def run(args: argparse.Namespace) -> int:
    preset = load_preset(args.preset, load_override(args.override), args.override)
    store, tracking_uri, data = driver.before_ray(args.store, args.tracking_uri, preset.data, args.data)
    experiment = args.experiment or f"fewer-frames-{preset.name}"
    from orchestrator.publish import publish_after_grid
    from orchestrator.tracking.tracker import Tracker

    ray = driver.start_ray()
    driver.refuse_local_store_on_a_cluster(ray, store, preset.resources)
    tracker = Tracker(tracking_uri, experiment, store.path("mlartifacts"))
    tracker.share_cells_view()
    stale = tracker.end_stale_runs()
    if stale:
        print(f"ended {stale} run(s) that an interrupted grid had left RUNNING")
    started = time.perf_counter()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    tracker.start_parent(f"{preset.name}-{stamp}", {"preset": args.preset, "store": store.root,
                                                    "data": args.data or "preset"}, {"preset": preset.name})
    driver.stop_on_sigterm()
    with tracker.ending_parent() as parent, driver.store_failures(store):
        grid = Grid(preset, driver.Ledger(store, tracker), data or driver.generated_data(ray, preset, store), ray)
        grid.run()
        parent.summary = summarize(grid.cells, grid.ledger.results)
        parent.status = "FAILED" if grid.ledger.failed else "FINISHED"
        time_on_parent(ray, preset, grid.data, tracker, trained=grid.started > 0)
        with report_folder(store, experiment) as folder:
            report = report_on_parent(tracker, folder)
        published = publish_after_grid(tracker.client, experiment) if preset.publish else []
    print()
    print(parent.summary)
    print(f"grid {preset.name}: {len(grid.cells)} cells in {time.perf_counter() - started:.0f} s; MLflow experiment "
          f"{experiment!r} at {tracking_uri}")
    if report is not None:
        where = report.files[0] if store.is_local else "the parent run's report.html artifact"
        print(f"report (the paper's tables and figures): {where}")
    print(tracker.how_to_open())
    for entry in published:
        print(entry.line())
    if grid.ledger.failed:
        print(f"error: {len(grid.ledger.failed)} cell(s) failed: {', '.join(grid.ledger.failed)}", file=sys.stderr)
        return driver.EXIT_FAILED
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rates and not args.plan:
        print("error: --rates goes with --plan", file=sys.stderr)
        return driver.EXIT_BAD_INPUT
    if args.plan:
        return driver.exit_status(lambda: show_plan(args.preset, args.override, args.store, args.tracking_uri,
                                                    args.data, args.rates), "nothing was started")
    return driver.exit_status(lambda: run(args), "finished cells are kept; run the same command again to do the rest")


if __name__ == "__main__":
    sys.exit(main())
