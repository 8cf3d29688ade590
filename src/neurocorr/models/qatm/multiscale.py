"""Multi-scale, rotation-tolerant QATM matching in one batched pass.

Every template is resampled at several scales (and optionally angles), each variant is encoded
with its surroundings (the source image around its box, or reflect padding for a bare template),
and all variants of all templates go through one QATM call against the scene. Each scene cell
keeps its best variant; boxes take that variant's size.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from torchvision.ops import roi_align

from neurocorr.errors import ConfigError
from neurocorr.models.qatm.torch_model import MatchResult, QATMNet

#: a template given as (image (3, H, W) float in [0, 1], box (x, y, w, h) pixels or None = the whole image)
Template = tuple[torch.Tensor, Optional[Sequence[float]]]


def check_variants(scales: Sequence[float], angles: Sequence[float]) -> None:
    """A ConfigError for an empty or non-positive scale list or an empty angle list."""
    if not scales or any(float(s) <= 0 or not math.isfinite(float(s)) for s in scales):
        raise ConfigError(f"model.match.scales must be positive numbers, got {list(scales)}")
    if not angles:
        raise ConfigError("model.match.angles must list at least one angle in degrees (0 = upright)")


def resample(image: torch.Tensor, box: Sequence[float], scale: float, angle: float, margin: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """The box of ``image`` ``(3, H, W)`` scaled by ``scale``, rotated by ``angle`` degrees about its
    centre, with ``margin`` output pixels of surroundings on every side (reflected at the border).

    Returns the ``(3, h' + 2 margin, w' + 2 margin)`` crop and ``(h', w')`` = the scaled box in pixels.
    """
    x, y, w, h = (float(v) for v in box)
    ho, wo = max(1, round(h * scale)), max(1, round(w * scale))
    out_h, out_w = ho + 2 * margin, wo + 2 * margin
    src = image[None]
    if scale < 1:  # antialias before sampling below the source resolution
        sigma = 0.5 / scale
        k = 2 * math.ceil(2 * sigma) + 1
        src = gaussian_blur2d(src, (k, k), (sigma, sigma), border_type="reflect")
    big_h, big_w = image.shape[-2:]
    a = math.radians(angle)
    cos, sin = math.cos(a) / scale, math.sin(a) / scale
    # output pixel (u, v) -> source point: centre + R(-angle) (u - out centre) / scale, in
    # normalised coordinates of the source (align_corners=False: -1 and 1 are the outer edges)
    cx, cy = x + w / 2, y + h / 2
    theta = torch.tensor([
        [cos * out_w / big_w, -sin * out_h / big_w, 2 * cx / big_w - 1],
        [sin * out_w / big_h, cos * out_h / big_h, 2 * cy / big_h - 1],
    ], dtype=image.dtype, device=image.device)
    grid = F.affine_grid(theta[None], [1, 3, out_h, out_w], align_corners=False)
    crop = F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return crop[0], (ho, wo)


@torch.no_grad()
def match_multiscale(
    net: QATMNet, scene: torch.Tensor, templates: Sequence[Template], scales: Sequence[float] = (1.0,),
    angles: Sequence[float] = (0.0,), stride: Optional[int] = None, size_normalise: bool | str = True,
) -> MatchResult:
    """Score maps of ``N`` templates in ``scene`` ``(1, 3, H, W)``, best over scales x angles per cell.

    Args:
        templates: ``(image, box)`` pairs (see :data:`Template`).
        scales: template scales (e.g. 0.5 ... 2); variants larger than the scene are skipped.
        angles: rotations in degrees.
        stride: matching stride (default: chosen from the templates at scale 1).
        size_normalise: how variants of different sizes are made comparable: ``True`` / ``"sqrt_cells"``
            multiplies each variant's score by ``sqrt(cells)`` (the QATM likelihood of a template with Q
            cells is ~1/sqrt(Q) by chance, so raw scores favour small variants); ``"median"`` divides
            each variant's map by its median over the scene (the peak relative to that variant's
            chance level); ``False`` keeps raw scores.
    Returns: :class:`MatchResult` with ``cell_sizes`` / ``cell_pixels`` of the winning variants.
    """
    check_variants(scales, angles)
    if not templates:
        raise ValueError("match_multiscale needs at least one template")
    boxes = [list(box) if box is not None else [0.0, 0.0, float(img.shape[-1]), float(img.shape[-2])] for img, box in templates]
    base = torch.tensor([[max(1, round(b[3])), max(1, round(b[2]))] for b in boxes], dtype=torch.long)
    s = stride or net.choose_stride(base)
    align = net._align(s)
    margin = -(-net._halo() // align) * align
    h, w = scene.shape[-2:]
    hf, wf = -(-h // s), -(-w // s)
    maps, pixels, owner = [], [], []
    for n, ((image, _), box) in enumerate(zip(templates, boxes)):
        for scale in scales:
            for angle in angles:
                if min(box[2], box[3]) * scale < 1:
                    continue
                crop, (ho, wo) = resample(image, box, float(scale), float(angle), margin)
                fh, fw = max(1, round(ho / s)), max(1, round(wo / s))
                if fh > hf or fw > wf:
                    continue
                fused = net.encode(crop[None], s)
                roi = torch.tensor([[0.0, margin, margin, margin + wo, margin + ho]], device=fused.device, dtype=fused.dtype)
                maps.append(roi_align(fused, roi, (fh, fw), spatial_scale=1.0 / s, sampling_ratio=2, aligned=True)[0])
                pixels.append((ho, wo))
                owner.append(n)
    n_t = len(templates)
    missing = sorted(set(range(n_t)) - set(owner))
    if missing:
        raise ValueError(f"templates {missing} are larger than the scene ({w}x{h}) at every scale {list(scales)}")
    tf = net.pad_templates(maps, torch.tensor(pixels, dtype=torch.long))
    scene_feats = net.scene_features(scene, s)
    # variants of one scale share a QATM call: padding every variant to the largest (scale 2)
    # would make the small ones cost as much as the largest
    variant_score = scene_feats.new_zeros(len(maps), hf, wf)
    for group in _size_groups(tf.sizes):
        g = net.pad_templates([maps[i] for i in group], tf.pixels[group])
        variant_score[group] = net.qatm(scene_feats.clone(), g.features, g.mask, g.sizes, net.tap_weights, inplace=True)
    variant_score = normalise_variants(variant_score, tf.sizes, size_normalise)
    owner_t = torch.tensor(owner, device=variant_score.device)
    best = variant_score.new_full((n_t, hf, wf), -1.0)
    winner = torch.zeros(n_t, hf, wf, dtype=torch.long, device=variant_score.device)
    for v in range(variant_score.shape[0]):  # V is small (scales x angles per template)
        n = int(owner_t[v])
        better = variant_score[v] > best[n]
        best[n] = torch.where(better, variant_score[v], best[n])
        winner[n] = torch.where(better, torch.full_like(winner[n], v), winner[n])
    best = best.clamp_min(0)
    cell_sizes = tf.sizes[winner]  # (N, Hf, Wf, 2)
    cell_pixels = tf.pixels[winner]
    up = F.interpolate(best[None], scale_factor=s, mode="bilinear", align_corners=False)[0] if s > 1 else best
    first = [owner.index(n) for n in range(n_t)]
    return MatchResult(up[..., :h, :w], best, s, tf.sizes[first], tf.pixels[first], cell_sizes, cell_pixels)


SIZE_NORMALISATIONS = (True, False, "sqrt_cells", "median", "none")


def normalise_variants(score: torch.Tensor, sizes: torch.Tensor, how: bool | str) -> torch.Tensor:
    """``score (V, H, W)`` of variants with ``sizes (V, 2)`` cells -> comparable scores (see
    :func:`match_multiscale`'s ``size_normalise``)."""
    if how not in SIZE_NORMALISATIONS:
        raise ConfigError(f"model.match.size_normalise must be one of {SIZE_NORMALISATIONS}, got {how!r}")
    if how is True or how == "sqrt_cells":
        cells = (sizes[:, 0] * sizes[:, 1]).to(score.dtype)
        return score * cells.sqrt().view(-1, 1, 1)
    if how == "median":  # positions where the variant does not fit (score 0) do not count
        valid = score > 0
        chance = torch.stack([s[v].median() if bool(v.any()) else s.new_ones(()) for s, v in zip(score, valid)])
        return score / chance.clamp_min(torch.finfo(score.dtype).tiny).view(-1, 1, 1)
    return score


def _size_groups(sizes: torch.Tensor, ratio: float = 1.5) -> list[list[int]]:
    """Indices of ``sizes`` ``(V, 2)`` grouped so that each group's largest area is at most ``ratio``
    times its smallest (little padding inside a group)."""
    area = (sizes[:, 0] * sizes[:, 1]).tolist()
    order = sorted(range(len(area)), key=lambda i: area[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and area[i] <= ratio * area[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups
