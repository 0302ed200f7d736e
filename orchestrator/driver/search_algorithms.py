"""What a study hands Ray Tune besides its trainable: the searcher (Optuna, each distinct cell trained once),
the early stopping its space asks for, and the progress it prints while trials run.

A sampled configuration is a duplicate when it trains the same cell as one already sampled: an integer
stride sampled twice, or two strides that give the same k (j=17 and j=18 both give k=11 of 200 frames).
Optuna is answered from the first one's result (at once, or when it ends) and samples again, so no Ray
trial repeats a cell, and the sampler still learns from every point it proposed.
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass
from typing import Any

from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from orchestrator.driver.console import duration
from orchestrator.driver.rungs import ParetoRungs
from orchestrator.errors import say
from orchestrator.experiment.matrix import Cell
from orchestrator.experiment.search_parameters import settings_of
from orchestrator.experiment.search_space import SearchSpace
from orchestrator.report.pareto import ran_settings, shown

OBJECTIVES = {"gap": "max", "macs": "min"}
_ATTEMPTS = 50  # samples per suggestion before a finite space is walked for a cell not yet run


@dataclass(frozen=True)
class CellKey:
    """What makes two sampled configurations one cell: every setting of the cell the trial would train.
    A plain dataclass (not a closure) so that Tune can pickle the searcher with it."""

    space: SearchSpace
    template: Cell

    def __call__(self, config: dict[str, Any]) -> tuple:
        return tuple(sorted(settings_of(self.space.trial_cell(self.template, config)).items()))


def distinct_configurations(space: SearchSpace, key: CellKey, limit: int = 100_000) -> list[dict] | None:
    """One configuration per distinct cell when every searched parameter takes finitely many values (None
    when one is continuous, or the product is past `limit`)."""
    values = space.finite_values()
    if values is None or len(values) == 0:
        return None
    product = 1
    for options in values.values():
        product *= len(options)
    if product > limit:
        return None
    distinct: dict[tuple, dict] = {}
    for combination in itertools.product(*values.values()):
        config = dict(zip(values, combination))
        distinct.setdefault(key(config), config)
    return list(distinct.values())


class DistinctOptunaSearch(OptunaSearch):
    """Optuna (multi-objective) that never hands Tune a cell already sampled: a duplicate is told the first
    one's result and Optuna samples again; when a finite space keeps proposing cells already run, one not
    run yet is enqueued, and when none is left the searcher is finished."""

    def __init__(self, key: CellKey, candidates: list[dict] | None, seed: int):
        super().__init__(metric=list(OBJECTIVES), mode=list(OBJECTIVES.values()), seed=seed)
        self._key, self._candidates = key, candidates
        self._first: dict[tuple, str] = {}  # cell key -> the trial that trains it
        self._key_of: dict[str, tuple] = {}
        self._answers: dict[tuple, tuple[dict | None, bool]] = {}  # cell key -> (objectives, error)
        self._waiting: dict[tuple, list] = {}  # cell key -> Optuna trials waiting for its first's result
        self._told = 0
        self._said: set[tuple] = set()

    def suggest(self, trial_id: str) -> dict | None:
        for _ in range(_ATTEMPTS):
            config = super().suggest(trial_id)
            if not isinstance(config, dict):
                return config
            key = self._key(config)
            if key not in self._first:
                self._first[key], self._key_of[trial_id] = trial_id, key
                return config
            self._answer_duplicate(trial_id, key, config)
        unrun = [c for c in self._candidates or () if self._key(c) not in self._first]
        if not unrun:
            say(f"every distinct cell this search space allows has been sampled ({len(self._first)}): "
                "no further trial")
            return Searcher.FINISHED
        self._ot_study.enqueue_trial(unrun[0])
        return self.suggest(trial_id)

    def _answer_duplicate(self, trial_id: str, key: tuple, config: dict) -> None:
        waiting = self._ot_trials.pop(trial_id)
        if key not in self._said:  # once a cell: Optuna may propose a cheap integer space's cells many times
            self._said.add(key)
            say(f"sampled {shown(config)}: the cell of trial {self._first[key]} (k={dict(key).get('k')}); this "
                "and later duplicates of it are answered from its result, not trained twice")
        if key in self._answers:
            self._tell(waiting, *self._answers[key])
        else:
            self._waiting.setdefault(key, []).append(waiting)

    def _tell(self, ot_trial, objectives: dict | None, error: bool) -> None:
        # Through OptunaSearch's own completion, so a duplicate is told exactly what its first was.
        self._told += 1
        handle = f"answered-{self._told}"
        self._ot_trials[handle] = ot_trial
        super().on_trial_complete(handle, objectives, error)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        super().on_trial_complete(trial_id, result, error)
        key = self._key_of.get(trial_id)
        if key is None:
            return
        objectives = {name: result[name] for name in OBJECTIVES if name in result} if result else None
        self._answers[key] = (objectives, error)
        for waiting in self._waiting.pop(key, []):
            self._tell(waiting, objectives, error)


class ParetoASHA(FIFOScheduler):
    """ASHA on (validation GAP, multiply-adds): `orchestrator.driver.rungs`. Judged on the per-epoch reports."""

    def __init__(self, rungs: ParetoRungs):
        super().__init__()
        self.rungs = rungs

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get("final") or "epoch" not in result:
            return TrialScheduler.CONTINUE
        keep = self.rungs.decide(trial.trial_id, int(result["epoch"]), float(result["gap"]), float(result["macs"]))
        return TrialScheduler.CONTINUE if keep else TrialScheduler.STOP


def early_stopping(space: SearchSpace, epochs: int) -> TrialScheduler:
    """The space's `early_stopping`: pareto (multi-objective ASHA), gap (ASHA on GAP alone) or off."""
    if space.early_stopping == "pareto":
        return ParetoASHA(ParetoRungs(space.grace_period, epochs, space.reduction_factor))
    if space.early_stopping == "gap":
        # A trial reports once per epoch and once more at the end: max_t = epochs + 1 iterations.
        return ASHAScheduler(metric="gap", mode="max", max_t=epochs + 1, grace_period=space.grace_period,
                             reduction_factor=space.reduction_factor)
    return FIFOScheduler()


class TrialProgress(Callback):
    """A line per trial event while the study runs (started, each epoch on a terminal, finished, stopped,
    failed), with the study's counts and elapsed time: a search is never silent for a trial's length."""

    def __init__(self, total: int, key: CellKey):
        self.total, self.key = total, key
        self.started = time.monotonic()
        self.running: set[str] = set()
        self.ended: dict[str, str] = {}
        self.terminal = sys.stdout.isatty()

    def _counts(self) -> str:
        outcomes = list(self.ended.values())
        parts = [f"{outcomes.count('finished')}/{self.total} trials finished", f"{len(self.running)} running"]
        parts += [f"{outcomes.count(o)} {o}" for o in ("stopped", "failed") if o in outcomes]
        return ", ".join(parts) + f"; {duration(time.monotonic() - self.started)} elapsed"

    def _cell(self, trial) -> str:
        settings = dict(self.key(trial.config))
        ran = ran_settings(trial.config, settings)
        return ran if "k" in trial.config else f"k={settings['k']}, {ran}"

    def _say(self, trial, what: str) -> None:
        say(f"trial {trial.trial_id} {what} [{self._counts()}]")

    def _ended(self, trial, outcome: str) -> None:
        self.running.discard(trial.trial_id)
        self.ended[trial.trial_id] = outcome

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)
        self._say(trial, f"started: {self._cell(trial)}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.terminal and not result.get("final") and "epoch" in result:
            self._say(trial, f"epoch {result['epoch']}: validation GAP {result['gap']:.4f}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        outcome = "finished" if result.get("final") else "stopped"
        self._ended(trial, outcome)
        how = "finished" if outcome == "finished" else f"stopped early after epoch {result.get('epoch')}"
        gap = f": validation GAP {result['gap']:.4f}" if "gap" in result else ""
        frames = f", {result['frames']:.1f} frames read on average" if result.get("frames") is not None else ""
        self._say(trial, f"{how}{gap} at {result.get('macs', 0) / 1e9:.3f} G multiply-adds{frames}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial, "failed")
        self._say(trial, "failed")
