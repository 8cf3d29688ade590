"""VGG19 ``features`` with taps: the feature maps after chosen layer indices.

Default taps 2 and 16 are conv1_2 and conv3_4 (64 + 256 channels, strides 1 and 4), the layers
QATM uses. ``after_relu`` taps the ReLU that follows each conv instead of the raw conv output.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torchvision.models import VGG19_Weights, vgg19

from neurocorr.backbones.normalisation import IMAGENET_MEAN, IMAGENET_STD
from neurocorr.backbones.pretrained import Pretrained, load_pretrained
from neurocorr.errors import ConfigError


class VGGFeatures(nn.Module):
    """VGG19 ``features[:last_tap + 1]`` returning one map per tap.

    Input ``(B, 3, H, W)`` float in [0, 1] (ImageNet normalisation is applied inside).
    Output: list of ``(B, C_k, H / stride_k, W / stride_k)``, one per tap (sizes floored by the pools).

    Args:
        taps: indices into ``torchvision.models.vgg19().features`` (conv layers), ascending.
        after_relu: tap the ReLU right after each tapped conv.
        width: channel multiplier (1.0 = VGG19; smaller values are for quick CPU runs and
            cannot load ImageNet weights).
    """

    def __init__(self, taps: Sequence[int] = (2, 16), after_relu: bool = False, width: float = 1.0) -> None:
        super().__init__()
        full = vgg19(weights=None).features
        taps = [int(t) for t in taps]
        if not taps or sorted(set(taps)) != taps:
            raise ConfigError(f"backbone.taps must be ascending distinct layer indices, got {taps}")
        if taps[-1] >= len(full) or not all(isinstance(full[t], nn.Conv2d) for t in taps):
            convs = [i for i, m in enumerate(full) if isinstance(m, nn.Conv2d)]
            raise ConfigError(f"backbone.taps must be conv layer indices of VGG19 features {convs}, got {taps}")
        if width <= 0:
            raise ConfigError(f"backbone.width must be > 0, got {width}")
        self.taps = [t + 1 if after_relu else t for t in taps]
        layers: list[nn.Module] = []
        in_ch, stride, radius, jump = 3, 1, 0, 1
        self.strides: list[int] = []
        self.out_channels: list[int] = []
        for i, m in enumerate(full[: self.taps[-1] + 1]):
            if isinstance(m, nn.Conv2d):
                out_ch = max(1, int(round(m.out_channels * width)))
                layers.append(nn.Conv2d(in_ch, out_ch, 3, padding=1))
                in_ch, radius = out_ch, radius + jump
            elif isinstance(m, nn.ReLU):
                layers.append(nn.ReLU(inplace=False))  # in-place would overwrite conv taps
            else:
                layers.append(nn.MaxPool2d(2, 2))
                radius, stride, jump = radius + jump // 2 + 1, stride * 2, jump * 2
            if i in self.taps:
                self.strides.append(stride)
                self.out_channels.append(in_ch)
        self.features = nn.Sequential(*layers)
        #: pixels beyond which a tile border no longer changes the deepest tap (a safe bound)
        self.receptive_radius = radius + 2 * stride
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def max_stride(self) -> int:
        return max(self.strides)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"VGGFeatures expects (B, 3, H, W), got {tuple(x.shape)}")
        x = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out

    def freeze(self, n_layers: int) -> None:
        """Freeze the first ``n_layers`` modules of ``features`` (0 = train everything)."""
        for layer in list(self.features)[:n_layers]:
            for p in layer.parameters():
                p.requires_grad_(False)


def _download_vgg19() -> dict[str, torch.Tensor]:
    state = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    return {k: v for k, v in state.items() if k.startswith("features.")}


def vgg19_features(
    taps: Sequence[int] = (2, 16), after_relu: bool = False, width: float = 1.0, pretrained: Pretrained = False,
    freeze_layers: int = 0,
) -> VGGFeatures:
    """Build :class:`VGGFeatures`; ``pretrained`` is ``false``, ``true`` (torchvision ImageNet
    weights) or a local file holding a VGG19 (``features.*`` keys) state dict."""
    model = VGGFeatures(taps, after_relu, width)
    if pretrained not in (None, False) and str(pretrained).lower() not in ("false", "none", "") and width != 1.0:
        raise ConfigError(f"backbone.width={width}: pretrained VGG19 weights need width 1.0")
    load_pretrained(model, pretrained, "vgg19", _download_vgg19)
    model.freeze(freeze_layers)
    return model
