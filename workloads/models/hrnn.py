"""H-RNN: a lower LSTM encodes each block of l frames, an upper LSTM encodes the sequence of blocks.

As in the authors' code: frames are L2-normalised; a block's summary is the lower LSTM's whole final
state (h and c of every layer); the video representation E is the upper LSTM's whole final state
(2 x layers x hidden: 4096 at the paper's size). Intermediates are the upper state after each block, or
(`intermediate_points` "frames", Eq. 3) the running state after each input frame but the last: the upper
state after the completed blocks, stepped once more with the block in progress up to that frame.
A video's frames are a valid prefix of the input; blocks past its end are skipped, so padding never
changes the outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from workloads.data.format import FEATURE_DIM
from workloads.errors import WorkloadError
from workloads.models.base import VideoModel, build_classifier, register_family


@dataclass(frozen=True)
class HRNNConfig:
    hidden: int
    layers: int
    teacher_block_frames: int = 20
    # None: 5 frames a block for students that see 15 frames or more, else 3 (the paper's "5 or 3").
    student_block_frames: int | None = None
    dropout: float = 0.5
    classifier: str = "moe"
    mixtures: int = 2
    normalize_frames: bool = True

    def block_frames(self, k: int | None) -> int:
        if k is None:
            return self.teacher_block_frames
        return self.student_block_frames or (5 if k >= 15 else 3)


@register_family(
    "hrnn",
    HRNNConfig,
    {
        "paper": dict(hidden=1024, layers=2),
        "small": dict(hidden=96, layers=1, normalize_frames=False),
    },
)
class HRNN(VideoModel):
    frame_modules = ("lower",)
    supports_intermediates = True

    def __init__(self, config: HRNNConfig, num_classes: int, k: int | None = None):
        state_dim = 2 * config.layers * config.hidden
        super().__init__(
            build_classifier(config.classifier, state_dim, num_classes, config.mixtures), state_dim, config.dropout
        )
        self.config = config
        self.block = config.block_frames(k)
        if self.block < 1:
            raise WorkloadError(f"H-RNN block length must be >= 1, got {self.block}")
        self.lower = nn.LSTM(FEATURE_DIM, config.hidden, config.layers, batch_first=True)
        self.upper = nn.LSTM(state_dim, config.hidden, config.layers, batch_first=True)

    # -- pieces ---------------------------------------------------------------------------------------

    def _summaries(self, blocks: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(n, l, D) blocks with (n,) valid lengths >= 1 -> (n, state_dim) final lower states."""
        packed = pack_padded_sequence(blocks, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, c) = self.lower(packed)
        return _flatten_state(h, c)

    def _blocks(self, frames: torch.Tensor, mask: torch.Tensor):
        """Block summaries (batch, nb, state_dim), validity (batch, nb) and each block's last input index."""
        batch, width, dim = frames.shape
        l = self.block
        nb = max(1, math.ceil(width / l))
        x = F.normalize(frames, dim=-1) if self.config.normalize_frames else frames
        x = F.pad(x, (0, 0, 0, nb * l - width))
        lengths = mask.sum(1)
        starts = torch.arange(nb, device=frames.device) * l
        block_len = (lengths[:, None] - starts).clamp(0, l)
        valid = block_len > 0
        summaries = x.new_zeros(batch, nb, self.representation_dim)
        if bool(valid.any()):
            summaries[valid] = self._summaries(x.view(batch, nb, l, dim)[valid], block_len[valid])
        last_index = (starts + block_len - 1).clamp(min=0)
        return summaries, valid, last_index

    def _upper_steps(self, summaries: torch.Tensor, valid: torch.Tensor):
        """Run the upper LSTM block by block; a video's state stays put on blocks past its end.
        Returns every step's state (h, c), each (nb, layers, batch, hidden)."""
        layers, hidden = self.config.layers, self.config.hidden
        batch, nb, _ = summaries.shape
        h = summaries.new_zeros(layers, batch, hidden)
        c = summaries.new_zeros(layers, batch, hidden)
        hs, cs = [], []
        for b in range(nb):
            _, (h_new, c_new) = self.upper(summaries[:, b : b + 1], (h, c))
            keep = valid[:, b].view(1, batch, 1)
            h, c = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
            hs.append(h)
            cs.append(c)
        return torch.stack(hs), torch.stack(cs)

    # -- the interface --------------------------------------------------------------------------------

    def encode(self, frames, mask, positions):
        summaries, valid, last_index = self._blocks(frames, mask)
        hs, cs = self._upper_steps(summaries, valid)
        states = torch.stack([_flatten_state(h, c) for h, c in zip(hs, cs)], dim=1)  # (batch, nb, d)
        if self.intermediate_points == "frames" and self.training:
            query = _all_but_last(mask, positions)
            return states[:, -1], self._running(frames, mask, positions, query, hs, cs), query
        block_positions = torch.where(valid, positions.gather(1, last_index), torch.full_like(last_index, -1))
        return states[:, -1], states, block_positions

    def final_representation(self, frames, mask, positions):
        """The upper LSTM's final state, run over all blocks in one call when every video fills every block
        (as full-length videos do): the step-by-step loop that keeps intermediates costs the k=30 student
        three times as much in its upper LSTM, and gives the same numbers."""
        summaries, valid, _ = self._blocks(frames, mask)
        if bool(valid.all()):
            _, (h, c) = self.upper(summaries)
            return _flatten_state(h, c)
        hs, cs = self._upper_steps(summaries, valid)
        return _flatten_state(hs[-1], cs[-1])

    def intermediate_positions(self, input_positions: np.ndarray) -> np.ndarray:
        if self.intermediate_points == "frames":
            return np.asarray(input_positions, dtype=np.int64)[:-1]
        ends = np.minimum(np.arange(1, math.ceil(len(input_positions) / self.block) + 1) * self.block, len(input_positions))
        return np.asarray(input_positions, dtype=np.int64)[ends - 1]

    def states_at(
        self, frames: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, query: torch.Tensor
    ) -> torch.Tensor:
        """The running representation after the last input frame at or before each query position: the
        upper state after the completed blocks plus the block in progress up to that frame.

        query (batch, Q) int64 positions (-1: none). Returns (batch, Q, state_dim), zeros where the query
        is -1 or precedes the video's first frame.
        """
        summaries, valid, _ = self._blocks(frames, mask)
        hs, cs = self._upper_steps(summaries, valid)
        return self._running(frames, mask, positions, query, hs, cs)

    def _running(self, frames, mask, positions, query, hs, cs) -> torch.Tensor:
        """`states_at` given the upper LSTM's state after every block (`_upper_steps`)."""
        batch, width, dim = frames.shape
        l = self.block
        x = F.normalize(frames, dim=-1) if self.config.normalize_frames else frames
        # Input index of the last valid frame at or before each query position.
        seen = ((positions[:, None, :] <= query[:, :, None]) & mask[:, None, :]).sum(-1)  # (batch, Q)
        answered = (seen > 0) & (query >= 0)
        out = frames.new_zeros(batch, query.shape[1], self.representation_dim)
        if not bool(answered.any()):
            return out
        rows, cols = answered.nonzero(as_tuple=True)
        index = seen[rows, cols] - 1
        block = index // l
        partial_len = index - block * l + 1
        x = F.pad(x, (0, 0, 0, max(0, (int(block.max()) + 1) * l - width)))
        gather = (block * l)[:, None] + torch.arange(l, device=frames.device)
        partial = x[rows[:, None], gather]  # (n, l, D); frames past partial_len are ignored by packing
        summary = self._summaries(partial, partial_len)
        previous = (block - 1).clamp(min=0)
        first = (block == 0).view(1, -1, 1)
        h0 = torch.where(first, 0.0, hs[previous, :, rows].permute(1, 0, 2))
        c0 = torch.where(first, 0.0, cs[previous, :, rows].permute(1, 0, 2))
        _, (h, c) = self.upper(summary[:, None], (h0.contiguous(), c0.contiguous()))
        out[rows, cols] = _flatten_state(h, c)
        return out


def _all_but_last(mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(batch, F - 1): each input frame's position but the video's last valid one's, -1 elsewhere."""
    before_last = torch.arange(mask.shape[1] - 1, device=mask.device) < (mask.sum(1, keepdim=True) - 1)
    return torch.where(before_last, positions[:, :-1], torch.full_like(positions[:, :-1], -1))


def _flatten_state(h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(layers, n, hidden) h and c -> (n, 2 x layers x hidden): [h_1, c_1, h_2, c_2, ...]."""
    return torch.cat([t for pair in zip(h, c) for t in pair], dim=-1)
