"""QATMNet: a VGG feature backbone shared by QATM template matching and a retrieval head.

Tensors in, tensors out; images are float ``(B, 3, H, W)`` in [0, 1].
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from neurocorr.errors import ConfigError
from neurocorr.models.qatm.qatm import QATM, qatm_pair_log_scores
from neurocorr.models.qatm.retrieval import RetrievalHead
from neurocorr.models.qatm.tiling import alignment, encode_fused, encode_tiled

TEMPLATE_PADDINGS = ("reflect", "zero")


class TemplateFeatures(NamedTuple):
    """Padded template features: ``features (N, C, h, w)``, ``mask (N, h, w)`` bool,
    ``sizes (N, 2)`` feature (h, w) per template, ``pixels (N, 2)`` the templates' (h, w) in pixels."""

    features: torch.Tensor
    mask: torch.Tensor
    sizes: torch.Tensor
    pixels: torch.Tensor


class MatchResult(NamedTuple):
    """``score (N, H, W)`` at scene resolution, ``feature_score (N, Hf, Wf)`` on the feature grid
    (cell (i, j) = window centred there), ``stride`` pixels per cell, and the templates' ``sizes``
    (feature cells) and ``pixels`` (h, w). Multi-scale matching gives per-cell sizes instead:
    ``cell_sizes`` and ``cell_pixels`` ``(N, Hf, Wf, 2)`` of the variant that won each cell."""

    score: torch.Tensor
    feature_score: torch.Tensor
    stride: int
    sizes: torch.Tensor
    pixels: torch.Tensor
    cell_sizes: Optional[torch.Tensor] = None
    cell_pixels: Optional[torch.Tensor] = None


class QATMNet(nn.Module):
    """Backbone + QATM matcher + retrieval head.

    Args:
        backbone: a :class:`~neurocorr.backbones.vgg.VGGFeatures` (or any module returning a list of
            taps and exposing ``strides``, ``out_channels``, ``receptive_radius``).
        embedding_dim: retrieval embedding size.
        alpha, learn_alpha: QATM softmax temperature.
        stride: pixels per feature cell for matching: 1, 2, 4 or ``auto`` (the coarsest of 4, 2, 1
            that leaves every template at least ``min_template_cells`` cells on its short side).
        template_padding: ``reflect`` (encode bare templates reflect-padded, then cut the centre)
            or ``zero`` (encode them alone: zero-padding artefacts at their borders).
        tile_cells: scene tiles hold this many feature cells per side.
        chunk_elements: bound on the similarity elements held at once.
        balance_taps: weigh every tap equally in the cosine (channels of a tap with C_k channels
            get weight 1/sqrt(C_k)); otherwise every channel weighs the same.
    """

    def __init__(
        self,
        backbone: nn.Module,
        embedding_dim: int = 128,
        alpha: float = 25.0,
        learn_alpha: bool = False,
        stride: Union[int, str] = "auto",
        min_template_cells: int = 12,
        template_padding: str = "reflect",
        tile_cells: int = 128,
        chunk_elements: int = 1 << 24,
        balance_taps: bool = True,
    ) -> None:
        super().__init__()
        if template_padding not in TEMPLATE_PADDINGS:
            raise ConfigError(f"model.net.template_padding must be one of {TEMPLATE_PADDINGS}, got {template_padding!r}")
        if stride != "auto" and int(stride) not in (1, 2, 4, 8):
            raise ConfigError(f"model.net.stride must be auto, 1, 2, 4 or 8, got {stride!r}")
        self.backbone = backbone
        self.qatm = QATM(alpha, learn_alpha, chunk_elements=chunk_elements)
        self.head = RetrievalHead(backbone.out_channels, embedding_dim)
        self.stride, self.min_template_cells = stride, int(min_template_cells)
        self.template_padding, self.tile_cells = template_padding, int(tile_cells)
        weights = torch.cat([torch.full((c,), float(c) ** -0.5) for c in backbone.out_channels])
        self.register_buffer("tap_weights", weights if balance_taps else torch.ones_like(weights), persistent=False)

    # ------------------------------------------------------------------ retrieval
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, D)`` unit embeddings."""
        return self.head(self.backbone(images))

    # ------------------------------------------------------------------ training the matcher
    def encode(self, images: torch.Tensor, stride: int) -> torch.Tensor:
        """``(B, 3, H, W)`` -> fused features ``(B, C, ceil(H/s), ceil(W/s))`` in one pass (no tiling)."""
        return encode_fused(self.backbone, images, stride, self._align(stride))

    def pair_log_scores(self, templates: torch.Tensor, scenes: torch.Tensor, context: int, stride: int,
                        encoded: bool = False) -> torch.Tensor:
        """Differentiable log QATM maps of template ``b`` in scene ``b``.

        Args:
            templates: ``(B, 3, h + 2 context, w + 2 context)``: each template with ``context`` pixels
                of its surroundings (or reflect padding) on every side; ``context`` a multiple of ``stride``.
            scenes: ``(B, 3, H, W)``, or their features ``(B, C, ceil(H/s), ceil(W/s))`` with ``encoded``.
        Returns: ``(B, ceil(H/s), ceil(W/s))`` log scores (cell (i, j) = template window centred there).
        """
        c = context // stride
        t = self.encode(templates, stride)
        if c:
            t = t[..., c:-c, c:-c]
        scene_feats = scenes if encoded else self.encode(scenes, stride)
        return qatm_pair_log_scores(scene_feats, t, self.qatm.alpha, self.qatm.eps, self.tap_weights)

    # ------------------------------------------------------------------ matching
    def choose_stride(self, template_pixels: torch.Tensor) -> int:
        """The matching stride for templates of ``(N, 2)`` pixel sizes."""
        if self.stride != "auto":
            return int(self.stride)
        short = int(template_pixels.min())
        for s in (4, 2):
            if short // s >= self.min_template_cells:
                return s
        return 1

    def _align(self, stride: int) -> int:
        return alignment(max(self.backbone.strides), stride)

    def _halo(self) -> int:
        return int(self.backbone.receptive_radius) + max(self.backbone.strides)

    def scene_features(self, scene: torch.Tensor, stride: int) -> torch.Tensor:
        """``(1, 3, H, W)`` -> ``(C, ceil(H/s), ceil(W/s))``, tiled when larger than a tile."""
        align = self._align(stride)
        out = encode_tiled(self.backbone, scene, stride, align, self._halo(), self.tile_cells * stride)
        return out[0]

    def bare_template_features(self, template: torch.Tensor, stride: int) -> torch.Tensor:
        """``(3, h, w)`` template image -> ``(C, round(h/s), round(w/s))``."""
        align = self._align(stride)
        th, tw = template.shape[-2:]
        fh, fw = max(1, round(th / stride)), max(1, round(tw / stride))
        if self.template_padding == "zero":
            fused = encode_fused(self.backbone, template[None], stride, align)
            return F.interpolate(fused, size=(fh, fw), mode="bilinear", align_corners=False)[0] if fused.shape[-2:] != (fh, fw) else fused[0]
        # reflect-pad by a halo (repeatedly, as reflect needs pad < size), then cut the centre
        margin = -(-self._halo() // align) * align
        padded = template[None]
        left = margin
        while left > 0:
            step = min(left, padded.shape[-1] - 1, padded.shape[-2] - 1)
            padded = F.pad(padded, (step, step, step, step), mode="reflect")
            left -= step
        fused = encode_fused(self.backbone, padded, stride, align)
        box = torch.tensor([[0.0, margin, margin, margin + tw, margin + th]], device=fused.device, dtype=fused.dtype)
        return roi_align(fused, box, (fh, fw), spatial_scale=1.0 / stride, sampling_ratio=2, aligned=True)[0]

    def boxed_template_features(self, source: torch.Tensor, boxes: torch.Tensor, stride: int) -> list[torch.Tensor]:
        """Templates cut from their source image's feature map (no padding artefacts).

        Args:
            source: ``(1, 3, H, W)`` the image the templates come from.
            boxes: ``(K, 4)`` float (x, y, w, h) in pixels, x,y top-left.
        Returns: K maps ``(C, round(h/s), round(w/s))``.
        """
        feats = self.scene_features(source, stride)[None]
        out = []
        for x, y, w, h in boxes.tolist():
            fh, fw = max(1, round(h / stride)), max(1, round(w / stride))
            box = torch.tensor([[0.0, x, y, x + w, y + h]], device=feats.device, dtype=feats.dtype)
            out.append(roi_align(feats, box, (fh, fw), spatial_scale=1.0 / stride, sampling_ratio=2, aligned=True)[0])
        return out

    @staticmethod
    def pad_templates(maps: Sequence[torch.Tensor], pixels: torch.Tensor) -> TemplateFeatures:
        """Stack ``(C, h_n, w_n)`` maps top-left aligned into ``(N, C, h, w)`` with a mask."""
        h = max(m.shape[-2] for m in maps)
        w = max(m.shape[-1] for m in maps)
        feats = maps[0].new_zeros(len(maps), maps[0].shape[0], h, w)
        mask = torch.zeros(len(maps), h, w, dtype=torch.bool, device=feats.device)
        for i, m in enumerate(maps):
            feats[i, :, : m.shape[-2], : m.shape[-1]] = m
            mask[i, : m.shape[-2], : m.shape[-1]] = True
        sizes = torch.tensor([m.shape[-2:] for m in maps], dtype=torch.long, device=feats.device)
        return TemplateFeatures(feats, mask, sizes, pixels.to(feats.device))

    def match(
        self,
        scene: torch.Tensor,
        templates: Sequence[torch.Tensor] = (),
        sources: Optional[Sequence[tuple[torch.Tensor, torch.Tensor]]] = None,
        stride: Optional[int] = None,
    ) -> MatchResult:
        """Score maps of many templates in one scene, in one batched pass.

        Args:
            scene: ``(1, 3, H, W)`` float in [0, 1].
            templates: bare template images ``(3, h_n, w_n)``.
            sources: ``(source (1, 3, H', W'), boxes (K, 4) xywh)`` pairs: templates cut from a
                source image's features; they come after ``templates`` in the output.
            stride: override the chosen stride.
        Returns: :class:`MatchResult` with ``N`` = number of templates.
        """
        if scene.dim() != 4 or scene.shape[:2] != (1, 3):
            raise ValueError(f"match expects a scene (1, 3, H, W), got {tuple(scene.shape)}")
        pixels = [tuple(t.shape[-2:]) for t in templates]
        for _, boxes in sources or ():
            pixels += [(int(round(h)), int(round(w))) for _, _, w, h in boxes.tolist()]
        if not pixels:
            raise ValueError("match needs at least one template")
        pix = torch.tensor(pixels, dtype=torch.long)
        s = stride or self.choose_stride(pix)
        maps = [self.bare_template_features(t, s) for t in templates]
        for source, boxes in sources or ():
            maps += self.boxed_template_features(source, boxes, s)
        tf = self.pad_templates(maps, pix)
        scene_feats = self.scene_features(scene, s)
        feature_score = self.qatm(scene_feats, tf.features, tf.mask, tf.sizes, self.tap_weights, inplace=True)
        h, w = scene.shape[-2:]
        up = F.interpolate(feature_score[None], scale_factor=s, mode="bilinear", align_corners=False)[0] if s > 1 else feature_score
        return MatchResult(up[..., :h, :w], feature_score, s, tf.sizes, tf.pixels)
