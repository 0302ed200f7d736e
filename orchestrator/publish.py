"""python -m orchestrator.publish (--experiment NAME | --run-id ID) [--tracking-uri URI]

Registers a grid's models in MLflow's Model Registry: each family's teacher as `fewer-frames-<family>-all`
and its best student at each k (by validation GAP, among serial and parallel students whose weights are
kept) as `fewer-frames-<family>-k<k>`, each an MLflow Model logged on its cell's run
(`orchestrator.serve.package`), the alias `best` moved to the new version, and tags naming the cell, its
test GAP/mAP and multiply-adds. A winner already registered under `best` is not registered again. The
grid does this when it ends; `--run-id` of a grid's run does it for that run's experiment, and of a
cell's run registers that cell (a new version; `best` stays where it is).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from orchestrator.store import weights
from orchestrator.errors import OrchestratorError, note, one_line
from orchestrator.tracking.runs import GRID_TAG, CellRun, read_cell, read_experiment
from orchestrator.store.access import DEFAULT_TRACKING, check_existing_tracking
from workloads.data.fs import resolve
from workloads.errors import WorkloadError

ALIAS = "best"


def registered_name(family: str, k: int | None) -> str:
    return f"fewer-frames-{family}-{'all' if k is None else f'k{k}'}"


@dataclass(frozen=True)
class Published:
    name: str
    version: str
    cell: CellRun
    new: bool  # False: already registered as this name's `best`
    aliased: bool  # whether `best` points at it

    def line(self) -> str:
        what = "registered" if self.new else "already registered"
        uri = f"models:/{self.name}@{ALIAS}" if self.aliased else f"models:/{self.name}/{self.version}"
        return (f"{what} {self.name} version {self.version} ({uri}): {self.cell.name}, test GAP "
                f"{self.cell.gap:.4f}, {self.cell.macs / 1e6:.1f} M multiply-adds per video")


def winners(cells: list[CellRun]) -> dict[str, CellRun]:
    """Registered name -> the cell that goes there: each family's teacher (skyline) and best student at
    each k by validation GAP, among finished cells whose weights are kept."""
    best: dict[str, CellRun] = {}
    for cell in cells:
        if not (cell.finished and cell.weights and cell.mode in ("skyline", *weights.STUDENT_MODES)):
            continue
        name = registered_name(cell.family, cell.k)
        score = cell.metric("best_val_gap") or 0.0
        if name not in best or score > (best[name].metric("best_val_gap") or 0.0):
            best[name] = cell
    return dict(sorted(best.items()))


def publish_cell(client: MlflowClient, name: str, cell: CellRun, move_alias: bool = True) -> Published:
    """Log `cell`'s kept model on its run, register it as `name` and (with `move_alias`) point `best` at it,
    unless `best` already holds exactly this cell's model."""
    current = _by_alias(client, name)
    if move_alias and current is not None and current.tags.get("cell_id") == cell.cell_id \
            and current.tags.get("run_id") == cell.run_id:
        return Published(name, current.version, cell, new=False, aliased=True)
    if not weights.exists(cell.weights):
        raise OrchestratorError(f"{cell.name}: its weights are no longer at {cell.weights}")
    with tempfile.TemporaryDirectory() as scratch:
        local = os.path.join(scratch, "weights.pt")
        _download(cell.weights, local)
        try:
            card, _ = weights.read(local)
        except WorkloadError as error:
            raise OrchestratorError(f"{cell.name}: {cell.weights}: {error}") from None
        from orchestrator.serve.package import log_package

        model_uri = log_package(cell.run_id, local, card, client.tracking_uri)
    version = client.create_model_version(name, model_uri, run_id=cell.run_id, tags=_tags(cell, card),
                                          description=_describe(cell, card)) \
        if _exists(client, name) else _first_version(client, name, model_uri, cell, card)
    if move_alias:
        client.set_registered_model_alias(name, ALIAS, version.version)
    return Published(name, version.version, cell, new=True, aliased=move_alias)


def publish_experiment(client: MlflowClient, experiment: str) -> list[Published]:
    """Register the experiment's winners (`winners`); a winner that cannot be published is noted and the
    others go on."""
    found = read_experiment(client, experiment)
    published = []
    for name, cell in winners(found.cells).items():
        try:
            published.append(publish_cell(client, name, cell))
        except OrchestratorError as error:
            note(name, f"not registered: {error}")
    return published


def publish_after_grid(client: MlflowClient, experiment: str) -> list[Published]:
    """`publish_experiment` at a grid's end: a grid whose models cannot be registered has still run, so
    any failure is one note and the grid goes on."""
    try:
        return publish_experiment(client, experiment)
    except Exception as error:  # MLflow's errors are many kinds; none should cost the grid its exit status
        note("registry", f"models not registered: {one_line(error)}")
        return []


def _by_alias(client: MlflowClient, name: str):
    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None


def _exists(client: MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
        return True
    except MlflowException:
        return False


def _first_version(client: MlflowClient, name: str, model_uri: str, cell: CellRun, card):
    family = "teacher reading every frame" if card.k is None else \
        f"student reading k={card.k} frames (every {card.stride}th, {card.selection})"
    client.create_registered_model(name, tags={"family": cell.family, "k": "all" if card.k is None else str(card.k)},
                                   description=f"Fewer Frames {cell.family} {family}, for {card.num_classes} classes. "
                                               f"Alias '{ALIAS}': the newest winner by validation GAP.")
    return client.create_model_version(name, model_uri, run_id=cell.run_id, tags=_tags(cell, card),
                                       description=_describe(cell, card))


def _tags(cell: CellRun, card) -> dict[str, str]:
    values = {"cell": cell.name, "cell_id": cell.cell_id, "run_id": cell.run_id, "mode": cell.mode,
              "loss": cell.variant, "k": "all" if card.k is None else str(card.k), "stride": str(card.stride),
              "selection": card.selection, "classes": str(card.num_classes), "weights": cell.weights}
    for metric in ("gap", "map", "best_val_gap", "macs"):
        if cell.metric(metric) is not None:
            values[f"test_{metric}" if metric in ("gap", "map") else metric] = f"{cell.metric(metric):.6g}"
    return values


def _describe(cell: CellRun, card) -> str:
    return (f"{cell.name}: test GAP {cell.gap:.4f}, mAP {cell.metric('map') or 0:.4f}, validation GAP "
            f"{cell.metric('best_val_gap') or 0:.4f}, {cell.macs / 1e6:.1f} M multiply-adds per video")


def _download(location: str, local: str) -> None:
    fs, path = resolve(location)
    with fs.open_input_stream(path) as stream, open(local, "wb") as out:
        while chunk := stream.read(16 << 20):
            out.write(chunk)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.publish", description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", help="register the winners of this grid experiment")
    which.add_argument("--run-id", help="a grid's run (its experiment's winners) or a cell's run (that cell)")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING),
                        help=f"default: MLFLOW_TRACKING_URI, else {DEFAULT_TRACKING}")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> list[Published]:
    check_existing_tracking(args.tracking_uri)
    client = MlflowClient(args.tracking_uri)
    if args.experiment:
        return publish_experiment(client, args.experiment)
    try:
        found = client.get_run(args.run_id)
    except MlflowException:
        raise OrchestratorError(f"--run-id {args.run_id}: no such MLflow run at {args.tracking_uri}") from None
    if found.data.tags.get(GRID_TAG) == "parent":
        return publish_experiment(client, client.get_experiment(found.info.experiment_id).name)
    cell = read_cell(found)
    if not cell.weights:
        raise OrchestratorError(f"{cell.name}: its weights are not kept (a baseline, or a student that was not "
                                "the best of its family and k; set keep_weights: all to keep every student's)")
    return [publish_cell(client, registered_name(cell.family, cell.k), cell, move_alias=False)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        published = run(args)
    except OrchestratorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for entry in published:
        print(entry.line())
    if not published:
        print("nothing to register: no finished teacher or student has kept weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
