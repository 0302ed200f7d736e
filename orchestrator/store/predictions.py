"""Test predictions in the store: every model a grid tests keeps each test video's top 20 classes and scores
(what a submission holds), with whether each class is one of the video's labels and how many labels it has,
so any two models scored on the same videos can be compared by a paired bootstrap
(`workloads.bootstrap`) long after the data set is gone: from the store, or from the run's artifact.

`<store>/predictions/<cell or teacher id>.parquet`: one row per video, `id`, `classes` (int32),
`scores` (float32), `hits` (bool), each ranked by score, and `label_count`. Written atomically by the job
that tested the model.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.store.files import DamagedFile
from workloads.data.fs import is_file, resolve, write_atomically
from workloads.metrics import TopKPredictions

SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("classes", pa.list_(pa.int32()), nullable=False),
    pa.field("scores", pa.list_(pa.float32()), nullable=False),
    pa.field("hits", pa.list_(pa.bool_()), nullable=False),
    pa.field("label_count", pa.int32(), nullable=False),
])


def write_predictions(location: str, predictions: TopKPredictions) -> None:
    table = pa.table({
        "id": list(predictions.ids),
        "classes": predictions.classes.astype(np.int32).tolist(),
        "scores": predictions.scores.astype(np.float32).tolist(),
        "hits": predictions.hits.astype(bool).tolist(),
        "label_count": predictions.label_counts.astype(np.int32),
    }, schema=SCHEMA)
    write_atomically(location, lambda fs, path: pq.write_table(table, path, filesystem=fs))


def read_predictions(location: str) -> TopKPredictions | None:
    """The predictions kept at `location`, None when there are none; `DamagedFile` when the file is not
    predictions as written here."""
    if not is_file(location):
        return None
    fs, path = resolve(location)
    try:
        table = pq.read_table(path, filesystem=fs)
        if not table.schema.equals(SCHEMA, check_metadata=False):
            raise ValueError(f"columns {table.schema.names} of other types than {SCHEMA.names}")
        columns = {name: table.column(name).combine_chunks() for name in ("classes", "scores", "hits")}
        widths = {name: np.unique(np.diff(column.offsets.to_numpy())) for name, column in columns.items()}
        if len(table) and any(len(w) != 1 or w[0] != widths["classes"][0] for w in widths.values()):
            raise ValueError("rows of unequal lengths of classes, scores and hits")
        width = int(widths["classes"][0]) if len(table) else 0
        flat = {name: column.values.to_numpy(zero_copy_only=False).reshape(len(table), width)
                for name, column in columns.items()}
        return TopKPredictions(tuple(table.column("id").to_pylist()), flat["classes"], flat["scores"],
                               flat["hits"].astype(bool), table.column("label_count").to_numpy())
    except (pa.ArrowInvalid, OSError, ValueError) as error:
        raise DamagedFile(location, f"not test predictions: {error}") from None
