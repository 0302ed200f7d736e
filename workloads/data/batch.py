"""A batch of videos as tensors, which frames it holds (`FrameSelection`), and what is done to batches:
dequantising frames, concatenating pieces, keeping some of each row's frames (a selection's, of an
all-frames batch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from workloads import frames as frame_selection
from workloads.data.format import DEQUANTIZE_BIAS, DEQUANTIZE_SCALE
from workloads.errors import DataError


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


def of_tensors(frames: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None) -> VideoBatch:
    """A batch of what a model is handed (no ids, no labels): to cut its rows' frames with `take`."""
    if positions is None:
        positions = torch.arange(frames.shape[1], device=frames.device).expand(frames.shape[0], -1)
    return VideoBatch([], frames, mask, positions, frames.new_zeros(frames.shape[0], 0), mask.sum(1))


def dequantize_(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """uint8 (batch, F, 1152) frames to float32 on frames' device, padding left at zero."""
    out = torch.empty(frames.shape, dtype=torch.float32, device=frames.device)
    out.copy_(frames)
    out.mul_(DEQUANTIZE_SCALE).add_(DEQUANTIZE_BIAS)
    if not bool(mask.all()):
        out[~mask] = 0.0
    return out


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


def subsample(batch: VideoBatch, selection: FrameSelection, seed: int = 0) -> VideoBatch:
    """The frames of an all-frames batch that `selection` keeps, as if the reader had selected them
    (how a parallel student sees the batch its teacher sees whole). Works on any device."""
    every = torch.arange(batch.positions.shape[1], device=batch.positions.device).expand_as(batch.positions)
    if not bool((batch.positions == torch.where(batch.mask, every, -1)).all()):
        raise DataError("subsample needs a batch read with every frame (selection=None)")
    lengths = batch.num_frames.tolist()
    rng = np.random.default_rng(seed) if selection.name == "random" else None
    return take(batch, [selection.indices(int(n), rng) for n in lengths], selection.k or 0)


def take(batch: VideoBatch, picks: list[np.ndarray], width: int) -> VideoBatch:
    """Of each row of `batch`, the frames at the slots `picks` gives it (sorted), padded to `width` (or
    the most picked): their positions in the video carried along. Works on any device."""
    slots = torch.from_numpy(layout(picks, width)[3]).to(batch.frames.device)
    mask = slots >= 0
    index = slots.clamp(min=0)
    frames = batch.frames.gather(1, index.unsqueeze(-1).expand(-1, -1, batch.frames.shape[-1]))
    positions = torch.where(mask, batch.positions.gather(1, index), torch.full_like(index, -1))
    return batch._replace(frames=frames * mask.unsqueeze(-1).to(frames.dtype), mask=mask, positions=positions)


def layout(picks: list[np.ndarray], width: int):
    """Where each video's picked frames go in a padded batch: (row of each pick, its slot in the row, all
    picks flattened, positions (batch, width) with -1 on padding). The width grows to the longest pick."""
    counts = np.array([p.size for p in picks], dtype=np.int64)
    width = max(width, int(counts.max(initial=0)), 1)
    owner = np.repeat(np.arange(len(picks)), counts)
    slot = ranges(np.zeros(len(picks), np.int64), counts)
    flat_picks = np.concatenate(picks) if picks else np.zeros(0, np.int64)
    positions = np.full((len(picks), width), -1, dtype=np.int64)
    positions[owner, slot] = flat_picks
    return owner, slot, flat_picks, positions


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated aranges: start_i, start_i + 1, ..., start_i + length_i - 1 for every i."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    run_starts = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) - np.repeat(run_starts - starts, lengths)
