"""`CellOutcome`: the one model of a finished cell that the summary, the findings, the report and the
registry read. It is built alike from what a grid keeps in its store (`CellOutcome.of`: the cell and its
`CellResult`) and from what MLflow holds (`orchestrator.tracking.schema.outcome_of_run`), so a table made
at the end of a grid and one made later from MLflow alone are the same table.

A cell that failed (or never finished) has an outcome too, with `finished` False and no scores: tables
name it as missing rather than leave it out silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.experiment.matrix import Cell
from orchestrator.experiment.modes import Mode
from orchestrator.experiment.results import CellResult
from workloads.saliency import RULES
from workloads.variants import epochs_trained

# The scores an outcome carries: a `CellResult`'s fields of the same names (None where a cell has none).
SCORES = ("gap", "map", "val_gap", "val_map", "macs", "frame_macs", "params", "train_seconds", "inference_seconds",
          "best_epoch", "teacher_gap", "teacher_map", "parallel_group", "workers", "resumed_at_epoch", "rep_cosine",
          "rep_mse", "adaptive_threshold", "adaptive_val_gap", "adaptive_gap", "adaptive_map", "adaptive_frames",
          "adaptive_macs")


@dataclass(frozen=True)
class CellOutcome:
    """What defines a cell, and what it scored: test `gap`/`map`, the best epoch's validation
    `val_gap`/`val_map`, multiply-adds per video, representation closeness to its teacher, and so on."""

    name: str
    cell_id: str
    family: str
    mode: Mode
    selection: str  # a frame selector, a content selection rule, or "all" for the skyline
    k: int | None  # None: all frames (the skyline)
    variant: str
    intermediate: bool
    data_fraction: float
    seed: int
    size: str
    data: str  # the data set's id ("syn-..." for synthetic data); "" where a record does not say
    parallel_classifier: str = "shared"
    finished: bool = True  # False: it failed, or stopped, and no run of it finished
    run_id: str = ""  # its MLflow run, once logged
    weights: str = ""  # where its model is kept; "" when it is not
    validation_split: str = ""  # where `val_gap` came from
    test_split: str = ""  # where `gap` and `map` came from
    gap: float | None = None
    map: float | None = None
    val_gap: float | None = None
    val_map: float | None = None
    macs: float | None = None  # multiply-adds per video
    frame_macs: float | None = None
    params: float | None = None
    train_seconds: float | None = None
    inference_seconds: float | None = None
    best_epoch: float | None = None
    teacher_gap: float | None = None  # a parallel pair's teacher, on the test split
    teacher_map: float | None = None
    parallel_group: float | None = None  # a parallel pair's: the students its teacher trained with, itself too
    workers: float | None = None
    resumed_at_epoch: float | None = None
    rep_cosine: float | None = None  # its test representations against its teacher's
    rep_mse: float | None = None
    # A serial student read adaptively: the calibrated threshold, its validation GAP, its test GAP and mAP,
    # mean frames read and multiply-adds per video (`workloads.adaptive`)
    adaptive_threshold: float | None = None
    adaptive_val_gap: float | None = None
    adaptive_gap: float | None = None
    adaptive_map: float | None = None
    adaptive_frames: float | None = None
    adaptive_macs: float | None = None
    epochs: int | None = None  # epochs it trained, every stage's
    classes: int | None = None  # the data set's class count
    l2: float | None = None  # its L2 on the output layer: regularization_penalty x l2_penalty
    loss_weights: tuple[tuple[str, float], ...] = ()  # a student's

    @property
    def chooses_by_content(self) -> bool:
        """Whether a scorer that reads the video chose its frames (`workloads.saliency`)."""
        return self.selection in RULES

    @property
    def on_uniform_serial(self) -> bool:
        """A serial student of the paper's: every j-th frame, no intermediate matching."""
        return self.mode is Mode.SERIAL and not self.intermediate and not self.chooses_by_content

    @property
    def still_improving(self) -> bool:
        """Whether its best epoch on validation was the last it trained: it stopped while still learning."""
        return self.finished and None not in (self.best_epoch, self.epochs) and self.best_epoch >= self.epochs

    @classmethod
    def of(cls, cell: Cell, result: CellResult | None) -> CellOutcome:
        """A cell of the matrix with its kept result (None: it did not finish)."""
        identity = dict(name=cell.name, cell_id=cell.id, family=cell.family, mode=cell.mode, selection=cell.selection,
                        k=cell.k, variant=cell.variant, intermediate=cell.intermediate,
                        data_fraction=cell.data_fraction, seed=cell.seed, size=cell.size, data=cell.data,
                        parallel_classifier=cell.parallel_classifier,
                        epochs=epochs_trained(cell.train.epochs, cell.variant, cell.stage_epochs),
                        l2=cell.train.regularization_penalty * cell.train.l2_penalty,
                        loss_weights=cell.loss_weights if cell.mode.is_student else ())
        if result is None:
            return cls(**identity, finished=False)
        return cls(**identity, run_id=result.run_id or "", weights=result.weights or "", classes=result.classes,
                   validation_split=result.validation_split, test_split=result.test_split,
                   **{name: getattr(result, name) for name in SCORES})
