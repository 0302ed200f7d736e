"""NetVLAD with context gating (WILLOW, Miech et al. 2017): a bag of frames, not a sequence.

Separate NetVLADs for RGB and audio; their concatenation goes through a fully connected layer (with batch
norm and ReLU6), context gating, and the classifier. E is the gated hidden layer. Padded frames get no
cluster weight and are left out of the batch statistics, so padding never changes the outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workloads.data.format import AUDIO_DIM, RGB_DIM
from workloads.models.base import ContextGating, MaskedBatchNorm, VideoModel, build_classifier, register_family


@dataclass(frozen=True)
class NetVLADConfig:
    rgb_clusters: int
    audio_clusters: int
    hidden: int
    dropout: float = 0.0
    classifier: str = "moe"
    mixtures: int = 2


class NetVLADLayer(nn.Module):
    """(batch, F, dim) frames -> (batch, clusters x dim) intra- and L2-normalised VLAD."""

    def __init__(self, dim: int, clusters: int):
        super().__init__()
        self.assign = nn.Linear(dim, clusters, bias=False)
        self.assign_norm = MaskedBatchNorm(clusters)
        self.centers = nn.Parameter(torch.randn(dim, clusters) / dim**0.5)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = torch.softmax(self.assign_norm(self.assign(x), mask), dim=-1) * mask.unsqueeze(-1)
        vlad = torch.bmm(x.transpose(1, 2), a) - a.sum(1, keepdim=True) * self.centers  # (batch, dim, K)
        vlad = F.normalize(vlad, dim=1)
        return F.normalize(vlad.flatten(1), dim=1)


@register_family(
    "netvlad",
    NetVLADConfig,
    {
        "paper": dict(rgb_clusters=256, audio_clusters=128, hidden=1024),
        "small": dict(rgb_clusters=16, audio_clusters=8, hidden=128),
    },
)
class NetVLAD(VideoModel):
    frame_modules = ("rgb_vlad", "audio_vlad")

    def __init__(self, config: NetVLADConfig, num_classes: int, k: int | None = None):
        super().__init__(
            build_classifier(config.classifier, config.hidden, num_classes, config.mixtures), config.hidden, config.dropout
        )
        self.config = config
        self.rgb_vlad = NetVLADLayer(RGB_DIM, config.rgb_clusters)
        self.audio_vlad = NetVLADLayer(AUDIO_DIM, config.audio_clusters)
        vlad_dim = RGB_DIM * config.rgb_clusters + AUDIO_DIM * config.audio_clusters
        self.hidden = nn.Sequential(nn.Linear(vlad_dim, config.hidden, bias=False), nn.BatchNorm1d(config.hidden), nn.ReLU6())
        self.gating = ContextGating(config.hidden)

    def encode(self, frames, mask, positions):
        vlad = torch.cat([self.rgb_vlad(frames[..., :RGB_DIM], mask), self.audio_vlad(frames[..., RGB_DIM:], mask)], 1)
        return self.gating(self.hidden(vlad)), None, None
