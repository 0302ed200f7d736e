"""python -m orchestrator.grid : run a preset's whole experiment matrix on Ray and record it in MLflow.

With no arguments: preset `smoke`, local Ray, store `./runs`, MLflow at `sqlite:///runs/mlflow.db`,
synthetic data generated into the store on first use. Under `ray job submit` the same command runs on
the cluster (`RAY_ADDRESS` is set there). Re-running skips every finished cell; exit status 0 when every
cell finished, 1 when some failed (named at the end), 2 for a bad preset or arguments.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone

import yaml

from orchestrator.config import Preset, load_preset
from orchestrator.errors import OrchestratorError
from orchestrator.jobs import DataSet, cache_plan, fit_teacher, prepare_data, run_cell, teacher_caches_complete
from orchestrator.matrix import Cell, TeacherSpec, expand
from orchestrator.storage import check_store, is_storage_failure, store_lost
from orchestrator.store import Store
from orchestrator.summary import summarize
from workloads.errors import WorkloadError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.grid", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smoke", help="a shipped preset (smoke, tiny, paper) or a YAML file")
    parser.add_argument("--override", help="a YAML file merged into the preset (e.g. the best configuration of a search)")
    parser.add_argument("--store", default="runs", help="folder or URI for data, checkpoints, caches and results")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<store>/mlflow.db)")
    parser.add_argument("--experiment", help="MLflow experiment (default: fewer-frames-<preset>)")
    parser.add_argument("--data", help="a folder or URI with train/ and validate/ shards (default: the preset's)")
    return parser.parse_args(argv)


def init_ray():
    import ray

    address = os.environ.get("RAY_ADDRESS") or "local"
    if ray.is_initialized():
        return ray
    if address == "local":
        ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
    else:
        ray.init(address=address, log_to_driver=False)
    return ray


def open_store(root: str, tracking_uri: str | None) -> tuple[Store, str]:
    """The store, checked and (a local folder) created, and the MLflow tracking URI: the one given, else
    SQLite in a local store; a store on object storage needs a tracking server."""
    store = Store(root)
    check_store(store.root)
    if tracking_uri is None and not store.is_local:
        raise OrchestratorError("a store on object storage needs --tracking-uri (an MLflow server)")
    if "://" not in store.root:
        os.makedirs(store.root, exist_ok=True)
    return store, tracking_uri or f"sqlite:///{store.path('mlflow.db')}"


def refuse_local_store_on_a_cluster(ray, store: Store, preset: Preset) -> None:
    """A local store exists on one node only: refuse it on a cluster of several nodes, and on one that
    will grow (the preset asks for node-type resources no node offers yet: the autoscaler adds them)."""
    if not store.is_local:
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    offered = {name for n in nodes for name in n.get("Resources", {})}
    wanted = set(preset.resources.teacher.custom) | set(preset.resources.cell.custom)
    if len(nodes) > 1 or wanted - offered:
        raise OrchestratorError(f"{store.root}: a local store is only on this node; a cluster of several nodes "
                                "needs --store s3://... (and an MLflow server as --tracking-uri)")


class Grid:
    """One invocation: schedules teachers and cells on Ray as their inputs become ready, records each
    in MLflow as it finishes, and writes its result to the store."""

    def __init__(self, preset: Preset, store: Store, tracker, data: DataSet, ray):
        self.preset, self.store, self.tracker, self.data, self.ray = preset, store, tracker, data, ray
        self.teachers, self.cells = expand(preset, data.id)
        self.failed: list[str] = []
        self.results: dict[str, dict] = {}
        self.teacher_runs: dict[str, dict] = {}  # teacher id -> {"run_id", "caches"}
        self.pending: dict = {}  # ObjectRef -> ("teacher", TeacherSpec) | ("cell", Cell)
        self.waiting: dict[str, list[Cell]] = defaultdict(list)
        self.backlog: list[Cell] = []  # ready to run, held back while teachers need the CPUs
        self.training: set[str] = set()  # teachers in flight
        cell_resources = preset.resources.cell
        self.cell_task = ray.remote(run_cell).options(num_cpus=cell_resources.cpus, num_gpus=cell_resources.gpus,
                                                      resources=cell_resources.custom or None)
        self.device = "cuda" if cell_resources.gpus > 0 else "cpu"
        self.teacher_task = ray.remote(fit_teacher).options(num_cpus=0)

    def intermediate_ks(self, teacher: TeacherSpec) -> list[int]:
        return sorted({c.k for c in self.cells if c.teacher is teacher and c.intermediate})

    def skyline(self, teacher: TeacherSpec) -> Cell:
        return next(c for c in self.cells if c.mode == "skyline" and c.teacher == teacher)

    def run(self) -> None:
        unlogged = []
        for cell in self.cells:
            done = self.store.read_json(self.store.result(cell.id))
            if done is not None:
                self.results[cell.id] = done
                if done.get("run_id") is None:  # an earlier driver was stopped before it noted the run
                    unlogged.append(cell)
        for cell in sorted(unlogged, key=lambda c: c.mode != "skyline"):  # a cell's run names its teacher's
            self.log(cell, self.results[cell.id], adopt=True)
        for teacher in self.teachers:
            skyline = self.skyline(teacher)
            caches = teacher_caches_complete(self.store, teacher, self.intermediate_ks(teacher), self.data.num_classes)
            if skyline.id in self.results and caches is not None:
                self.teacher_runs[teacher.id] = {"run_id": self.results[skyline.id]["run_id"], "caches": caches}
            elif any(c.teacher == teacher and c.id not in self.results for c in self.cells) or skyline.id not in self.results:
                ref = self.teacher_task.remote(teacher, self.data, self.store.root, self.intermediate_ks(teacher),
                                               self.preset.data.max_frames, self.preset.resources.teacher)
                self.pending[ref] = ("teacher", teacher)
                self.training.add(teacher.id)
        for cell in self.cells:
            if cell.id in self.results or cell.mode == "skyline":
                continue
            if cell.mode == "serial" and cell.teacher.id not in self.teacher_runs:
                self.waiting[cell.teacher.id].append(cell)
            else:
                self.backlog.append(cell)
        self.drain()
        todo = len(self.pending) + len(self.backlog) + sum(len(v) for v in self.waiting.values())
        print(f"{len(self.cells)} cells, {sum(1 for c in self.cells if c.id in self.results)} already done, "
              f"{todo} jobs to run", flush=True)
        while self.pending:
            ready, _ = self.ray.wait(list(self.pending), num_returns=1)
            kind, item = self.pending.pop(ready[0])
            try:
                value, error = self.ray.get(ready[0]), None
            except Exception as failure:  # a cell's own error, re-raised by Ray: record it, carry on
                value, error = None, failure
            if error is not None and is_storage_failure(error):
                self.stop_if_store_lost()  # a store that went away is no cell's fault: stop, rerun them later
            try:
                if kind == "teacher":
                    self.training.discard(item.id)
                    self.teacher_done(item, value, error)
                else:
                    self.cell_done(item, value, error)
            except Exception as failure:  # writing its result or its MLflow run failed
                if not is_storage_failure(failure):
                    raise
                self.stop_if_store_lost()
                raise OrchestratorError(f"{item.name}: recording it failed: {_one_line(failure)}") from None
            self.drain()

    def stop_if_store_lost(self) -> None:
        """Raise, with queued and running jobs cancelled, when the store is gone: every job after
        would fail the same way, and none of them is at fault."""
        lost = store_lost(self.store.root)
        if lost is None:
            return
        self.abandon()
        raise lost

    def abandon(self) -> None:
        """Cancel the jobs in flight: the grid stops, and a rerun does them again."""
        for ref in self.pending:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # already finished, or its worker already gone: nothing left to stop
                pass
        self.pending.clear()

    def cell_slots(self) -> float:
        """How many cells may run now. Ray has no priorities, and a teacher's Train workers ask for their
        CPUs only once its trainer has started, after cells queued meanwhile have taken them; so while
        teachers train (everything serial waits on them), cells leave the teachers' CPUs free."""
        teacher = self.preset.resources.teacher
        cell = self.preset.resources.cell
        if not self.training or (teacher.custom and cell.custom and not set(teacher.custom) & set(cell.custom)):
            return float("inf")  # nothing trains, or teachers and cells go to different node types
        reserved = len(self.training) * teacher.num_workers * teacher.cpus_per_worker
        total = self.ray.cluster_resources().get("CPU", 0.0)
        return max(1.0, (total - reserved) // max(self.preset.resources.cell.cpus, 1e-9))

    def drain(self) -> None:
        running = sum(1 for kind, _ in self.pending.values() if kind == "cell")
        while self.backlog and running < self.cell_slots():
            self.submit(self.backlog.pop(0))
            running += 1

    def submit(self, cell: Cell) -> None:
        cache = None
        if cell.mode == "serial":
            caches = self.teacher_runs[cell.teacher.id]["caches"]
            key = "base"
            if cell.intermediate:
                plan = cache_plan(cell.teacher, [cell.k], self.data.num_classes)
                key = next(name for name, k in plan.items() if k == cell.k)
            cache = caches[key]
        self.pending[self.cell_task.remote(cell, self.data, cache, self.device)] = ("cell", cell)

    def teacher_done(self, teacher: TeacherSpec, value: dict | None, error: BaseException | None) -> None:
        skyline = self.skyline(teacher)
        if error is not None:
            self.record_failure(skyline, error)
            for cell in self.waiting.pop(teacher.id, []):
                self.record_failure(cell, f"its teacher {teacher.name} failed: {_one_line(error)}")
            return
        run_id = self.record(skyline, value)
        self.teacher_runs[teacher.id] = {"run_id": run_id, "caches": value["caches"]}
        # Serial cells first: they were waiting for this teacher while the others could run.
        self.backlog[:0] = self.waiting.pop(teacher.id, [])

    def cell_done(self, cell: Cell, value: dict | None, error: BaseException | None) -> None:
        if error is not None:
            self.record_failure(cell, error)
            return
        self.record(cell, value)

    def record(self, cell: Cell, value: dict) -> str:
        return self.log(cell, record_result(self.store, cell, value))

    def log(self, cell: Cell, value: dict, adopt: bool = False) -> str:
        tags = {"device": value.get("device", "")}
        if cell.mode == "skyline":
            tags = skyline_tags(value)
        elif cell.teacher:
            tags["teacher_run_id"] = self.results[self.skyline(cell.teacher).id]["run_id"]
        value = log_result(self.store, self.tracker, cell, value, tags, adopt)
        self.results[cell.id] = value
        print(f"  done  {cell.name}: GAP {value['gap']:.3f}  mAP {value['map']:.3f}  "
              f"({value['train_seconds']:.0f} s)", flush=True)
        if value.get("run_snapshot"):
            print(f"  note  {cell.name}: {value['run_snapshot']}", flush=True)
        return value["run_id"]

    def record_failure(self, cell: Cell, error) -> None:
        self.tracker.log_cell(cell, None, error=error)
        self.failed.append(cell.name)
        print(f"  FAILED {cell.name}: {_one_line(error)}", flush=True)


def record_result(store: Store, cell: Cell, value: dict) -> dict:
    """Keep a finished cell's result with no run yet; `log_result` then logs the run and notes it. A driver
    stopped in between has lost no training, and the next one logs the cell's run exactly once."""
    value = {**value, "run_id": None, "cell": cell.name}
    store.write_json(store.result(cell.id), value)
    return value


def log_result(store: Store, tracker, cell: Cell, value: dict, tags: dict[str, str], adopt: bool = False) -> dict:
    """Log a kept result's MLflow run (with `adopt`, first look for the run an earlier driver logged for
    exactly this result) and note the run in the result, which is returned."""
    run_id = adopt and tracker.logged_run(cell.id, value["gap"])
    if not run_id:
        run_id = tracker.log_cell(cell, value, tags=tags)
    value = {**value, "run_id": run_id, "cell": cell.name}
    store.write_json(store.result(cell.id), value)
    return value


def skyline_tags(value: dict) -> dict[str, str]:
    """A teacher's (skyline) run points at its cache and its checkpoint, and says where it trained."""
    tags = {"cache_uri": value["caches"]["base"], "checkpoint": str(value.get("checkpoint")),
            "device": value.get("device", "")}
    if value.get("run_snapshot"):  # Ray Train's record of the teacher's run was unreadable and set aside
        tags["run_snapshot"] = value["run_snapshot"]
    return tags


def _one_line(error) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        overrides = None
        if args.override:
            with open(args.override) as handle:
                overrides = yaml.safe_load(handle) or {}
        preset = load_preset(args.preset, overrides)
    except (OrchestratorError, OSError, yaml.YAMLError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        store, tracking_uri = open_store(args.store, args.tracking_uri)
    except OrchestratorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    experiment = args.experiment or f"fewer-frames-{preset.name}"
    from orchestrator.tracking import Tracker

    ray = init_ray()
    try:
        refuse_local_store_on_a_cluster(ray, store, preset)
        tracker = Tracker(tracking_uri, experiment, store.path("mlartifacts"))
        stale = tracker.end_stale_runs()
    except OrchestratorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if stale:
        print(f"ended {stale} run(s) that an interrupted grid had left RUNNING")
    started = time.perf_counter()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    tracker.start_parent(f"{preset.name}-{stamp}", {"preset": args.preset, "store": store.root, "data": args.data or "preset"},
                         {"preset": preset.name})

    def interrupted(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    status, summary, grid = "FAILED", None, None
    try:
        data = ray.get(ray.remote(prepare_data).options(num_cpus=1).remote(preset.data, store.root, args.data))
        grid = Grid(preset, store, tracker, data, ray)
        grid.run()
        summary = summarize(grid.cells, grid.results)
        status = "FAILED" if grid.failed else "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        if grid is not None:
            grid.abandon()
        ray.shutdown()  # see below
        print("interrupted: finished cells are kept; run the same command again to do the rest", file=sys.stderr)
        return 130
    except (OrchestratorError, WorkloadError) as error:
        # Ray's driver threads print what the cluster reports (a Train controller that failed with the
        # store, say) whenever it comes: stopped first, they cannot bury the reason under it.
        ray.shutdown()
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # the store failed outside a job: preparing the data, reading results
        if not is_storage_failure(error):
            raise
        lost = store_lost(store.root)
        ray.shutdown()
        print(f"error: {lost or f'{store.root}: {_one_line(error)}'}", file=sys.stderr)
        return 2
    finally:
        tracker.end_parent(status, summary)
    elapsed = time.perf_counter() - started
    print()
    print(summary)
    print(f"grid {preset.name}: {len(grid.cells)} cells in {elapsed:.0f} s; MLflow experiment {experiment!r} at {tracking_uri}")
    if tracking_uri.startswith("sqlite:"):
        print(f"open it: mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port 5000  "
              f"then http://127.0.0.1:5000")
    if grid.failed:
        print(f"error: {len(grid.failed)} cell(s) failed: {', '.join(grid.failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
