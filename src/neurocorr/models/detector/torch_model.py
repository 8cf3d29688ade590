"""Rotation-equivariant keypoint detector on the group C_N (e2cnn).

Tensors in, tensors out. Pixel convention: pixel centres at integer coordinates, (x=col, y=row).

Architecture, per level of an image pyramid (level l is the image resized by ``pyramid_scale**l``):
three blocks ``R2Conv 5x5 -> InnerBatchNorm -> ReLU`` of ``layer_1/2/3`` regular fields, with an
antialiased max pooling (stride 2) between blocks. Then

- score head: group pooling of every block (rotation-invariant), bilinear upsampling to the input
  size, concatenation over blocks and levels, 1x1 convs -> one score map in (0, 1);
- orientation head: a 3x3 R2Conv from the last block to one regular field (N channels), upsampled
  and summed over levels -> a softmax distribution over the N rotation bins per pixel;
- descriptor features: a 1x1 conv of the same invariant features (the descriptor itself is a polar
  sample of these around each keypoint, in its orientation; see ``descriptor.py``).

With ``handcrafted`` sigmas (in the manner of Key.Net), each level also gets rotation-invariant
classical responses: Harris and determinant of Hessian of the level blurred by each sigma, each
normalised by its mean absolute value over the image (so contrast does not matter) and squashed to
(-1, 1). They enter the first block as extra trivial fields and the score head directly, so the
network starts from well-localised corner and blob responses and learns what to keep.

The pyramid levels a keypoint is described at (``describe_scales``) are run together by
:meth:`EquivariantDetector.pyramid`: each size passes the blocks once, every level resized once from the image.

Every operation is exactly equivariant to rotations by multiples of 90 degrees (for N divisible by
4) for square inputs of any size: e2cnn filters, zero padding, centred resizing and the
parity-aware pooling below all commute with ``torch.rot90``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence

import torch
import kornia.feature as KF
import torch.nn.functional as F
from e2cnn import gspaces
from e2cnn import nn as enn
from torch import nn

from neurocorr.errors import ConfigError
from neurocorr.ops.filters import gaussian_blur
from neurocorr.ops.peaks import square_max

HARRIS_SKIP_FORMS = ("squashed", "log")


class DetectorOutput(NamedTuple):
    """score: ``(B, 1, H, W)`` in (0, 1), or None where the caller asked for none (``with_score=False``:
    a pyramid level read only for its descriptors); orientation: ``(B, N, H, W)`` probabilities over the N
    bins (bin k = angle 2 pi k / N); features: ``(B, D, H, W)`` rotation-invariant descriptor features."""

    score: Optional[torch.Tensor]
    orientation: torch.Tensor
    features: torch.Tensor


def _blur_stride2(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Blur-and-subsample by 2 along ``dim`` (2 = rows, 3 = cols), symmetric under flipping that
    axis: odd length n -> kernel [1,2,1]/4 sampled at 0, 2, .., n-1; even n -> [1,3,3,1]/8 sampled
    at the pair centres 0.5, 2.5, ..."""
    n = x.shape[dim]
    taps = [1.0, 2.0, 1.0] if n % 2 else [1.0, 3.0, 3.0, 1.0]
    k = torch.tensor(taps, dtype=x.dtype, device=x.device)
    k = k / k.sum()
    c = x.shape[1]
    one = (1, 1, len(taps), 1) if dim == 2 else (1, 1, 1, len(taps))
    pad = (0, 0, 1, 1) if dim == 2 else (1, 1, 0, 0)
    stride = (2, 1) if dim == 2 else (1, 2)
    weight = k.view(one).expand(c, 1, *one[2:]).contiguous()
    return F.conv2d(F.pad(x, pad), weight, stride=stride, groups=c)


def handcrafted_responses(image: torch.Tensor, sigmas: tuple[float, ...], hessian: bool = True) -> torch.Tensor:
    """``(B, 2 * len(sigmas), H, W)``: Harris and determinant-of-Hessian responses of the grey
    ``image`` ``(B, C, H, W)`` blurred by each sigma (px; 0 = unblurred), each divided by its mean absolute value
    over the image and squashed by ``x / (1 + |x|)``. Rotation-invariant fields (exactly, for
    rotations by multiples of 90 degrees). ``hessian=False``: the Harris maps alone, ``(B, len(sigmas), H, W)``
    (each map is normalised on its own, so they equal the full stack's Harris channels)."""
    grey = image.mean(1, keepdim=True) if image.shape[1] > 1 else image
    maps = []
    for sigma in sigmas:
        blurred = grey if sigma <= 0 else gaussian_blur(grey, sigma)
        maps += [KF.harris_response(blurred, k=0.04)] + ([KF.hessian_response(blurred)] if hessian else [])
    stack = torch.cat(maps, 1)
    stack = stack / stack.abs().mean((-2, -1), keepdim=True).clamp(min=1e-12)
    return stack / (1 + stack.abs())


def normalised_image(image: torch.Tensor, blurs: tuple[float, ...], window: float = 8.0) -> torch.Tensor:
    """``(B, len(blurs), H, W)``: the grey ``image`` ``(B, C, H, W)`` minus its local mean, divided by its
    local standard deviation (Gaussian window ``window`` px), then blurred by each of ``blurs`` (px):
    contrast- and brightness-free intensities for the descriptor (rotation-invariant fields)."""
    grey = image.mean(1, keepdim=True) if image.shape[1] > 1 else image
    centred = grey - gaussian_blur(grey, window)
    normed = centred / (gaussian_blur(centred * centred, window) + 1e-4).sqrt()
    return torch.cat([gaussian_blur(normed, s) if s > 0 else normed for s in blurs], 1)


_SPLIT_POOL_PIXELS = 1 << 17  # maps from this size on (about 360x360) are pooled one channel at a time


def antialiased_max_pool(x: torch.Tensor) -> torch.Tensor:
    """Max pool 3x3 (stride 1) then blur-subsample by 2: ``(B, C, H, W)`` -> ``(B, C, ceil(H/2), ceil(W/2))``.
    Pointwise over channels, so it keeps e2cnn regular fields equivariant."""
    def halve(t: torch.Tensor) -> torch.Tensor:
        return _blur_stride2(_blur_stride2(t, 2), 3)

    if torch.is_grad_enabled():
        return halve(F.max_pool2d(x, 3, stride=1, padding=1))
    if x.shape[-2] * x.shape[-1] < _SPLIT_POOL_PIXELS:
        return halve(square_max(x, 3))
    # A large map without autograd goes channel by channel, so that one channel's intermediates stay in the CPU's
    # cache (16 channels at 640x480: 98 -> 40 ms). Every step is per channel: the values are the same, up to the
    # last bit where the convolution picks another algorithm for one channel than for many.
    return torch.cat([halve(square_max(c, 3)) for c in x.split(1, dim=1)], 1)


class EquivariantBlock(nn.Module):
    """``R2Conv k x k -> InnerBatchNorm -> ReLU`` between field types."""

    def __init__(self, in_type: enn.FieldType, out_type: enn.FieldType, kernel_size: int) -> None:
        super().__init__()
        self.body = enn.SequentialModule(
            enn.R2Conv(in_type, out_type, kernel_size, padding=kernel_size // 2),
            enn.InnerBatchNorm(out_type),
            enn.ReLU(out_type, inplace=True),
        )
        self.in_type, self.out_type = in_type, out_type

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        return self.body(x)


class EquivariantDetector(nn.Module):
    """Score, orientation and descriptor features from an image ``(B, in_channels, H, W)`` in [0, 1].

    Args:
        in_channels: 1 (grey) or 3 (RGB).
        group_order: N of the rotation group C_N (divisible by 4 for exact 90-degree equivariance).
        layer_1, layer_2, layer_3: regular fields (each N channels) per block.
        kernel_size: R2Conv kernel size.
        pyramid_levels: image pyramid levels (1 = the image alone).
        pyramid_scale: size ratio between consecutive levels, in (0, 1).
        head_hidden: channels of the hidden 1x1 conv of the score head (0 = a single 1x1 conv).
        descriptor_channels: channels of the descriptor feature map.
        handcrafted: blur sigmas (px) of the classical responses given to the network (empty = none).
        harris_skip: with ``handcrafted``, the initial weight of a learnable skip that adds the
            first Harris response to the score logits, the head's last layer starting at zero: the
            untrained detector then ranks points as Harris does, and training refines that (0 = off).
        descriptor_image: blur sigmas (px) of locally normalised copies of the image (``normalised_image``)
            given to the descriptor head beside the network's features (empty = none).
        harris_log_input: with ``handcrafted``, the score head also sees ``log(1 + |Harris|)`` of the
            full-resolution image (Harris over its mean absolute value): the squashed responses flatten
            strong corners together (x / (1 + x) is within 1 % of 1 for every x > 100), so without it the
            head cannot tell which of them is the stronger when it learns to rank them.
        score_residual: with ``harris_skip``, the most (in logits) the learned head may add to the Harris
            skip, as ``score_residual * tanh(head / score_residual)``: training may reshape the peaks
            but can move the Harris ranking by this much at most (0 = unbounded).
        harris_skip_form: what the skip adds, times its weight: ``squashed``, the Harris input ``s = x / (1 + |x|)``
            (``x`` = Harris over its mean absolute value), in (-1, 1), so that strong corners differ by
            hundredths of a logit and a bounded head reorders them all; or ``log``,
            ``sign(x) log(1 + |x|)``, which keeps their ratios as logit differences, so a head bounded by
            ``score_residual`` reorders only corners whose ``1 + x`` are within a factor
            ``exp(2 score_residual / weight)`` of each other.
    """

    def __init__(
        self,
        in_channels: int = 1,
        group_order: int = 8,
        layer_1: int = 2,
        layer_2: int = 3,
        layer_3: int = 4,
        kernel_size: int = 5,
        pyramid_levels: int = 3,
        pyramid_scale: float = 0.7071,
        head_hidden: int = 16,
        descriptor_channels: int = 8,
        handcrafted: tuple[float, ...] = (),
        harris_skip: float = 0.0,
        descriptor_image: tuple[float, ...] = (),
        score_residual: float = 0.0,
        harris_log_input: bool = False,
        harris_skip_form: str = "squashed",
    ) -> None:
        super().__init__()
        if group_order < 1:
            raise ConfigError(f"model.net.group_order must be >= 1, got {group_order}")
        if pyramid_levels < 1 or not 0 < pyramid_scale < 1:
            raise ConfigError(f"model.net: pyramid_levels >= 1 and 0 < pyramid_scale < 1 needed, got "
                              f"{pyramid_levels}, {pyramid_scale}")
        self.group_order, self.in_channels = group_order, in_channels
        self.pyramid_levels, self.pyramid_scale = pyramid_levels, pyramid_scale
        gspace = gspaces.Rot2dOnR2(N=group_order)
        self.handcrafted = tuple(float(x) for x in handcrafted)
        n_hand = 2 * len(self.handcrafted)
        self.in_type = enn.FieldType(gspace, (in_channels + n_hand) * [gspace.trivial_repr])
        types = [enn.FieldType(gspace, n * [gspace.regular_repr]) for n in (layer_1, layer_2, layer_3)]
        self.block1 = EquivariantBlock(self.in_type, types[0], kernel_size)
        self.block2 = EquivariantBlock(types[0], types[1], kernel_size)
        self.block3 = EquivariantBlock(types[1], types[2], kernel_size)
        self.pools = nn.ModuleList([enn.GroupPooling(t) for t in types])
        self.orientation_conv = enn.R2Conv(types[2], enn.FieldType(gspace, [gspace.regular_repr]), 3, padding=1)
        invariant = (layer_1 + layer_2 + layer_3) * pyramid_levels
        if harris_log_input and not self.handcrafted:
            raise ConfigError("model.net.harris_log_input needs model.net.handcrafted sigmas")
        self.harris_log_input = bool(harris_log_input)
        head_in = invariant + n_hand * pyramid_levels + int(self.harris_log_input)
        if head_hidden > 0:
            self.score_head = nn.Sequential(nn.Conv2d(head_in, head_hidden, 1), nn.ReLU(inplace=True),
                                            nn.Conv2d(head_hidden, 1, 1))
        else:
            self.score_head = nn.Conv2d(head_in, 1, 1)
        self.descriptor_image = tuple(float(x) for x in descriptor_image)
        self.descriptor_head = nn.Conv2d(invariant + len(self.descriptor_image), descriptor_channels, 1)
        if harris_skip and not self.handcrafted:
            raise ConfigError("model.net.harris_skip needs model.net.handcrafted sigmas")
        self.harris_skip = nn.Parameter(torch.tensor(float(harris_skip))) if harris_skip else None
        self.harris_skip_init = float(harris_skip)  # fixed: the scale of :meth:`harris_score`
        if score_residual < 0 or (score_residual and not harris_skip):
            raise ConfigError(f"model.net.score_residual must be >= 0 and needs model.net.harris_skip, got {score_residual}")
        self.score_residual = float(score_residual)
        if harris_skip_form not in HARRIS_SKIP_FORMS:
            raise ConfigError(f"model.net.harris_skip_form must be one of {HARRIS_SKIP_FORMS}, got {harris_skip_form!r}")
        if harris_skip_form != "squashed" and not harris_skip:
            raise ConfigError(f"model.net.harris_skip_form={harris_skip_form} shapes the Harris skip: it needs "
                              f"model.net.harris_skip > 0, got {harris_skip}")
        self.harris_skip_form = harris_skip_form
        if self.harris_skip is not None:
            last = self.score_head[-1] if isinstance(self.score_head, nn.Sequential) else self.score_head
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def level_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Sizes of the pyramid levels of an ``height x width`` image."""
        return [(max(8, round(height * self.pyramid_scale**level)), max(8, round(width * self.pyramid_scale**level)))
                for level in range(self.pyramid_levels)]

    def harris_score(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` in (0, 1): the untrained score, ``sigmoid(harris_skip x Harris)`` of the
        full-resolution input (the skip's first handcrafted response at its *initial* weight), whatever
        the head has learned. Keypoint positions found on it do not move when training reshapes the score
        (``DetectorModule(peaks_from="harris")``: the learned score then only ranks them)."""
        return self.harris_score_and_log(image)[0]

    def harris_score_and_log(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`harris_score` and ``sign(x) log(1 + |x|)`` of the Harris response ``x`` (over its image mean)
        that it squashes, both ``(B, 1, H, W)`` from one response: the second is an increasing function of the
        first with the same peaks, which strong corners do not flatten, the map their sub-pixel fits read
        (``DetectorModule(subpixel_map="harris_log")``)."""
        if self.harris_skip is None:
            raise ConfigError("harris_score needs model.net.harris_skip (and handcrafted sigmas)")
        self._check(image)
        squashed = handcrafted_responses(image, self.handcrafted[:1], hessian=False)  # Harris alone
        return harris_peak_map(squashed, self.harris_skip_init), squashed_to_log(squashed)

    def _check(self, image: torch.Tensor) -> None:
        if image.dim() != 4 or image.shape[1] != self.in_channels:
            raise ValueError(f"EquivariantDetector expects (B, {self.in_channels}, H, W), got {tuple(image.shape)}")

    def plain_modules(self) -> tuple[list[nn.Module], list[nn.Module], nn.Module]:
        """Fresh plain-torch copies (e2cnn's ``export()``) of the blocks, the group poolings and the orientation
        conv, in eval mode, with the current weights: ``Conv2d -> BatchNorm2d -> ReLU``, channel max pools and a
        ``Conv2d``. Exporting puts the e2cnn modules in eval mode, so call it on a network in eval mode."""
        if self.training:
            raise RuntimeError("plain_modules: put the network in eval mode first (e2cnn's export() switches it)")
        with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, usable outside inference mode
            blocks = [b.body.export().eval() for b in (self.block1, self.block2, self.block3)]
            pools = [p.export().eval() for p in self.pools]
            return blocks, pools, self.orientation_conv.export().eval()

    def _plain_twins(self) -> tuple[list[nn.Module], list[nn.Module], nn.Module]:
        """:meth:`plain_modules`, kept while the weights stay the same: keyed by where every parameter and buffer
        of the e2cnn modules lives and by its in-place version counter, which optimiser steps, ``load_state_dict``,
        ``.to()`` and a train -> eval switch (e2cnn re-expands its filters then) all change. Tensors made in inference
        mode (e2cnn's filters when Lightning's test loop switched the network to eval) have no version counter: they
        are keyed by address alone, as e2cnn replaces rather than edits them."""
        modules = (self.block1, self.block2, self.block3, self.orientation_conv)
        key = tuple((t.data_ptr(), -1 if t.is_inference() else t._version)
                    for m in modules for t in (*m.parameters(), *m.buffers()))
        cached = self.__dict__.get("_plain_cache")
        if cached is None or cached[0] != key:
            cached = (key, self.plain_modules())
            self.__dict__["_plain_cache"] = cached  # a plain attribute: not a submodule, not in the state dict
        return cached[1]

    def parts(self) -> DetectorParts:
        """This network's pieces as functions of plain tensors (for :func:`run_detector`). In eval mode without
        autograd they are plain-torch twins of the e2cnn modules (:meth:`plain_modules`): the same score map to the
        bit, features within 1e-5 (batch norm runs as 2-D, not e2cnn's 3-D view), less time (no field-type
        bookkeeping); otherwise the e2cnn modules themselves."""
        if not self.training and not torch.is_grad_enabled():
            blocks, pools, orientation_conv = self._plain_twins()
            return self._parts(blocks, pools, orientation_conv)

        def on_tensors(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:  # in_type -> GeometricTensor
            return lambda t: module(enn.GeometricTensor(t, module.in_type)).tensor

        return self._parts([on_tensors(b) for b in (self.block1, self.block2, self.block3)],
                           [on_tensors(p) for p in self.pools], on_tensors(self.orientation_conv))

    def _parts(self, blocks: Sequence[Callable[[torch.Tensor], torch.Tensor]],
               pools: Sequence[Callable[[torch.Tensor], torch.Tensor]],
               orientation_conv: Callable[[torch.Tensor], torch.Tensor]) -> DetectorParts:
        return DetectorParts(
            blocks=list(blocks), pools=list(pools), orientation_conv=orientation_conv,
            score_head=self.score_head, descriptor_head=self.descriptor_head, harris_skip=self.harris_skip,
            handcrafted=self.handcrafted, descriptor_image=self.descriptor_image, score_residual=self.score_residual,
            harris_log_input=self.harris_log_input, harris_skip_form=self.harris_skip_form)

    def forward(self, image: torch.Tensor, with_score: bool = True) -> DetectorOutput:
        """The outputs of ``image`` ``(B, in_channels, H, W)``; ``with_score=False`` skips the score head
        (``score`` None; the orientation and the features are the same tensors either way)."""
        self._check(image)
        return DetectorOutput(*run_detector(self.parts(), image, self.level_sizes(*image.shape[-2:]), with_score))

    def pyramid(self, image: torch.Tensor, sizes: Sequence[tuple[int, int]],
                with_score: Sequence[bool]) -> list[tuple[torch.Tensor, DetectorOutput]]:
        """``image`` ``(B, in_channels, H, W)`` resized to each of ``sizes`` and the outputs there, the score
        only where ``with_score`` says: a list of (level image, outputs). Every level of every level's own
        pyramid is ``image`` resized once to that size, and each size passes the blocks once: a level's
        pyramid is the next levels of the image's, so five levels of a three-level network make seven
        passes, not fifteen (eight where two sizes round apart, as at 640x480). At the image's own size the outputs are ``self(image)``'s, bit for bit; at a
        smaller one they differ from ``self(level image)``'s, whose own levels are resized twice."""
        self._check(image)
        if len(sizes) != len(with_score):
            raise ValueError(f"pyramid: {len(sizes)} sizes but {len(with_score)} with_score flags")
        parts, images, trunks = self.parts(), {}, {}

        def level_image(size: tuple[int, int]) -> torch.Tensor:
            if size not in images:
                images[size] = resize_level(image, size)
            return images[size]

        def trunk_at(size: tuple[int, int]) -> LevelTrunk:
            if size not in trunks:
                trunks[size] = run_trunk(parts, level_image(size))
            return trunks[size]

        out = []
        for size, scored in zip(sizes, with_score):
            size = (int(size[0]), int(size[1]))
            outputs = run_detector(parts, level_image(size), self.level_sizes(*size), bool(scored), trunk_at)
            out.append((level_image(size), DetectorOutput(*outputs)))
        return out


class DetectorParts(NamedTuple):
    """The pieces :func:`run_detector` composes, as functions of plain tensors: the e2cnn modules of
    :class:`EquivariantDetector` (wrapped) or their exported plain-torch twins (``export.py``)."""

    blocks: Sequence[Callable[[torch.Tensor], torch.Tensor]]
    pools: Sequence[Callable[[torch.Tensor], torch.Tensor]]
    orientation_conv: Callable[[torch.Tensor], torch.Tensor]
    score_head: Callable[[torch.Tensor], torch.Tensor]
    descriptor_head: Callable[[torch.Tensor], torch.Tensor]
    harris_skip: Optional[torch.Tensor]
    handcrafted: tuple[float, ...]
    descriptor_image: tuple[float, ...]
    score_residual: float = 0.0
    harris_log_input: bool = False
    harris_skip_form: str = "squashed"


def harris_peak_map(squashed: torch.Tensor, skip: float) -> torch.Tensor:
    """``sigmoid(skip x s)`` of the squashed Harris response ``s`` (any shape): the untrained score, the map a
    ``peaks_from=harris`` model's keypoints are the peaks of (shared by the network and its export)."""
    return torch.sigmoid(skip * squashed)


def squashed_to_log(s: torch.Tensor) -> torch.Tensor:
    """``sign(x) log(1 + |x|)`` from the squashed ``s = x / (1 + |x|)`` (any shape): ``-sign(s) log(1 - |s|)``."""
    return -torch.sign(s) * torch.log1p(-s.abs().clamp(max=1 - 1e-6))


class LevelTrunk(NamedTuple):
    """One pyramid level's pass through the blocks, at the level's own size: the group-pooled
    (rotation-invariant) map of each block ``(B, layer_i, h_i, w_i)`` at its block's resolution, the
    orientation logits ``(B, N, h_3, w_3)`` and the handcrafted responses ``(B, 2 S, h, w)`` (None without)."""

    pooled: list[torch.Tensor]
    orientation: torch.Tensor
    responses: Optional[torch.Tensor]


def resize_level(image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``image`` ``(B, C, H, W)`` resized (bilinear, antialiased) to ``size`` = (h, w); itself at its own size."""
    if tuple(size) == tuple(image.shape[-2:]):
        return image
    return F.interpolate(image, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


def run_trunk(parts: DetectorParts, level: torch.Tensor) -> LevelTrunk:
    """The three blocks on one pyramid level ``(B, C, h, w)`` (with its handcrafted responses)."""
    responses = None
    if parts.handcrafted:
        responses = handcrafted_responses(level, parts.handcrafted)
        level = torch.cat([level, responses], 1)
    feats = [parts.blocks[0](level)]
    feats.append(parts.blocks[1](antialiased_max_pool(feats[-1])))
    feats.append(parts.blocks[2](antialiased_max_pool(feats[-1])))
    return LevelTrunk([pool(f) for pool, f in zip(parts.pools, feats)], parts.orientation_conv(feats[-1]), responses)


def run_detector(parts: DetectorParts, image: torch.Tensor, level_sizes: Sequence[tuple[int, int]],
                 with_score: bool = True, trunk_at: Optional[Callable[[tuple[int, int]], LevelTrunk]] = None,
                 ) -> tuple[Optional[torch.Tensor], torch.Tensor, torch.Tensor]:
    """The detector's forward pass (see the module docstring) on ``image`` ``(B, C, H, W)`` over the
    pyramid ``level_sizes`` (the first the image's own): ``(score, orientation, features)`` as in
    :class:`DetectorOutput`, the score None with ``with_score=False`` (its head, a tenth of the time at
    640x480, skipped). ``trunk_at(size)``: the level of that size when the caller has it (a pyramid of
    pyramids shares its passes, :meth:`EquivariantDetector.pyramid`); by default ``image`` resized to it.
    One function for the network and its export, so they cannot drift apart."""
    h, w = image.shape[-2:]

    def full_size(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)

    invariant, hand, orientation = [], [], None
    for size in level_sizes:
        size = (int(size[0]), int(size[1]))
        trunk = trunk_at(size) if trunk_at is not None else run_trunk(parts, resize_level(image, size))
        if with_score and trunk.responses is not None:  # the score head's input alone
            hand.append(trunk.responses if size == (h, w) else full_size(trunk.responses))
        invariant += [full_size(pooled) for pooled in trunk.pooled]
        ori = full_size(trunk.orientation)
        orientation = ori if orientation is None else orientation + ori
    features = torch.cat(invariant, dim=1)
    descriptors = parts.descriptor_head(torch.cat([features, normalised_image(image, parts.descriptor_image)], 1)
                                        if parts.descriptor_image else features)
    if not with_score:
        return None, torch.softmax(orientation, dim=1), descriptors
    head_in = [features, *hand]
    if parts.harris_log_input:  # log(1 + |x|)
        head_in.append(squashed_to_log(hand[0][:, :1]).abs())
    logits = parts.score_head(torch.cat(head_in, 1) if len(head_in) > 1 else features)
    if parts.score_residual > 0:
        logits = parts.score_residual * torch.tanh(logits / parts.score_residual)
    if parts.harris_skip is not None:  # channel 0 of the full-resolution level: Harris at the first sigma
        harris = hand[0][:, :1]
        logits = logits + parts.harris_skip * (squashed_to_log(harris) if parts.harris_skip_form == "log" else harris)
    return torch.sigmoid(logits), torch.softmax(orientation, dim=1), descriptors


def orientation_angle(distribution: torch.Tensor) -> torch.Tensor:
    """Circular mean of an orientation distribution ``(..., N)`` -> angle in radians ``(...)``.

    Bin k stands for the angle ``-2 pi k / N`` in image coordinates (x right, y down): the sign is
    such that ``torch.rot90(image)`` (counter-clockwise on screen, i.e. -90 degrees in image
    coordinates) shifts the distribution by N/4 bins and lowers the angle by pi/2.
    """
    n = distribution.shape[-1]
    theta = -2 * math.pi * torch.arange(n, device=distribution.device, dtype=distribution.dtype) / n
    return torch.atan2((distribution * theta.sin()).sum(-1), (distribution * theta.cos()).sum(-1))
