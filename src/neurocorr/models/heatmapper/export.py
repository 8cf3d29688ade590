"""The heatmapper for export: ``image (B, 3, S, S)`` float RGB in [0, 1], letterboxed to the trained
input size S (``neurocorr.models.heatmapper.letterbox``) -> ``heatmaps (B, K, S, S)`` probabilities
(sigmoid of the network's logits; ImageNet normalisation happens inside). Peak extraction (NMS,
mean-shift) and the map back to original pixels stay outside the file.

Batch and image size are dynamic where the backbone allows it (a CNN: any size; a ViT: multiples of
its patch size, with its position embeddings resampled).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neurocorr.backbones.normalisation import IMAGENET_MEAN, IMAGENET_STD
from neurocorr.models.heatmapper.torch_model import HeatmapperNet


class HeatmapperExport(nn.Module):
    """``HeatmapperNet`` followed by the sigmoid (see the module docstring)."""

    input_names = ("image",)
    output_names = ("heatmaps",)

    def __init__(self, net: HeatmapperNet) -> None:
        super().__init__()
        self.net = net.eval()
        self.multiple = int(getattr(net.backbone, "stride", 1)) if hasattr(net.backbone, "vit") else 1

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {"image": {0: "batch", 2: "height", 3: "width"}, "heatmaps": {0: "batch", 2: "height", 3: "width"}}

    def sample_inputs(self, batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        size = tuple(max(self.multiple, s // self.multiple * self.multiple) for s in size)
        return (torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(0)),)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(image))


def export_network(module: Any) -> HeatmapperExport:
    """The export wrapper of a ``HeatmapperModule``."""
    return HeatmapperExport(module.net).eval()


def preprocessing(module: Any) -> dict[str, Any]:
    return {"channels": 3, "colour": "RGB", "value_range": [0.0, 1.0], "resize": "letterbox to image_size x image_size",
            "normalisation": "imagenet, inside the network", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "class_names": list(getattr(module, "class_names", []) or [])}
