"""DINOv2 ViT from timm as a dense backbone: patch tokens reshaped to a feature map.

``(B, 3, H, W)`` ImageNet-normalised float, H and W multiples of 14 -> ``(B, C, H / 14, W / 14)``
(C = 384 for ViT-S/14, 768 for ViT-B/14). ``dynamic_img_size`` interpolates the position
embeddings, so any multiple of 14 works (448 by default in the heatmapper).
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn

from neurocorr.backbones.pretrained import Pretrained, load_pretrained, require_host
from neurocorr.errors import ConfigError

NAMES = ("vit_small_patch14_dinov2", "vit_base_patch14_dinov2", "vit_large_patch14_dinov2")


class DINOv2Features(nn.Module):
    """Wraps a timm ViT; ``frozen`` stops gradients and keeps it in eval mode."""

    def __init__(self, vit: nn.Module, frozen: bool = True) -> None:
        super().__init__()
        self.vit = vit
        self.out_channels = int(vit.embed_dim)
        self.stride = int(vit.patch_embed.patch_size[0])
        self.frozen = frozen
        if frozen:
            self.vit.requires_grad_(False)
            self.vit.eval()

    def train(self, mode: bool = True) -> "DINOv2Features":
        super().train(mode)
        if self.frozen:
            self.vit.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"DINOv2 expects (B, 3, H, W), got {tuple(x.shape)}")
        b, _, h, w = x.shape
        if h % self.stride or w % self.stride:
            raise ValueError(f"DINOv2 input size must be a multiple of {self.stride}, got {h} x {w}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            tokens = self.vit.forward_features(x)[:, self.vit.num_prefix_tokens :]
        return tokens.transpose(1, 2).reshape(b, self.out_channels, h // self.stride, w // self.stride)


def dinov2(
    name: str = "vit_small_patch14_dinov2", pretrained: Pretrained = False, frozen: bool = True, **timm_kwargs: Any
) -> DINOv2Features:
    """Build a DINOv2 backbone.

    ``pretrained``: ``false`` (random init), ``true`` (timm / Hugging Face download; offline this is
    one :class:`WeightsError` asking for a local file) or a path to a state dict of the timm model.
    """
    if name not in NAMES:
        raise ConfigError(f"backbone.name must be one of {', '.join(NAMES)}, got {name!r}")
    kwargs = dict(dynamic_img_size=True, num_classes=0, **timm_kwargs)
    vit = timm.create_model(name, pretrained=False, **kwargs)

    def download() -> dict[str, torch.Tensor]:
        require_host("huggingface.co", name)  # timm downloads DINOv2 weights from the Hugging Face hub
        return timm.create_model(name, pretrained=True, **kwargs).state_dict()

    load_pretrained(vit, pretrained, name, download)
    return DINOv2Features(vit, frozen=frozen)
