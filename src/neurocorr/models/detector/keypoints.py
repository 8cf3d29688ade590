"""Keypoints from the detector's maps: NMS + threshold + top-k + 2-D sub-pixel refinement
(``ops.peaks``), border removal, an orientation per keypoint, and detection over an image pyramid
with scale-space NMS. Pixel centres at integer coordinates."""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence


import torch
import torch.nn.functional as F
from kornia.filters import laplacian

from neurocorr.models.detector.torch_model import DetectorOutput, orientation_angle, resize_level
from neurocorr.ops.filters import gaussian_blur
from neurocorr.ops.geometry import resize_points, sample_maps
from neurocorr.ops.peaks import find_peaks, refine_subpixel, refine_subpixel_2d


class Keypoints(NamedTuple):
    """``K`` keypoints per image, sorted by score. xy: ``(B, K, 2)`` px; score: ``(B, K)``;
    angle: ``(B, K)`` radians (image coordinates, x right, y down); valid: ``(B, K)`` bool."""

    xy: torch.Tensor
    score: torch.Tensor
    angle: torch.Tensor
    valid: torch.Tensor


def keypoint_angles(orientation: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Angle ``(B, K)`` of each keypoint from the orientation distribution ``(B, N, H, W)``."""
    return orientation_angle(sample_maps(orientation, xy))


SUBPIXEL = {True: "2d", False: "none", "2d": "2d", "1d": "1d", "none": "none"}


def score_peaks(score: torch.Tensor, top_k: int = 300, threshold: float = 0.0, nms_window: int = 3, border: int = 4,
                subpixel: bool | str = True, refine_on: Optional[torch.Tensor] = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Peaks of a score map ``(B, 1, H, W)``: (xy ``(B, K, 2)``, score ``(B, K)``, valid ``(B, K)``),
    refined by a 2-D quadratic fit (``subpixel`` True or ``2d``), 1-D fits along x and y (``1d``),
    or left on the pixel grid (False or ``none``). ``refine_on`` ``(B, 1, H, W)``: the map the fits read
    instead of ``score``, an increasing function of it that is not flat on top (a saturated score puts
    strong peaks on a plateau where a quadratic fit says little)."""
    if score.dim() != 4 or score.shape[1] != 1:
        raise ValueError(f"expected a (B, 1, H, W) score map, got {tuple(score.shape)}")
    if refine_on is not None and refine_on.shape != score.shape:
        raise ValueError(f"refine_on must have the score map's shape {tuple(score.shape)}, got {tuple(refine_on.shape)}")
    mode = SUBPIXEL.get(subpixel)
    if mode is None:
        raise ValueError(f"subpixel must be true, false, '2d', '1d' or 'none', got {subpixel!r}")
    peaks = find_peaks(score, top_k=top_k, threshold=threshold, window=nms_window, border=border, subpixel=False)
    flat = peaks.xy[..., 1].long() * score.shape[-1] + peaks.xy[..., 0].long()
    return refine_at(score if refine_on is None else refine_on, flat, mode)[:, 0], peaks.score[:, 0], peaks.valid[:, 0]


def refine_at(score: torch.Tensor, flat: torch.Tensor, mode: str) -> torch.Tensor:
    """Positions ``(B, C, K, 2)`` of the integer peaks ``flat`` ``(B, C, K)`` (index ``y * W + x``) of
    ``score`` ``(B, C, H, W)``, refined as ``mode`` (a value of ``SUBPIXEL``) says."""
    if mode == "2d":
        return refine_subpixel_2d(score, flat)
    if mode == "1d":
        return refine_subpixel(score, flat)
    w = score.shape[-1]
    return torch.stack([flat % w, torch.div(flat, w, rounding_mode="floor")], -1).to(score.dtype)


def detect_keypoints(score: torch.Tensor, orientation: torch.Tensor, top_k: int = 300, threshold: float = 0.0,
                     nms_window: int = 5, border: int = 4, subpixel: bool | str = True,
                     refine_on: Optional[torch.Tensor] = None) -> Keypoints:
    """Keypoints of a score map ``(B, 1, H, W)`` with orientations from ``(B, N, H, W)`` (``refine_on``:
    see :func:`score_peaks`)."""
    xy, s, valid = score_peaks(score, top_k, threshold, nms_window, border, subpixel, refine_on)
    return Keypoints(xy=xy, score=s, angle=keypoint_angles(orientation, xy), valid=valid)


def rank_by(kp: Keypoints, score: torch.Tensor) -> Keypoints:
    """``kp`` (found on another map) re-scored by ``score`` ``(B, 1, H, W)`` read at each keypoint's
    pixel, and re-sorted by it (valid keypoints first)."""
    if score.dim() != 4 or score.shape[1] != 1:
        raise ValueError(f"rank_by expects a (B, 1, H, W) score map, got {tuple(score.shape)}")
    s = sample_maps(score, kp.xy.round())[..., 0].to(kp.score.dtype)
    order = torch.where(kp.valid, s, torch.full_like(s, float("-inf"))).argsort(dim=1, descending=True)
    pick = lambda t: t.gather(1, order if t.dim() == 2 else order[..., None].expand_as(t))  # noqa: E731
    return Keypoints(xy=pick(kp.xy), score=pick(s), angle=pick(kp.angle), valid=pick(kp.valid))


Describe = Callable[..., torch.Tensor]  # (features, xy, angle[, shape]) -> (B, K, D)


def snap_to_finest(fine: torch.Tensor, xy: torch.Tensor, subpixel: bool | str = True) -> torch.Tensor:
    """Keypoints ``xy`` ``(B, K, 2)`` found on a pyramid's max-over-scales map, moved to the local
    maximum of the finest level's score ``fine`` ``(B, 1, H, W)`` in their 3x3 neighbourhood when it
    has one there (then refined on that map as :func:`score_peaks` refines): a structure that answers
    most at a coarse level is still located at the resolution of the image. Points without a fine
    local maximum next to them keep their place."""
    if fine.dim() != 4 or fine.shape[1] != 1 or xy.dim() != 3 or xy.shape[0] != fine.shape[0]:
        raise ValueError(f"snap_to_finest: fine (B, 1, H, W), xy (B, K, 2); got {tuple(fine.shape)}, {tuple(xy.shape)}")
    b, _, h, w = fine.shape
    is_max = fine >= F.max_pool2d(fine, 3, stride=1, padding=1)
    base = xy.round().long()
    best_val = torch.full(xy.shape[:2], float("-inf"), dtype=fine.dtype, device=fine.device)
    best_xy = base.clone()
    flat_map, flat_max = fine.flatten(1), is_max.flatten(1)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            px, py = base[..., 0] + dx, base[..., 1] + dy
            inside = (px >= 1) & (px < w - 1) & (py >= 1) & (py < h - 1)
            flat = py.clamp(0, h - 1) * w + px.clamp(0, w - 1)
            val = flat_map.gather(1, flat)
            ok = inside & flat_max.gather(1, flat) & (val > best_val)
            best_val = torch.where(ok, val, best_val)
            best_xy = torch.where(ok[..., None], torch.stack([px, py], -1), best_xy)
    found = torch.isfinite(best_val)
    best_xy = torch.stack([best_xy[..., 0].clamp(1, w - 2), best_xy[..., 1].clamp(1, h - 2)], -1)  # unused where not found
    snapped = refine_at(fine, (best_xy[..., 1] * w + best_xy[..., 0])[:, None], SUBPIXEL.get(subpixel, "none"))[:, 0]
    return torch.where(found[..., None], snapped.to(xy.dtype), xy)


SCALE_SELECTIONS = ("score", "laplacian")


def laplacian_levels(levels: Sequence[torch.Tensor], xy: torch.Tensor, size: tuple[int, int], sigma: float = 2.0) -> torch.Tensor:
    """For keypoints ``xy`` ``(B, K, 2)`` (pixels of the ``size`` = (H, W) image), the index ``(B, K)``
    of the pyramid level (images ``(B, C, h_l, w_l)``) where the absolute Laplacian of Gaussian of
    width ``sigma`` level pixels is largest. A fixed sigma in level pixels is sigma / s image pixels,
    and the level's derivatives carry the factor 1 / s^2, so the responses are scale-normalised as
    they stand (Lindeberg): the argmax is the keypoint's characteristic scale."""
    responses = []
    for img in levels:
        grey = img.mean(1, keepdim=True)
        log = laplacian(gaussian_blur(grey, sigma), 3, normalized=False).abs()
        responses.append(sample_maps(log, resize_points(xy, size, img.shape[-2:]))[..., 0])
    return torch.stack(responses, -1).argmax(-1)


def level_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(h, w) of the pyramid level at ``scale`` of an image of ``size`` = (H, W) (at least 16 px)."""
    return max(16, round(size[0] * scale)), max(16, round(size[1] * scale))


def run_levels(net: Callable[..., DetectorOutput], image: torch.Tensor, scales: Sequence[float],
               scored: Optional[Sequence[float]] = None) -> list[tuple[torch.Tensor, DetectorOutput]]:
    """The network on ``image`` ``(B, C, H, W)`` resized (antialiased) by each of ``scales``:
    a list of (level image, network output), in the order of ``scales``. ``scored``: the scales whose
    score map is needed (the others are read for their descriptors only: ``score`` None); None = all.
    A network with a ``pyramid`` method (:meth:`EquivariantDetector.pyramid`) runs all levels at once,
    sharing the passes their own pyramids have in common."""
    h, w = image.shape[-2:]
    sizes = [level_size((h, w), s) for s in scales]
    flags = [scored is None or s in scored for s in scales]
    if hasattr(net, "pyramid"):
        return net.pyramid(image, sizes, flags)
    levels = []
    for size, flag in zip(sizes, flags):
        level = resize_level(image, size)
        levels.append((level, net(level) if flag else net(level, with_score=False)))
    return levels


Shapes = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (image, xy (B, K, 2)) -> (B, K, 2, 2)


def describe_levels(levels: Sequence[tuple[torch.Tensor, DetectorOutput]], describe: Describe, xy: torch.Tensor,
                    size: tuple[int, int], shapes: Optional[Shapes] = None) -> torch.Tensor:
    """Descriptors ``(B, K, L, D)`` of keypoints ``xy`` ``(B, K, 2)`` (pixels of the ``size`` = (H, W)
    image) at every level of :func:`run_levels`: at level ``l`` the point is ``(xy + 0.5) s_l - 0.5``
    and its orientation is the level's own orientation head there. Matched by the smallest distance
    over level pairs (``matching.descriptor_distance``), so a zoom between two images is met by the
    pair of levels that sees the structure at one size (the pyramid's factors bound the zoom range).
    ``shapes(level_image, xy_l)``: an affine shape per point (``ops.affine_shape.AffineShape``) read on
    each level's own image, so its window is in level pixels and follows the level pairing."""
    out = []
    for level, net_out in levels:
        xy_l = resize_points(xy, size, level.shape[-2:])
        angle = keypoint_angles(net_out.orientation, xy_l)
        if shapes is None:
            out.append(describe(net_out.features, xy_l, angle))
        else:
            out.append(describe(net_out.features, xy_l, angle, shapes(level, xy_l)))
    return torch.stack(out, 2)


def level_scores_at(outs: Sequence[DetectorOutput], size: tuple[int, int]) -> list[torch.Tensor]:
    """Each pyramid level's score map resized (bilinear) to the ``size`` = (H, W) image: ``(B, 1, H, W)`` each."""
    return [out.score if tuple(out.score.shape[-2:]) == tuple(size) else
            F.interpolate(out.score, size=size, mode="bilinear", align_corners=False) for out in outs]


PYRAMID_NMS = ("scale_space", "per_level")


def detect_per_level(levels: Sequence[tuple[torch.Tensor, DetectorOutput]], peak_maps: Sequence[torch.Tensor],
                     size: tuple[int, int], top_k: int, threshold: float = 0.0, nms_window: int = 3, border: int = 4,
                     subpixel: bool | str = True, dedupe_px: float = 0.0, describe: Optional[Describe] = None,
                     ) -> tuple[Keypoints, Optional[torch.Tensor], torch.Tensor]:
    """Keypoints found on each pyramid level's own map and ranked together, as ORB ranks its levels.

    ``levels``: :func:`run_levels` output (level image ``(B, C, h_l, w_l)``, network output);
    ``peak_maps``: the map ``(B, 1, h_l, w_l)`` of each level whose peaks are the keypoints. Each level's
    peaks (``nms_window`` and ``border`` in level pixels, refined on that level) are mapped to the
    ``size`` = (H, W) image (``(p + 0.5) / s - 0.5``) and take that level's orientation there; all
    levels' points are sorted by score and the best ``top_k`` kept. Unlike :func:`detect_pyramid`,
    a structure seen at several levels may be kept once per level. ``dedupe_px`` > 0: a level's points
    within that distance (image px) of a finer level's point are dropped, so each structure keeps its
    finest position. ``describe(features, xy, angle)``: each point described in its own level.

    Returns (keypoints ``(B, top_k)``, descriptors ``(B, top_k, D)`` or None, level index ``(B, top_k)``
    into ``levels``).
    """
    if len(peak_maps) != len(levels) or not levels:
        raise ValueError(f"detect_per_level: {len(peak_maps)} peak maps for {len(levels)} levels")
    if dedupe_px < 0:
        raise ValueError(f"dedupe_px must be >= 0, got {dedupe_px}")
    order = sorted(range(len(levels)), key=lambda i: -levels[i][0].shape[-2] * levels[i][0].shape[-1])  # finest first
    xs, ss, angs, vals, lvls, descs = [], [], [], [], [], []
    for i in order:
        (level, out), peaks = levels[i], peak_maps[i]
        kp = detect_keypoints(peaks, out.orientation, top_k, threshold, nms_window, border, subpixel)
        xy = resize_points(kp.xy, tuple(level.shape[-2:]), size)
        valid = kp.valid
        if dedupe_px > 0 and xs:
            finer, finer_valid = torch.cat(xs, 1), torch.cat(vals, 1)
            d = torch.cdist(xy.double(), finer.double()).masked_fill(~finer_valid[:, None, :], float("inf"))
            valid = valid & ~(d.min(2).values < dedupe_px)
        xs.append(xy)
        ss.append(kp.score)
        angs.append(kp.angle)
        vals.append(valid)
        lvls.append(torch.full_like(kp.score, i, dtype=torch.long))
        if describe is not None:
            descs.append(describe(out.features, kp.xy, kp.angle))
    score = torch.cat(ss, 1)
    valid = torch.cat(vals, 1)
    k = min(top_k, score.shape[1])
    pick = torch.where(valid, score, torch.full_like(score, float("-inf"))).topk(k, dim=1).indices
    take = lambda t: t.gather(1, pick if t.dim() == 2 else pick[..., None].expand(-1, -1, t.shape[-1]))  # noqa: E731
    kp = Keypoints(xy=take(torch.cat(xs, 1)), score=take(score), angle=take(torch.cat(angs, 1)), valid=take(valid))
    return kp, (take(torch.cat(descs, 1)) if descs else None), take(torch.cat(lvls, 1))


def detect_pyramid(net: Callable[[torch.Tensor], DetectorOutput], describe: Optional[Describe], image: torch.Tensor,
                   scales: Sequence[float], top_k: int, threshold: float = 0.0, nms_window: int = 3,
                   border: int = 4, subpixel: bool | str = True, snap_finest: bool = False,
                   scale_select: str = "score", levels: Optional[Sequence[tuple[torch.Tensor, DetectorOutput]]] = None,
                   ) -> tuple[Keypoints, Optional[torch.Tensor], torch.Tensor]:
    """Keypoints over an image pyramid with scale-space NMS.

    The network runs on ``image`` ``(B, C, H, W)`` resized by each of ``scales``; each score map is
    resized back to ``H x W``; a point is kept where the maximum over scales is a local maximum in
    ``nms_window`` (so the same structure seen at two scales gives one keypoint, at the scale that
    answers most); ``snap_finest`` then moves each point to the finest level's own peak next to it
    (:func:`snap_to_finest`). Orientation and descriptor (``describe(features, xy, angle)``) are read in the
    level of the keypoint's scale, at the keypoint's position in that level: the level whose score
    is highest there (``scale_select="score"``) or the level where the image's Laplacian of Gaussian
    answers most (``"laplacian"``: the characteristic scale of Harris-Laplace and SIFT, see
    :func:`laplacian_levels`).

    ``levels``: :func:`run_levels` of ``image`` at ``scales`` when the caller has them already (the
    network is then not run again).

    Returns (keypoints, descriptors ``(B, K, D)`` or None when ``describe`` is None (a caller that
    describes the points itself, at several levels), the max-over-scales score map ``(B, 1, H, W)``).
    """
    h, w = image.shape[-2:]
    if scale_select not in SCALE_SELECTIONS:
        raise ValueError(f"scale_select must be one of {SCALE_SELECTIONS}, got {scale_select!r}")
    if levels is None:
        levels = run_levels(net, image, scales)
    elif len(levels) != len(scales):
        raise ValueError(f"detect_pyramid: {len(levels)} precomputed levels for {len(scales)} scales")
    outs = [out for _, out in levels]
    sizes = [tuple(level.shape[-2:]) for level, _ in levels]
    maps = level_scores_at(outs, (h, w))
    stack = torch.cat(maps, 1)                                                       # (B, L, H, W)
    best, best_level = stack.max(1, keepdim=True)
    xy, score, valid = score_peaks(best, top_k, threshold, nms_window, border, subpixel)
    flat = (xy.round().long()[..., 1].clamp(0, h - 1) * w + xy.round().long()[..., 0].clamp(0, w - 1))
    lvl = best_level.flatten(1).gather(1, flat)                                           # (B, K)
    if snap_finest and len(scales) > 1:
        finest = max(range(len(scales)), key=lambda i: sizes[i][0] * sizes[i][1])
        xy = snap_to_finest(maps[finest], xy, subpixel)
    if scale_select == "laplacian" and len(scales) > 1:
        lvl = laplacian_levels([level for level, _ in levels], xy, (h, w))
    angle = torch.zeros_like(score)
    desc = None
    for i, (out, level_hw) in enumerate(zip(outs, sizes)):
        xy_l = resize_points(xy, (h, w), level_hw)
        a_l = keypoint_angles(out.orientation, xy_l)
        pick = lvl == i
        angle = torch.where(pick, a_l, angle)
        if describe is not None:
            d_l = describe(out.features, xy_l, a_l)
            desc = d_l if desc is None else torch.where(pick[..., None], d_l, desc)
    return Keypoints(xy=xy, score=score, angle=angle, valid=valid), desc, best
