"""What every driver (`python -m orchestrator.grid`, `python -m orchestrator.tune`, and the commands that
run jobs on Ray) does around its own work: check the store and the tracking store before anything starts,
start Ray, refuse a local store on a cluster of several nodes, prepare the data, start teachers, count
the slots for cells, tell a failing store from a failing job, and turn how it all ended into one line and
an exit status:

    0 done; 1 some cells (or every trial) failed; 2 bad input or a store that cannot be used; 130 interrupted.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from typing import Callable

from orchestrator.errors import OrchestratorError, one_line
from orchestrator.experiment.presets import Preset, check_model_sizes
from orchestrator.experiment.settings import Resources
from orchestrator.jobs.data_sets import DataSet, check_shards, locate, prepare_data
from orchestrator.jobs.teachers import fit_teacher
from orchestrator.store.access import open_store, store_lost, store_of
from orchestrator.store.layout import Store
from orchestrator.tracking.uri import check_tracking, in_store
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


def is_storage_failure(error: BaseException) -> bool:
    """Whether an error may come from the store rather than the job: an I/O error (PyArrow's S3 errors are
    OSErrors, and so are Ray's task errors that wrap them), or one from boto3 or MLflow's artifact upload."""
    from botocore.exceptions import BotoCoreError, ClientError
    from mlflow.exceptions import MlflowException

    cause = getattr(error, "cause", None)  # a Ray task error carries the task's own exception
    return isinstance(error, (OSError, BotoCoreError, ClientError, MlflowException)) or (
        cause is not None and cause is not error and is_storage_failure(cause))


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


def check_stores(root: str, tracking_uri: str | None) -> Store:
    """The store, checked without writing anything: reachable (a bucket), not a file (a folder), and with a
    tracking store that answers when one is given (a store on object storage needs a tracking server)."""
    store = store_of(root)
    if tracking_uri is None and not store.is_local:
        raise OrchestratorError("a store on object storage needs --tracking-uri (an MLflow server)")
    if tracking_uri is not None:
        check_tracking(tracking_uri)
    return store


def before_ray(root: str, tracking_uri: str | None, preset: Preset,
               data_override: str | None = None) -> tuple[Store, str, DataSet | None]:
    """Everything checked before Ray starts, in this order so that bad input writes nothing: the store
    (reachable, a folder, a tracking store that answers), the data (every shard; None for synthetic data
    still to be generated), the models' sizes for its classes, then the store made ready for writing.
    (store, tracking URI: the one given, else SQLite in the store; data set)."""
    store = check_stores(root, tracking_uri)
    with store_failures(store):
        data = locate(preset.data, store, data_override)
    check_model_sizes(preset, data.num_classes if data else preset.data.synthetic.generator.num_classes)
    open_store(store)
    if tracking_uri is None:
        tracking_uri = in_store(store)
        check_tracking(tracking_uri)
    return store, tracking_uri, data


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


def cause(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The `kind` a Ray task raised that `error` wraps, else `error` if it is a `kind` (or None). Ray's
    wrapper is itself of the task's exception's class, but its text is Ray's (the traceback, and the
    class's dotted name before the message)."""
    inner = getattr(error, "cause", None)
    if isinstance(inner, kind):
        return inner
    return error if isinstance(error, kind) else None
