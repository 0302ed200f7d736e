"""`python -m orchestrator.publish --pareto`: the models on each family's validation Pareto front (validation
GAP up, multiply-adds per video down, among finished teachers and students) registered as
`fewer-frames-<family>-pareto`, one version per model, with its place on the front: alias `front-<i>` (1 the
cheapest), tags `pareto_place` ("2 of 4, cheapest first") and the model's validation GAP and multiply-adds.
A practitioner picks the cheapest model that is accurate enough; the front says which ones are worth it.

Only a model whose weights are kept can be registered: the grid keeps the best student of each family and k
(`keep_weights: all` keeps every one), so a front member without weights is named, not registered.
Aliases of an earlier, longer front are removed, so `front-<i>` always means this front's.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from orchestrator.errors import OrchestratorError, note
from orchestrator.experiment.modes import Mode
from orchestrator.experiment.outcome import CellOutcome
from orchestrator.experiment.fronts import pareto_front
from orchestrator.tracking import schema
from orchestrator.tracking.registry import Published, publish_cell
from orchestrator.tracking.runs import read_experiment

def front_name(family: str) -> str:
    return f"fewer-frames-{family}-pareto"


@dataclass(frozen=True)
class _Scored:
    """A cell scored as the front compares: validation GAP and multiply-adds."""

    cell: CellOutcome
    gap: float
    macs: float


def validation_front(cells: list[CellOutcome]) -> list[CellOutcome]:
    """The finished teachers and students of one family no other beats on both validation GAP and
    multiply-adds, cheapest first."""
    scored = [_Scored(c, c.val_gap, c.macs) for c in cells
              if c.finished and (c.mode is Mode.SKYLINE or c.mode.is_student) and c.val_gap is not None
              and c.macs is not None]
    return [s.cell for s in pareto_front(scored)]


def publish_front(client: MlflowClient, experiment: str) -> tuple[list[Published], list[str]]:
    """Register every family's front (`validation_front`). (What was registered or found registered,
    aliased `front-<i>`; the names of front members that could not be.)"""
    found = read_experiment(client, experiment)
    published, refused = [], []
    for family in sorted({c.family for c in found.cells}):
        front = validation_front([c for c in found.cells if c.family == family])
        name = front_name(family)
        for place, cell in enumerate(front, 1):
            where = f"{name} place {place} of {len(front)} ({cell.name})"
            if not cell.weights:
                note(where, "not registered: its weights are not kept (set keep_weights: all in the preset to "
                            "keep every student's)")
                refused.append(where)
                continue
            try:
                entry = _registered(client, name, cell) or publish_cell(client, name, cell, move_alias=False)
            except OrchestratorError as error:
                note(where, f"not registered: {error}")
                refused.append(where)
                continue
            client.set_registered_model_alias(name, f"front-{place}", entry.version)
            words = f"{place} of {len(front)}, cheapest first"
            client.set_model_version_tag(name, entry.version, schema.PARETO_PLACE_TAG, words)
            published.append(Published(name, entry.version, cell, entry.new, aliased=False, alias=f"front-{place}",
                                        place=words))
        _drop_stale_aliases(client, name, len(front))
    return published, refused


def _registered(client: MlflowClient, name: str, cell: CellOutcome) -> Published | None:
    """The version of `name` that already holds this cell's model, if one does."""
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    for version in versions:
        if version.tags.get(schema.CELL_ID_TAG) == cell.cell_id and version.tags.get(schema.VERSION_RUN) == cell.run_id:
            return Published(name, version.version, cell, new=False, aliased=False)
    return None


def _drop_stale_aliases(client: MlflowClient, name: str, places: int) -> None:
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException:
        return
    for alias in aliases:
        if alias.startswith("front-") and alias.removeprefix("front-").isdigit() and int(alias[6:]) > places:
            client.delete_registered_model_alias(name, alias)
