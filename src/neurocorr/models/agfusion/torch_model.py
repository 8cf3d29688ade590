"""AGFusion network: tensors in, tensors out."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from neurocorr.backbones.normalisation import IMAGENET_MEAN, IMAGENET_STD
from neurocorr.errors import ConfigError
from neurocorr.models.agfusion.attention_gate import MutualAttentionGate
from neurocorr.models.agfusion.moments import align_by_moments

INPUT_NORMS = ("imagenet", "per_image")
PER_IMAGE_EPS = 0.05  # on [0, 1] intensities: a flat channel maps to ~0 instead of noise / tiny std


class AGFusionOutput(NamedTuple):
    """logit (B,); similarity (B,) cosine in [-1, 1]; embedding_a/b (B, D) L2-normalised;
    attention_a/b (B, 1, h, w) in [0, 1] at the backbone's resolution; pooled_a/b (B, C) the
    globally pooled gated features (input of the projection)."""

    logit: torch.Tensor
    similarity: torch.Tensor
    embedding_a: torch.Tensor
    embedding_b: torch.Tensor
    attention_a: torch.Tensor
    attention_b: torch.Tensor
    pooled_a: torch.Tensor
    pooled_b: torch.Tensor


class AGFusionNet(nn.Module):
    """Siamese classifier.

    Shared backbone per branch (ResNet50 stem+layer1, 256 channels) -> mutual attention gate ->
    global average pooling -> projection 256->128 -> cosine similarity -> classifier -> logit.

    Args:
        backbone: module mapping ``(B, 3, H, W)`` normalised images to ``(B, C, h, w)``; must have
            ``out_channels``.
        embedding_dim: size of the projection (128).
        gate_reduction: channel reduction inside the gate.
        input_norm: ``imagenet`` (fixed ImageNet mean/std, for pretrained backbones) or
            ``per_image`` (each image's channels standardised on their own: colour and contrast
            carry no information about the figure, and a backbone trained from scratch learns
            shape several times faster without them).
        gate: ``True`` = the mutual attention gate; ``False`` = no exchange between the branches
            (the ablation: each branch's features are pooled as they are, attention maps are zeros).
        align_max_stretch: ``None`` or the largest stretch of the moment alignment applied to each
            image before the backbone (:mod:`~neurocorr.models.agfusion.moments`: ink centred, long
            axis horizontal, size fixed, elongation reduced by up to this factor).
    Input: two ``(B, 3, H, W)`` float images in [0, 1].
    """

    def __init__(self, backbone: nn.Module, embedding_dim: int = 128, gate_reduction: int = 8,
                 input_norm: str = "imagenet", gate: bool = True, align_max_stretch: float | None = None) -> None:
        super().__init__()
        if align_max_stretch is not None and align_max_stretch < 1:
            raise ConfigError(f"model.net.align_max_stretch must be null or >= 1, got {align_max_stretch}")
        self.align_max_stretch = align_max_stretch
        if input_norm not in INPUT_NORMS:
            raise ConfigError(f"model.net.input_norm must be one of {list(INPUT_NORMS)}, got {input_norm!r}")
        self.input_norm = input_norm
        channels = int(getattr(backbone, "out_channels"))
        self.feature_channels = channels
        self.backbone = backbone
        self.gate = MutualAttentionGate(channels, gate_reduction) if gate else None
        self.projection = nn.Sequential(
            nn.Linear(channels, channels), nn.BatchNorm1d(channels), nn.ReLU(inplace=True), nn.Linear(channels, embedding_dim)
        )
        self.classifier = nn.Linear(1, 1)  # calibrates the cosine into a logit
        nn.init.constant_(self.classifier.weight, 5.0)
        nn.init.zeros_(self.classifier.bias)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def embed_features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features of ``(B, 3, H, W)`` images in [0, 1]: ``(B, C, h, w)``."""
        if self.align_max_stretch is not None:
            images = align_by_moments(images, self.align_max_stretch)
        if self.input_norm == "per_image":
            mean = images.mean(dim=(2, 3), keepdim=True)
            std = images.std(dim=(2, 3), keepdim=True)
            return self.backbone((images - mean) / (std + PER_IMAGE_EPS))
        return self.backbone((images - self.mean) / self.std)

    def forward(self, image_a: torch.Tensor, image_b: torch.Tensor) -> AGFusionOutput:
        if image_a.shape != image_b.shape or image_a.dim() != 4 or image_a.shape[1] != 3:
            raise ValueError(f"expected two (B, 3, H, W) images, got {tuple(image_a.shape)} and {tuple(image_b.shape)}")
        b = image_a.shape[0]
        features = self.embed_features(torch.cat([image_a, image_b], 0))  # one backbone pass for both
        f_a, f_b = features[:b], features[b:]
        if self.gate is not None:
            g_a, g_b, att_a, att_b = self.gate(f_a, f_b)
        else:
            g_a, g_b = f_a, f_b
            att_a = att_b = f_a.new_zeros(b, 1, *f_a.shape[-2:])
        pooled = torch.cat([g_a, g_b], 0).mean(dim=(2, 3))
        embeddings = F.normalize(self.projection(pooled), dim=1)
        e_a, e_b = embeddings[:b], embeddings[b:]
        similarity = (e_a * e_b).sum(1)
        logit = self.classifier(similarity.unsqueeze(1)).squeeze(1)
        return AGFusionOutput(logit, similarity, e_a, e_b, att_a, att_b, pooled[:b], pooled[b:])
