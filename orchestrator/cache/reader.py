"""The teacher cache read back: `ParquetTeacherCache`, a `workloads.teacher_outputs.TeacherSource` over
a cache in the store (its files: `orchestrator.cache.files`), without loading it whole.

An index of 64-bit id hashes says where each video is; row groups are read on demand, or ahead when the
training loop names the videos of its next batches, and kept in an LRU bounded in bytes. A student reads
its data a row group at a time and the cache keeps the data's order, so the videos of a batch sit in one
or two cache row groups (at YouTube-8M scale a whole H-RNN cache would be ~180 GB of float32; this keeps
at most CACHE_BYTES in memory). Whatever does not match the manifest (a part cut short, from another
teacher, a page whose checksum fails) raises `DamagedCache` naming the part, so the grid can rebuild it.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch

from orchestrator.cache.files import METADATA_KEY, ROWS_PER_GROUP, DamagedCache, MissingCache, read_manifest
from orchestrator.errors import OrchestratorError
from workloads.data.fs import join, resolve
from workloads.data.reader import SHUFFLE_BLOCK
from workloads.losses import TeacherTargets
from workloads.teacher_outputs import pad_intermediates

CACHE_BYTES = 512 << 20  # decoded row groups kept in memory, at most (one batch's are always kept)
READERS = 4  # row-group reads in flight


def _id_hashes(ids: list[str]) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "little") for i in ids],
                    dtype=np.uint64)


class _Group:
    """One decoded row group: ids, and zero-copy float32 views of each Arrow chunk of E_T and P_T
    (`(first row, values)` per chunk)."""

    def __init__(self, table: pa.Table, dim: int, classes: int):
        self.ids = table.column("id").to_pylist()
        self.intermediates = table.column("intermediates").to_pylist()
        self.representation = _float_chunks(table.column("representation"), dim, "representation")
        self.probabilities = _float_chunks(table.column("probabilities"), classes, "probabilities")


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
            raise MissingCache(location)
        self.location, self.manifest = location, manifest
        self.dim, self.classes = manifest["representation_dim"], manifest["num_classes"]
        self.parts = [join(location, part) for part in manifest["parts"]]
        self.files: dict[int, pa.NativeFile] = {}
        self.metadata: list[pq.FileMetaData] = []
        self.group_bytes: list[list[int]] = []
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="teacher-cache")
        hashes = [self._index(number) for number in range(len(self.parts))]
        if sum(h.size for h in hashes) != manifest["videos"]:
            raise DamagedCache(location, f"the manifest promises {manifest['videos']} videos, the parts hold "
                                         f"{sum(h.size for h in hashes)}")
        where = [np.stack([np.full(h.size, number), np.arange(h.size)], axis=1) for number, h in enumerate(hashes)]
        all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        order = np.argsort(all_hashes)
        self.hashes = all_hashes[order]
        self.where = (np.concatenate(where) if where else np.zeros((0, 2), np.int64))[order]
        self.cache_bytes, self.cached_bytes = cache_bytes, 0
        self.groups: OrderedDict[tuple[int, int], _Member] = OrderedDict()
        fs, path = resolve(join(location, manifest["classifier"]))
        with fs.open_input_stream(path) as stream:
            data = stream.read()
        try:
            self._classifier = torch.load(io.BytesIO(data), weights_only=True)
        except Exception as error:  # cut short or altered: torch fails as RuntimeError, EOFError, UnpicklingError
            raise DamagedCache(location, f"{manifest['classifier']} cannot be loaded: {error}") from None

    def _index(self, number: int) -> np.ndarray:
        """Read part `number`'s metadata and ids, checking it against the manifest; its ids' hashes."""
        name = self.manifest["parts"][number]
        fs, path = resolve(self.parts[number])
        try:
            metadata = pq.read_metadata(path, filesystem=fs)
            ids = pq.ParquetFile(self._file(number), metadata=metadata).read(columns=["id"]).column("id")
        except pa.ArrowInvalid as error:
            raise DamagedCache(self.location, f"{name} is not a readable Parquet file: {error}") from None
        owner = json.loads((metadata.schema.to_arrow_schema().metadata or {}).get(METADATA_KEY, b"{}"))
        teacher = self.manifest.get("teacher_id") or ""
        if self.manifest["format"] >= 3 and owner.get("teacher_id", "") != teacher:
            raise DamagedCache(self.location, f"{name} holds the outputs of teacher {owner.get('teacher_id')!r}, "
                                              f"not of {teacher!r}")
        if self.manifest["format"] >= 3 and len(ids) != self.manifest["part_videos"][number]:
            raise DamagedCache(self.location, f"{name} holds {len(ids)} videos, the manifest says "
                                              f"{self.manifest['part_videos'][number]}")
        self.metadata.append(metadata)
        self.group_bytes.append([metadata.row_group(g).total_byte_size for g in range(metadata.num_row_groups)])
        return _id_hashes(ids.to_pylist())

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
        file = pq.ParquetFile(self._file(part), metadata=self.metadata[part], pre_buffer=True,
                              page_checksum_verification=True)
        name = self.manifest["parts"][part]
        try:
            table = file.read_row_groups(list(range(first, stop)), use_threads=False)
        except pa.ArrowInvalid as error:  # a page that does not decode
            raise DamagedCache(self.location, f"{name}, row groups {first}-{stop - 1}: {error}") from None
        except OSError as error:  # the store failing stays an OSError; a failed page checksum is damage
            if "checksum" not in str(error).lower():
                raise
            raise DamagedCache(self.location, f"{name}, row groups {first}-{stop - 1}: {error}") from None
        groups, row = [], 0
        for group in range(first, stop):
            rows = self.metadata[part].row_group(group).num_rows
            try:
                groups.append(_Group(table.slice(row, rows), self.dim, self.classes))
            except ValueError as error:
                raise DamagedCache(self.location, f"{name}, row group {group}: {error}") from None
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


def _float_chunks(column: pa.ChunkedArray, width: int, name: str) -> list[tuple[int, np.ndarray]]:
    """(first row, rows x width float32 view) per chunk of a binary column of fixed-width values, without
    copying: the values of a chunk lie back to back in its data buffer."""
    chunks, row = [], 0
    for array in column.chunks:
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
        if offsets[-1] - offsets[0] != len(array) * width * 4:
            raise ValueError(f"a {name!r} value is not {width} float32s")
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
