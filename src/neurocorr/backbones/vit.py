"""A small timm Vision Transformer trained from scratch (CPU-sized by default), for DINO pretraining.

``(B, 3, H, W)`` normalised float, H and W multiples of ``patch_size`` -> ``(B, C, H / p, W / p)``
patch-token map (C = ``embed_dim``), the interface of the other dense backbones. ``cls`` gives the
``(B, C)`` CLS token and ``last_attention`` the last block's CLS attention ``(B, heads, H/p, W/p)``.
``pretrained`` loads a state dict of the timm ``VisionTransformer`` (what DINO writes).
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from neurocorr.backbones.pretrained import Pretrained, load_pretrained
from neurocorr.errors import ConfigError


class ViTFeatures(nn.Module):
    """Wraps a timm ``VisionTransformer`` (``dynamic_img_size``: any multiple of the patch size)."""

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        self.vit = vit
        self.out_channels = int(vit.embed_dim)
        self.stride = int(vit.patch_embed.patch_size[0])

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] % self.stride or x.shape[3] % self.stride:
            raise ValueError(f"ViT expects (B, 3, H, W) with H, W multiples of {self.stride}, got {tuple(x.shape)}")

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, prefix + N, C)`` normalised output tokens."""
        self._check(x)
        return self.vit.forward_features(x)

    def cls(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` the CLS token."""
        return self.tokens(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        patches = self.tokens(x)[:, self.vit.num_prefix_tokens :]
        return patches.transpose(1, 2).reshape(b, self.out_channels, h // self.stride, w // self.stride)

    @torch.no_grad()
    def last_attention(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, heads, H / p, W / p)``: the last block's attention of the CLS query over the patches
        (each head's map sums to at most 1; the rest goes to the prefix tokens)."""
        self._check(x)
        vit = self.vit
        b, _, h, w = x.shape
        tokens = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
        for block in vit.blocks[:-1]:
            tokens = block(tokens)
        attn = vit.blocks[-1].attn
        qkv = attn.qkv(vit.blocks[-1].norm1(tokens)).reshape(b, tokens.shape[1], 3, attn.num_heads, attn.head_dim)
        q, k, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, k = attn.q_norm(q), attn.k_norm(k)
        weights = ((q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, heads, 1, T)
        maps = weights[:, :, 0, vit.num_prefix_tokens :]
        return maps.reshape(b, attn.num_heads, h // self.stride, w // self.stride)


def vit(
    patch_size: int = 8, depth: int = 4, embed_dim: int = 192, num_heads: int = 3, mlp_ratio: float = 4.0,
    img_size: int = 64, pretrained: Pretrained = False,
) -> ViTFeatures:
    """Build a ViT from scratch; ``pretrained`` is ``false`` or a local file (a DINO run's
    ``dino_backbone.pth``); there is no download."""
    for key, value in (("patch_size", patch_size), ("depth", depth), ("num_heads", num_heads), ("img_size", img_size)):
        if int(value) < 1:
            raise ConfigError(f"backbone.{key} must be >= 1, got {value}")
    if embed_dim % num_heads:
        raise ConfigError(f"backbone.embed_dim ({embed_dim}) must be a multiple of backbone.num_heads ({num_heads})")
    if img_size % patch_size:
        raise ConfigError(f"backbone.img_size ({img_size}) must be a multiple of backbone.patch_size ({patch_size})")
    model = VisionTransformer(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                              num_heads=num_heads, mlp_ratio=mlp_ratio, num_classes=0, dynamic_img_size=True)
    load_pretrained(model, pretrained, "vit")
    return ViTFeatures(model)
