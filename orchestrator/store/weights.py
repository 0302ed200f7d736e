"""Trained models kept in the store, so the best can leave as MLflow Models (`orchestrator.publish`).

Every teacher and every student (serial or parallel) writes its card and weights (`workloads.inference`)
to `<store>/models/<id>.pt` where it trains: a teacher by its id, a student by its cell's. A paper-size
model is 0.36 GB (NeXtVLAD) to 1.2 GB (NetVLAD), and the paper's matrix has hundreds of students, so by
default (`keep_weights: best`) the driver keeps only each family's best student at each k by validation
GAP, and its best read adaptively (the ones the registry gets): when a student is recorded, the others of
its family and k lose their files. Baselines keep none (they are the grid's points of comparison, not
products); every teacher is kept (one per family, data fraction and seed: the skyline's model).
"""

from __future__ import annotations

import dataclasses

from orchestrator.experiment.matrix import Cell, TeacherSpec
from orchestrator.experiment.results import CellResult
from workloads.adaptive import AdaptiveStudent
from workloads.data.fs import resolve, write_bytes
from workloads.inference import ModelCard, load_weights, weights_bytes
from workloads.models import VideoModel


def student_card(cell: Cell, num_classes: int, stopping: dict | None = None) -> ModelCard:
    """A student's card; `stopping`: the rule its adaptive reading calibrated (`ModelCard.stopping`)."""
    return ModelCard(cell.family, cell.size, num_classes, cell.selection, cell.k, cell.max_frames,
                     dict(cell.model), {"cell": cell.name, "cell_id": cell.id}, stopping or {},
                     scorer_width=cell.scorer.width)


def teacher_card(spec: TeacherSpec, num_classes: int, max_frames: int) -> ModelCard:
    return ModelCard(spec.family, spec.size, num_classes, "all", None, max_frames, dict(spec.model),
                     {"cell": spec.name, "teacher_id": spec.id})


def save(location: str, card: ModelCard, model: VideoModel) -> str:
    """Write the model's card and weights to `location` atomically; returns it."""
    write_bytes(location, weights_bytes(card, model))
    return location


def read(location: str) -> tuple[ModelCard, VideoModel]:
    """A kept model, in eval mode on CPU; `WorkloadError` naming the file when it is not one."""
    fs, path = resolve(location)
    with fs.open_input_stream(path) as stream:
        data = stream.read()
    return load_weights(data, location)


def reading_adaptively(card: ModelCard, model: VideoModel) -> tuple[ModelCard, AdaptiveStudent]:
    """A kept student as a product that reads by its calibrated stopping rule: (its card saying so, the
    `AdaptiveStudent` holding its weights, in eval mode); `WorkloadError` when its card holds no rule."""
    card = dataclasses.replace(card, adaptive=True)
    reading = card.build()
    reading.student.load_state_dict(model.state_dict())
    return card, reading.eval()


def best_adaptive(cells: list[Cell], results: dict[str, CellResult]) -> dict[tuple[str, int], str]:
    """(family, k) -> the kept weights of the student best read adaptively there (by its reading's
    validation GAP): the one its `-adaptive` registered model holds."""
    found = {}
    for where in {slot(c) for c in cells} - {None}:
        winner = _best(_kept(where, cells, results), results).get(ADAPTIVE)
        if winner is not None:
            found[where] = results[winner.id].weights
    return found


def exists(location: str) -> bool:
    fs, path = resolve(location)
    return fs.get_file_info(path).is_file


def slot(cell: Cell) -> tuple[str, int] | None:
    """Which registered model a student competes for: its family's at its k (None for other cells)."""
    return (cell.family, cell.k) if cell.mode.is_student else None


def losers(cell: Cell, cells: list[Cell], results: dict[str, CellResult]) -> list[Cell]:
    """The recorded students of `cell`'s family and k whose weights are kept but that are the best in none
    of the registered models they compete for: the k-frame model by validation GAP, and the model read
    adaptively by its reading's validation GAP (on a tie, the first in the matrix's order stays)."""
    rivals = _kept(slot(cell), cells, results)
    if slot(cell) is None or len(rivals) < 2:
        return []
    kept = {winner.id for winner in _best(rivals, results).values()}
    return [c for c in rivals if c.id not in kept]


def _kept(where: tuple[str, int] | None, cells: list[Cell], results: dict[str, CellResult]) -> list[Cell]:
    """The recorded students of a slot whose weights are kept."""
    return [c for c in cells if slot(c) == where and c.id in results and results[c.id].weights]


def _best(rivals: list[Cell], results: dict[str, CellResult]) -> dict[str, Cell]:
    """Of `rivals`, the best for each registered model they compete for, by name suffix (`competing`); on
    a tie, the first stays."""
    best: dict[str, tuple[Cell, float]] = {}
    for rival in rivals:
        for model, score in competing(results[rival.id]).items():
            if model not in best or score > best[model][1]:
                best[model] = (rival, score)
    return {model: winner for model, (winner, _) in best.items()}


ADAPTIVE = "-adaptive"  # a registered name's suffix: its student reads as many of its k frames as each video needs


def competing(scored) -> dict[str, float]:
    """The registered models a kept model competes for, by name suffix ("": the one reading all its frames,
    ADAPTIVE: the one read adaptively), each with its score there: validation GAP, and its adaptive
    reading's. `scored`: a `CellResult` or a `CellOutcome`."""
    found = {"": scored.val_gap or 0.0}
    if scored.adaptive_val_gap is not None:
        found[ADAPTIVE] = scored.adaptive_val_gap
    return found


def delete(location: str) -> None:
    fs, path = resolve(location)
    if fs.get_file_info(path).is_file:
        fs.delete_file(path)
