"""The teacher cache: a trained teacher's outputs per video, as Parquet, so students never re-run it.

A cache is a folder holding one part per data shard, `part-NNNNN.parquet`, in the shard's video order, in
row groups of 128 videos; each row is a video: `id`, `representation` E_T and `probabilities` P_T as raw
float32 bytes, and for intermediate matching `intermediates` I_T (steps x d float32 bytes) at
`positions`. Beside them the teacher's classifier weights `classifier.pt`, and `_manifest.json`, written
last: no manifest, no cache. A writer killed half-way leaves a cache that counts as absent and is rebuilt.

`ParquetTeacherCache` reads a cache back as a `workloads.train.TeacherSource` without loading it whole:
an index of 64-bit id hashes says where each video is, and row groups are read on demand and kept in a
small LRU. A student reads its data a row group at a time and the cache keeps the data's order, so the
videos of a batch sit in one or two cache row groups (at YouTube-8M scale a whole H-RNN cache would be
~180 GB of float32; this keeps a few MB in memory).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import OrderedDict
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch

from orchestrator.errors import OrchestratorError
from workloads.data.fs import join, resolve, write_atomically, write_bytes
from workloads.losses import TeacherTargets
from workloads.train import TeacherRecord, stack_targets

MANIFEST = "_manifest.json"
FORMAT = 2
ROWS_PER_GROUP = 128
CACHED_GROUPS = 64

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("representation", pa.binary(), nullable=False),
        pa.field("probabilities", pa.binary(), nullable=False),
        pa.field("intermediates", pa.binary()),
        pa.field("positions", pa.list_(pa.int32())),
    ]
)


def _table(records: list[TeacherRecord]) -> pa.Table:
    return pa.table(
        {
            "id": [r.id for r in records],
            "representation": [np.asarray(r.representation, np.float32).tobytes() for r in records],
            "probabilities": [np.asarray(r.probabilities, np.float32).tobytes() for r in records],
            "intermediates": [None if r.intermediates is None else np.asarray(r.intermediates, np.float32).tobytes()
                              for r in records],
            "positions": [None if r.positions is None else np.asarray(r.positions, np.int32) for r in records],
        },
        schema=SCHEMA,
    )


def write_teacher_cache(
    location: str,
    parts: Iterable[Iterable[TeacherRecord]],
    classifier_state: dict[str, torch.Tensor],
    details: dict,
) -> dict:
    """Write a cache from `parts` (one iterable of records per data shard, in its order); returns the
    manifest. Parts first, each atomically, then the classifier, the manifest last."""
    names, videos, dims = [], 0, None
    for records in parts:
        name = f"part-{len(names):05d}.parquet"
        count = 0

        def write(fs, path, records=records):
            nonlocal count, dims
            with pq.ParquetWriter(path, SCHEMA, filesystem=fs, compression="none", use_dictionary=False) as writer:
                group: list[TeacherRecord] = []
                for record in records:
                    if dims is None:
                        dims = (int(np.asarray(record.representation).size), int(np.asarray(record.probabilities).size))
                    group.append(record)
                    if len(group) == ROWS_PER_GROUP:
                        writer.write_table(_table(group))
                        count += len(group)
                        group = []
                if group or count == 0:
                    writer.write_table(_table(group))
                    count += len(group)

        write_atomically(join(location, name), write)
        names.append(name)
        videos += count
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in classifier_state.items()}, buffer)
    write_bytes(join(location, "classifier.pt"), buffer.getvalue())
    manifest = {
        "format": FORMAT,
        "parts": names,
        "videos": videos,
        "representation_dim": dims[0] if dims else 0,
        "num_classes": dims[1] if dims else 0,
        **details,
    }
    write_bytes(join(location, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True).encode())
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


def _id_hashes(ids: list[str]) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "little") for i in ids],
                    dtype=np.uint64)


class ParquetTeacherCache:
    """A `TeacherSource` over a cache in the store, read a row group at a time."""

    def __init__(self, location: str, cached_groups: int = CACHED_GROUPS):
        manifest = read_manifest(location)
        if manifest is None:
            raise OrchestratorError(f"{location}: no complete teacher cache here (no {MANIFEST})")
        self.location, self.manifest = location, manifest
        self.dim, self.classes = manifest["representation_dim"], manifest["num_classes"]
        self.parts = [join(location, part) for part in manifest["parts"]]
        self.handles: OrderedDict[int, pq.ParquetFile] = OrderedDict()  # a few open parts, not thousands
        hashes, where = [], []
        for number, part in enumerate(self.parts):
            fs, path = resolve(part)
            ids = pq.read_table(path, columns=["id"], filesystem=fs).column("id").to_pylist()
            hashes.append(_id_hashes(ids))
            where.append(np.stack([np.full(len(ids), number), np.arange(len(ids))], axis=1))
        if sum(h.size for h in hashes) != manifest["videos"]:
            raise OrchestratorError(f"{location}: the manifest promises {manifest['videos']} videos, "
                                    f"the parts hold {sum(h.size for h in hashes)}")
        all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        order = np.argsort(all_hashes)
        self.hashes = all_hashes[order]
        self.where = (np.concatenate(where) if where else np.zeros((0, 2), np.int64))[order]
        self.groups: OrderedDict[tuple[int, int], dict] = OrderedDict()
        self.cached_groups = cached_groups
        fs, path = resolve(join(location, "classifier.pt"))
        with fs.open_input_stream(path) as stream:
            self._classifier = torch.load(io.BytesIO(stream.read()), weights_only=True)

    def classifier_state(self) -> dict[str, torch.Tensor]:
        return self._classifier

    def _group(self, part: int, group: int) -> dict:
        key = (part, group)
        if key in self.groups:
            self.groups.move_to_end(key)
            return self.groups[key]
        table = self._handle(part).read_row_group(group)
        loaded = {
            "ids": table.column("id").to_pylist(),
            "representation": _floats(table.column("representation"), self.dim),
            "probabilities": _floats(table.column("probabilities"), self.classes),
            "intermediates": table.column("intermediates").to_pylist(),
        }
        self.groups[key] = loaded
        if len(self.groups) > self.cached_groups:
            self.groups.popitem(last=False)
        return loaded

    def _handle(self, part: int) -> pq.ParquetFile:
        if part in self.handles:
            self.handles.move_to_end(part)
            return self.handles[part]
        fs, path = resolve(self.parts[part])
        self.handles[part] = handle = pq.ParquetFile(fs.open_input_file(path))
        if len(self.handles) > 8:
            self.handles.popitem(last=False)[1].close()
        return handle

    def records(self, ids: list[str]) -> Iterator[TeacherRecord]:
        hashes = _id_hashes(ids)
        slots = np.searchsorted(self.hashes, hashes)
        for video_id, h, slot in zip(ids, hashes, slots):
            if slot >= self.hashes.size or self.hashes[slot] != h:
                raise OrchestratorError(f"{self.location}: the teacher cache has no video {video_id!r}")
            part, row = (int(x) for x in self.where[slot])
            group, offset = row // ROWS_PER_GROUP, row % ROWS_PER_GROUP
            loaded = self._group(part, group)
            if loaded["ids"][offset] != video_id:  # a 64-bit hash collision: never expected, never silent
                raise OrchestratorError(f"{self.location}: ids {video_id!r} and {loaded['ids'][offset]!r} collide")
            blob = loaded["intermediates"][offset]
            yield TeacherRecord(
                id=video_id,
                representation=loaded["representation"][offset],
                probabilities=loaded["probabilities"][offset],
                intermediates=None if blob is None else np.frombuffer(blob, np.float32).reshape(-1, self.dim),
            )

    def targets(self, ids: list[str], device: torch.device) -> TeacherTargets:
        return stack_targets(list(self.records(ids)), device)


def _floats(column: pa.ChunkedArray, width: int) -> np.ndarray:
    array = column.combine_chunks()
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return data.view(np.float32).reshape(-1, width)
