"""NeXtVLAD (Lin et al. 2018): NetVLAD on a grouped, expanded frame representation, far fewer parameters.

Per frame: expand (N -> lambda N), split into G groups with a sigmoid attention each, softly assign every
group to K clusters; aggregate the residuals of all frames and groups per cluster. RGB and audio (half
the clusters and groups) are concatenated, dropped out, projected to the hidden size with batch norm and
gated by SE context gating (bottleneck hidden / reduction). E is the gated hidden layer. The paper's best
single model uses a logistic classifier on top (about 89 M parameters with 3862 classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workloads.data.format import AUDIO_DIM, RGB_DIM
from workloads.errors import WorkloadError
from workloads.models.base import ContextGating, MaskedBatchNorm, VideoModel, build_classifier, register_family


@dataclass(frozen=True)
class NeXtVLADConfig:
    clusters: int
    groups: int
    expansion: int
    hidden: int
    gating_reduction: int = 8
    dropout: float = 0.5
    classifier: str = "logistic"
    mixtures: int = 2


class NeXtVLADLayer(nn.Module):
    """(batch, F, dim) frames -> (batch, clusters x expansion x dim / groups)."""

    def __init__(self, dim: int, clusters: int, groups: int, expansion: int):
        super().__init__()
        if (expansion * dim) % groups:
            raise WorkloadError(f"NeXtVLAD: expansion x {dim} must divide into {groups} groups")
        self.clusters, self.groups = clusters, groups
        self.group_dim = expansion * dim // groups
        self.expand = nn.Linear(dim, expansion * dim)
        self.attention = nn.Linear(expansion * dim, groups)
        self.assign = nn.Linear(expansion * dim, groups * clusters, bias=False)
        self.assign_norm = MaskedBatchNorm(groups * clusters)
        self.centers = nn.Parameter(torch.randn(self.group_dim, clusters) / self.group_dim**0.5)
        self.out_norm = nn.BatchNorm1d(clusters * self.group_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, width, _ = x.shape
        x = self.expand(x)
        attention = torch.sigmoid(self.attention(x)) * mask.unsqueeze(-1)  # (batch, F, G)
        a = self.assign_norm(self.assign(x), mask).view(batch, width * self.groups, self.clusters)
        a = torch.softmax(a, dim=-1) * attention.reshape(batch, width * self.groups, 1)
        grouped = x.reshape(batch, width * self.groups, self.group_dim)
        vlad = torch.bmm(grouped.transpose(1, 2), a) - a.sum(1, keepdim=True) * self.centers  # (batch, gd, K)
        vlad = F.normalize(vlad, dim=1)
        return self.out_norm(vlad.flatten(1))


@register_family(
    "nextvlad",
    NeXtVLADConfig,
    {
        "paper": dict(clusters=128, groups=8, expansion=2, hidden=2048),
        "small": dict(clusters=16, groups=4, expansion=2, hidden=128),
    },
)
class NeXtVLAD(VideoModel):
    frame_modules = ("rgb_vlad", "audio_vlad")

    def __init__(self, config: NeXtVLADConfig, num_classes: int, k: int | None = None):
        # Dropout sits after the pooling, not before the classifier.
        super().__init__(build_classifier(config.classifier, config.hidden, num_classes, config.mixtures), config.hidden, 0.0)
        self.config = config
        self.rgb_vlad = NeXtVLADLayer(RGB_DIM, config.clusters, config.groups, config.expansion)
        self.audio_vlad = NeXtVLADLayer(AUDIO_DIM, config.clusters // 2, config.groups // 2, config.expansion)
        vlad_dim = (
            config.clusters * config.expansion * RGB_DIM // config.groups
            + (config.clusters // 2) * config.expansion * AUDIO_DIM // (config.groups // 2)
        )
        self.vlad_dropout = nn.Dropout(config.dropout)
        self.hidden = nn.Sequential(nn.Linear(vlad_dim, config.hidden, bias=False), nn.BatchNorm1d(config.hidden))
        self.gating = ContextGating(config.hidden, config.gating_reduction)

    def encode(self, frames, mask, positions):
        vlad = torch.cat([self.rgb_vlad(frames[..., :RGB_DIM], mask), self.audio_vlad(frames[..., RGB_DIM:], mask)], 1)
        return self.gating(self.hidden(self.vlad_dropout(vlad))), None, None
