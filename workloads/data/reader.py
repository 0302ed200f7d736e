"""Shards to torch batches (`workloads.data.batch`): dequantised frames of the selected positions, a frame
mask, multi-hot labels.

Frame selection happens at read time: a video's frame bytes are read as one raw buffer, and only the rows
of the selected frames are gathered and dequantised, so reading k of N frames costs about k/N of the decode.

Work is split in units of one row group (`ROWS_PER_GROUP` videos). Each epoch the units are shuffled (when
asked) with a seed derived from (seed, epoch), in blocks of `SHUFFLE_BLOCK` consecutive row groups of a
shard, and dealt round-robin to ranks and, within a rank, to DataLoader workers; rows are shuffled within
each unit. Every video is read once per epoch across all ranks and workers. Which videos of the shards are
read is chosen by id hash (`workloads.data.subsets`): `holdout` sets a share of them aside as the
validation split (`held_out` reads those instead), `fraction` keeps a fixed, nested subset of the rest
(the paper's Table 2), and `sample` reads the representation sample only. Random frame selection draws from (seed, epoch, video position), so it is
reproducible and differs between epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from workloads.data.batch import FrameSelection, VideoBatch, concat_batches, dequantize_, layout, ranges
from workloads.data.format import AUDIO_DIM, FEATURE_DIM, RGB_DIM, SHARD_SUFFIX, read_info, read_metadata
from workloads.data.fs import list_files, resolve
from workloads.data.subsets import in_fraction, in_holdout, in_sample
from workloads.errors import DataError

COLUMNS = ["id", "labels", "num_frames", "rgb", "audio"]


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
        holdout: float = 0.0,
        held_out: bool = False,
        sample: float = 1.0,
    ):
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is outside world_size {world_size}")
        if not 0 < fraction <= 1:
            raise DataError(f"fraction must be in (0, 1], got {fraction}")
        if not 0 <= holdout < 1 or (held_out and holdout == 0):
            raise DataError(f"holdout must be in [0, 1) (above 0 to read the held-out videos), got {holdout}")
        if not 0 < sample <= 1:
            raise DataError(f"sample must be in (0, 1], got {sample}")
        sources = [source] if isinstance(source, str) else list(source)
        self.shards = [shard for s in sources for shard in list_files(s, SHARD_SUFFIX)]
        if not self.shards:
            raise DataError(f"no {SHARD_SUFFIX} shards in {', '.join(sources)}")
        self.units, classes = _units(self.shards)
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
        self.holdout, self.held_out, self.sample = holdout, held_out, sample
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
            rows = self.chosen(table)
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

    def chosen(self, table: pa.Table) -> np.ndarray:
        """The rows of a row group's videos this reader reads: held out or not, within the fraction, in the
        sample. The ids are only looked at when a subset is asked for (the hot path reads all rows)."""
        if self.holdout == 0 and self.fraction == 1 and self.sample == 1:
            return np.arange(table.num_rows)
        ids = table.column("id").to_pylist()
        keep = np.ones(len(ids), dtype=bool)
        if self.holdout > 0:
            keep &= in_holdout(ids, self.holdout) == self.held_out
        if self.fraction < 1 and not self.held_out:
            keep &= in_fraction(ids, self.fraction)
        if self.sample < 1:
            keep &= in_sample(ids, self.sample)
        return np.flatnonzero(keep)

    def decode(self, table: pa.Table, rows: np.ndarray, unit_position: int) -> VideoBatch:
        """Decode `rows` of a row-group table into a batch, gathering only the selected frames."""
        return decode_rows(table, rows, self.selection, self.num_classes, draw=(self.seed, self.epoch, unit_position),
                           pad_to=self.pad_to, dequantize=self.dequantize)


def decode_rows(table: pa.Table, rows: np.ndarray, selection: FrameSelection | None, num_classes: int, *,
                draw: tuple[int, ...] = (0, 0, 0), pad_to: int | None = None, dequantize: bool = True) -> VideoBatch:
    """`rows` of a checked table of shard columns (`check_table`) as a batch: only the selected frames are
    gathered and dequantised (all of them with `selection` None). A random selection draws from
    (`draw`, row), so a reader's (seed, epoch, unit) gives each video its own reproducible frames."""
    num_frames = table.column("num_frames").to_numpy()[rows].astype(np.int64)
    if selection is None:
        picks = [np.arange(n, dtype=np.int64) for n in num_frames]
    else:
        picks = [
            selection.indices(
                int(n),
                np.random.default_rng([*draw, int(r)]) if selection.name == "random"
                else None,  # deterministic selectors need no generator: skip the cost of one
            )
            for n, r in zip(num_frames, rows)
        ]
    batch = rows.size
    width = pad_to or (selection.k if selection and selection.k else 0)
    owner, slot, flat_picks, positions = layout(picks, width)
    width = positions.shape[1]
    mask = positions >= 0

    frames = np.zeros((batch * width, FEATURE_DIM), dtype=np.uint8)
    destination = owner * width + slot
    for name, offset, dim in (("rgb", 0, RGB_DIM), ("audio", RGB_DIM, AUDIO_DIM)):
        data, first_row = _frame_rows(table.column(name), dim)
        frames[destination, offset : offset + dim] = data[first_row[rows][owner] + flat_picks]
    frames_t = torch.from_numpy(frames).view(batch, width, FEATURE_DIM)
    mask_t = torch.from_numpy(mask)
    if dequantize:
        frames_t = dequantize_(frames_t, mask_t)

    labels = table.column("labels").combine_chunks()
    offsets = labels.offsets.to_numpy()
    lengths = offsets[rows + 1] - offsets[rows]
    multi_hot = np.zeros((batch, num_classes), dtype=np.float32)
    values = labels.values.to_numpy()[ranges(offsets[rows], lengths)]
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


def _frame_rows(column: pa.ChunkedArray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A binary column of frame bytes, zero-copy, as (every frame (total, dim) uint8, each video's first
    frame row). `read_unit` has checked that every value holds num_frames x dim bytes."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return data.reshape(-1, dim), (offsets[:-1] - offsets[0]) // dim


def _units(shards: list[str]) -> tuple[list[Unit], set[int]]:
    """Every row group of `shards` as a unit, and the class counts their metadata declare."""
    units, classes = [], set()
    for shard in shards:
        metadata = read_metadata(shard)
        classes.add(read_info(shard, metadata).num_classes)
        units.extend(Unit(shard, g, metadata.row_group(g).num_rows) for g in range(metadata.num_row_groups))
    return units, classes


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

    check_table(table, num_classes, f"{unit.shard}: row group {unit.row_group}")
    return table


def check_table(table: pa.Table, num_classes: int, where: str) -> None:
    """Check every video of a table of shard columns: frame bytes that match `num_frames`, labels within
    the class count. Errors name `where` and the video."""
    def fail(row: int, problem: str) -> DataError:
        video = table.column("id")[row].as_py()
        return DataError(f"{where}, video {video!r}: {problem}")

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
