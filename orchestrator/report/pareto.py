"""A study's outcome: its Pareto front's plot (the front itself: `orchestrator.experiment.fronts`), the
settings a trial ran, the best configuration as a grid override."""

from __future__ import annotations

from typing import Any

import yaml

from orchestrator.experiment.results import Trial
from orchestrator.experiment.search_parameters import PARAMETERS, override_of
from orchestrator.experiment.search_space import SearchSpace


def shown(values: dict[str, Any]) -> str:
    """Settings as a person reads them: `j=15, w_rep=0.001`."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items()))


def ran_settings(config: dict[str, Any], settings: dict[str, Any]) -> str:
    """The searched settings as the trial's cell ran them (a stride gives k = max_frames // j, and the cell's
    stride is max_frames // k), with the sampled values beside those that differ, and apart those sampled
    for what the cell has not (a scorer's width on uniform frames, a tolerance for a content student)."""
    ran = {name: settings.get(name, PARAMETERS[name].absent) for name in config}
    unused = {name: config[name] for name, value in ran.items() if value is None}
    ran = {name: value for name, value in ran.items() if value is not None}
    sampled = {name: config[name] for name, value in ran.items() if value != config[name]}
    return (shown(ran) + (f" (sampled {shown(sampled)})" if sampled else "")
            + (f" (not used by this cell: {shown(unused)})" if unused else ""))


def plot_front(trials: list[Trial], front: list[Trial], title: str, path: str) -> None:
    """Every trial with a score: finished ones as dots, those stopped early as crosses at the validation GAP
    they had when stopped; the front (of finished trials) as a line."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a cluster node
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for outcome, marker, label in (("finished", "o", "finished trials"), ("stopped", "x", "stopped early (GAP then)")):
        shown = [t for t in trials if t.outcome == outcome]
        if shown:
            axes.scatter([t.macs / 1e9 for t in shown], [t.gap for t in shown], s=22, marker=marker, color="0.45",
                         label=f"{label}: {len(shown)}")
    axes.plot([t.macs / 1e9 for t in front], [t.gap for t in front], "o-", color="tab:red", label="Pareto front")
    axes.set_xlabel("multiply-adds per video (G)")
    axes.set_ylabel("validation GAP")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def best_override(space: SearchSpace, preset: str, best: Trial) -> str:
    """The best trial as YAML that `python -m orchestrator.grid --override FILE` merges into the preset:
    one family, the trial's k, the searched variant with the trial's weights and settings."""
    override: dict[str, Any] = {"families": [space.family], "serial": [space.variant], **override_of(best.settings)}
    if space.epochs is not None:
        override["student_train"]["epochs"] = space.epochs
    header = (f"# Best trial of study {space.name!r} ({best.trial_id}): validation GAP {best.gap:.4f} at "
              f"{best.macs / 1e9:.3f} G multiply-adds.\n"
              f"# python -m orchestrator.grid --preset {preset} --override best.yaml\n")
    return header + yaml.safe_dump(override, sort_keys=True)
