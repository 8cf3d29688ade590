"""AGFusion for export: ``image_a``, ``image_b`` ``(B, 3, S, S)`` float RGB in [0, 1] -> ``p_same (B,)``
(the probability that both show the same class), ``embedding_a``, ``embedding_b`` ``(B, D)``
(L2-normalised; their dot product is the similarity the classifier calibrates). The input
normalisation (ImageNet or per image) happens inside. Batch and image size are dynamic.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neurocorr.backbones.normalisation import rgb_input_description
from neurocorr.models.agfusion.torch_model import AGFusionNet


class AGFusionExport(nn.Module):
    """``AGFusionNet`` -> (sigmoid of the logit, both embeddings)."""

    input_names = ("image_a", "image_b")
    output_names = ("p_same", "embedding_a", "embedding_b")

    def __init__(self, net: AGFusionNet) -> None:
        super().__init__()
        self.net = net.eval()

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        image = {0: "batch", 2: "height", 3: "width"}
        return {"image_a": image, "image_b": image, "p_same": {0: "batch"}, "embedding_a": {0: "batch"},
                "embedding_b": {0: "batch"}}

    def sample_inputs(self, batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(0)
        return torch.rand(batch, 3, *size, generator=g), torch.rand(batch, 3, *size, generator=g)

    def forward(self, image_a: torch.Tensor, image_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.net(image_a, image_b)
        return torch.sigmoid(out.logit), out.embedding_a, out.embedding_b


def export_network(module: Any) -> AGFusionExport:
    """The export wrapper of an ``AGFusionModule``."""
    return AGFusionExport(module.net).eval()


def preprocessing(module: Any) -> dict[str, Any]:
    return rgb_input_description(str(module.net.input_norm), "square image_size x image_size")
