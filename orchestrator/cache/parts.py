"""A teacher cache's parts as the store holds them: each part's footer and ids read once into an index of
64-bit id hashes (where each video is: its part and row), every part checked against the manifest (its
teacher, its videos), the teacher's classifier loaded, and runs of row groups read in one request each,
decoded into zero-copy float32 views. Whatever does not match the manifest (a part cut short, from another
teacher, a page whose checksum fails) raises `DamagedCache` naming the part.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch

from orchestrator.cache.files import METADATA_KEY, DamagedCache, Manifest, MissingCache, read_manifest
from orchestrator.errors import OrchestratorError
from workloads.data.fs import join, resolve
from workloads.data.reader import SHUFFLE_BLOCK


def _id_hashes(ids: list[str]) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "little") for i in ids],
                    dtype=np.uint64)


class DecodedGroup:
    """One decoded row group: ids, and zero-copy float32 views of each Arrow chunk of E_T and P_T
    (`(first row, values)` per chunk)."""

    def __init__(self, table: pa.Table, dim: int, classes: int):
        self.ids = table.column("id").to_pylist()
        self.intermediates = table.column("intermediates").to_pylist()
        self.representation = _float_chunks(table.column("representation"), dim, "representation")
        self.probabilities = _float_chunks(table.column("probabilities"), classes, "probabilities")


class CacheParts:
    """The parts of the cache at `location`, indexed by video; `MissingCache` when it has no manifest."""

    def __init__(self, location: str):
        manifest = read_manifest(location)
        if manifest is None:
            raise MissingCache(location)
        self.location, self.manifest = location, manifest
        self.dim, self.classes = manifest.representation_dim, manifest.num_classes
        self.parts = [join(location, part) for part in manifest.parts]
        self.files: dict[int, pa.NativeFile] = {}
        self.metadata: list[pq.FileMetaData] = []
        self.group_bytes: list[list[int]] = []  # each part's row groups' sizes
        self.lock = threading.Lock()
        hashes = [self._index(number) for number in range(len(self.parts))]
        if sum(h.size for h in hashes) != manifest.videos:
            raise DamagedCache(location, f"the manifest promises {manifest.videos} videos, the parts hold "
                                         f"{sum(h.size for h in hashes)}")
        where = [np.stack([np.full(h.size, number), np.arange(h.size)], axis=1) for number, h in enumerate(hashes)]
        all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        order = np.argsort(all_hashes)
        self.hashes = all_hashes[order]
        self.where = (np.concatenate(where) if where else np.zeros((0, 2), np.int64))[order]
        self.classifier = self._classifier(manifest)

    def _index(self, number: int) -> np.ndarray:
        """Read part `number`'s metadata and ids, checking it against the manifest; its ids' hashes."""
        name, manifest = self.manifest.parts[number], self.manifest
        fs, path = resolve(self.parts[number])
        try:
            metadata = pq.read_metadata(path, filesystem=fs)
            ids = pq.ParquetFile(self._file(number), metadata=metadata).read(columns=["id"]).column("id")
        except pa.ArrowInvalid as error:
            raise DamagedCache(self.location, f"{name} is not a readable Parquet file: {error}") from None
        owner = json.loads((metadata.schema.to_arrow_schema().metadata or {}).get(METADATA_KEY, b"{}"))
        if manifest.parts_know_their_teacher and owner.get("teacher_id", "") != manifest.teacher_id:
            raise DamagedCache(self.location, f"{name} holds the outputs of teacher {owner.get('teacher_id')!r}, "
                                              f"not of {manifest.teacher_id!r}")
        if manifest.parts_know_their_teacher and len(ids) != manifest.part_videos[number]:
            raise DamagedCache(self.location, f"{name} holds {len(ids)} videos, the manifest says "
                                              f"{manifest.part_videos[number]}")
        self.metadata.append(metadata)
        self.group_bytes.append([metadata.row_group(g).total_byte_size for g in range(metadata.num_row_groups)])
        return _id_hashes(ids.to_pylist())

    def _classifier(self, manifest: Manifest) -> dict[str, torch.Tensor]:
        fs, path = resolve(join(self.location, manifest.classifier))
        with fs.open_input_stream(path) as stream:
            data = stream.read()
        try:
            return torch.load(io.BytesIO(data), weights_only=True)
        except Exception as error:  # cut short or altered: torch fails as RuntimeError, EOFError, UnpicklingError
            raise DamagedCache(self.location, f"{manifest.classifier} cannot be loaded: {error}") from None

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

    def read(self, part: int, first: int, stop: int) -> list[DecodedGroup]:
        """Row groups [first, stop) of a part, in one request (pre_buffer coalesces their column chunks)."""
        file = pq.ParquetFile(self._file(part), metadata=self.metadata[part], pre_buffer=True,
                              page_checksum_verification=True)
        name = self.manifest.parts[part]
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
                groups.append(DecodedGroup(table.slice(row, rows), self.dim, self.classes))
            except ValueError as error:
                raise DamagedCache(self.location, f"{name}, row group {group}: {error}") from None
            row += rows
        return groups

    def locate(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(part, row) of each video."""
        hashes = _id_hashes(ids)
        slots = np.searchsorted(self.hashes, hashes).clip(max=max(self.hashes.size - 1, 0))
        found = self.hashes.size > 0 and (self.hashes[slots] == hashes)
        if not np.all(found):
            missing = ids[int(np.flatnonzero(~np.asarray(found))[0])] if self.hashes.size else ids[0]
            raise OrchestratorError(f"{self.location}: the teacher cache has no video {missing!r}")
        return self.where[slots, 0], self.where[slots, 1]

    def block(self, part: int, group: int) -> range:
        """The row groups of `group`'s shuffling block (`SHUFFLE_BLOCK` consecutive ones of a part)."""
        first = group - group % SHUFFLE_BLOCK
        return range(first, min(first + SHUFFLE_BLOCK, self.metadata[part].num_row_groups))


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
