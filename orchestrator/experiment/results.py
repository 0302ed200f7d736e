"""What a finished cell (or a search's trial) yields, typed: written by the store, read by tracking, the
summary and the search's Pareto front.

A `CellResult` is saved as `<store>/results/<cell id>.json`, a flat JSON object: the fields below, the
history as a list of per-epoch objects. The keys are the ones results have always had, so a store
written before these types existed still reads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from orchestrator.experiment.validation import fill
from workloads.evaluation import Evaluation
from workloads.flops import ModelCost
from workloads.progress import EpochMetrics, TrainResult


@dataclass(frozen=True)
class CellResult:
    gap: float  # on the test split
    map: float
    val_gap: float  # the best epoch's, on validation
    val_map: float
    best_epoch: int
    train_seconds: float
    inference_seconds: float  # the test split's evaluation
    macs: int  # multiply-adds per video (k frames for a student, max_frames for a teacher)
    frame_macs: int
    params: int
    history: tuple[EpochMetrics, ...]
    wall_seconds: float
    device: str  # where it trained: cpu or cuda
    teacher_gap: float | None = None  # a parallel pair's teacher, on the test split
    teacher_map: float | None = None
    # A parallel pair's: how many students its teacher trained beside in one job, itself included
    # (`orchestrator.jobs.parallel_groups`); its `train_seconds` are the whole group's.
    parallel_group: int | None = None
    workers: int | None = None  # a teacher's data-parallel Ray Train workers
    resumed_at_epoch: int | None = None  # a teacher's: the epoch its checkpoint had reached (0: fresh)
    caches: dict[str, str] | None = None  # a teacher's: cache key -> the cache's URI
    checkpoint: str | None = None  # a teacher's final Ray Train checkpoint
    run_snapshot: str | None = None  # a teacher's Ray Train run snapshot that was unreadable and set aside
    rep_cosine: float | None = None  # its representations against its teacher's, on the test sample
    rep_mse: float | None = None
    validation_split: str = ""  # where `val_gap` came from (the split that picks the best epoch)
    test_split: str = ""  # where `gap` and `map` came from
    classes: int | None = None  # the data set's class count
    weights: str | None = None  # where its model's card and weights are kept (students and teachers)
    # A serial student read adaptively (`workloads.adaptive`): the threshold calibrated on validation, its
    # validation GAP, mAP, mean frames read and multiply-adds; on the test split its GAP and mAP, mean
    # frames read and multiply-adds per video; and the test curve, (threshold, GAP, frames, multiply-adds)
    # for each threshold
    adaptive_threshold: float | None = None
    adaptive_val_gap: float | None = None
    adaptive_val_map: float | None = None
    adaptive_val_frames: float | None = None
    adaptive_val_macs: float | None = None
    adaptive_gap: float | None = None
    adaptive_map: float | None = None
    adaptive_frames: float | None = None
    adaptive_macs: float | None = None
    adaptive_curve: tuple[tuple[float, float, float, float], ...] = ()
    cell: str = ""  # the cell's name, for whoever reads the store
    run_id: str | None = None  # its MLflow run, once logged

    @classmethod
    def of(cls, trained: TrainResult, test: Evaluation, cost: ModelCost, wall_seconds: float, device: str,
           roles: dict[str, Any], **details: Any) -> CellResult:
        """A model's result: its training (the best epoch's validation scores), its test `Evaluation`, its
        cost, where it trained and where its scores came from (`DataSet.roles()`); `details` fill the
        fields of its kind (a parallel pair's teacher scores, a teacher's caches). Its `device` says the
        mixed precision it trained at too, where there was one ("cuda, bfloat16")."""
        if trained.precision != "float32":
            device = f"{device}, {trained.precision}"
        return cls(gap=test.gap, map=test.map, val_gap=trained.gap, val_map=trained.map,
                   best_epoch=trained.best_epoch, train_seconds=trained.train_seconds,
                   inference_seconds=test.seconds, macs=cost.macs, frame_macs=cost.frame_macs, params=cost.params,
                   history=tuple(trained.history), wall_seconds=wall_seconds, device=device, **roles, **details)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> CellResult:
        """A result read back, every key and type checked (`Invalid` names the first that is not right)."""
        return fill(cls, value)

    def noted(self, cell_name: str, run_id: str | None) -> CellResult:
        """The result as kept for a cell: its name, and its MLflow run (None until logged)."""
        return dataclasses.replace(self, cell=cell_name, run_id=run_id)


@dataclass(frozen=True)
class Trial:
    """A search trial: its sampled values (`config`), every setting of the cell it trained (`settings`:
    weights, k, j, learning rate, Lpred distance), the validation GAP after each epoch, and how it ended:

    - "finished": ran to its end; `gap`/`map` are the best epoch's on validation (what the search
      optimises), `test_gap`/`test_map` on the test split;
    - "stopped": ASHA stopped it for falling behind; `gap`/`map` are its last epoch's on validation;
    - "failed": it raised `error`; scores as far as it reported any.
    """

    trial_id: str
    config: dict[str, Any]
    settings: dict[str, Any]
    gap: float | None
    map: float | None
    macs: int | None
    test_gap: float | None
    test_map: float | None
    val_gaps: tuple[tuple[int, float], ...]  # (epoch, validation GAP)
    outcome: str = "finished"
    error: str = ""
    frames: float | None = None  # read adaptively: mean frames read on validation (its scores are the reading's)
