"""DINO for export: the teacher's backbone (what DINO trains for), ``image (B, 3, S, S)`` float RGB in
[0, 1] -> ``features (B, C)`` (a ViT's CLS token, else the global average of the last feature map).
The input normalisation (``model.net.input_norm``) happens inside. Batch and image size are dynamic
where the backbone allows it (a ViT: multiples of its patch size).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neurocorr.backbones.normalisation import rgb_input_description
from neurocorr.models.dino.torch_model import DINONet


class DINOExport(nn.Module):
    """``DINONet.features`` of the teacher."""

    input_names = ("image",)
    output_names = ("features",)

    def __init__(self, net: DINONet) -> None:
        super().__init__()
        self.net = net.eval()
        self.multiple = int(getattr(net.backbone, "stride", 1)) if hasattr(net.backbone, "vit") else 1

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {"image": {0: "batch", 2: "height", 3: "width"}, "features": {0: "batch"}}

    def sample_inputs(self, batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        size = tuple(max(self.multiple, s // self.multiple * self.multiple) for s in size)
        return (torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(0)),)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net.features(image)


def export_network(module: Any) -> DINOExport:
    """The export wrapper of a ``DINOModule``: its EMA teacher."""
    return DINOExport(module.teacher).eval()


def preprocessing(module: Any) -> dict[str, Any]:
    return rgb_input_description(str(module.teacher.input_norm), "square image_size x image_size")
