"""MLflow's Model Registry: a grid's models published. Each family's teacher as `fewer-frames-<family>-all`
and its best student at each k (by validation GAP, among serial and parallel students whose weights are
kept) as `fewer-frames-<family>-k<k>`, and its best student read adaptively (by that reading's validation
GAP) as `fewer-frames-<family>-k<k>-adaptive`, a model that stops per video by its calibrated rule
(`workloads.adaptive.AdaptiveStudent`); each an MLflow Model logged on its cell's run
(`orchestrator.serve.package`), the alias `best` moved to the new version, and tags naming the cell, its
test GAP/mAP and multiply-adds. A winner already registered under `best` is not registered again. The
grid does this when it ends (`publish_after_grid`); `python -m orchestrator.publish` at any time.
"""

from __future__ import annotations

import math
import os
import shlex
import tempfile
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from orchestrator.errors import OrchestratorError, masked, note, one_line
from orchestrator.experiment.modes import Mode
from orchestrator.experiment.outcome import CellOutcome
from orchestrator.experiment.rows import display_name
from orchestrator.serve.package import log_package
from orchestrator.store import weights
from orchestrator.tracking import schema
from orchestrator.tracking.runs import read_experiment
from orchestrator.tracking.tracker import Tracker
from workloads.data.fs import resolve
from workloads.errors import WorkloadError
from workloads.inference import ModelCard

ALIAS = "best"
ADAPTIVE = weights.ADAPTIVE


def registered_name(family: str, k: int | None) -> str:
    return f"fewer-frames-{family}-{'all' if k is None else f'k{k}'}"


@dataclass(frozen=True)
class Published:
    name: str
    version: str
    cell: CellOutcome
    new: bool  # False: already registered (as this name's `best`, or as this cell's version)
    aliased: bool  # whether `best` points at it
    alias: str = ""  # another alias that points at it (`front-<i>`: its place on a Pareto front)
    place: str = ""  # that place in words ("1 of 3, cheapest first")

    def line(self) -> str:
        what = "registered" if self.new else "already registered"
        uri = (f"models:/{self.name}@{ALIAS}" if self.aliased else f"models:/{self.name}@{self.alias}" if self.alias
               else f"models:/{self.name}/{self.version}")
        place = f"; on the validation front (validation GAP {self.cell.val_gap:.4f}), place {self.place}" if self.place else ""
        cell = self.cell
        scored = (f"read adaptively: test GAP {cell.adaptive_gap:.4f}, {cell.adaptive_frames:.1f} of {cell.k} frames "
                  f"and {_millions(cell.adaptive_macs)} M multiply-adds per video on average"
                  if self.name.endswith(ADAPTIVE) and cell.adaptive_gap is not None
                  else f"test GAP {cell.gap:.4f}, {_millions(cell.macs)} M multiply-adds per video")
        return f"{what} {self.name} version {self.version} ({uri}): {display_name(cell)} ({cell.name}), {scored}{place}"


def commands(published: list[Published], tracking_uri: str) -> list[str]:
    """How to use the student of the largest k just registered (the most accurate of the cheap ones), as
    commands to paste in a shell from any folder: label its test split into a CSV, and serve it (a password
    in the tracking URI shown masked: put it back). Nothing when no student was registered."""
    students = [entry for entry in published if entry.cell.k is not None and (entry.aliased or entry.alias)]
    if not students:
        return []
    entry = max(students, key=lambda e: e.cell.k)
    uri = masked(_pasteable(tracking_uri))
    model = f"models:/{entry.name}@{ALIAS if entry.aliased else entry.alias}"
    split = entry.cell.test_split  # a run logged before the split was a param has none: no folder to name
    data = split if "://" in split or not split else os.path.abspath(split)
    label = [f"label videos with the k={entry.cell.k} student: python -m orchestrator.predict --model {model} "
             f"--data {shlex.quote(data)} --out predictions.csv --tracking-uri {shlex.quote(uri)}"] if data else []
    return label + [f"serve it: MLFLOW_TRACKING_URI={shlex.quote(uri)} mlflow models serve -m {model} "
                    "--env-manager local -h 127.0.0.1 -p 5001"]


def _pasteable(tracking_uri: str) -> str:
    """A SQLite tracking URI with an absolute path (`sqlite:///runs/mlflow.db` is relative to where it runs)."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix) and not tracking_uri.startswith(prefix + "/"):
        return prefix + os.path.abspath(tracking_uri[len(prefix):])
    return tracking_uri


def winners(cells: list[CellOutcome]) -> dict[str, CellOutcome]:
    """Registered name -> the cell that goes there: each family's teacher (skyline) and best student at
    each k by validation GAP, among finished cells whose weights are kept; and, as "<name>-adaptive", the
    student at each k best read adaptively (`workloads.adaptive`), by its reading's validation GAP."""
    best: dict[str, tuple[CellOutcome, float]] = {}
    for cell in cells:
        if not (cell.finished and cell.weights and (cell.mode is Mode.SKYLINE or cell.mode.is_student)):
            continue
        name = registered_name(cell.family, cell.k)
        for suffix, score in weights.competing(cell).items():
            if name + suffix not in best or score > best[name + suffix][1]:
                best[name + suffix] = (cell, score)
    return {name: cell for name, (cell, _) in sorted(best.items())}


def publish_cell(client: MlflowClient, name: str, cell: CellOutcome, move_alias: bool = True) -> Published:
    """Log `cell`'s kept model on its run, register it as `name` and (with `move_alias`) point `best` at it,
    unless `best` already holds exactly this cell's model."""
    current = _by_alias(client, name)
    if move_alias and current is not None and current.tags.get(schema.CELL_ID_TAG) == cell.cell_id \
            and current.tags.get(schema.VERSION_RUN) == cell.run_id:
        return Published(name, current.version, cell, new=False, aliased=True)
    if not weights.exists(cell.weights):
        raise OrchestratorError(f"{cell.name}: its weights are no longer at {cell.weights}")
    with tempfile.TemporaryDirectory() as scratch:
        local = os.path.join(scratch, "weights.pt")
        _download(cell.weights, local)
        try:
            card, model = weights.read(local)
        except WorkloadError as error:
            raise OrchestratorError(f"{cell.name}: {cell.weights}: {error}") from None
        if name.endswith(ADAPTIVE):
            card = _reading_adaptively(cell, card, model, local)
        model_uri = log_package(cell.run_id, local, card, client.tracking_uri)
    version = client.create_model_version(name, model_uri, run_id=cell.run_id, tags=_tags(cell, card),
                                          description=_describe(cell, card), model_id=_model_id(model_uri)) \
        if _exists(client, name) else _first_version(client, name, model_uri, cell, card)
    if move_alias:
        client.set_registered_model_alias(name, ALIAS, version.version)
    return Published(name, version.version, cell, new=True, aliased=move_alias)


def _reading_adaptively(cell: CellOutcome, card: ModelCard, model, local: str) -> ModelCard:
    """The student's card and weights at `local` rewritten to read by its calibrated stopping rule."""
    if not card.stopping:
        raise OrchestratorError(f"{cell.name}: its weights hold no stopping rule (kept before models carried one)")
    card, reading = weights.reading_adaptively(card, model)
    weights.save(local, card, reading)
    return card


def publish_experiment(client: MlflowClient, experiment: str) -> tuple[list[Published], list[str]]:
    """Register the experiment's winners (`winners`); a winner that cannot be published is noted and the
    others go on. (What was published; the names of the winners that could not be.)"""
    found = read_experiment(client, experiment)
    published, refused = [], []
    for name, cell in winners(found.cells).items():
        try:
            published.append(publish_cell(client, name, cell))
        except OrchestratorError as error:
            note(name, f"not registered: {error}")
            refused.append(name)
    return published, refused


def publish_after_grid(tracker: Tracker) -> list[Published]:
    """`publish_experiment` of the tracker's experiment at a grid's end: a grid whose models cannot be
    registered has still run, so any failure is one note and the grid goes on."""
    try:
        return publish_experiment(tracker.client, tracker.experiment)[0]
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


def _first_version(client: MlflowClient, name: str, model_uri: str, cell: CellOutcome, card):
    family = f"{'teacher' if card.k is None else 'student'} reading {card.reads}"
    client.create_registered_model(name, tags={schema.REGISTERED_FAMILY: cell.family,
                                               schema.REGISTERED_K: _k(card.k)},
                                   description=f"Fewer Frames {cell.family} {family}, for {card.num_classes} classes. "
                                               f"Alias '{ALIAS}': the newest winner by validation GAP.")
    return client.create_model_version(name, model_uri, run_id=cell.run_id, tags=_tags(cell, card),
                                       description=_describe(cell, card), model_id=_model_id(model_uri))


def _model_id(model_uri: str) -> str | None:
    """The logged model's id in `models:/m-...`: an MLflow server refuses a version of that source without it
    (a SQLite store took it)."""
    return model_uri.split("/", 1)[1] if model_uri.startswith("models:/m-") else None


def _tags(cell: CellOutcome, card) -> dict[str, str]:
    values = {schema.VERSION_CELL: cell.name, schema.CELL_ID_TAG: cell.cell_id, schema.VERSION_RUN: cell.run_id,
              schema.MODE: cell.mode, schema.VARIANT: cell.variant, schema.K: _k(card.k),
              schema.VERSION_STRIDE: str(card.stride), schema.SELECTION: card.selection,
              schema.VERSION_CLASSES: str(card.num_classes), schema.WEIGHTS_TAG: cell.weights}
    for field, tag in schema.VERSION_SCORES.items():
        if getattr(cell, field) is not None:
            values[tag] = f"{getattr(cell, field):.6g}"
    return values


def _k(k: int | None) -> str:
    return schema.ALL_FRAMES if k is None else str(k)


def _millions(macs: float | None) -> str:
    return f"{(math.nan if macs is None else macs) / 1e6:.1f}"


def _describe(cell: CellOutcome, card) -> str:
    return (f"{cell.name}: test GAP {cell.gap:.4f}, mAP {cell.map or 0:.4f}, validation GAP "
            f"{cell.val_gap or 0:.4f}, {_millions(cell.macs)} M multiply-adds per video")


def _download(location: str, local: str) -> None:
    fs, path = resolve(location)
    with fs.open_input_stream(path) as stream, open(local, "wb") as out:
        while chunk := stream.read(16 << 20):
            out.write(chunk)


