"""A search (`python -m orchestrator.tune`) on Ray Tune with Optuna: the study's cells, its trials (each a
grid cell trained with sampled values, reporting validation GAP per epoch to ASHA), its teacher (fitted the
grid's way when its cache is missing), its record in the store, and its outcome in MLflow.

The study's state is Tune's own experiment folder `<store>/tune/<name>` (Optuna's sampler state included)
plus `<name>.json` (space and trial count), so `Tuner.restore` resumes it. Trials are logged to MLflow
from the driver after `fit` returns (also after an interruption), each once; once the study is complete,
also the trials ASHA stopped and those that failed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from typing import TYPE_CHECKING

from orchestrator.cache.keys import check_caches
from orchestrator.driver.ledger import Ledger
from orchestrator.driver.session import EXIT_FAILED, cell_slots, generated_data, teacher_task
from orchestrator.errors import OrchestratorError, note, one_line
from orchestrator.experiment.matrix import Cell, expand
from orchestrator.experiment.modes import Mode
from orchestrator.experiment.presets import Preset
from orchestrator.experiment.results import CellResult, Trial
from orchestrator.experiment.search_parameters import settings_of
from orchestrator.experiment.search_space import SearchSpace
from orchestrator.jobs.cells import resolve, run_recipe
from orchestrator.jobs.data_sets import DataSet
from orchestrator.jobs.teachers import TeacherJob
from orchestrator.experiment.fronts import pareto_front
from orchestrator.report.pareto import best_override, plot_front, ran_settings
from orchestrator.store.files import DamagedFile, read_json, set_aside, write_json
from orchestrator.store.layout import Store
from orchestrator.tracking import schema
from orchestrator.tracking.studies import log_trial
from orchestrator.tracking.tracker import Tracker
from workloads.data.fs import write_bytes

if TYPE_CHECKING:  # it imports Ray, which a study's driver loads only once its input is checked
    from orchestrator.driver.search_algorithms import CellKey


def study_cells(preset: Preset, space: SearchSpace, data: DataSet) -> tuple[Cell, Cell]:
    """(the grid's serial cell for the study's family and variant, first seed and k: trials vary it; the
    skyline of its teacher)."""
    narrowed = dataclasses.replace(preset, families=(space.family,), serial=(space.variant,), intermediate=())
    _, cells = expand(narrowed, data.id)
    template = next(c for c in cells if c.mode is Mode.SERIAL and c.variant == space.variant and not c.intermediate)
    skyline = next(c for c in cells if c.mode is Mode.SKYLINE and c.teacher == template.teacher)
    return template, skyline


def run_trial(config: dict, *, space: SearchSpace, template: Cell, data: DataSet, cache: str, device: str) -> None:
    """One trial (in a Ray Tune worker): per-epoch validation scores for ASHA, then the final record."""
    from ray import tune

    recipe = resolve(space.trial_cell(template, config), data.num_classes, device)

    def on_epoch(epoch) -> None:
        tune.report({"gap": epoch.val_gap, "map": epoch.val_map, "macs": recipe.cost.macs, "epoch": epoch.epoch,
                     "final": False})

    result = run_recipe(recipe, data, cache, on_epoch)
    tune.report(final_report(result, space.reads_adaptively))


def final_report(result: CellResult, adaptively: bool) -> dict:
    """A trial's last report: its validation scores and multiply-adds (what the search optimises), its test
    scores. `adaptively` (a study that sets the reading's tolerance) and read so: those of its adaptive
    reading at the calibrated threshold, with the mean frames it read; ASHA's per-epoch comparisons are
    of the k-frame reading (the reading is calibrated once training ends)."""
    report = {"gap": result.val_gap, "map": result.val_map, "macs": result.macs, "final": True,
              "test_gap": result.gap, "test_map": result.map, "train_seconds": result.train_seconds,
              "val_gaps": [[epoch.epoch, epoch.val_gap] for epoch in result.history]}
    if adaptively and result.adaptive_val_gap is not None:
        report.update(gap=result.adaptive_val_gap, map=result.adaptive_val_map, macs=result.adaptive_val_macs,
                      test_gap=result.adaptive_gap, test_map=result.adaptive_map, frames=result.adaptive_val_frames)
    return report


def ensure_teacher(ray, preset: Preset, skyline: Cell, data: DataSet, ledger: Ledger) -> str:
    """The base cache of the skyline's teacher. When it is missing (or damaged) the teacher is fitted the
    grid's way and recorded as the grid records it, so a later grid reuses it: trained once, and a
    finished teacher's cache only written again from its final checkpoint."""
    job = TeacherJob(skyline.teacher, data, ledger.store.root, (), preset.data.max_frames, preset.resources.teacher)
    caches, damaged = check_caches(job.caches())
    for problem in damaged:
        note(job.spec.name, f"{problem}; set aside, to be written again from the teacher's checkpoint")
    if caches is None:
        ledger.load([skyline])
        print(f"fitting teacher {job.spec.name} (once: the grid and later studies reuse it)", flush=True)
        result = ray.get(teacher_task(ray).remote(job))
        ledger.fitted(skyline, result, "; ".join(damaged) or "its cache was missing")
        caches = result.caches
    return caches["base"]


def study_record(store: Store, space: SearchSpace, trials: int) -> dict:
    """`<store>/tune/<name>.json`: what the study was started with. A study resumes with its own space
    and trial count; a changed space under the same name is refused rather than mixed into it."""
    location = store.path("tune", f"{space.name}.json")
    record = json.loads(json.dumps({"trials": trials, "space": dataclasses.asdict(space)}, default=str))
    try:
        found = read_json(location)
        if found is not None and not {"trials", "space"} <= set(found):
            raise DamagedFile(location, "not a study's record")
    except DamagedFile as damaged:
        note(f"study {space.name}", f"{damaged}; set aside as {set_aside(location)}, the study goes on "
                                    "with the space and trials given now")
        found = None
    if found is None:
        write_json(location, record)
        return record
    if record["space"] != found["space"]:
        raise OrchestratorError(f"{location}: study {space.name!r} was started with another search space; "
                                "give the changed space a new name (or delete the study's folder)")
    if trials != found["trials"]:
        print(f"study {space.name} was started with {found['trials']} trials: resuming with those", flush=True)
    return found


def planned_trials(space: SearchSpace, candidates: list[dict] | None, asked: int) -> int:
    """The trials a study runs: those asked for, or as many distinct cells as a finite space holds
    (`candidates`, one configuration per distinct cell; None when the space is not finite)."""
    if candidates is not None and len(candidates) < asked:
        print(f"study {space.name}: its space holds {len(candidates)} distinct cells: {len(candidates)} trials, "
              f"not {asked}", flush=True)
        return len(candidates)
    return asked


def make_tuner(space: SearchSpace, trials: int, trainable, key: CellKey, candidates: list[dict] | None, store: Store,
               slots: int):
    """The study's Tuner: restored from the store when it was started before, else a new one."""
    from ray import tune

    from orchestrator.driver.search_algorithms import DistinctOptunaSearch, TrialProgress, early_stopping

    path = store.path("tune", space.name)
    if tune.Tuner.can_restore(path):
        print(f"resuming study {space.name} from {path}: finished trials are kept", flush=True)
        return tune.Tuner.restore(path, trainable, resume_errored=True)
    return tune.Tuner(
        trainable,
        param_space=space.tune_space(),
        tune_config=tune.TuneConfig(
            # Multi-objective: the objectives go to the searcher and the scheduler, not here.
            search_alg=DistinctOptunaSearch(key, candidates, space.seed),
            scheduler=early_stopping(space, space.trial_cell(key.template, {}).train.epochs),
            num_samples=trials,
            max_concurrent_trials=slots,
        ),
        run_config=tune.RunConfig(storage_path=store.path("tune"), name=space.name, verbose=0,
                                  callbacks=[TrialProgress(trials, key)]),
    )


def _reported_epochs(result) -> tuple[tuple[int, float], ...]:
    """(epoch, validation GAP) of each per-epoch report of a trial, from Tune's record of its reports."""
    frame = result.metrics_dataframe
    if frame is None or "epoch" not in frame or "final" not in frame:
        return ()
    epochs = frame[frame["final"] == False].dropna(subset=["epoch", "gap"])  # noqa: E712 - a pandas mask
    return tuple((int(e), float(g)) for e, g in zip(epochs["epoch"], epochs["gap"]))


def study_trials(grid, space: SearchSpace, template: Cell, complete: bool) -> list[Trial]:
    """The study's trials from Tune's results: those that ran to their end (their final report); and once
    the study is complete (an interrupted one resumes its unfinished trials), those ASHA stopped, from
    their last per-epoch report, and those that failed."""
    trials = []
    for result in grid:
        if not result.config:  # it never started: nothing of it to log (the study reruns it)
            continue
        metrics = result.metrics or {}
        outcome = "finished" if metrics.get("final") else "failed" if result.error is not None else "stopped"
        if outcome != "finished" and not complete:
            continue
        val_gaps = (tuple((int(e), float(g)) for e, g in metrics["val_gaps"]) if outcome == "finished"
                    else _reported_epochs(result))
        trials.append(Trial(
            trial_id=metrics.get("trial_id", os.path.basename(result.path)), config=result.config,
            settings=settings_of(space.trial_cell(template, result.config)),
            gap=metrics.get("gap"), map=metrics.get("map"), macs=metrics.get("macs"),
            test_gap=metrics.get("test_gap"), test_map=metrics.get("test_map"), val_gaps=val_gaps, outcome=outcome,
            error="" if result.error is None else one_line(result.error),
            frames=metrics.get("frames") if outcome == "finished" else None))
    return trials


@dataclasses.dataclass(frozen=True)
class Study:
    """What a search was asked for: its space, the preset its trials run on (and the name the user gave it,
    for the commands it prints), how many trials, and how many at once (None: as many as the CPUs hold)."""

    space: SearchSpace
    preset: Preset
    preset_name: str
    trials: int
    concurrency: int | None = None


def run_study(study: Study, data: DataSet | None, ledger: Ledger, tracker: Tracker, ray) -> int:
    from ray import tune

    from orchestrator.driver.search_algorithms import CellKey, distinct_configurations

    store, space, preset = ledger.store, study.space, study.preset
    data = data or generated_data(ray, preset, store)
    template, skyline = study_cells(preset, space, data)
    cache = ensure_teacher(ray, preset, skyline, data, ledger)
    resources = preset.resources.cell
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, space=space, template=template, data=data, cache=cache, device=resources.device),
        {"cpu": resources.cpus, "gpu": resources.gpus, **resources.custom},
    )
    record = study_record(store, space, study.trials)
    slots = study.concurrency or cell_slots(ray, preset.resources)
    key = CellKey(space, template)
    candidates = distinct_configurations(space, key)
    planned = planned_trials(space, candidates, record["trials"])
    grid = make_tuner(space, planned, trainable, key, candidates, store, slots).fit()
    # A trial cut off before it recorded even its sampled values (an interruption as it started) is not
    # done, whatever Tune counted it as: the study resumes it.
    started = all(result.config for result in grid)
    complete = started and grid.num_terminated + grid.num_errors >= planned
    everything = study_trials(grid, space, template, complete)
    for trial in everything:
        log_trial(tracker, template, trial)
    trials = [t for t in everything if t.outcome == "finished"]
    if not complete:
        # Tune stops on SIGINT (SIGTERM is turned into one) and saves the study where `restore` finds it.
        raise KeyboardInterrupt(f"the study stopped with {len(trials)} of {planned} trials finished")
    stopped = [t for t in everything if t.outcome == "stopped"]
    failed = [t for t in everything if t.outcome == "failed"]
    print(f"study {space.name}: {len(trials)} trials finished, {len(stopped)} stopped early, "
          f"{len(failed)} failed", flush=True)
    for trial in failed:
        print(f"  FAILED trial {trial.trial_id}: {trial.error}", flush=True)
    if not trials:
        print("error: no trial finished: no Pareto front", file=sys.stderr)
        return EXIT_FAILED
    record_outcome(tracker, space, study.preset_name, trials + stopped, store)
    return 0


def _without_history(trial: Trial) -> dict:
    return {k: v for k, v in dataclasses.asdict(trial).items() if k != "val_gaps"}


def record_outcome(tracker: Tracker, space: SearchSpace, preset: str, trials: list[Trial], store: Store) -> None:
    """pareto.json, pareto.png and best.yaml on the parent run, best.yaml also in the store; the front printed.
    The front and the best are of the finished trials (a stopped one's GAP is of an earlier epoch); the
    plot and pareto.json's `points` hold every trial with a score, stopped ones marked."""
    finished = [t for t in trials if t.outcome == "finished"]
    front = pareto_front(finished)
    best = max(finished, key=lambda t: t.gap)
    summary = {"objectives": {"gap": "max", "macs": "min"}, "trials": len(finished),
               "front": [_without_history(t) for t in front],
               "points": [_without_history(t) for t in trials if t.gap is not None and t.macs is not None]}
    with tempfile.TemporaryDirectory() as folder:
        files = [os.path.join(folder, name) for name in (schema.PARETO_JSON, schema.PARETO_PNG, schema.BEST_YAML)]
        with open(files[0], "w") as out:
            json.dump(summary, out, indent=1, default=str)
        plot_front([t for t in trials if t.gap is not None and t.macs is not None], front,
                   f"{space.name}: GAP vs multiply-adds", files[1])
        override = best_override(space, preset, best)
        with open(files[2], "w") as out:
            out.write(override)
        tracker.log_on_parent(files=files)
    best_location = store.path("tune", f"{space.name}.best.yaml")
    write_bytes(best_location, override.encode())
    print("Pareto front (validation GAP vs multiply-adds):")
    for trial in front:
        settings = ran_settings(trial.config, trial.settings)
        print(f"  GAP {trial.gap:.4f}  {trial.macs / 1e9:7.3f} G  k={trial.settings['k']}  {settings}")
    print(f"best configuration (GAP {best.gap:.4f}): {best_location}, also {schema.BEST_YAML} on MLflow run "
          f"{tracker.parent_id}")
    if store.is_local:
        print(f"run it in the grid: python -m orchestrator.grid --preset {preset} --override {best_location}")
