"""QATM for export: ``template (B, 3, h, w)`` and ``scene (B, 3, H, W)`` float RGB in [0, 1] (the VGG
backbone applies ImageNet normalisation inside) -> ``score (B, H, W)`` in [0, 1], the QATM score of
template b centred at each pixel of scene b (0 where the template would leave the scene), and
``feature_score (B, ceil(H/s), ceil(W/s))`` on the matching grid of stride s.

The same quantity as ``QATMNet.match`` for one template at scale 1 without rotation, computed in one
pass (``match`` also tiles very large scenes and matches many templates, scales and angles at once:
that loop stays outside the file, as does picking boxes from the score map). The stride is fixed
when the file is written (``model.net.stride``, or ``auto`` chosen for the template size of the
export) and so is the template size (the reflect padding and the feature crop depend on it); batch
and scene size are dynamic.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from neurocorr.models.qatm.qatm import qatm_pair_log_scores
from neurocorr.models.qatm.tiling import encode_fused
from neurocorr.models.qatm.torch_model import QATMNet

DEFAULT_TEMPLATE = 48  # px: the template side of the export when none is given


class QATMExport(nn.Module):
    """One template per scene, batched (see the module docstring)."""

    input_names = ("template", "scene")
    output_names = ("score", "feature_score")

    def __init__(self, net: QATMNet, template_size: tuple[int, int] = (DEFAULT_TEMPLATE, DEFAULT_TEMPLATE),
                 stride: Optional[int] = None) -> None:
        super().__init__()
        self.net = net.eval()
        self.template_size = (int(template_size[0]), int(template_size[1]))
        self.stride = int(stride or net.choose_stride(torch.tensor([self.template_size])))

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {"template": {0: "batch"}, "scene": {0: "batch", 2: "height", 3: "width"},
                "score": {0: "batch", 1: "height", 2: "width"}, "feature_score": {0: "batch"}}

    def sample_inputs(self, batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(0)
        size = (max(size[0], self.template_size[0]), max(size[1], self.template_size[1]))
        return torch.rand(batch, 3, *self.template_size, generator=g), torch.rand(batch, 3, *size, generator=g)

    def template_features(self, templates: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w)`` -> ``(B, C, round(h/s), round(w/s))``: ``QATMNet.bare_template_features``, batched."""
        net, s = self.net, self.stride
        align = net._align(s)
        th, tw = self.template_size
        fh, fw = max(1, round(th / s)), max(1, round(tw / s))
        if net.template_padding == "zero":
            fused = encode_fused(net.backbone, templates, s, align)
            return fused if fused.shape[-2:] == (fh, fw) else F.interpolate(fused, size=(fh, fw), mode="bilinear",
                                                                            align_corners=False)
        margin = -(-net._halo() // align) * align
        padded, left = templates, margin
        while left > 0:
            step = min(left, padded.shape[-1] - 1, padded.shape[-2] - 1)
            padded = F.pad(padded, (step, step, step, step), mode="reflect")
            left -= step
        fused = encode_fused(net.backbone, padded, s, align)
        index = torch.arange(fused.shape[0], dtype=fused.dtype, device=fused.device).unsqueeze(1)
        box = torch.tensor([[margin, margin, margin + tw, margin + th]], dtype=fused.dtype, device=fused.device)
        boxes = torch.cat([index, box.expand(fused.shape[0], 4)], 1)
        return roi_align(fused, boxes, (fh, fw), spatial_scale=1.0 / s, sampling_ratio=2, aligned=True)

    def forward(self, template: torch.Tensor, scene: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.stride
        log_score = qatm_pair_log_scores(self.net.encode(scene, s), self.template_features(template),
                                         self.net.qatm.alpha, self.net.qatm.eps, self.net.tap_weights)
        feature_score = log_score.exp()
        score = feature_score
        if s > 1:
            score = F.interpolate(feature_score[:, None], scale_factor=float(s), mode="bilinear", align_corners=False)[:, 0]
        return score[..., : scene.shape[-2], : scene.shape[-1]], feature_score


def export_network(module: Any, template_size: Optional[tuple[int, int]] = None) -> QATMExport:
    """The export wrapper of a ``QATMModule`` (``template_size`` (h, w) px, default 48 x 48)."""
    return QATMExport(module.net, template_size or (DEFAULT_TEMPLATE, DEFAULT_TEMPLATE)).eval()


def preprocessing(module: Any) -> dict[str, Any]:
    return {"channels": 3, "colour": "RGB", "value_range": [0.0, 1.0], "resize": "none (any scene size)",
            "normalisation": "imagenet, inside the VGG backbone", "mean": None, "std": None}
