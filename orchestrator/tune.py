"""python -m orchestrator.tune : search a serial student's loss weights and stride with Ray Tune + Optuna.

    python -m orchestrator.tune --space search_spaces/serial_loss_weights.yaml [--preset tiny] [--trials 20]
        [--store runs] [--tracking-uri URI] [--experiment NAME] [--concurrency N]

Optuna samples each trial (multi-objective: validation GAP up, multiply-adds down), each a distinct cell
(a duplicate is answered from its first's result); early stopping (the space's: ASHA by Pareto dominance
by default, ASHA on GAP, or off) ends trials that fall behind. Trials read the teacher cache the grid
uses (the teacher is trained once, the grid's way, when it is missing). The study lives in `<store>/tune/<name>`: the same
command resumes an interrupted study and keeps its finished trials. MLflow gets a parent run per study,
a child run per trial (FINISHED; KILLED when early stopping ended it, with the epoch and validation GAP it stopped
at; FAILED with its error), and on the parent `pareto.json`, `pareto.png` and `best.yaml` (an
override for `orchestrator.grid`). Exit 0 when the study finished, 1 when no trial did, 2 for bad input.
"""

from __future__ import annotations

import argparse
import os
import sys

from orchestrator.driver import session
from orchestrator.errors import OrchestratorError
from orchestrator.experiment.presets import load_preset
from orchestrator.experiment.search_space import check_against, load_space


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.tune", description=__doc__.splitlines()[0])
    parser.add_argument("--space", required=True, help="a search space YAML file (search_spaces/*.yaml)")
    parser.add_argument("--preset", default="smoke", help="the preset whose data, teacher and training the trials use")
    parser.add_argument("--trials", type=int, default=20, help="trials to sample (a resumed study keeps its own)")
    parser.add_argument("--store", default="runs", help="folder or URI: data, teacher caches, the study")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<store>/mlflow.db)")
    parser.add_argument("--experiment", help="MLflow experiment (default: fewer-frames-search-<space name>)")
    parser.add_argument("--concurrency", type=int, help="trials at once (default: as many as the cluster's CPUs "
                        "hold now; on an autoscaling cluster, the number its GPU nodes will hold)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    if args.trials < 1:
        raise OrchestratorError(f"--trials must be >= 1, got {args.trials}")
    if args.concurrency is not None and args.concurrency < 1:
        raise OrchestratorError(f"--concurrency must be >= 1, got {args.concurrency}")
    space = load_space(args.space)
    preset = load_preset(args.preset)
    check_against(space, preset, args.space)
    store, tracking_uri, data = session.before_ray(args.store, args.tracking_uri, preset)
    # MLflow (seconds to import) once the input is known good: bad arguments say so at once.
    from orchestrator.driver.ledger import Ledger
    from orchestrator.driver.study import Study, run_study
    from orchestrator.tracking import schema
    from orchestrator.tracking.studies import open_study
    from orchestrator.tracking.tracker import Tracker

    # Tune's own reporter prints a box and a TensorBoard command (TensorBoard is not installed) even when
    # silent; the study prints its own lines (`search_algorithms.TrialProgress`)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray = session.start_ray()
    session.refuse_local_store_on_a_cluster(ray, store, preset.resources)
    tracker = Tracker(tracking_uri, args.experiment or f"fewer-frames-search-{space.name}", store.path("mlartifacts"))
    open_study(tracker, space.name, schema.study_params(args.space, args.preset, args.trials, store.root, space.family,
                                                        space.variant))
    # Tune saves the study and stops its trials on SIGINT: SIGTERM (a scheduler, `ray job stop`) does the same.
    session.stop_on_sigterm()
    with tracker.ending_parent() as parent, session.store_failures(store):
        study = Study(space, preset, args.preset, args.trials, args.concurrency)
        code = run_study(study, data, Ledger(store, tracker.cells), tracker, ray)
        parent.status = "FINISHED" if code == 0 else "FAILED"
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return session.exit_status(lambda: run(args), "finished trials are kept; run the same command again to resume the study")


if __name__ == "__main__":
    sys.exit(main())
