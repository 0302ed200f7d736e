"""Representation samples in the store: every model of a grid describes the same sample of test videos
(`workloads.data.subsets.in_sample`, about SAMPLE_VIDEOS of them), so a student's E_S and its teacher's
E_T can be compared video by video (`rep_cosine`, `rep_mse`) and drawn as the paper's Figure 3.

`<store>/representations/<id>.parquet` (a cell's id, or a teacher's): one row per video, `id`, `labels`
and `representation` (float32 bytes); a parallel pair's file also holds its own teacher's
`teacher_representation`. Written atomically by the job that trained the model; read by the driver.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.store.files import DamagedFile
from workloads.data.fs import is_file, resolve, write_atomically
from workloads.errors import WorkloadError
from workloads.representations import Representations, similarity

SAMPLE_VIDEOS = 1024

SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("labels", pa.list_(pa.int32()), nullable=False),
    pa.field("representation", pa.binary(), nullable=False),
    pa.field("teacher_representation", pa.binary()),
])


def sample_share(videos: int) -> float:
    """The share of a split of `videos` videos that makes about SAMPLE_VIDEOS (all of a smaller one)."""
    return min(1.0, SAMPLE_VIDEOS / max(videos, 1))


def write_sample(location: str, model: Representations, teacher: Representations | None = None) -> None:
    """A model's sample (and a parallel pair's teacher's, of the same videos), atomically."""
    if teacher is not None and teacher.ids != model.ids:
        raise WorkloadError("a pair's samples must describe the same videos in the same order")
    table = pa.table({
        "id": model.ids,
        "labels": model.labels,
        "representation": [row.astype(np.float32).tobytes() for row in model.values],
        "teacher_representation": [None] * len(model.ids) if teacher is None else
                                  [row.astype(np.float32).tobytes() for row in teacher.values],
    }, schema=SCHEMA)
    write_atomically(location, lambda fs, path: pq.write_table(table, path, filesystem=fs))


def read_sample(location: str) -> tuple[Representations, Representations | None] | None:
    """(the model's, its pair's teacher's or None), None when there is no sample; `DamagedFile` when there
    is one that cannot be read."""
    if not is_file(location):
        return None
    fs, path = resolve(location)
    try:
        table = pq.read_table(path, filesystem=fs)
        ids, labels = table.column("id").to_pylist(), table.column("labels").to_pylist()
        model = Representations(ids, labels, _values(table.column("representation").to_pylist()))
        theirs = table.column("teacher_representation").to_pylist()
    except (pa.ArrowInvalid, KeyError, ValueError) as error:
        raise DamagedFile(location, f"not a representation sample: {error}") from None
    teacher = None if not ids or theirs[0] is None else Representations(ids, labels, _values(theirs))
    return model, teacher


def rep_metrics(sample: str, teacher_sample: str | None) -> dict[str, float] | None:
    """`rep_cosine` and `rep_mse` of a cell's sample against its teacher's: a parallel pair's own teacher
    (in the same file), else the sample at `teacher_sample`. None while either is missing."""
    found = read_sample(sample)
    if found is None:
        return None
    model, teacher = found
    if teacher is None and teacher_sample is not None:
        reference = read_sample(teacher_sample)
        teacher = None if reference is None else reference[0]
    if teacher is None:
        return None
    cosine, mse, _ = similarity(model, teacher)
    return {"rep_cosine": cosine, "rep_mse": mse}


def _values(blobs: list[bytes]) -> np.ndarray:
    if not blobs:
        return np.zeros((0, 0), np.float32)
    return np.stack([np.frombuffer(blob, np.float32) for blob in blobs])
