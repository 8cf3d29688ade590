"""DINO network: a backbone reduced to one feature vector per image, and lightly's DINO head.

Tensors in, tensors out. ``DINONet(images)``: ``(B, 3, H, W)`` float in [0, 1] -> ``(B, out_dim)``
logits (before the temperature softmax). ``features(images)``: ``(B, C)`` the pooled backbone
feature (the ViT's CLS token, else the global average of the last feature map).
"""

from __future__ import annotations

import torch
from lightly.models.modules import DINOProjectionHead
from torch import nn

from neurocorr.backbones.normalisation import IMAGENET_MEAN, IMAGENET_STD

INPUT_NORMS = ("imagenet", "per_image", "none")
PER_IMAGE_EPS = 0.05  # the same per-image standardisation as agfusion's input_norm=per_image


def backbone_weights(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict that the backbone's factory loads with ``pretrained=<file>``: the wrapped timm
    model for ViT wrappers (``.vit``), the module itself otherwise."""
    inner = getattr(backbone, "vit", backbone)
    return {k: v.detach().cpu().clone() for k, v in inner.state_dict().items()}


class DINONet(nn.Module):
    """Backbone -> pooled feature -> DINO projection head (MLP, L2 bottleneck, weight-normalised last layer).

    Args:
        backbone: a backbone of the backbone group: ``(B, 3, H, W)`` -> ``(B, C, h, w)`` (or a list of
            such maps, VGG's taps: the last is used), with ``out_channels`` (an int or a list); a
            backbone with ``cls`` (the ViT) is pooled by its CLS token.
        hidden_dim, bottleneck_dim, out_dim: sizes of the head.
        norm_last_layer: fix the weight norm of the last layer to 1 (DINO's default; more stable).
        batch_norm: BatchNorm in the head's hidden layers (DINO's choice for ResNets): it removes the
            component every image shares, which in a small network from scratch hides the images'
            differences and lets training fall to the uniform output.
        input_norm: ``imagenet`` (fixed mean/std), ``per_image`` (each image's channels standardised)
            or ``none`` (the backbone normalises, e.g. VGG).
    """

    def __init__(self, backbone: nn.Module, hidden_dim: int = 512, bottleneck_dim: int = 128, out_dim: int = 1024,
                 norm_last_layer: bool = True, input_norm: str = "imagenet", batch_norm: bool = False) -> None:
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {list(INPUT_NORMS)}, got {input_norm!r}")
        for name, value in (("hidden_dim", hidden_dim), ("bottleneck_dim", bottleneck_dim), ("out_dim", out_dim)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        channels = getattr(backbone, "out_channels")
        self.feature_dim = int(channels[-1] if isinstance(channels, (list, tuple)) else channels)
        self.backbone = backbone
        self.input_norm = input_norm
        self.out_dim = int(out_dim)
        self.head = DINOProjectionHead(self.feature_dim, hidden_dim, bottleneck_dim, out_dim,
                                       norm_last_layer=norm_last_layer, batch_norm=batch_norm)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def is_vit(self) -> bool:
        return hasattr(self.backbone, "last_attention")

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> the backbone's input."""
        if self.input_norm == "imagenet":
            return (images - self.mean) / self.std
        if self.input_norm == "per_image":
            mean, std = images.mean(dim=(2, 3), keepdim=True), images.std(dim=(2, 3), keepdim=True)
            return (images - mean) / (std + PER_IMAGE_EPS)
        return images

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` pooled backbone features of images in [0, 1]."""
        x = self.normalise(images)
        if hasattr(self.backbone, "cls"):
            return self.backbone.cls(x)
        maps = self.backbone(x)
        if isinstance(maps, (list, tuple)):
            maps = maps[-1]
        return maps.mean(dim=(2, 3))

    def attention(self, images: torch.Tensor) -> torch.Tensor:
        """ViT backbones only: ``(B, heads, h, w)`` last-layer CLS attention of images in [0, 1]."""
        if not self.is_vit:
            raise ValueError(f"{type(self.backbone).__name__} has no attention maps (a ViT backbone has)")
        return self.backbone.last_attention(self.normalise(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))
