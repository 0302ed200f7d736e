"""The teacher cache read back: `ParquetTeacherCache`, a `workloads.teacher_outputs.TeacherSource` over
a cache in the store (its files: `orchestrator.cache.files`; its parts, indexed: `orchestrator.cache.parts`),
without loading it whole.

Row groups are read on demand, or ahead when the training loop names the videos of its next batches, and
kept in an LRU bounded in bytes. A student reads its data a row group at a time and the cache keeps the
data's order, so the videos of a batch sit in one or two cache row groups (at YouTube-8M scale a whole
H-RNN cache would be ~180 GB of float32; this keeps at most CACHE_BYTES in memory).
"""

from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from orchestrator.cache.files import ROWS_PER_GROUP
from orchestrator.cache.parts import CacheParts, DecodedGroup
from orchestrator.errors import OrchestratorError
from workloads.losses import TeacherTargets
from workloads.teacher_outputs import pad_intermediates

CACHE_BYTES = 512 << 20  # decoded row groups kept in memory, at most (one batch's are always kept)
READERS = 4  # row-group reads in flight


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
        self.parts = CacheParts(location)
        self.location, self.manifest = location, self.parts.manifest
        self.pool = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="teacher-cache")
        self.cache_bytes, self.cached_bytes = cache_bytes, 0
        self.groups: OrderedDict[tuple[int, int], _Member] = OrderedDict()

    def classifier_state(self) -> dict[str, torch.Tensor]:
        return self.parts.classifier

    def _entries(self, wanted: list[tuple[int, int]]) -> list[_Member]:
        """LRU entries for (part, group) pairs, sorted. A group not loaded or loading is read with the rest
        of its block (the reader's shuffling block: the student asks for those next) in one request."""
        entries = []
        with self.parts.lock:
            missing = sorted({(part, block_group) for part, group in wanted
                              for block_group in self.parts.block(part, group) if (part, block_group) not in self.groups})
            for part, first, stop in _runs(missing):
                run = self.pool.submit(self.parts.read, part, first, stop)
                for group in range(first, stop):
                    self.groups[(part, group)] = _Member(run, group - first, self.parts.group_bytes[part][group])
                    self.cached_bytes += self.parts.group_bytes[part][group]
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
        with self.parts.lock:
            for key in [key for key, member in self.groups.items() if member.run is run]:
                self.cached_bytes -= self.groups.pop(key).size

    def prefetch(self, ids: list[str]) -> None:
        """Start reading the row groups that hold `ids`, for a `targets` call soon after."""
        parts, rows = self.parts.locate(ids)
        self._entries(sorted(set(zip(parts.tolist(), (rows // ROWS_PER_GROUP).tolist()))))

    def targets(self, ids: list[str], device: torch.device) -> TeacherTargets:
        parts, rows = self.parts.locate(ids)
        groups, offsets = rows // ROWS_PER_GROUP, rows % ROWS_PER_GROUP
        representation = np.empty((len(ids), self.parts.dim), np.float32)
        probabilities = np.empty((len(ids), self.parts.classes), np.float32)
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
                    intermediates[member] = np.frombuffer(blob, np.float32).reshape(-1, self.parts.dim)
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

    def result(self) -> DecodedGroup:
        return self.run.result()[self.index]


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
