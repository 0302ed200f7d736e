"""The work itself, as plain functions that Ray runs remotely: preparing data, training and caching a
teacher (inside a Ray Train `TorchTrainer`), and running one cell. They return plain dicts so the driver,
which alone talks to MLflow, can record them."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass

import torch

from orchestrator.cache import ParquetTeacherCache, finish_teacher_cache, read_manifest, write_cache_part
from orchestrator.config import DataConfig
from orchestrator.errors import OrchestratorError
from orchestrator.matrix import Cell, TeacherSpec, stable_id
from orchestrator.store import Store
from orchestrator.teacher_runs import PROGRESS, prune, reopen, resume_point
from workloads.data.format import SHARD_SUFFIX, read_info
from workloads.data.fs import join, list_files
from workloads.data.reader import FrameSelection, VideoShards
from workloads.data.synth import SynthConfig, generate
from workloads.distributed import gather_objects, replicate
from workloads.errors import DataError
from workloads.flops import count_macs
from workloads.models import build_model
from workloads.train import (
    EpochCallback,
    Progress,
    TrainConfig,
    evaluate,
    export_teacher,
    seed_everything,
    student_intermediate_positions,
    train_classifier,
    train_parallel,
    train_serial_student,
)

SPLITS = ("train", "validate", "test")


@dataclass(frozen=True)
class DataSet:
    id: str
    train: str
    validate: str
    test: str | None
    num_classes: int


def data_id(config: DataConfig) -> str:
    if config.synthetic is not None:
        return "syn-" + stable_id(dataclasses.asdict(config.synthetic))
    return "uri-" + stable_id(config.uri)


def prepare_data(config: DataConfig, store_root: str, uri_override: str | None = None) -> DataSet:
    """Locate the data set, generating synthetic shards into the store the first time."""
    store = Store(store_root)
    if uri_override or config.synthetic is None:
        root = uri_override or config.uri
        splits = {split: join(root, split) for split in SPLITS}
        for split in ("train", "validate"):
            if not list_files(splits[split], SHARD_SUFFIX):
                raise OrchestratorError(f"{splits[split]}: no shards; --data needs train/ and validate/ folders")
        try:
            has_test = bool(list_files(splits["test"], SHARD_SUFFIX))
        except DataError:  # no test/ folder: report on validation
            has_test = False
        num_classes = read_info(list_files(splits["train"], SHARD_SUFFIX)[0]).num_classes
        return DataSet("uri-" + stable_id(root), splits["train"], splits["validate"],
                       splits["test"] if has_test else None, num_classes)
    synthetic = config.synthetic
    identity = data_id(config)
    root = store.data(identity)
    marker = join(root, "_complete.json")
    if store.read_json(marker) is None:
        synth = SynthConfig(num_classes=synthetic.classes, min_frames=synthetic.min_frames,
                            max_frames=synthetic.max_frames, difficulty=synthetic.difficulty)
        sizes = {"train": synthetic.train_videos, "validate": synthetic.validate_videos, "test": synthetic.validate_videos}
        for split, videos in sizes.items():
            generate(join(root, split), videos, seed=synthetic.seed, split=split, config=synth,
                     workers=max(1, min(4, os.cpu_count() or 1)))
        store.write_json(marker, {"synthetic": dataclasses.asdict(synthetic)})
    return DataSet(identity, join(root, "train"), join(root, "validate"), join(root, "test"), synthetic.classes)


def resolve_device(requested: str) -> str:
    """The device a job runs on: CUDA when it asked for a GPU and one is there. A node type that offers
    GPUs it does not have (Ray's fake multi-node cluster) runs the job on CPU."""
    return "cuda" if requested == "cuda" and torch.cuda.is_available() else "cpu"


def _train_config(settings, seed: int, device: str) -> TrainConfig:
    return TrainConfig(epochs=settings.epochs, learning_rate=settings.learning_rate, lr_decay=settings.lr_decay,
                       weight_decay=settings.weight_decay, max_grad_norm=settings.max_grad_norm, seed=seed, device=device)


def _history(result) -> list[dict]:
    return [dataclasses.asdict(m) for m in result.history]


def _test_scores(model, data: DataSet, selection, batch_size: int, device, **share):
    """GAP/mAP and evaluation time on the test split (validation when there is none); `share` (rank,
    world_size) makes it one data-parallel replica's part of the whole split's scores."""
    source = data.test or data.validate
    return evaluate(model, VideoShards(source, batch_size, selection, **share), device)


def cache_plan(spec: TeacherSpec, intermediate_ks: list[int], num_classes: int) -> dict[str, int | None]:
    """The caches a teacher writes: key -> the k of the Uniform-k student whose block ends its
    intermediates are taken at (None for the base cache of E_T and P_T)."""
    plan: dict[str, int | None] = {"base": None}
    for k in intermediate_ks:
        student = build_model(spec.family, spec.size, num_classes, k=k, **dict(spec.model))
        plan[f"intermediates-uniform-k{k}-l{student.block}"] = k
    return plan


# --- teachers -------------------------------------------------------------------------------------------


def teacher_train_loop(config: dict) -> None:
    """Ray Train's loop for one teacher, run by each of its workers: train data-parallel on all frames,
    test, write the caches (each worker exports its share of the training shards), report a checkpoint.

    `batch_size` is the global batch: each of the n workers reads batch_size / n videos per step, so a
    preset trains the same way on one GPU or on several."""
    import ray.train
    import ray.train.torch

    start = time.perf_counter()
    spec: TeacherSpec = config["spec"]
    data: DataSet = config["data"]
    store = Store(config["store"])
    context = ray.train.get_context()
    rank, replicas = context.get_world_rank(), context.get_world_size()
    # Workers on one node see all its GPUs; Ray Train's device is this worker's own.
    device = ray.train.torch.get_device() if config["use_gpu"] and torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL object collectives (score gathering) use the current device
    settings = spec.train
    batch = settings.batch_size // replicas
    seed_everything(spec.seed)
    model = build_model(spec.family, spec.size, data.num_classes, **dict(spec.model))
    share = {"rank": rank, "world_size": replicas}
    train = VideoShards(data.train, batch, shuffle=True, seed=spec.seed, fraction=spec.data_fraction, **share)
    val = VideoShards(data.validate, batch, **share)
    resume = latest = resume_point(ray.train.get_checkpoint(), config["unrecorded"])

    def checkpoint(progress: Progress) -> None:
        """Every epoch: rank 0 saves where training stands; all ranks report (a report is a barrier)."""
        nonlocal latest
        latest = progress
        with tempfile.TemporaryDirectory() as folder:
            if rank == 0:
                torch.save(progress, os.path.join(folder, PROGRESS))
            ray.train.report({"epoch": progress.epoch},
                             checkpoint=ray.train.Checkpoint.from_directory(folder) if rank == 0 else None)

    result = train_classifier(replicate(model, device), train, val, _train_config(settings, spec.seed, str(device)),
                              resume=resume, on_progress=checkpoint)
    test = _test_scores(model, data, None, batch, device, **share)
    shards = list_files(data.train, SHARD_SUFFIX)

    caches = {}
    for key, k in cache_plan(spec, config["intermediate_ks"], data.num_classes).items():
        caches[key] = store.teacher_cache(spec.id, key)
        positions = None
        if k is not None:
            student = build_model(spec.family, spec.size, data.num_classes, k=k, **dict(spec.model))
            positions = student_intermediate_positions(student, FrameSelection("uniform", k=k))
        # Parts are whole shards, in the shard's order (the cache keeps it); worker r writes shards r, r+n, ...
        mine = [write_cache_part(caches[key], index, export_teacher(
                    model, VideoShards(shards[index], batch, fraction=spec.data_fraction), device, positions))
                for index in range(rank, len(shards), replicas)]
        written = [part for parts in gather_objects(mine) for part in parts]
        if rank == 0:
            finish_teacher_cache(caches[key], written, model.classifier.state_dict(),
                                 {"teacher_id": spec.id, "intermediates": None if k is None else key})
    if rank != 0:
        ray.train.report({})
        return
    cost = count_macs(model, config["max_frames"])
    metrics = {
        "gap": test.gap, "map": test.map, "val_gap": result.gap, "val_map": result.map, "best_epoch": result.best_epoch,
        "train_seconds": result.train_seconds, "inference_seconds": test.seconds, "macs": cost.macs,
        "frame_macs": cost.frame_macs, "params": cost.params, "history": json.dumps(_history(result)),
        "caches": json.dumps(caches), "wall_seconds": time.perf_counter() - start, "workers": replicas,
        "device": device.type, "resumed_at_epoch": resume.epoch if resume else 0,
    }
    with tempfile.TemporaryDirectory() as folder:
        torch.save(model.state_dict(), os.path.join(folder, "model.pt"))
        torch.save(latest, os.path.join(folder, PROGRESS))  # a later fit of this teacher trains nothing
        with open(os.path.join(folder, "teacher.json"), "w") as out:
            json.dump({"spec": dataclasses.asdict(spec), "num_classes": data.num_classes}, out, default=str)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


def teacher_caches_complete(store: Store, spec: TeacherSpec, intermediate_ks: list[int], num_classes: int) -> dict | None:
    """The teacher's caches when every one of them is complete, else None."""
    caches = {key: store.teacher_cache(spec.id, key) for key in cache_plan(spec, intermediate_ks, num_classes)}
    return caches if all(read_manifest(c) is not None for c in caches.values()) else None


def fit_teacher(spec: TeacherSpec, data: DataSet, store_root: str, intermediate_ks: list[int], max_frames: int,
                resources) -> dict:
    """Train one teacher with Ray Train (one `TorchTrainer.fit`), checkpointed in the store."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    store = Store(store_root)
    run = store.teacher_run(spec.id)
    reopened = reopen(run)  # what Ray Train's own reopening of the run would trip over or miss
    use_gpu = resources.gpus_per_worker > 0
    worker = {"CPU": resources.cpus_per_worker, **({"GPU": resources.gpus_per_worker} if use_gpu else {}),
              **resources.custom}
    trainer = TorchTrainer(
        teacher_train_loop,
        train_loop_config={"spec": spec, "data": data, "store": store_root, "intermediate_ks": intermediate_ks,
                           "max_frames": max_frames, "use_gpu": use_gpu, "unrecorded": reopened.unrecorded},
        scaling_config=ScalingConfig(num_workers=resources.num_workers, use_gpu=use_gpu, resources_per_worker=worker),
        # NCCL where this torch build has it (CUDA builds); gloo otherwise, e.g. CPU torch on a node type
        # that offers fake GPUs (Ray's fake multi-node cluster).
        torch_config=TorchConfig(backend="nccl" if use_gpu and torch.distributed.is_nccl_available() else "gloo"),
        # The run's name is the teacher's id: a later fit of the same teacher finds the run's checkpoints
        # and resumes (Ray Train's run snapshot), as do the retries after a worker or node fails.
        run_config=RunConfig(storage_path=store.ray_storage(), name=spec.id,
                             checkpoint_config=CheckpointConfig(num_to_keep=1),
                             failure_config=FailureConfig(max_failures=resources.max_failures)),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    prune(run)
    metrics = dict(result.metrics)
    if reopened.note:
        metrics["run_snapshot"] = reopened.note
    metrics["history"] = json.loads(metrics["history"])
    metrics["caches"] = json.loads(metrics["caches"])
    metrics["checkpoint"] = result.checkpoint.path if result.checkpoint else None
    return metrics


# --- cells ----------------------------------------------------------------------------------------------


def run_cell(cell: Cell, data: DataSet, cache_uri: str | None, device: str,
             on_epoch: EpochCallback | None = None) -> dict:
    """Train and evaluate one baseline, serial student or parallel pair; returns its metrics.
    `on_epoch` sees each epoch's validation scores as they come (a search's early stopping)."""
    start = time.perf_counter()
    device = resolve_device(device)
    settings = cell.train
    selection = cell.frame_selection()
    seed_everything(cell.seed)
    model = build_model(cell.family, cell.size, data.num_classes, k=cell.k, **dict(cell.model))
    config = _train_config(settings, cell.seed, device)
    batch = settings.batch_size
    fraction = cell.data_fraction
    extra: dict = {}
    if cell.mode == "baseline":
        train = VideoShards(data.train, batch, selection, shuffle=True, seed=cell.seed, fraction=fraction)
        result = train_classifier(model, train, VideoShards(data.validate, batch, selection), config, on_epoch)
    elif cell.mode == "serial":
        if cache_uri is None:
            raise OrchestratorError(f"{cell.name}: a serial student needs its teacher's cache")
        cache = ParquetTeacherCache(cache_uri)
        train = VideoShards(data.train, batch, selection, shuffle=True, seed=cell.seed, fraction=fraction)
        result = train_serial_student(model, cache, train, VideoShards(data.validate, batch, selection),
                                      cell.stages(), config, on_epoch)
    elif cell.mode == "parallel":
        teacher = build_model(cell.family, cell.size, data.num_classes, **dict(cell.model))
        train = VideoShards(data.train, batch, shuffle=True, seed=cell.seed, fraction=fraction)
        result, teacher_result = train_parallel(teacher, model, train, VideoShards(data.validate, batch),
                                                selection, cell.objective(), config, on_epoch)
        teacher_test = _test_scores(teacher, data, None, batch, device)
        extra = {"teacher_gap": teacher_test.gap, "teacher_map": teacher_test.map}
    else:
        raise OrchestratorError(f"{cell.name}: cells of mode {cell.mode!r} run as teachers")
    test = _test_scores(model, data, selection, batch, device)
    cost = count_macs(model, cell.k or cell.max_frames)
    return {
        "gap": test.gap, "map": test.map, "val_gap": result.gap, "val_map": result.map,
        "best_epoch": result.best_epoch, "train_seconds": result.train_seconds, "inference_seconds": test.seconds,
        "macs": cost.macs, "frame_macs": cost.frame_macs, "params": cost.params, "history": _history(result),
        "wall_seconds": time.perf_counter() - start, "device": device, **extra,
    }
