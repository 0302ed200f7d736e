"""Teachers: each trained once with Ray Train, tested, and exported into its caches.

`fit_teacher(TeacherJob) -> CellResult` runs one `TorchTrainer.fit` (its 8-20 s of overhead paid once per
teacher) on the job's resources; every worker runs `teacher_train_loop`: train data-parallel on all
frames (each worker reads batch_size / n videos per step, so a preset trains the same way on one GPU or
on several), test, export the caches (worker r the parts of shards r, r + n, ...; rank 0 writes the
classifier and the manifest), report the final checkpoint and the typed result. After every epoch the
loop's `Progress` is the run's checkpoint; the run is named by the teacher's id, so a retried worker group
or a later fit of the same teacher resumes from it (`teacher_runs` covers what Ray's own reopening misses).

A teacher's caches: `base` (E_T, P_T of every training video) and, for the Uniform-k students that match
its intermediate states, one per k and kind of points with I_T where that student has its intermediates
(`orchestrator.cache.keys`).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

import torch

from orchestrator.cache.files import finish_teacher_cache, write_cache_part
from orchestrator.cache.keys import Matched, cache_keys, cache_locations
from orchestrator.experiment.matrix import TeacherSpec
from orchestrator.experiment.results import CellResult
from orchestrator.experiment.settings import TeacherResources
from orchestrator.jobs.data_sets import DataSet
from orchestrator.jobs.teacher_runs import PROGRESS, prune, reopen, resume_point
from orchestrator.store import weights
from orchestrator.store.layout import Store
from orchestrator.store.predictions import write_predictions
from orchestrator.store.samples import write_sample
from workloads.data.batch import FrameSelection
from workloads.data.format import SHARD_SUFFIX
from workloads.data.fs import list_files
from workloads.data.reader import VideoShards
from workloads.distributed import gather_objects, replicate
from workloads.evaluation import evaluate
from workloads.flops import count_macs
from workloads.models import VideoModel
from workloads.progress import EpochMetrics, Progress, announce_start
from workloads.representations import represent
from workloads.teacher_outputs import export_teacher, student_intermediate_positions
from workloads.train import seed_everything, train_classifier


@dataclass(frozen=True)
class TeacherJob:
    """One teacher to train (or, trained already, to export again), with all its Ray Train loop needs."""

    spec: TeacherSpec
    data: DataSet
    store: str  # the store's root
    matched: tuple[Matched, ...]  # (k, points) of each Uniform-k student that matches its intermediate states
    max_frames: int  # the longest video, for the multiply-adds per video
    resources: TeacherResources
    unrecorded: tuple[str, ...] = ()  # checkpoints Ray Train did not record (set by `fit_teacher`)
    on_epoch: Callable[[EpochMetrics], None] | None = None  # each epoch's metrics, to the driver (rank 0's)

    def caches(self) -> dict[str, str]:
        """Each cache of the teacher: key -> its location in the store."""
        return cache_locations(Store(self.store), self.spec, self.matched)


def fit_teacher(job: TeacherJob) -> CellResult:
    """Train (or resume), test and export one teacher in one Ray Train fit, checkpointed in the store."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    store = Store(job.store)
    run = store.teacher_run(job.spec.id)
    reopened = reopen(run)  # what Ray Train's own reopening of the run would trip over or miss
    resources = job.resources
    worker = {"CPU": resources.cpus_per_worker, **({"GPU": resources.gpus_per_worker} if resources.use_gpu else {}),
              **resources.custom}
    trainer = TorchTrainer(
        teacher_train_loop,
        train_loop_config={"job": dataclasses.replace(job, unrecorded=tuple(reopened.unrecorded))},
        scaling_config=ScalingConfig(num_workers=resources.num_workers, use_gpu=resources.use_gpu,
                                     resources_per_worker=worker),
        # NCCL where this torch build has it (CUDA builds); gloo otherwise, e.g. CPU torch on a node type
        # that offers fake GPUs (Ray's fake multi-node cluster).
        torch_config=TorchConfig(backend="nccl" if resources.use_gpu and torch.distributed.is_nccl_available() else "gloo"),
        # The run's name is the teacher's id: a later fit of the same teacher finds the run's checkpoints
        # and resumes (Ray Train's run snapshot), as do the retries after a worker or node fails.
        run_config=RunConfig(storage_path=store.ray_storage(), name=job.spec.id,
                             checkpoint_config=CheckpointConfig(num_to_keep=1),
                             failure_config=FailureConfig(max_failures=resources.max_failures)),
    )
    outcome = trainer.fit()
    if outcome.error:
        raise outcome.error
    prune(run)
    return dataclasses.replace(CellResult.from_json(outcome.metrics["result"]), run_snapshot=reopened.note,
                               checkpoint=outcome.checkpoint.path if outcome.checkpoint else None)


def teacher_train_loop(config: dict) -> None:
    """Ray Train's loop for one teacher, run by each of its workers."""
    import ray.train
    import ray.train.torch

    start = time.perf_counter()
    job: TeacherJob = config["job"]
    context = ray.train.get_context()
    rank, replicas = context.get_world_rank(), context.get_world_size()
    # Workers on one node see all its GPUs; Ray Train's device is this worker's own.
    device = ray.train.torch.get_device() if job.resources.use_gpu and torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL object collectives (score gathering) use the current device
    spec, data = job.spec, job.data
    batch = spec.train.batch_size // replicas
    seed_everything(spec.seed)
    model = spec.model_spec.build(data.num_classes)
    share = {"rank": rank, "world_size": replicas}
    resume = latest = resume_point(ray.train.get_checkpoint(), list(job.unrecorded))

    def checkpoint(progress: Progress) -> None:
        """Every epoch: rank 0 saves where training stands; all ranks report (a report is a barrier)."""
        nonlocal latest
        latest = progress
        with tempfile.TemporaryDirectory() as folder:
            if rank == 0:
                torch.save(progress, os.path.join(folder, PROGRESS))
            ray.train.report({"epoch": progress.epoch},
                             checkpoint=ray.train.Checkpoint.from_directory(folder) if rank == 0 else None)

    if rank == 0:
        announce_start(job.on_epoch)  # its workers have their CPUs: the teacher trains from now
    trained = train_classifier(
        replicate(model, device), data.training(batch, shuffle=True, seed=spec.seed, fraction=spec.data_fraction, **share),
        data.validation(batch, **share), spec.train.config(spec.seed, str(device)),
        job.on_epoch if rank == 0 else None, resume=resume, on_progress=checkpoint)
    test = evaluate(model, data.testing(batch, **share), device, keep_predictions=True)
    caches = _export_caches(job, model, batch, device, rank, replicas)
    if rank != 0:
        ray.train.report({})
        return
    write_sample(Store(job.store).representations(spec.id), represent(model, data.sampled(batch), device))
    write_predictions(Store(job.store).predictions(spec.id), test.predictions)
    kept = weights.save(Store(job.store).weights(spec.id), weights.teacher_card(spec, data.num_classes, job.max_frames),
                        model)
    result = CellResult.of(trained, test, count_macs(model, job.max_frames), time.perf_counter() - start,
                           device.type, data.roles(), workers=replicas, resumed_at_epoch=resume.epoch if resume else 0,
                           caches=caches, weights=kept)
    with tempfile.TemporaryDirectory() as folder:
        torch.save(model.state_dict(), os.path.join(folder, "model.pt"))
        torch.save(latest, os.path.join(folder, PROGRESS))  # a later fit of this teacher trains nothing
        ray.train.report({"result": result.to_json()}, checkpoint=ray.train.Checkpoint.from_directory(folder))


def _export_caches(job: TeacherJob, model: VideoModel, batch: int, device: torch.device, rank: int,
                   replicas: int) -> dict[str, str]:
    """Write every cache of the teacher; this worker exports the parts of shards rank, rank + n, ...
    (parts are whole shards, in the shard's order, which the cache keeps) and rank 0 completes them."""
    spec, data = job.spec, job.data
    shards = list_files(data.train, SHARD_SUFFIX)
    caches = job.caches()
    for key, matched in cache_keys(spec, job.matched).items():
        positions = None
        if matched is not None:
            k, points = matched
            student = spec.model_spec.build(data.num_classes, k=k)
            student.match_intermediates_at(points)
            positions = student_intermediate_positions(student, FrameSelection("uniform", k=k))
        mine = [write_cache_part(caches[key], index, export_teacher(
                    model, VideoShards(shards[index], batch, fraction=spec.data_fraction, holdout=data.holdout), device,
                    positions), spec.id)
                for index in range(rank, len(shards), replicas)]
        written = [part for parts in gather_objects(mine) for part in parts]
        if rank == 0:
            finish_teacher_cache(caches[key], written, model.classifier.state_dict(),
                                 {"teacher_id": spec.id, "intermediates": None if matched is None else key})
    return caches
