"""The teacher cache: a trained teacher's outputs per video, as Parquet, so students never re-run it.

A cache is a folder of parts `part-NNNNN.parquet` (one row per video: `id`, `representation` E_T and
`probabilities` P_T as raw float32 bytes, and for intermediate matching `intermediates` I_T, steps x d
float32 bytes, at `positions`), the teacher's classifier weights `classifier.pt`, and `_manifest.json`,
written last. No manifest, no cache: a writer killed half-way leaves a cache that counts as absent and is
rebuilt. `ParquetTeacherCache` reads one back as a `workloads.train.TeacherSource`.
"""

from __future__ import annotations

import io
import json
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch

from orchestrator.errors import OrchestratorError
from workloads.data.fs import join, resolve, write_atomically
from workloads.losses import TeacherTargets
from workloads.train import TeacherRecord, stack_targets

MANIFEST = "_manifest.json"
FORMAT = 1
ROWS_PER_PART = 8192

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("representation", pa.binary(), nullable=False),
        pa.field("probabilities", pa.binary(), nullable=False),
        pa.field("intermediates", pa.binary()),
        pa.field("positions", pa.list_(pa.int32())),
    ]
)


def _write_bytes(location: str, data: bytes) -> None:
    def write(fs, path):
        with fs.open_output_stream(path) as out:
            out.write(data)

    write_atomically(location, write)


def write_teacher_cache(
    location: str, records: Iterable[TeacherRecord], classifier_state: dict[str, torch.Tensor], details: dict
) -> dict:
    """Write a cache; returns its manifest. Parts first, then the classifier, the manifest last."""
    parts, videos, dims = [], 0, None
    batch: list[TeacherRecord] = []

    def flush():
        nonlocal videos
        if not batch:
            return
        name = f"part-{len(parts):05d}.parquet"
        table = pa.table(
            {
                "id": [r.id for r in batch],
                "representation": [np.asarray(r.representation, np.float32).tobytes() for r in batch],
                "probabilities": [np.asarray(r.probabilities, np.float32).tobytes() for r in batch],
                "intermediates": [None if r.intermediates is None else np.asarray(r.intermediates, np.float32).tobytes() for r in batch],
                "positions": [None if r.positions is None else np.asarray(r.positions, np.int32) for r in batch],
            },
            schema=SCHEMA,
        )
        write_atomically(join(location, name), lambda fs, path: pq.write_table(table, path, filesystem=fs, compression="none", use_dictionary=False))
        parts.append(name)
        videos += len(batch)
        batch.clear()

    for record in records:
        if dims is None:
            dims = (int(np.asarray(record.representation).size), int(np.asarray(record.probabilities).size))
        batch.append(record)
        if len(batch) == ROWS_PER_PART:
            flush()
    flush()
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in classifier_state.items()}, buffer)
    _write_bytes(join(location, "classifier.pt"), buffer.getvalue())
    manifest = {
        "format": FORMAT,
        "parts": parts,
        "videos": videos,
        "representation_dim": dims[0] if dims else 0,
        "num_classes": dims[1] if dims else 0,
        **details,
    }
    _write_bytes(join(location, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True).encode())
    return manifest


def read_manifest(location: str) -> dict | None:
    """The cache's manifest, or None when the cache is absent or incomplete."""
    fs, path = resolve(join(location, MANIFEST))
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as stream:
        manifest = json.loads(stream.read())
    if manifest.get("format") != FORMAT:
        return None
    for part in manifest["parts"] + ["classifier.pt"]:
        part_fs, part_path = resolve(join(location, part))
        if part_fs.get_file_info(part_path).type != pafs.FileType.File:
            return None
    return manifest


class ParquetTeacherCache:
    """A `TeacherSource` over a cache in the store, loaded into memory once."""

    def __init__(self, location: str):
        manifest = read_manifest(location)
        if manifest is None:
            raise OrchestratorError(f"{location}: no complete teacher cache here (no {MANIFEST})")
        self.location, self.manifest = location, manifest
        tables = []
        for part in manifest["parts"]:
            fs, path = resolve(join(location, part))
            tables.append(pq.read_table(path, filesystem=fs))
        table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
        ids = table.column("id").to_pylist()
        if len(ids) != manifest["videos"]:
            raise OrchestratorError(f"{location}: the manifest promises {manifest['videos']} videos, the parts hold {len(ids)}")
        self.index = {video_id: row for row, video_id in enumerate(ids)}
        d, c = manifest["representation_dim"], manifest["num_classes"]
        self.representation = _floats(table.column("representation"), d)
        self.probabilities = _floats(table.column("probabilities"), c)
        self.intermediates = table.column("intermediates").to_pylist() if table.column("intermediates").null_count < len(ids) else None
        self.dim = d
        fs, path = resolve(join(location, "classifier.pt"))
        with fs.open_input_stream(path) as stream:
            self._classifier = torch.load(io.BytesIO(stream.read()), weights_only=True)

    def classifier_state(self) -> dict[str, torch.Tensor]:
        return self._classifier

    def targets(self, ids: list[str], device: torch.device) -> TeacherTargets:
        try:
            rows = [self.index[i] for i in ids]
        except KeyError as missing:
            raise OrchestratorError(f"{self.location}: the teacher cache has no video {missing.args[0]!r}") from None
        records = [
            TeacherRecord(
                id=i,
                representation=self.representation[row],
                probabilities=self.probabilities[row],
                intermediates=None if self.intermediates is None
                else np.frombuffer(self.intermediates[row], np.float32).reshape(-1, self.dim),
            )
            for i, row in zip(ids, rows)
        ]
        return stack_targets(records, device)


def _floats(column: pa.ChunkedArray, width: int) -> np.ndarray:
    data = b"".join(column.to_pylist())
    return np.frombuffer(data, dtype=np.float32).reshape(-1, width)
