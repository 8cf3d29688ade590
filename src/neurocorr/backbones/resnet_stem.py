"""ResNet50 stem: conv1, bn1, relu, maxpool and layer1 (256 channels, stride 4)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import ResNet50_Weights, resnet50

from neurocorr.backbones.pretrained import Pretrained, load_pretrained


class ResNetStem(nn.Module):
    """ResNet50 conv1..layer1.

    Input ``(B, 3, H, W)`` float, ImageNet-normalised; output ``(B, 256, H/4, W/4)``.
    """

    out_channels = 256
    stride = 4

    def __init__(self) -> None:
        super().__init__()
        full = resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = full.conv1, full.bn1, full.relu, full.maxpool
        self.layer1 = full.layer1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))


def _download_resnet50() -> dict[str, torch.Tensor]:
    return ResNet50_Weights.IMAGENET1K_V2.get_state_dict(progress=True)


def resnet50_stem(pretrained: Pretrained = False) -> ResNetStem:
    """Build the stem; ``pretrained`` is ``false``, ``true`` (torchvision ImageNet weights)
    or a local file holding a full ResNet50 or a stem state dict."""
    return load_pretrained(ResNetStem(), pretrained, "resnet50_stem", _download_resnet50)
