"""Decoders from a stride-s feature map ``(B, C, H/s, W/s)`` to K heatmap logits ``(B, K, H, W)``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from neurocorr.errors import ConfigError

PRIOR = 0.01  # initial foreground probability: final bias = logit(PRIOR), so BCE starts near its optimum


def _init_head(conv: nn.Conv2d) -> None:
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.constant_(conv.bias, math.log(PRIOR / (1 - PRIOR)))


class LinearDecoder(nn.Module):
    """The seed's decoder: 1x1 conv C->hidden, ReLU, 1x1 conv hidden->K, bilinear upsampling."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 50) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden, 1)
        self.head = nn.Conv2d(hidden, num_classes, 1)
        _init_head(self.head)

    def forward(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        logits = self.head(F.relu(self.proj(features)))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class ProgressiveDecoder(nn.Module):
    """Upsampling in x2 steps, each a bilinear x2 then 3x3 conv + BN + ReLU (widths halving from
    ``hidden``), down to stride ``2**final_stride_log2`` at most, then a 1x1 conv to K logits
    and bilinear to the input size."""

    def __init__(self, in_channels: int, num_classes: int, stride: int, hidden: int = 96, final_stride_log2: int = 1,
                 min_width: int = 16) -> None:
        super().__init__()
        steps = max(1, int(math.floor(math.log2(max(stride, 2)))) - final_stride_log2)
        self.proj = nn.Sequential(nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True))
        blocks, width = [], hidden
        for _ in range(steps):
            out = max(min_width, width // 2)
            blocks.append(nn.Sequential(nn.Conv2d(width, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)))
            width = out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(width, num_classes, 1)
        _init_head(self.head)

    def forward(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.proj(features)
        for block in self.blocks:
            x = block(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        return F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)


def build_decoder(kind: str, in_channels: int, num_classes: int, stride: int, hidden: int, upsample_to_stride: int = 2) -> nn.Module:
    if kind == "linear":
        return LinearDecoder(in_channels, num_classes, hidden)
    if kind == "progressive":
        if upsample_to_stride < 1 or upsample_to_stride & (upsample_to_stride - 1):
            raise ConfigError(f"model.net.upsample_to_stride must be a power of 2, got {upsample_to_stride}")
        return ProgressiveDecoder(in_channels, num_classes, stride, hidden, int(math.log2(upsample_to_stride)))
    raise ConfigError(f"model.net.decoder must be 'linear' or 'progressive', got {kind!r}")
