"""A small plain CNN backbone for CPU runs: stride-2 stages then dilated 3x3 convs for context.

Same interface as the other dense backbones: ``(B, 3, H, W)`` ImageNet-normalised float ->
``(B, out_channels, H / stride, W / stride)``, with attributes ``out_channels`` and ``stride``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from neurocorr.backbones.pretrained import Pretrained, load_pretrained
from neurocorr.errors import ConfigError


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """``len(widths)`` stride-2 stages (two 3x3 convs each), then one 3x3 conv per entry of
    ``context_dilations`` at the last width (receptive field for global layout).

    Output ``(B, widths[-1], H / 2**len(widths), W / 2**len(widths))``.
    """

    def __init__(self, widths: Sequence[int] = (24, 48, 96), context_dilations: Sequence[int] = (2, 4, 8)) -> None:
        super().__init__()
        if not widths or min(widths) < 1:
            raise ConfigError(f"backbone.widths must be a non-empty list of positive ints, got {list(widths)}")
        layers, cin = [], 3
        for w in widths:
            layers += [_conv(cin, w, stride=2), _conv(w, w)]
            cin = w
        for d in context_dilations:
            layers.append(_conv(cin, cin, dilation=int(d)))
        self.features = nn.Sequential(*layers)
        self.out_channels = int(widths[-1])
        self.stride = 2 ** len(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"SmallCNN expects (B, 3, H, W), got {tuple(x.shape)}")
        return self.features(x)


def small_cnn(
    widths: Sequence[int] = (24, 48, 96), context_dilations: Sequence[int] = (2, 4, 8), pretrained: Pretrained = False
) -> SmallCNN:
    """Build the CNN; ``pretrained`` is ``false`` or a local file (there is no download)."""
    return load_pretrained(SmallCNN(list(widths), list(context_dilations)), pretrained, "small_cnn")
