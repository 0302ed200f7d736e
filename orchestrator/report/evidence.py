"""What the findings and the tables measure their comparisons with: each finished cell's test predictions
and representation sample, read from the grid's store (`in_store`, the summary at a grid's end) or from its
MLflow runs' artifacts (`in_mlflow`, the report), and resampled together (`workloads.bootstrap`).

`gap(cells)` is the mean test GAP of a row's cells (its seeds) as a `Resampled`; `cosine(cells, everyone)`
the mean cosine of their test representations to their teachers'. Every model scored on the same test
videos is resampled with the same draws, so any difference of two rows is paired. A cell whose predictions
were not kept (a run logged before they were) gives its score without draws, and what it takes part in
has no interval; so does one whose file cannot be read (a damaged file costs an interval, never a summary
or a report).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable

from orchestrator.experiment.matrix import Cell
from orchestrator.experiment.modes import Mode
from orchestrator.experiment.outcome import CellOutcome
from orchestrator.store.files import DamagedFile
from orchestrator.store.layout import Store, owner_id
from orchestrator.store.predictions import read_predictions
from orchestrator.store.samples import read_sample
from orchestrator.tracking import schema
from workloads.bootstrap import Resampled, Resamples, mean, resampled_gap, resampled_mean
from workloads.metrics import TopKPredictions
from workloads.representations import Representations, cosines

Sample = tuple[Representations, Representations | None]  # a model's, and a parallel pair's own teacher's


class Evidence:
    def __init__(self, predictions: Callable[[CellOutcome], TopKPredictions | None],
                 samples: Callable[[CellOutcome], Sample | None],
                 adaptive: Callable[[CellOutcome], TopKPredictions | None] = lambda cell: None):
        self._read_predictions, self._read_sample, self._read_adaptive = predictions, samples, adaptive
        self._resamples: dict[tuple[str, ...], Resamples] = {}
        # By the whole outcome (hashable, frozen): the same cell of another grid, or a rerun, is another key.
        self._gaps: dict[CellOutcome, Resampled] = {}
        self._adaptive_gaps: dict[CellOutcome, Resampled] = {}
        self._samples: dict[CellOutcome, Sample | None] = {}

    @classmethod
    def in_store(cls, store: Store, cells: list[Cell]) -> Evidence:
        """Read from a grid's store: `cells` say whose files each finished cell's are."""
        owners = {cell.id: owner_id(cell) for cell in cells}
        return cls(lambda c: read_predictions(store.predictions(owners[c.cell_id])),
                   lambda c: read_sample(store.representations(owners[c.cell_id])),
                   lambda c: read_predictions(store.adaptive_predictions(c.cell_id)))

    @classmethod
    def in_mlflow(cls, client) -> Evidence:
        """Read from each cell's MLflow run (its `predictions.parquet` and `representations.parquet`)."""
        return cls(lambda c: run_artifact(client, c.run_id, schema.PREDICTIONS, read_predictions),
                   lambda c: run_artifact(client, c.run_id, schema.REPRESENTATIONS, read_sample),
                   lambda c: run_artifact(client, c.run_id, schema.ADAPTIVE_PREDICTIONS, read_predictions))

    def gap(self, cells: list[CellOutcome]) -> Resampled | None:
        """The mean test GAP of `cells` (one row's seeds); None without any."""
        return mean([self._gap(c) for c in cells]) if cells else None

    def adaptive_gap(self, cells: list[CellOutcome]) -> Resampled | None:
        """The mean test GAP of `cells` read adaptively (serial students with an adaptive reading), paired
        with their k-frame readings on the same videos; None when one has no adaptive reading."""
        if not cells or any(c.adaptive_gap is None for c in cells):
            return None
        return mean([self._adaptive(c) for c in cells])

    def _adaptive(self, cell: CellOutcome) -> Resampled:
        if cell not in self._adaptive_gaps:
            predictions = _readable(self._read_adaptive, cell)
            self._adaptive_gaps[cell] = (Resampled(cell.adaptive_gap) if predictions is None else resampled_gap(
                predictions, self._resamples_of(predictions.ids), cell.adaptive_gap))
        return self._adaptive_gaps[cell]

    def cosine(self, cells: list[CellOutcome], everyone: list[CellOutcome]) -> Resampled | None:
        """The mean cosine of `cells`' test representations to their teachers' (a parallel pair's own, any
        other cell's the skyline of its family, size, data share and seed among `everyone`); None when a
        cell has no `rep_cosine`."""
        values = [self._cosine(c, everyone) for c in cells]
        return mean(values) if values and None not in values else None

    def _gap(self, cell: CellOutcome) -> Resampled:
        if cell not in self._gaps:
            predictions = _readable(self._read_predictions, cell) if cell.finished else None
            self._gaps[cell] = (Resampled(cell.gap) if predictions is None else
                                resampled_gap(predictions, self._resamples_of(predictions.ids), cell.gap))
        return self._gaps[cell]

    def _cosine(self, cell: CellOutcome, everyone: list[CellOutcome]) -> Resampled | None:
        if cell.rep_cosine is None:
            return None
        found = self._sample(cell)
        teacher = found[1] if found is not None else None
        if found is not None and teacher is None:
            skyline = next((c for c in everyone if c.mode is Mode.SKYLINE and c.finished
                            and (c.family, c.size, c.data_fraction, c.seed)
                            == (cell.family, cell.size, cell.data_fraction, cell.seed)), None)
            theirs = None if skyline is None else self._sample(skyline)
            teacher = None if theirs is None else theirs[0]
        if teacher is None:
            return Resampled(cell.rep_cosine)
        ids, values = cosines(found[0], teacher)
        return resampled_mean(ids, values, self._resamples_of(ids))

    def _sample(self, cell: CellOutcome) -> Sample | None:
        if cell not in self._samples:
            self._samples[cell] = _readable(self._read_sample, cell)
        return self._samples[cell]

    def _resamples_of(self, ids) -> Resamples:
        key = tuple(sorted(ids))
        if key not in self._resamples:
            self._resamples[key] = Resamples.of(key)
        return self._resamples[key]


def _readable(read: Callable[[CellOutcome], Any], cell: CellOutcome) -> Any:
    try:
        return read(cell)
    except DamagedFile:
        return None


def run_artifact(client, run_id: str, name: str, read: Callable[[str], Any]) -> Any:
    """`read` of a run's artifact `name`; None when the run has none (logged before it was kept)."""
    if not run_id:
        return None
    with tempfile.TemporaryDirectory() as folder:
        try:
            local = client.download_artifacts(run_id, name, folder)
        except Exception:  # noqa: BLE001 - MLflow raises several kinds for an artifact that is not there
            return None
        return read(local) if os.path.exists(local) else None


def scores_alone() -> Evidence:
    """Evidence of no predictions and no samples: every score without draws, so no interval."""
    return Evidence(lambda cell: None, lambda cell: None)
