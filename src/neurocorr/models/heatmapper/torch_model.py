"""The heatmapper network: backbone -> decoder -> K heatmap logits at the input size."""

from __future__ import annotations

import torch
from torch import nn

from neurocorr.backbones.normalisation import IMAGENET_MEAN, IMAGENET_STD
from neurocorr.models.heatmapper.decoders import build_decoder


class HeatmapperNet(nn.Module):
    """Images ``(B, 3, H, W)`` float in [0, 1] -> logits ``(B, K, H, W)`` (apply sigmoid for heatmaps).

    Args:
        backbone: a dense backbone with ``out_channels`` and ``stride`` (DINOv2, SmallCNN, ...);
            it receives ImageNet-normalised images.
        num_classes: K keypoint classes (3: start, middle, end).
        decoder: ``linear`` (1x1 conv, ReLU, 1x1 conv, bilinear) or ``progressive``.
        hidden: decoder width.
        upsample_to_stride: ``progressive`` only: upsample in x2 steps down to this stride, then bilinear.
    """

    def __init__(self, backbone: nn.Module, num_classes: int = 3, decoder: str = "linear", hidden: int = 50,
                 upsample_to_stride: int = 2) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_classes = num_classes
        self.decoder = build_decoder(decoder, int(backbone.out_channels), num_classes, int(backbone.stride), hidden,
                                     upsample_to_stride)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"HeatmapperNet expects (B, 3, H, W), got {tuple(images.shape)}")
        features = self.backbone((images - self.mean) / self.std)
        return self.decoder(features, tuple(images.shape[-2:]))
