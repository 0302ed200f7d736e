"""Shards to torch batches: dequantised frames of the selected positions, a frame mask, multi-hot labels.

Frame selection happens at read time: a video's frame bytes are read as one raw buffer, and only the rows
of the selected frames are gathered and dequantised, so reading k of N frames costs about k/N of the decode.

Work is split in units of one row group (`ROWS_PER_GROUP` videos). Each epoch the units are shuffled (when
asked) with a seed derived from (seed, epoch), in blocks of `SHUFFLE_BLOCK` consecutive row groups of a
shard, and dealt round-robin to ranks and, within a rank, to DataLoader workers; rows are shuffled within
each unit. Every video is read once per epoch across all
ranks and workers. `fraction` keeps a fixed, nested subset of the videos (the paper's Table 2: 10, 25,
50% of the training data), chosen by a hash of each video's id. Random frame selection draws from (seed, epoch, video position), so it is reproducible
and differs between epochs.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from workloads import frames as frame_selection
from workloads.data.format import (
    AUDIO_DIM,
    DEQUANTIZE_BIAS,
    DEQUANTIZE_SCALE,
    FEATURE_DIM,
    RGB_DIM,
    SHARD_SUFFIX,
    read_info,
)
from workloads.data.fs import list_files, resolve
from workloads.errors import DataError

COLUMNS = ["id", "labels", "num_frames", "rgb", "audio"]


class VideoBatch(NamedTuple):
    """One batch. `frames` (batch, F, 1152) float32 (or uint8 when not dequantised), zero where `mask` is
    False; `positions` (batch, F) int64 frame indices in the original video (-1 on padding); `labels`
    (batch, classes) float32 multi-hot; `num_frames` (batch,) int64 original lengths."""

    ids: list[str]
    frames: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    labels: torch.Tensor
    num_frames: torch.Tensor

    def to(self, device: torch.device) -> "VideoBatch":
        """The batch on `device`, copied without blocking (`num_frames`, only read for lengths, stays)."""
        fields = ("frames", "mask", "positions", "labels")
        return self._replace(**{f: getattr(self, f).to(device, non_blocking=device.type == "cuda") for f in fields})


@dataclass(frozen=True)
class FrameSelection:
    """Which frames to read: a selector name with k (frames) and/or j (stride, uniform only)."""

    name: str = "uniform"
    k: int | None = None
    j: int | None = None

    def __post_init__(self) -> None:
        if self.name not in frame_selection.SELECTORS:
            raise DataError(f"unknown frame selector {self.name!r}; known: {', '.join(sorted(frame_selection.SELECTORS))}")
        if self.k is None and self.j is None:
            raise DataError("a frame selection needs k or j")
        if self.k is not None and self.k < 1:
            raise DataError(f"frame selection k must be >= 1, got {self.k}")
        if self.j is not None and (self.j < 1 or self.name != "uniform"):
            raise DataError(f"stride j must be >= 1 and only with 'uniform', got j={self.j} for {self.name!r}")

    def indices(self, num_frames: int, seed: frame_selection.Seed = None) -> np.ndarray:
        return frame_selection.select(self.name, num_frames, self.k, seed, j=self.j)


# Row groups per shuffling block (see `epoch_order`); the teacher cache reads blocks of as many.
SHUFFLE_BLOCK = 4


@dataclass(frozen=True)
class Unit:
    """One row group of one shard: the grain of sharding and shuffling."""

    shard: str
    row_group: int
    num_rows: int


def epoch_order(units: Sequence[Unit], *, shuffle: bool, seed: int, epoch: int, slot: int = 0,
                slots: int = 1) -> list[int]:
    """The positions of the units that reader `slot` of `slots` (ranks x workers) reads in an epoch.

    Shuffled, the units go in blocks of up to SHUFFLE_BLOCK consecutive row groups of a shard: the blocks
    in random order, the units of a block one after another in random order, whole blocks dealt to the
    slots. Whatever follows a shard's order (the teacher cache) is then read a block at a time, in one
    request instead of four, which is what an object store serves fast."""
    if not shuffle:
        return list(range(slot, len(units), slots))
    rng = np.random.default_rng([seed, epoch])
    blocks = shuffle_blocks(units)
    if len(blocks) < 2 * slots:  # too few blocks to deal evenly: deal single units
        blocks = [[i] for i in range(len(units))]
    mine = [blocks[b] for b in rng.permutation(len(blocks))[slot::slots]]
    return [int(i) for block in mine for i in rng.permutation(block)]


def shuffle_blocks(units: Sequence[Unit], size: int | None = None) -> list[list[int]]:
    """Unit positions grouped in blocks: row groups [0, size), [size, 2 size), ... of each shard."""
    size = size or SHUFFLE_BLOCK
    blocks: dict[tuple[str, int], list[int]] = {}
    for position, unit in enumerate(units):
        blocks.setdefault((unit.shard, unit.row_group // size), []).append(position)
    return list(blocks.values())


def dequantize_(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """uint8 (batch, F, 1152) frames to float32 on frames' device, padding left at zero."""
    out = torch.empty(frames.shape, dtype=torch.float32, device=frames.device)
    out.copy_(frames)
    out.mul_(DEQUANTIZE_SCALE).add_(DEQUANTIZE_BIAS)
    if not bool(mask.all()):
        out[~mask] = 0.0
    return out


class VideoShards(IterableDataset):
    """An iterable of `VideoBatch` over the shards at a local path or PyArrow URI (file or folder).

    `selection` None reads every frame, padding each batch to its longest video (or to `pad_to`). With a
    selection the frame axis is k (or the most frames a selection returned in the batch, for j alone).
    """

    def __init__(
        self,
        source: str | Sequence[str],
        batch_size: int,
        selection: FrameSelection | None = None,
        *,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        dequantize: bool = True,
        pad_to: int | None = None,
        num_classes: int | None = None,
        fraction: float = 1.0,
    ):
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is outside world_size {world_size}")
        if not 0 < fraction <= 1:
            raise DataError(f"fraction must be in (0, 1], got {fraction}")
        sources = [source] if isinstance(source, str) else list(source)
        self.shards = [shard for s in sources for shard in list_files(s, SHARD_SUFFIX)]
        if not self.shards:
            raise DataError(f"no {SHARD_SUFFIX} shards in {', '.join(sources)}")
        self.units: list[Unit] = []
        classes = set()
        for shard in self.shards:
            fs, path = resolve(shard)
            try:
                metadata = pq.read_metadata(path, filesystem=fs)
            except (OSError, pa.ArrowInvalid) as error:
                raise DataError(f"{shard}: not a readable Parquet file: {error}") from None
            classes.add(read_info(shard, metadata).num_classes)
            self.units.extend(Unit(shard, g, metadata.row_group(g).num_rows) for g in range(metadata.num_row_groups))
        if num_classes is None:
            if len(classes) > 1:
                raise DataError(f"shards disagree on num_classes ({sorted(classes)}); pass num_classes")
            num_classes = classes.pop()
        self.num_classes = num_classes
        self.num_videos = sum(unit.num_rows for unit in self.units)
        self.batch_size = batch_size
        self.selection = selection
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.dequantize = dequantize
        self.pad_to = pad_to
        self.fraction = fraction
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Call before each epoch (as with DistributedSampler) to reshuffle and redraw random frames."""
        self.epoch = epoch

    def units_for(self, rank: int, worker: int, num_workers: int) -> list[tuple[int, Unit]]:
        """(global unit position, unit) that one worker of one rank reads this epoch."""
        positions = epoch_order(self.units, shuffle=self.shuffle, seed=self.seed, epoch=self.epoch,
                                slot=rank * num_workers + worker, slots=self.world_size * num_workers)
        return [(i, self.units[i]) for i in positions]

    def __iter__(self) -> Iterator[VideoBatch]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        pieces: list[VideoBatch] = []
        buffered = 0
        for position, unit in self.units_for(self.rank, worker, num_workers):
            table = read_unit(unit, self.num_classes)
            rows = np.arange(table.num_rows)
            if self.fraction < 1:
                rows = rows[in_fraction(table.column("id").to_pylist(), self.fraction)]
            if self.shuffle:
                rows = np.random.default_rng([self.seed, self.epoch, position]).permutation(rows)
            taken = 0
            while taken < rows.size:
                count = min(self.batch_size - buffered, rows.size - taken)
                pieces.append(self.decode(table, rows[taken : taken + count], position))
                taken += count
                buffered += count
                if buffered == self.batch_size:
                    yield concat_batches(pieces)
                    pieces, buffered = [], 0
        if pieces and not self.drop_last:
            yield concat_batches(pieces)

    def decode(self, table: pa.Table, rows: np.ndarray, unit_position: int) -> VideoBatch:
        """Decode `rows` of a row-group table into a batch, gathering only the selected frames."""
        num_frames = table.column("num_frames").to_numpy()[rows].astype(np.int64)
        if self.selection is None:
            picks = [np.arange(n, dtype=np.int64) for n in num_frames]
        else:
            picks = [
                self.selection.indices(
                    int(n),
                    np.random.default_rng([self.seed, self.epoch, unit_position, int(r)])
                    if self.selection.name == "random"
                    else None,  # deterministic selectors need no generator: skip the cost of one
                )
                for n, r in zip(num_frames, rows)
            ]
        batch = rows.size
        width = self.pad_to or (self.selection.k if self.selection and self.selection.k else 0)
        owner, slot, flat_picks, positions = _layout(picks, width)
        width = positions.shape[1]
        mask = positions >= 0

        frames = np.zeros((batch * width, FEATURE_DIM), dtype=np.uint8)
        destination = owner * width + slot
        for name, offset, dim in (("rgb", 0, RGB_DIM), ("audio", RGB_DIM, AUDIO_DIM)):
            data, first_row = _frame_rows(table.column(name), dim)
            frames[destination, offset : offset + dim] = data[first_row[rows][owner] + flat_picks]
        frames_t = torch.from_numpy(frames).view(batch, width, FEATURE_DIM)
        mask_t = torch.from_numpy(mask)
        if self.dequantize:
            frames_t = dequantize_(frames_t, mask_t)

        labels = table.column("labels").combine_chunks()
        offsets = labels.offsets.to_numpy()
        lengths = offsets[rows + 1] - offsets[rows]
        multi_hot = np.zeros((batch, self.num_classes), dtype=np.float32)
        values = labels.values.to_numpy()[_ranges(offsets[rows], lengths)]
        multi_hot[np.repeat(np.arange(batch), lengths), values] = 1.0
        ids = table.column("id").to_pylist()
        return VideoBatch(
            ids=[ids[r] for r in rows],
            frames=frames_t,
            mask=mask_t,
            positions=torch.from_numpy(positions),
            labels=torch.from_numpy(multi_hot),
            num_frames=torch.from_numpy(num_frames),
        )


def in_fraction(ids: list[str], fraction: float) -> np.ndarray:
    """Which videos belong to the first `fraction` of the data set: a fixed subset by a hash of the id,
    the same whatever the sharding, and nested (the 10% subset lies inside the 25% one)."""
    hashes = np.array([zlib.crc32(i.encode()) for i in ids], dtype=np.uint64)
    return hashes < np.uint64(int(fraction * 2**32))


def _layout(picks: list[np.ndarray], width: int):
    """Where each video's picked frames go in a padded batch: (row of each pick, its slot in the row, all
    picks flattened, positions (batch, width) with -1 on padding). The width grows to the longest pick."""
    counts = np.array([p.size for p in picks], dtype=np.int64)
    width = max(width, int(counts.max(initial=0)), 1)
    owner = np.repeat(np.arange(len(picks)), counts)
    slot = _ranges(np.zeros(len(picks), np.int64), counts)
    flat_picks = np.concatenate(picks) if picks else np.zeros(0, np.int64)
    positions = np.full((len(picks), width), -1, dtype=np.int64)
    positions[owner, slot] = flat_picks
    return owner, slot, flat_picks, positions


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated aranges: start_i, start_i + 1, ..., start_i + length_i - 1 for every i."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    run_starts = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) - np.repeat(run_starts - starts, lengths)


def _frame_rows(column: pa.ChunkedArray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A binary column of frame bytes, zero-copy, as (every frame (total, dim) uint8, each video's first
    frame row). `read_unit` has checked that every value holds num_frames x dim bytes."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return data.reshape(-1, dim), (offsets[:-1] - offsets[0]) // dim


def read_unit(unit: Unit, num_classes: int) -> pa.Table:
    """Read one row group and check every video in it; errors name the shard, row group and video."""
    fs, path = resolve(unit.shard)
    try:
        if isinstance(fs, pafs.LocalFileSystem):
            # Memory-mapped, a local row group decodes at about twice the speed of buffered reads.
            table = pq.ParquetFile(path, memory_map=True).read_row_group(unit.row_group, columns=COLUMNS)
        else:
            with fs.open_input_file(path) as handle:
                table = pq.ParquetFile(handle, pre_buffer=True).read_row_group(unit.row_group, columns=COLUMNS)
    except (OSError, pa.ArrowInvalid) as error:
        raise DataError(f"{unit.shard}: row group {unit.row_group}: {error}") from None

    def fail(row: int, problem: str) -> DataError:
        video = table.column("id")[row].as_py()
        return DataError(f"{unit.shard}: row group {unit.row_group}, video {video!r}: {problem}")

    frames = table.column("num_frames").to_numpy().astype(np.int64)
    for name, dim in (("rgb", RGB_DIM), ("audio", AUDIO_DIM)):
        sizes = pc.binary_length(table.column(name)).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(sizes != frames * dim)
        if bad.size:
            row = int(bad[0])
            raise fail(row, f"field {name!r} holds {sizes[row]} bytes, expected num_frames x {dim} = {frames[row] * dim}")
    labels = table.column("labels").combine_chunks()
    values = labels.values.to_numpy()
    bad = np.flatnonzero((values < 0) | (values >= num_classes))
    if bad.size:
        row = int(np.searchsorted(labels.offsets.to_numpy(), bad[0], side="right") - 1)
        raise fail(row, f"field 'labels' holds {values[bad[0]]}, outside [0, {num_classes})")
    return table


def concat_batches(batches: list[VideoBatch]) -> VideoBatch:
    if len(batches) == 1:
        return batches[0]
    width = max(b.frames.shape[1] for b in batches)

    def pad(t: torch.Tensor, value) -> torch.Tensor:
        if t.shape[1] == width:
            return t
        shape = (t.shape[0], width - t.shape[1], *t.shape[2:])
        return torch.cat([t, torch.full(shape, value, dtype=t.dtype)], dim=1)

    return VideoBatch(
        ids=[i for b in batches for i in b.ids],
        frames=torch.cat([pad(b.frames, 0) for b in batches]),
        mask=torch.cat([pad(b.mask, False) for b in batches]),
        positions=torch.cat([pad(b.positions, -1) for b in batches]),
        labels=torch.cat([b.labels for b in batches]),
        num_frames=torch.cat([b.num_frames for b in batches]),
    )


def video_loader(dataset: VideoShards, num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over already-batched `VideoShards` (batch_size=None: the dataset batches)."""
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=2 if num_workers else None,
    )


def subsample(batch: VideoBatch, selection: FrameSelection, seed: int = 0) -> VideoBatch:
    """The frames of an all-frames batch that `selection` keeps, as if the reader had selected them
    (how a parallel student sees the batch its teacher sees whole). Works on any device."""
    every = torch.arange(batch.positions.shape[1], device=batch.positions.device).expand_as(batch.positions)
    if not bool((batch.positions == torch.where(batch.mask, every, -1)).all()):
        raise DataError("subsample needs a batch read with every frame (selection=None)")
    lengths = batch.num_frames.tolist()
    rng = np.random.default_rng(seed) if selection.name == "random" else None
    picks = [selection.indices(int(n), rng) for n in lengths]
    positions = torch.from_numpy(_layout(picks, selection.k or 0)[3]).to(batch.frames.device)
    mask = positions >= 0
    index = positions.clamp(min=0)
    frames = batch.frames.gather(1, index.unsqueeze(-1).expand(-1, -1, batch.frames.shape[-1]))
    frames = frames * mask.unsqueeze(-1).to(frames.dtype)
    return batch._replace(frames=frames, mask=mask, positions=positions)
