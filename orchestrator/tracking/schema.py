"""Every name a grid gives MLflow, declared once: the tags that say what a run is and link runs together,
a cell's params, a result's metrics, the artifacts, the registered models' tags. What writes runs builds
them here (`cell_params`, `result_metrics`, `epoch_metrics`, filters) and what reads them back goes through
here too (`outcome_of_run`, `timing_of`), so a name cannot drift between the writer and a reader.

A published cell's MLflow Model is the one artifact named elsewhere: by the serving package, which ships
alone with a model (`orchestrator.serve.package.NAME`). Some names are older than the code's: a cell's
variant is the param `loss` (runs and registered models logged before the rename keep reading), the best
epoch's validation GAP is `best_val_gap` (`val_gap` is the per-epoch curve).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from enum import StrEnum
from typing import Any

from mlflow.entities import Metric, Param

from orchestrator.errors import OrchestratorError
from orchestrator.experiment.matrix import Cell
from orchestrator.experiment.modes import Mode
from orchestrator.experiment.outcome import CellOutcome
from orchestrator.experiment.results import CellResult, Trial
from workloads.progress import EpochMetrics
from workloads.variants import epochs_trained


class RunKind(StrEnum):
    """What a run is, the value of its `KIND_TAG`."""

    PARENT = "parent"  # one invocation of a grid
    CELL = "cell"
    STUDY = "study"  # one search, resumed under the same run
    TRIAL = "trial"


# Tags MLflow itself reads.
PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"  # a run's description in the UI
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # + a key: a saved runs view, opened with ?viewStateShareKey=<key>
CELLS_VIEW = "cells"
# The experiment's kind, which MLflow's UI (3.x) reads to choose its mode: without it an experiment opens on
# the GenAI overview (traces, token usage); model training is its runs table.
EXPERIMENT_KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"

# The project's tags.
KIND_TAG = "fewer_frames.grid"
STUDY_TAG = "fewer_frames.study"  # a study's name, on its parent run
DRIVER_TAG = "fewer_frames.driver"  # liveness.identity() of the process that opened a parent run
HEARTBEAT_TAG = "fewer_frames.heartbeat"  # unix seconds, refreshed while that process runs
PRESET_TAG = "preset"  # a grid's parent run: its preset's name
CELL_ID_TAG = "cell_id"
ROW_TAG = "row"  # a cell's display name, as the terminal and the report name it (`experiment.rows`)
TEACHER_RUN_TAG = "teacher_run_id"  # a student's: its teacher's skyline run
WEIGHTS_TAG = "weights"  # where a cell's model is kept (`orchestrator.store.weights`)
DEVICE_TAG = "device"
CACHE_URI_TAG = "cache_uri"  # a skyline's: its teacher's base cache
CHECKPOINT_TAG = "checkpoint"
RUN_SNAPSHOT_TAG = "run_snapshot"  # a skyline's: Ray Train's record of its run, set aside as unreadable
CACHE_REBUILT_TAG = "cache_rebuilt"  # a skyline's: when and why its caches were written again
ERROR_TAG = "error"
TRIAL_ID_TAG = "trial_id"
TRIAL_OUTCOME_TAG = "trial_outcome"  # finished | stopped by ASHA after epoch N (validation GAP g) | failed
TIMING_DEVICE_TAG = "timing_device"  # a parent run's: where the timing job ran

# A cell's params (see `cell_params`).
FAMILY, SIZE, MODE, SELECTION, K, J = "family", "size", "mode", "selection", "k", "j"
VARIANT = "loss"  # the field's first name
INTERMEDIATE, DATA, DATA_FRACTION, SEED = "intermediate", "data", "data_fraction", "seed"
PRED_DISTANCE, PARALLEL_CLASSIFIER = "pred_distance", "parallel_classifier"
PARALLEL_TARGETS, SERIAL_CLASSIFIER = "parallel_targets", "serial_classifier"
INTERMEDIATE_POINTS = "intermediate_points"  # an intermediate-matching student's: frames or block_ends
STAGE_EPOCHS, EPOCHS_TRAINED = "stage_epochs", "epochs_trained"  # how a cell's stages spent its epochs; all of them
VALIDATION_SPLIT, TEST_SPLIT, CLASSES = "validation_split", "test_split", "classes"
TRAIN_PREFIX = "train."  # + a training setting's name
WEIGHT_PARAM = "w_{}"  # a loss's weight, by the loss's name (also what a search calls it)
ALL_FRAMES = "all"  # the k of a cell that sees every frame
TRAIN_EPOCHS = TRAIN_PREFIX + "epochs"  # a stage's (`train.<setting>` for each of the cell's training settings)
# A study's and a trial's params (a trial's also holds its sampled values, each under its own name).
STUDY_VARIANT = "variant"

# A cell's metrics: a result's numbers (`CellResult` fields of these names), the best epoch's validation
# scores, and the per-epoch curves (step: the epoch).
ADAPTIVE_THRESHOLD, ADAPTIVE_GAP, ADAPTIVE_FRAMES, ADAPTIVE_MACS = ("adaptive_threshold", "adaptive_gap",
                                                                     "adaptive_frames", "adaptive_macs")
RESULT_METRICS = ("gap", "map", "macs", "frame_macs", "params", "train_seconds", "inference_seconds", "best_epoch",
                  "teacher_gap", "teacher_map", "parallel_group", "workers", "resumed_at_epoch", "rep_cosine",
                  "rep_mse",
                  ADAPTIVE_THRESHOLD, "adaptive_val_gap", ADAPTIVE_GAP, "adaptive_map", ADAPTIVE_FRAMES,
                  ADAPTIVE_MACS)
# An adaptive reading's test curve, a point per threshold (step: the threshold's place in `adaptive.thresholds`)
ADAPTIVE_CURVE = ("adaptive_curve_gap", "adaptive_curve_frames", "adaptive_curve_macs")
GAP, MAP, MACS = "gap", "map", "macs"
BEST_VAL_GAP, BEST_VAL_MAP = "best_val_gap", "best_val_map"
VAL_GAP, VAL_MAP, TRAIN_LOSS, TEACHER_VAL_GAP = "val_gap", "val_map", "train_loss", "teacher_val_gap"
REP_COSINE, REP_MSE = "rep_cosine", "rep_mse"
FINISHED_METRICS = (GAP, MAP, BEST_VAL_GAP, MACS)  # every finished cell's run has them; a report needs them
# A trial's: its objective (validation) and its test scores.
TEST_GAP, TEST_MAP = "test_gap", "test_map"
TRIAL_METRICS = (GAP, MAP, MACS, TEST_GAP, TEST_MAP, "frames")  # frames: a trial read adaptively
# A parent run's: the timing job's milliseconds per video, `time_per_video_ms/<family>/<all|k<k>>`.
TIMING_PREFIX = "time_per_video_ms/"

# Artifacts.
SUMMARY = "summary.md"  # a parent run's
HISTORY = "history.json"  # a cell's epochs
ERROR_TEXT = "error.txt"
REPRESENTATIONS = "representations.parquet"  # a cell's representation sample (`orchestrator.store.samples`)
PREDICTIONS = "predictions.parquet"  # a cell's test predictions, each video's top 20 (`orchestrator.store.predictions`)
ADAPTIVE_PREDICTIONS = "adaptive_predictions.parquet"  # a serial student's, read adaptively at its threshold
ADAPTIVE_PREFIX = "adaptive."  # + an adaptive reading's setting (steps, tolerance, thresholds)
SCORER_PREFIX = "frame_scorer."  # + a content student's frame scorer's setting (width, epochs, ...)
REPORT_HTML, REPORT_MD = "report.html", "report.md"
PARETO_JSON, PARETO_PNG, BEST_YAML = "pareto.json", "pareto.png", "best.yaml"  # a study's

# A registered model's tags: the model's own (`REGISTERED_*`) and each version's.
REGISTERED_FAMILY, REGISTERED_K = "family", "k"
VERSION_CELL, VERSION_RUN, VERSION_STRIDE, VERSION_CLASSES = "cell", "run_id", "stride", "classes"
PARETO_PLACE_TAG = "pareto_place"  # a version of fewer-frames-<family>-pareto: its place on the validation front
SAMPLED_PREFIX = "sampled_"  # a trial's param: the sampled value of a setting, where the cell ran another
VERSION_SCORES = {"gap": TEST_GAP, "map": TEST_MAP, "val_gap": BEST_VAL_GAP, "macs": MACS}  # outcome field -> tag

_VIEW_PARAMS = (FAMILY, MODE, SELECTION, VARIANT, K, INTERMEDIATE, DATA_FRACTION, SEED)
_VIEW_METRICS = (GAP, MAP, BEST_VAL_GAP, MACS, REP_COSINE, "train_seconds")


def kind_filter(kind: RunKind) -> str:
    """A `search_runs` filter for the runs of one kind."""
    return f"tags.`{KIND_TAG}` = '{kind}'"


def status_filter(status: str, equal: bool = True) -> str:
    return f"attributes.status {'=' if equal else '!='} '{status}'"


def tag_filter(tag: str, value: str) -> str:
    return f"tags.`{tag}` = '{value}'"


def both(*filters: str) -> str:
    return " and ".join(filters)


def dropped(tag: str) -> str:
    """The tag left when `tag` no longer holds, saying why."""
    return f"{tag}_dropped"


def timing_metric(family: str, what: str) -> str:
    """The parent-run metric of a family's model timed by the timing job (`what`: "all" or "k<k>")."""
    return f"{TIMING_PREFIX}{family}/{what}"


def timing_of(metrics: dict[str, float]) -> dict[tuple[str, str], float]:
    """(family, "all" | "k<k>") -> milliseconds per video, from a parent run's metrics."""
    found = {name[len(TIMING_PREFIX):]: value for name, value in metrics.items() if name.startswith(TIMING_PREFIX)}
    return {tuple(key.split("/", 1)): value for key, value in found.items() if "/" in key}


def cells_view() -> str:
    """The saved "cells" runs view: every cell run flat, best test GAP first, the columns that compare them."""
    return json.dumps({"searchFilter": kind_filter(RunKind.CELL), "orderByKey": f"metrics.`{GAP}`",
                       "orderByAsc": False,
                       "selectedColumns": [f"tags.`{ROW_TAG}`"] + [f"params.`{name}`" for name in _VIEW_PARAMS]
                       + [f"metrics.`{name}`" for name in _VIEW_METRICS]})


def params(values: dict[str, Any]) -> list[Param]:
    return [Param(k, str(v)[:6000]) for k, v in values.items()]


def grid_params(preset: str, store: str, data: str) -> dict[str, str]:
    """A grid's parent run: the preset as given (a name or a file), the store, the data (or "preset")."""
    return {"preset": preset, "store": store, DATA: data}


def study_params(space: str, preset: str, trials: int, store: str, family: str, variant: str) -> dict[str, Any]:
    """A study's parent run: the search space's file, the preset, its trials, the store, what it searches."""
    return {"space": space, "preset": preset, "trials": trials, "store": store, FAMILY: family, STUDY_VARIANT: variant}


def cell_params(cell: Cell) -> dict[str, Any]:
    """What MLflow records as a cell's parameters."""
    student = cell.mode.is_student
    return {
        FAMILY: cell.family,
        SIZE: cell.size,
        MODE: cell.mode,
        SELECTION: cell.selection,
        K: ALL_FRAMES if cell.k is None else cell.k,
        J: cell.j,
        VARIANT: cell.variant,
        INTERMEDIATE: cell.intermediate,
        DATA: cell.data,
        DATA_FRACTION: cell.data_fraction,
        SEED: cell.seed,
        **{TRAIN_PREFIX + k: v for k, v in dataclasses.asdict(cell.train).items()},
        **{f"model.{k}": v for k, v in cell.model},
        **({WEIGHT_PARAM.format(k): v for k, v in cell.loss_weights} if student else {}),
        **({PRED_DISTANCE: cell.pred_distance} if student else {}),
        **({PARALLEL_CLASSIFIER: cell.parallel_classifier, PARALLEL_TARGETS: cell.parallel_targets}
           if cell.mode is Mode.PARALLEL else {}),
        **({SERIAL_CLASSIFIER: cell.serial_classifier} if cell.mode is Mode.SERIAL else {}),
        STAGE_EPOCHS: cell.stage_epochs,
        **({INTERMEDIATE_POINTS: cell.intermediate_points} if cell.intermediate else {}),
        **({ADAPTIVE_PREFIX + k: v for k, v in dataclasses.asdict(cell.adaptive).items()} if cell.adaptive else {}),
        **({SCORER_PREFIX + k: v for k, v in dataclasses.asdict(cell.scorer).items()} if cell.chooses_by_content else {}),
        EPOCHS_TRAINED: epochs_trained(cell.train.epochs, cell.variant, cell.stage_epochs),
    }


def role_params(result: CellResult) -> dict[str, str]:
    """Where a result's validation and test scores came from."""
    return {k: str(v) for k, v in ((VALIDATION_SPLIT, result.validation_split), (TEST_SPLIT, result.test_split),
                                   (CLASSES, result.classes)) if v}


def readable(value: float) -> float:
    """A metric as people read it in MLflow's tables and run pages: five significant digits (GAP 0.50431,
    812.34 ms), not sixteen; whole numbers (multiply-adds, parameters, epochs) as they are. The report's
    intervals come from the kept test predictions, not from these."""
    value = float(value)
    if not math.isfinite(value) or value.is_integer():
        return value
    return float(f"{value:.5g}")


def epoch_metrics(epoch: EpochMetrics, now: int) -> list[Metric]:
    metrics = [Metric(VAL_GAP, readable(epoch.val_gap), now, epoch.epoch),
               Metric(VAL_MAP, readable(epoch.val_map), now, epoch.epoch),
               Metric(TRAIN_LOSS, readable(epoch.loss), now, epoch.epoch)]
    if epoch.teacher_val_gap is not None:
        metrics.append(Metric(TEACHER_VAL_GAP, readable(epoch.teacher_val_gap), now, epoch.epoch))
    return metrics


def result_metrics(result: CellResult, streamed: set[int] = frozenset()) -> list[Metric]:
    """A result's metrics, with the per-epoch ones of the epochs not `streamed` while it trained."""
    now = int(time.time() * 1000)
    metrics = [Metric(name, readable(getattr(result, name)), now, 0) for name in RESULT_METRICS
               if getattr(result, name) is not None]
    metrics.append(Metric(BEST_VAL_GAP, readable(result.val_gap), now, 0))
    metrics.append(Metric(BEST_VAL_MAP, readable(result.val_map), now, 0))
    for epoch in result.history:
        if epoch.epoch not in streamed:
            metrics += epoch_metrics(epoch, now)
    for step, point in enumerate(result.adaptive_curve):
        metrics += [Metric(name, readable(value), now, step) for name, value in zip(ADAPTIVE_CURVE, point[1:])]
    return metrics


def metrics_now(values: dict[str, float]) -> list[Metric]:
    now = int(time.time() * 1000)
    return [Metric(name, readable(value), now, 0) for name, value in values.items()]


def trial_metrics(trial: Trial) -> list[Metric]:
    now = int(time.time() * 1000)
    metrics = [Metric(name, readable(getattr(trial, name)), now, 0) for name in TRIAL_METRICS
               if getattr(trial, name) is not None]
    return metrics + [Metric(VAL_GAP, readable(gap), now, int(epoch)) for epoch, gap in trial.val_gaps]


def trial_outcome(trial: Trial) -> str:
    if trial.outcome == "stopped" and trial.val_gaps:
        epoch, gap = max(trial.val_gaps)
        return f"stopped by ASHA after epoch {epoch} (validation GAP {readable(gap):.4f})"  # as its metric reads
    return trial.outcome


# A run's metrics as an outcome's scores: the same names, but for the best epoch's validation scores.
_OUTCOME_METRICS = {**{name: name for name in RESULT_METRICS}, BEST_VAL_GAP: "val_gap", BEST_VAL_MAP: "val_map"}


def cell_id_of(run) -> str:
    return run.data.tags.get(CELL_ID_TAG, "")


def kind_of(run) -> str:
    return run.data.tags.get(KIND_TAG, "")


def outcome_of_run(run, finished: bool | None = None) -> CellOutcome:
    """A cell's run as its outcome (`finished`: by default, whether the run is FINISHED);
    `OrchestratorError` when the run is not a cell's."""
    tags, values = run.data.tags, run.data.params
    where = f"MLflow run {run.info.run_id} ({run.info.run_name})"
    if tags.get(KIND_TAG) != RunKind.CELL:
        raise OrchestratorError(f"{where} is not a grid cell's run")
    try:
        k = values[K]
        return CellOutcome(
            name=run.info.run_name or tags.get(CELL_ID_TAG, run.info.run_id), cell_id=tags.get(CELL_ID_TAG, ""),
            family=values[FAMILY], mode=Mode.parse(values[MODE], where), selection=values[SELECTION],
            k=None if k == ALL_FRAMES else int(k), variant=values[VARIANT],
            intermediate=values[INTERMEDIATE].strip().lower() == "true", data_fraction=float(values[DATA_FRACTION]),
            seed=int(values[SEED]), size=values.get(SIZE, ""), data=values.get(DATA, ""),
            parallel_classifier=values.get(PARALLEL_CLASSIFIER, "shared"),
            epochs=_epochs(values), classes=int(values[CLASSES]) if CLASSES in values else None,
            l2=float(values.get(TRAIN_PREFIX + "regularization_penalty", 0)) * float(values.get(TRAIN_PREFIX + "l2_penalty", 0)),
            loss_weights=_weights(values),
            finished=run.info.status == "FINISHED" if finished is None else finished,
            run_id=run.info.run_id, weights=tags.get(WEIGHTS_TAG, ""),
            validation_split=values.get(VALIDATION_SPLIT, ""), test_split=values.get(TEST_SPLIT, ""),
            **{field: run.data.metrics[name] for name, field in _OUTCOME_METRICS.items() if name in run.data.metrics})
    except (KeyError, ValueError) as error:
        raise OrchestratorError(f"{where}: its params are not a cell's ({type(error).__name__}: {error})") from None


def _epochs(values: dict[str, str]) -> int | None:
    """The epochs a cell's run trained: its param, or (a run logged before it was one) every stage all of
    `train.epochs`, as stages then spent them."""
    if EPOCHS_TRAINED in values:
        return int(values[EPOCHS_TRAINED])
    return epochs_trained(int(values[TRAIN_EPOCHS]), values[VARIANT]) if TRAIN_EPOCHS in values else None


def _weights(values: dict[str, str]) -> tuple[tuple[str, float], ...]:
    """A student's loss weights from its params."""
    prefix = WEIGHT_PARAM.format("")
    return tuple(sorted((name.removeprefix(prefix), float(value)) for name, value in values.items()
                        if name.startswith(prefix)))
