"""The teacher cache: a trained teacher's outputs per video, as Parquet, so students never re-run it.

A cache is a folder holding one part per data shard, `part-NNNNN.parquet`, in the shard's video order, in
row groups of 128 videos; each row is a video: `id`, `representation` E_T and `probabilities` P_T as raw
float32 bytes, and for intermediate matching `intermediates` I_T (steps x d float32 bytes) at
`positions`. Beside them the teacher's classifier weights `classifier.pt`, and `_manifest.json`, written
last: no manifest, no cache. A writer killed half-way leaves a cache that counts as absent and is rebuilt.

`ParquetTeacherCache` reads a cache back as a `workloads.teacher_outputs.TeacherSource` without loading it whole:
an index of 64-bit id hashes says where each video is; row groups are read on demand, or ahead when the
training loop names the videos of its next batches, and kept in an LRU bounded in bytes. A student reads
its data a row group at a time and the cache keeps the data's order, so the videos of a batch sit in one
or two cache row groups (at YouTube-8M scale a whole H-RNN cache would be ~180 GB of float32; this keeps
at most CACHE_BYTES in memory).
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
from workloads.data.reader import SHUFFLE_BLOCK
from workloads.losses import TeacherTargets
from workloads.teacher_outputs import TeacherRecord, pad_intermediates

MANIFEST = "_manifest.json"
FORMAT = 2
ROWS_PER_GROUP = 128
CACHE_BYTES = 512 << 20  # decoded row groups kept in memory, at most (one batch's are always kept)
READERS = 4  # row-group reads in flight

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
    written = [write_cache_part(location, index, records) for index, records in enumerate(parts)]
    return finish_teacher_cache(location, written, classifier_state, details)


def write_cache_part(location: str, index: int, records: Iterable[TeacherRecord]) -> dict:
    """Write part `index` (the records of data shard `index`, in its order) atomically; returns what
    `finish_teacher_cache` needs of it. Data-parallel replicas write different parts at once."""
    name = f"part-{index:05d}.parquet"
    count, dims = 0, None

    def write(fs, path):
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
    return {"index": index, "name": name, "videos": count, "dims": dims}


def finish_teacher_cache(location: str, written: list[dict], classifier_state: dict[str, torch.Tensor],
                         details: dict) -> dict:
    """Complete a cache whose parts are all written (`written`: what `write_cache_part` returned for each,
    in any order): the classifier, then the manifest that makes the cache exist. Returns the manifest."""
    written = sorted(written, key=lambda part: part["index"])
    if [part["index"] for part in written] != list(range(len(written))):
        raise OrchestratorError(f"{location}: parts {[p['index'] for p in written]} are not 0..{len(written) - 1}")
    dims = next((part["dims"] for part in written if part["dims"] is not None), None)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in classifier_state.items()}, buffer)
    write_bytes(join(location, "classifier.pt"), buffer.getvalue())
    manifest = {
        "format": FORMAT,
        "parts": [part["name"] for part in written],
        "videos": sum(part["videos"] for part in written),
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


class _Group:
    """One decoded row group: ids, and zero-copy float32 views of each Arrow chunk of E_T and P_T
    (`(first row, values)` per chunk)."""

    def __init__(self, table: pa.Table, dim: int, classes: int):
        self.ids = table.column("id").to_pylist()
        self.intermediates = table.column("intermediates").to_pylist()
        self.representation = _float_chunks(table.column("representation"), dim)
        self.probabilities = _float_chunks(table.column("probabilities"), classes)


class ParquetTeacherCache:
    """A `TeacherSource` over a cache in the store, read a block of row groups at a time.

    A student's batches come from its data's row groups, and each maps to one or two of the cache's (same
    shards, same order, same 128 rows). The reader shuffles row groups in blocks of `SHUFFLE_BLOCK`
    consecutive ones of a shard, so the cache reads such a block in one ranged request (four 4 MB
    requests to an object store cost far more than one of 16 MB) and the next lookups find it loaded.
    `prefetch(ids)`, called by the training loop for the batches it will ask for next, starts those reads
    on threads ahead of `targets`.
    """

    def __init__(self, location: str, cache_bytes: int = CACHE_BYTES):
        manifest = read_manifest(location)
        if manifest is None:
            raise OrchestratorError(f"{location}: no complete teacher cache here (no {MANIFEST})")
        self.location, self.manifest = location, manifest
        self.dim, self.classes = manifest["representation_dim"], manifest["num_classes"]
        self.parts = [join(location, part) for part in manifest["parts"]]
        self.files: dict[int, pa.NativeFile] = {}
        self.metadata: list[pq.FileMetaData] = []
        self.group_bytes: list[list[int]] = []
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="teacher-cache")
        hashes, where = [], []
        for number, part in enumerate(self.parts):
            fs, path = resolve(part)
            self.metadata.append(pq.read_metadata(path, filesystem=fs))
            self.group_bytes.append([self.metadata[-1].row_group(g).total_byte_size
                                     for g in range(self.metadata[-1].num_row_groups)])
            ids = pq.ParquetFile(self._file(number), metadata=self.metadata[-1]).read(columns=["id"]).column("id")
            hashes.append(_id_hashes(ids.to_pylist()))
            where.append(np.stack([np.full(len(ids), number), np.arange(len(ids))], axis=1))
        if sum(h.size for h in hashes) != manifest["videos"]:
            raise OrchestratorError(f"{location}: the manifest promises {manifest['videos']} videos, "
                                    f"the parts hold {sum(h.size for h in hashes)}")
        all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        order = np.argsort(all_hashes)
        self.hashes = all_hashes[order]
        self.where = (np.concatenate(where) if where else np.zeros((0, 2), np.int64))[order]
        self.cache_bytes, self.cached_bytes = cache_bytes, 0
        self.groups: OrderedDict[tuple[int, int], _Member] = OrderedDict()
        fs, path = resolve(join(location, "classifier.pt"))
        with fs.open_input_stream(path) as stream:
            self._classifier = torch.load(io.BytesIO(stream.read()), weights_only=True)

    def classifier_state(self) -> dict[str, torch.Tensor]:
        return self._classifier

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

    def _read(self, part: int, first: int, stop: int) -> list[_Group]:
        """Row groups [first, stop) of a part, in one request (pre_buffer coalesces their column chunks)."""
        file = pq.ParquetFile(self._file(part), metadata=self.metadata[part], pre_buffer=True)
        table = file.read_row_groups(list(range(first, stop)), use_threads=False)
        groups, row = [], 0
        for group in range(first, stop):
            rows = self.metadata[part].row_group(group).num_rows
            groups.append(_Group(table.slice(row, rows), self.dim, self.classes))
            row += rows
        return groups

    def _locate(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(part, row) of each video."""
        hashes = _id_hashes(ids)
        slots = np.searchsorted(self.hashes, hashes).clip(max=max(self.hashes.size - 1, 0))
        found = self.hashes.size > 0 and (self.hashes[slots] == hashes)
        if not np.all(found):
            missing = ids[int(np.flatnonzero(~np.asarray(found))[0])] if self.hashes.size else ids[0]
            raise OrchestratorError(f"{self.location}: the teacher cache has no video {missing!r}")
        return self.where[slots, 0], self.where[slots, 1]

    def _entries(self, wanted: list[tuple[int, int]]) -> list[_Member]:
        """LRU entries for (part, group) pairs, sorted. A group not loaded or loading is read with the rest
        of its block (the reader's shuffling block: the student asks for those next) in one request."""
        entries = []
        with self.lock:
            missing = sorted({(part, block_group) for part, group in wanted for block_group in self._block(part, group)
                              if (part, block_group) not in self.groups})
            for part, first, stop in _runs(missing):
                run = self.pool.submit(self._read, part, first, stop)
                for group in range(first, stop):
                    self.groups[(part, group)] = _Member(run, group - first, self.group_bytes[part][group])
                    self.cached_bytes += self.group_bytes[part][group]
            for key in wanted:
                self.groups.move_to_end(key)
                entries.append(self.groups[key])
            while self.cached_bytes > self.cache_bytes and len(self.groups) > len(wanted):
                _, evicted = self.groups.popitem(last=False)
                self.cached_bytes -= evicted.size
        return entries

    def _forget(self, run: Future) -> None:
        """Drop the row groups of a failed read, so that asking for them again reads again (a store that
        came back serves them) instead of repeating the old error."""
        with self.lock:
            for key in [key for key, member in self.groups.items() if member.run is run]:
                self.cached_bytes -= self.groups.pop(key).size

    def _block(self, part: int, group: int) -> range:
        first = group - group % SHUFFLE_BLOCK
        return range(first, min(first + SHUFFLE_BLOCK, self.metadata[part].num_row_groups))

    def prefetch(self, ids: list[str]) -> None:
        """Start reading the row groups that hold `ids`, for a `targets` call soon after."""
        parts, rows = self._locate(ids)
        self._entries(sorted(set(zip(parts.tolist(), (rows // ROWS_PER_GROUP).tolist()))))

    def targets(self, ids: list[str], device: torch.device) -> TeacherTargets:
        parts, rows = self._locate(ids)
        groups, offsets = rows // ROWS_PER_GROUP, rows % ROWS_PER_GROUP
        representation = np.empty((len(ids), self.dim), np.float32)
        probabilities = np.empty((len(ids), self.classes), np.float32)
        intermediates: list[np.ndarray | None] = [None] * len(ids)
        wanted = sorted(set(zip(parts.tolist(), groups.tolist())))
        # One gather per row group the batch touches (usually one or two), not one per video.
        for (part, group), entry in zip(wanted, self._entries(wanted)):
            members = np.flatnonzero((parts == part) & (groups == group))
            try:
                loaded = entry.result()
            except Exception:
                self._forget(entry.run)
                raise
            at = offsets[members]
            for member, row in zip(members.tolist(), at.tolist()):
                if loaded.ids[row] != ids[member]:  # a 64-bit hash collision: never expected, never silent
                    raise OrchestratorError(f"{self.location}: ids {ids[member]!r} and {loaded.ids[row]!r} collide")
                blob = loaded.intermediates[row]
                if blob is not None:
                    intermediates[member] = np.frombuffer(blob, np.float32).reshape(-1, self.dim)
            _gather(loaded.representation, at, representation, members)
            _gather(loaded.probabilities, at, probabilities, members)
        return TeacherTargets(torch.from_numpy(representation).to(device), torch.from_numpy(probabilities).to(device),
                              pad_intermediates(intermediates, device))


def _runs(keys: list[tuple[int, int]]):
    """(part, first, stop) for each run of consecutive row groups among sorted (part, group) pairs."""
    runs: list[list[int]] = []
    for part, group in keys:
        if runs and runs[-1][0] == part and runs[-1][2] == group:
            runs[-1][2] += 1
        else:
            runs.append([part, group, group + 1])
    return [tuple(run) for run in runs]


class _Member:
    """One row group's share of a run read in one request: resolves to that group."""

    def __init__(self, run: Future, index: int, size: int):
        self.run, self.index, self.size = run, index, size

    def result(self) -> _Group:
        return self.run.result()[self.index]


def _float_chunks(column: pa.ChunkedArray, width: int) -> list[tuple[int, np.ndarray]]:
    """(first row, rows x width float32 view) per chunk of a binary column of fixed-width values, without
    copying: the values of a chunk lie back to back in its data buffer."""
    chunks, row = [], 0
    for array in column.chunks:
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
        if offsets[-1] - offsets[0] != len(array) * width * 4:
            raise OrchestratorError(f"teacher cache: a {column.type} value is not {width} float32s")
        data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
        chunks.append((row, data.view(np.float32).reshape(-1, width)))
        row += len(array)
    return chunks


def _gather(chunks: list[tuple[int, np.ndarray]], rows: np.ndarray, out: np.ndarray, members: np.ndarray) -> None:
    """out[members] = the group's `rows`. A batch usually fills consecutive members from one chunk: then
    the rows are taken straight into that slice of `out`, one copy (a slice when they are in order)."""
    starts = np.array([first for first, _ in chunks])
    chunk_of = np.searchsorted(starts, rows, side="right") - 1
    for chunk in np.unique(chunk_of):
        selected = chunk_of == chunk
        first, values = chunks[chunk]
        source, target = rows[selected] - first, members[selected]
        if np.any(np.diff(target) != 1):
            out[target] = values[source]
        elif np.all(np.diff(source) == 1):
            out[target[0] : target[-1] + 1] = values[source[0] : source[-1] + 1]
        else:
            np.take(values, source, axis=0, out=out[target[0] : target[-1] + 1])
