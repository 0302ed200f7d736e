"""python -m orchestrator.publish (--experiment NAME | --run-id ID) [--pareto] [--tracking-uri URI]

Registers a grid's models in MLflow's Model Registry (`orchestrator.tracking.registry`): each family's
teacher as `fewer-frames-<family>-all` and its best student at each k (by validation GAP, among serial and
parallel students whose weights are kept) as `fewer-frames-<family>-k<k>`, the alias `best` moved to the
new version. A winner already registered under `best` is not registered again. The grid does this when it
ends; `--run-id` of a grid's run does it for that run's experiment, and of a cell's run registers that
cell (a new version; `best` stays where it is). With `--pareto`, the models on each family's validation
Pareto front (GAP against multiply-adds) are registered instead, as `fewer-frames-<family>-pareto`, alias
`front-<i>` by their place on it, cheapest first (`orchestrator.tracking.front_registry`). Exit status 0 when every winner is registered; 1 when
one could not be (its weights gone, named) or there was nothing to register; 2 for bad input.
"""

from __future__ import annotations

import argparse
import os
import sys

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from orchestrator.errors import OrchestratorError, masked
from orchestrator.tracking import schema
from orchestrator.tracking.front_registry import publish_front
from orchestrator.tracking.registry import Published, commands, publish_cell, publish_experiment, registered_name
from orchestrator.tracking.schema import RunKind
from orchestrator.tracking.uri import DEFAULT_TRACKING, check_existing_tracking


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.publish", description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", help="register the winners of this grid experiment")
    which.add_argument("--run-id", help="a grid's run (its experiment's winners) or a cell's run (that cell)")
    parser.add_argument("--pareto", action="store_true",
                        help="register the models on each family's validation Pareto front (GAP against "
                             "multiply-adds) as fewer-frames-<family>-pareto, alias front-<i>, cheapest first")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING),
                        help=f"default: MLFLOW_TRACKING_URI, else {DEFAULT_TRACKING}")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> tuple[list[Published], list[str]]:
    """(What was registered or found registered; the names of winners that could not be.)"""
    check_existing_tracking(args.tracking_uri)
    client = MlflowClient(args.tracking_uri)
    publish = publish_front if args.pareto else publish_experiment
    if args.experiment:
        return publish(client, args.experiment)
    try:
        found = client.get_run(args.run_id)
    except MlflowException:
        raise OrchestratorError(f"--run-id {args.run_id}: no such MLflow run at "
                                f"{masked(args.tracking_uri)}") from None
    if schema.kind_of(found) == RunKind.PARENT:
        return publish(client, client.get_experiment(found.info.experiment_id).name)
    if args.pareto:
        raise OrchestratorError(f"--run-id {args.run_id}: --pareto takes a grid's run (a cell is one model, not a front)")
    cell = schema.outcome_of_run(found)
    if not cell.weights:
        raise OrchestratorError(f"{cell.name}: its weights are not kept (a baseline, or a student that was not "
                                "the best of its family and k; set keep_weights: all to keep every student's)")
    return [publish_cell(client, registered_name(cell.family, cell.k), cell, move_alias=False)], []


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        published, refused = run(args)
    except OrchestratorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in [entry.line() for entry in published] + commands(published, args.tracking_uri):
        print(line)
    if refused:
        print(f"error: {len(refused)} of {len(refused) + len(published)} model(s) not registered (why above): "
              f"{', '.join(refused)}", file=sys.stderr)
        return 1
    if not published:
        print("error: nothing to register: no finished teacher or student has kept weights", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
