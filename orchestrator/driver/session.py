"""What every driver (`python -m orchestrator.grid`, `python -m orchestrator.tune`) does around its own
work (the store and the tracking store are checked by `orchestrator.store.access` first): start Ray, refuse a
local store on a cluster of several nodes, prepare the data, start teachers, count the slots for cells, record finished cells, and turn how
it all ended into one line and an exit status:

    0 done; 1 some cells (or every trial) failed; 2 bad input or a store that cannot be used; 130 interrupted.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable

from orchestrator.store import access as storage, weights
from orchestrator.experiment.presets import DataConfig, Preset, Resources

from orchestrator.jobs.data_sets import DataSet, check_shards, locate, prepare_data
from orchestrator.errors import OrchestratorError, note, one_line, say
from orchestrator.experiment.matrix import Cell
from orchestrator.experiment.results import CellResult
from orchestrator.store.samples import has_sample
from orchestrator.store.access import is_storage_failure, store_lost
from orchestrator.store.layout import DamagedFile, Store
from orchestrator.jobs.teachers import fit_teacher
from workloads.errors import WorkloadError
from workloads.memory import allocator_env

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130


def exit_status(work: Callable[[], int], interrupted: str) -> int:
    """Run a driver's `work` and return its exit status; an error or an interruption ends as one line on
    stderr (`interrupted` says what is kept), printed once Ray has stopped, so that nothing Ray prints
    later (a Train controller's error, say) buries why the driver stopped."""
    try:
        return work()
    except KeyboardInterrupt:
        _stop_ray()
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OrchestratorError, WorkloadError) as error:
        _stop_ray()
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _stop_ray() -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def stop_on_sigterm() -> None:
    """SIGTERM (a batch scheduler, `ray job stop`) stops the driver as Ctrl-C does: through whatever handles
    SIGINT at that moment (Ray Tune's, which saves a study, while a search runs), else as KeyboardInterrupt
    (also when SIGINT is ignored, as it is for a job a shell started in the background)."""

    def stop(signum, frame):
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):
            raise KeyboardInterrupt(signal.Signals(signum).name)
        handler(signal.SIGINT, frame)

    signal.signal(signal.SIGTERM, stop)


@contextmanager
def store_failures(store: Store):
    """A failure of the store outside any job (preparing data, reading or writing results) as one line:
    the store is gone (finished work is kept), or what failed on it."""
    try:
        yield
    except (OrchestratorError, WorkloadError):
        raise
    except Exception as error:
        if not is_storage_failure(error):
            raise
        raise store_lost(store.root) or OrchestratorError(f"{store.root}: {one_line(error)}") from None


def start_ray(address: str | None = None):
    """Ray: the cluster `address` (or `RAY_ADDRESS`, as under `ray job submit`) names, else a local one.
    Its workers start with the allocator settings that keep batches off page faults (`workloads.memory`)."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if ray.is_initialized():
        return ray
    runtime_env = {"env_vars": allocator_env()}
    if address == "local":
        ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env=runtime_env)
    else:
        ray.init(address=address, log_to_driver=False, runtime_env=runtime_env)
    return ray


def refuse_local_store_on_a_cluster(ray, store: Store, resources: Resources) -> None:
    """A local store exists on one node only: refuse it on a cluster of several nodes, and on one that
    will grow (the preset asks for node-type resources no node offers yet: the autoscaler adds them)."""
    if not store.is_local:
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    offered = {name for n in nodes for name in n.get("Resources", {})}
    wanted = set(resources.teacher.custom) | set(resources.cell.custom)
    if len(nodes) > 1 or wanted - offered:
        raise OrchestratorError(f"{store.root}: a local store is only on this node; a cluster of several nodes "
                                "needs --store s3://... (and an MLflow server as --tracking-uri)")


def before_ray(root: str, tracking_uri: str | None, config: DataConfig,
               data_override: str | None = None) -> tuple[Store, str, DataSet | None]:
    """Everything checked before Ray starts, in this order so that bad input writes nothing: the store
    (reachable, a folder, a tracking store that answers), the data (every shard; None for synthetic data
    still to be generated), then the store made ready for writing. (store, tracking URI, data set)."""
    store = storage.store_of(root, tracking_uri)
    with store_failures(store):
        data = locate(config, store, data_override)
    return store, storage.open_store(store, tracking_uri), data


def generated_data(ray, preset: Preset, store: Store) -> DataSet:
    """The preset's synthetic data set generated into the store by a Ray task, then checked."""
    data = ray.get(ray.remote(prepare_data).options(num_cpus=1).remote(preset.data, store.root))
    check_shards(data, store)
    return data


def teacher_task(ray):
    """`fit_teacher` as a Ray task. It takes no CPU itself: its Ray Train workers ask for the teacher's."""
    return ray.remote(fit_teacher).options(num_cpus=0)


def cell_slots(ray, resources: Resources, teachers_training: int = 0) -> int:
    """How many cells fit in the cluster's CPUs now, beside the workers of `teachers_training` teachers."""
    teacher = resources.teacher
    reserved = teachers_training * teacher.num_workers * teacher.cpus_per_worker
    total = ray.cluster_resources().get("CPU", 0.0)
    return max(1, int((total - reserved) // max(resources.cell.cpus, 1e-9)))


class Ledger:
    """The cells a driver knows of: finished, failed, and running (their live MLflow runs). A result is
    kept in the store first (no run id), then logged in MLflow, then its run id noted: a driver stopped in
    between has lost no training, and the next one logs the cell's run exactly once (adopting the run
    logged for exactly that result, if there is one)."""

    def __init__(self, store: Store, tracker):
        self.store, self.tracker = store, tracker
        self.results: dict[str, CellResult] = {}
        self.failed: list[str] = []
        self.live: dict[str, str] = {}  # cell id -> the RUNNING run of a cell that is training

    def start(self, cell: Cell, tags: dict[str, str] | None = None) -> None:
        """The cell starts: its run is RUNNING from now, with its params."""
        self.live[cell.id] = self.tracker.start_cell(cell, tags)

    def epoch(self, cell_id: str, metrics, ended: float) -> None:
        """An epoch of a running cell ended (at unix time `ended`): its metrics on the cell's run."""
        if cell_id in self.live:
            self.tracker.log_epoch(self.live[cell_id], metrics, ended)

    def discard(self, cell: Cell) -> None:
        """The cell stopped before its end and runs again (later, or in another invocation): its run goes,
        so the cell shows once."""
        run_id = self.live.pop(cell.id, None)
        if run_id is not None:
            self.tracker.discard(run_id)

    def load(self, cells: list[Cell]) -> list[Cell]:
        """Read the kept results of `cells`; returns those whose MLflow run was never noted. A result file
        that cannot be read is set aside (renamed, kept) and its cell runs again."""
        for cell in cells:
            try:
                found = self.store.read_result(cell.id)
            except DamagedFile as damaged:
                aside = self.store.set_aside(damaged.location)
                note(cell.name, f"{damaged}; set aside as {aside}, and the cell runs again")
                continue
            if found is not None:
                self.results[cell.id] = found
        return [cell for cell in cells if cell.id in self.results and self.results[cell.id].run_id is None]

    def run_id(self, cell: Cell) -> str | None:
        found = self.results.get(cell.id)
        return None if found is None else found.run_id

    def record(self, cell: Cell, result: CellResult, tags: dict[str, str]) -> CellResult:
        """Keep a finished cell's result, then log its run."""
        kept = result.noted(cell.name, None)
        self.store.write_result(cell.id, kept)
        return self.log(cell, kept, tags)

    def log(self, cell: Cell, result: CellResult, tags: dict[str, str]) -> CellResult:
        """Log a kept result's MLflow run, or adopt the run an earlier driver logged for exactly this result
        (the same test GAP, to the bit), and note it in the kept result, which is returned. Any other
        FINISHED run of the cell (logged for a result since lost) is retired: each cell shows once."""
        sample = self.store.representations(cell.teacher.id if cell.mode == "skyline" else cell.id)
        artifacts = {"representations.parquet": sample} if has_sample(sample) else {}
        adopted = self.tracker.logged_run(cell.id, result.gap)
        if adopted is not None:
            self.discard(cell)
            self.tracker.retag(adopted, tags)  # what holds now: where its weights are kept, say
        run_id = adopted or self.tracker.log_cell(cell, result, tags=tags, artifacts=artifacts,
                                                  run_id=self.live.pop(cell.id, None))
        self.tracker.retire_runs(cell.id, keep=run_id)
        noted = result.noted(cell.name, run_id)
        self.store.write_result(cell.id, noted)
        self.results[cell.id] = noted
        say(f"  done  {cell.name}: GAP {noted.gap:.3f}  mAP {noted.map:.3f}  ({noted.train_seconds:.0f} s)")
        if noted.run_snapshot:
            note(cell.name, noted.run_snapshot)
        return noted

    def measured(self, cell: Cell, metrics: dict[str, float]) -> None:
        """Add metrics measured after a cell was recorded (how close its representations are to a teacher
        that finished later) to its kept result and its run."""
        kept = dataclasses.replace(self.results[cell.id], **metrics)
        self.store.write_result(cell.id, kept)
        self.results[cell.id] = kept
        if kept.run_id is not None:
            self.tracker.log_metrics(kept.run_id, metrics)

    def drop_weights(self, cell: Cell, why: str) -> None:
        """Delete a student's kept weights (`orchestrator.store.weights`), and say so on its result and run."""
        kept = self.results[cell.id]
        weights.delete(kept.weights)
        kept = dataclasses.replace(kept, weights=None)
        self.store.write_result(cell.id, kept)
        self.results[cell.id] = kept
        if kept.run_id is not None:
            self.tracker.drop_tag(kept.run_id, "weights", f"deleted: {why}")

    def fitted(self, skyline: Cell, result: CellResult, tags: dict[str, str], why: str) -> CellResult:
        """Record a teacher's fit as its skyline's result; for a teacher done before, whose caches were only
        written again (`why`) from its final checkpoint, point its kept result and its run at them instead
        (tag `cache_rebuilt`): its skyline shows once."""
        if skyline.id in self.results and result.resumed_at_epoch >= len(result.history):
            return self._rebuilt(skyline, result, tags, why)
        return self.record(skyline, result, tags)

    def _rebuilt(self, skyline: Cell, result: CellResult, tags: dict[str, str], reason: str) -> CellResult:
        earlier = self.results[skyline.id]
        kept = dataclasses.replace(earlier, caches=result.caches, checkpoint=result.checkpoint,
                                   run_snapshot=result.run_snapshot)
        self.store.write_result(skyline.id, kept)
        if kept.run_id is None:  # kept by a driver stopped before it logged the run
            kept = self.log(skyline, kept, tags)
        self.results[skyline.id] = kept
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        self.tracker.set_tags(kept.run_id, {**tags, "cache_rebuilt": f"{stamp}: {reason}"[:5000]})
        note(skyline.name, f"caches written again from the teacher's final checkpoint ({reason})")
        return kept

    def fail(self, cell: Cell, error: BaseException | str) -> None:
        self.tracker.log_cell(cell, None, error=error, run_id=self.live.pop(cell.id, None))
        self.failed.append(cell.name)
        say(f"  FAILED {cell.name}: {one_line(error)}")


def skyline_tags(result: CellResult) -> dict[str, str]:
    """A teacher's (skyline) run points at its cache and its checkpoint, and says where it trained."""
    tags = {"cache_uri": result.caches["base"], "checkpoint": str(result.checkpoint), "device": result.device}
    if result.weights:
        tags["weights"] = result.weights
    if result.run_snapshot:  # Ray Train's record of the teacher's run was unreadable and set aside
        tags["run_snapshot"] = result.run_snapshot
    return tags


def cause(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """`error` if it is a `kind`, else the `kind` a Ray task raised that `error` wraps (or None)."""
    if isinstance(error, kind):
        return error
    inner = getattr(error, "cause", None)
    return inner if isinstance(inner, kind) else None
