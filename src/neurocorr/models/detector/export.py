"""The detector for export: its e2cnn network in plain-torch form (e2cnn's ``EquivariantModule.export()``).

``image (B, C, H, W)`` float in [0, 1] (C = ``in_channels``: 1 grey, 3 RGB) -> ``score (B, 1, H, W)`` in
(0, 1), ``orientation (B, N, H, W)`` probabilities over the N rotation bins, ``features (B, D, H, W)``
(the descriptor features; keypoint NMS, top-k and polar descriptor sampling stay outside the file).
A model whose keypoints are Harris's (``peaks_from=harris``) adds ``peak_map (B, 1, H, W)``, the map its
keypoints are the peaks of (``sigmoid(k x Harris)``, see ``preprocessing``), so the file alone finds them.

The batch is dynamic; the image size is fixed when the file is written: the pyramid level sizes
(rounded) and the parity-aware pooling (its kernel depends on whether a side is odd) are functions of
H and W, so a traced graph holds the sizes it was traced at. Export at the size you will run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neurocorr.errors import ConfigError
from neurocorr.models.detector.torch_model import (DetectorParts, EquivariantDetector, handcrafted_responses, harris_peak_map,
                                                   run_detector)


class DetectorExport(nn.Module):
    """Plain-torch twin of :class:`EquivariantDetector` (same weights, same outputs); see the module docstring."""

    input_names = ("image",)
    output_names = ("score", "orientation", "features")
    dynamic_note = "batch only: the pyramid sizes and the parity-aware pooling are fixed by the export size"

    def __init__(self, net: EquivariantDetector, peak_map: bool = False) -> None:
        super().__init__()
        net = net.eval()
        if peak_map and net.harris_skip is None:
            raise ConfigError("a peak_map output needs model.net.harris_skip (and handcrafted sigmas)")
        self.peak_map, self.harris_skip_init = bool(peak_map), float(net.harris_skip_init)
        if self.peak_map:
            self.output_names = (*type(self).output_names, "peak_map")
        self.in_channels, self.group_order = int(net.in_channels), int(net.group_order)
        self.handcrafted = net.handcrafted
        self.pyramid_levels, self.pyramid_scale = int(net.pyramid_levels), float(net.pyramid_scale)
        blocks, pools, self.orientation_conv = net.plain_modules()
        self.blocks, self.pools = nn.ModuleList(blocks), nn.ModuleList(pools)
        self.score_head, self.descriptor_head = net.score_head, net.descriptor_head
        self.harris_skip = net.harris_skip
        self.score_residual = net.score_residual
        self.harris_log_input = net.harris_log_input
        self.harris_skip_form = net.harris_skip_form
        self.descriptor_image = net.descriptor_image

    def level_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """The pyramid level sizes (as :meth:`EquivariantDetector.level_sizes`)."""
        return [(max(8, round(height * self.pyramid_scale**level)), max(8, round(width * self.pyramid_scale**level)))
                for level in range(self.pyramid_levels)]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {name: {0: "batch"} for name in (*self.input_names, *self.output_names)}

    def sample_inputs(self, batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        return (torch.rand(batch, self.in_channels, *size, generator=torch.Generator().manual_seed(0)),)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h, w = int(image.shape[-2]), int(image.shape[-1])  # fixed by the export (see the module docstring)
        parts = DetectorParts(blocks=list(self.blocks), pools=list(self.pools), orientation_conv=self.orientation_conv,
                              score_head=self.score_head, descriptor_head=self.descriptor_head,
                              harris_skip=self.harris_skip, handcrafted=self.handcrafted,
                              descriptor_image=self.descriptor_image, score_residual=self.score_residual,
                              harris_log_input=self.harris_log_input, harris_skip_form=self.harris_skip_form)
        outputs = run_detector(parts, image, self.level_sizes(h, w))
        if not self.peak_map:
            return outputs
        harris = handcrafted_responses(image, self.handcrafted[:1], hessian=False)
        return (*outputs, harris_peak_map(harris, self.harris_skip_init))


def export_network(module: Any) -> DetectorExport:
    """The export wrapper of a :class:`~neurocorr.models.detector.lightning_model.DetectorModule` (with the
    ``peak_map`` output when its keypoints are Harris's)."""
    return DetectorExport(module.net, peak_map=module.peaks_from == "harris").eval()


def preprocessing(module: Any) -> dict[str, Any]:
    """What the file expects: float images in [0, 1], grey or RGB, no normalisation inside or outside."""
    channels = int(module.net.in_channels)
    if module.peaks_from == "harris":
        skip = module.net.harris_skip_init
        keypoints = (f"peaks of the peak_map output, sigmoid({skip:g} x Harris) of the image (kornia harris_response, k = 0.04, over its mean "
                     f"absolute value, squashed as x / (1 + |x|)), ranked by the score at each peak's pixel")
        if module.subpixel_map == "harris_log":
            keypoints += "; sub-pixel fits on sign(x) log(1 + |x|) of that Harris x, not on the sigmoid"
    else:
        keypoints = "peaks of the score map, ranked by the score"
    return {"channels": channels, "colour": "grey" if channels == 1 else "RGB", "value_range": [0.0, 1.0],
            "normalisation": "none (the network standardises its handcrafted inputs itself)", "mean": None, "std": None,
            "keypoints": keypoints}
