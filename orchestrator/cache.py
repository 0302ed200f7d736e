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
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch

from orchestrator.errors import OrchestratorError
from workloads.data.fs import join, resolve, write_atomically, write_bytes
from workloads.losses import TeacherTargets
from workloads.train import TeacherRecord, pad_intermediates

MANIFEST = "_manifest.json"
FORMAT = 2
ROWS_PER_GROUP = 128
CACHED_GROUPS = 64
PREFETCH = 3  # row groups read ahead of the one asked for

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
        self.metadata: dict[int, pq.FileMetaData] = {}
        self.files: dict[int, pa.NativeFile] = {}
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=PREFETCH + 1, thread_name_prefix="teacher-cache")
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
        self.groups: OrderedDict[tuple[int, int], Future] = OrderedDict()
        self.cached_groups = cached_groups
        fs, path = resolve(join(location, "classifier.pt"))
        with fs.open_input_stream(path) as stream:
            self._classifier = torch.load(io.BytesIO(stream.read()), weights_only=True)

    def classifier_state(self) -> dict[str, torch.Tensor]:
        return self._classifier

    def _load(self, part: int, group: int) -> dict:
        """Read and decode one row group (on the prefetch threads)."""
        # The footer is read once per part; pre_buffer coalesces the columns into one ranged read.
        table = pq.ParquetFile(self._file(part), metadata=self._metadata(part), pre_buffer=True).read_row_group(group)
        return {
            "ids": table.column("id").to_pylist(),
            "representation": _floats(table.column("representation"), self.dim),
            "probabilities": _floats(table.column("probabilities"), self.classes),
            "intermediates": table.column("intermediates").to_pylist(),
        }

    def _file(self, part: int):
        """An open part. On an object store the handle is kept (opening one costs a HEAD request, and
        its ranged reads are safe from several threads); a local file is reopened, to hold no descriptors."""
        fs, path = resolve(self.parts[part])
        if isinstance(fs, pafs.LocalFileSystem):
            return fs.open_input_file(path)
        with self.lock:
            if part not in self.files:
                self.files[part] = fs.open_input_file(path)
            return self.files[part]

    def _metadata(self, part: int) -> pq.FileMetaData:
        with self.lock:
            if part not in self.metadata:
                fs, path = resolve(self.parts[part])
                self.metadata[part] = pq.read_metadata(path, filesystem=fs)
            return self.metadata[part]

    def _future(self, part: int, group: int) -> Future:
        key = (part, group)
        with self.lock:
            if key in self.groups:
                self.groups.move_to_end(key)
            else:
                self.groups[key] = self.pool.submit(self._load, part, group)
                while len(self.groups) > self.cached_groups:
                    self.groups.popitem(last=False)
            return self.groups[key]

    def _group(self, part: int, group: int) -> dict:
        """A row group, with the next ones of its part already on their way: a student reads its data,
        and so the cache, in order within a shard, so the next lookups usually find theirs loaded."""
        future = self._future(part, group)
        groups = self._metadata(part).num_row_groups
        for ahead in range(1, PREFETCH + 1):
            if group + ahead < groups:
                self._future(part, group + ahead)
        return future.result()

    def targets(self, ids: list[str], device: torch.device) -> TeacherTargets:
        hashes = _id_hashes(ids)
        slots = np.searchsorted(self.hashes, hashes).clip(max=max(self.hashes.size - 1, 0))
        found = self.hashes.size > 0 and (self.hashes[slots] == hashes)
        if not np.all(found):
            missing = ids[int(np.flatnonzero(~np.asarray(found))[0])] if self.hashes.size else ids[0]
            raise OrchestratorError(f"{self.location}: the teacher cache has no video {missing!r}")
        parts, rows = self.where[slots, 0], self.where[slots, 1]
        groups, offsets = rows // ROWS_PER_GROUP, rows % ROWS_PER_GROUP
        representation = np.empty((len(ids), self.dim), np.float32)
        probabilities = np.empty((len(ids), self.classes), np.float32)
        intermediates: list[np.ndarray | None] = [None] * len(ids)
        # One gather per row group the batch touches (usually one or two), not one per video.
        for part, group in sorted(set(zip(parts.tolist(), groups.tolist()))):
            members = np.flatnonzero((parts == part) & (groups == group))
            loaded = self._group(part, group)
            at = offsets[members]
            for member, offset in zip(members, at):
                if loaded["ids"][offset] != ids[member]:  # a 64-bit hash collision: never expected, never silent
                    raise OrchestratorError(f"{self.location}: ids {ids[member]!r} and {loaded['ids'][offset]!r} collide")
                blob = loaded["intermediates"][offset]
                if blob is not None:
                    intermediates[member] = np.frombuffer(blob, np.float32).reshape(-1, self.dim)
            representation[members] = loaded["representation"][at]
            probabilities[members] = loaded["probabilities"][at]
        return TeacherTargets(torch.from_numpy(representation).to(device), torch.from_numpy(probabilities).to(device),
                              pad_intermediates(intermediates, device))


def _floats(column: pa.ChunkedArray, width: int) -> np.ndarray:
    array = column.combine_chunks()
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return data.view(np.float32).reshape(-1, width)
