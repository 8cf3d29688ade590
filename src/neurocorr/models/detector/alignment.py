"""Sub-pixel alignment of matched keypoints by their image patches, before the homography is estimated.

A detector's peak is where *its* response is largest, which is not the same physical point in two views
once the views differ by rotation, zoom, perspective or noise: the points of a correct match are typically
0.3-1 px apart. Each match is aligned instead by the images themselves (Lucas-Kanade with a normalised
correlation criterion, as in ECC): a ``(2 window + 1)^2`` px patch around the first point, Gaussian-weighted,
is the template; the second image is sampled through an affine map ``x = p2 + A u + t`` and ``A`` and ``t``
are found by Gauss-Newton, so that the second point ``p2 + t`` sees what the first point sees.

Both patches are read at the level pair their multi-level descriptors matched at
(:func:`~neurocorr.models.detector.relocation.matched_level_pairs`), moved to the finest such pair, so the
two patches show the structure at about one size; ``A`` starts at the best of ``angle_steps`` rotations
(normalised correlation of the patches), which takes any in-plane rotation, and ends with the residual zoom
and shear. A match whose alignment leaves the image, moves more than ``max_shift`` level px, distorts the
patch beyond a 2x zoom or ends below ``min_ncc`` keeps its points.

Pixel convention: :mod:`neurocorr.ops.peaks` (pixel centres at integer coordinates).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from neurocorr.errors import ConfigError
from neurocorr.models.detector.keypoints import level_size
from neurocorr.models.detector.relocation import as_grey_batch, matched_level_pairs
from neurocorr.models.detector.torch_model import resize_level
from neurocorr.ops.filters import gaussian_blur
from neurocorr.ops.geometry import resize_points

LEVEL_BLUR_PX = 1.0  # both levels smoothed alike: a wider basin for Gauss-Newton, sensor noise damped
CONVERGED_PX = 1e-3  # a match's Gauss-Newton stops once its step moves no patch pixel by this much


def _check(window: int, max_shift: float, min_ncc: float, iterations: int, angle_steps: int, error=ValueError) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise error(f"alignment window must be an integer half-width >= 2 px, got {window!r}")
    if not max_shift > 0:
        raise error(f"alignment max_shift must be > 0 px, got {max_shift!r}")
    if not -1.0 <= min_ncc < 1.0:
        raise error(f"alignment min_ncc must be in [-1, 1), got {min_ncc!r}")
    if iterations < 1 or angle_steps < 1:
        raise error(f"alignment needs iterations >= 1 and angle_steps >= 1, got {iterations} and {angle_steps}")


def _level_stack(grey: torch.Tensor, scale: float) -> torch.Tensor:
    """``(1, 3, h, w)``: the grey image ``(1, 1, H, W)`` resized by ``scale``, blurred, and its x and y
    central differences."""
    level = gaussian_blur(resize_level(grey, level_size(tuple(grey.shape[-2:]), scale)), LEVEL_BLUR_PX)
    gx, gy = torch.zeros_like(level), torch.zeros_like(level)
    gx[..., 1:-1] = (level[..., 2:] - level[..., :-2]) / 2
    gy[..., 1:-1, :] = (level[..., 2:, :] - level[..., :-2, :]) / 2
    return torch.cat([level, gx, gy], 1)


def _sample(stack: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples ``(K, P, C)`` (``stack``'s dtype) of ``stack`` ``(1, C, h, w)`` at ``points``
    ``(K, P, 2)`` (level px)."""
    h, w = stack.shape[-2:]
    scale = torch.tensor([2.0 / (w - 1), 2.0 / (h - 1)], dtype=points.dtype)
    grid = (points * scale - 1).to(stack.dtype)
    values = F.grid_sample(stack, grid.reshape(1, -1, 1, 2), mode="bilinear", align_corners=True)
    return values[0, :, :, 0].T.reshape(points.shape[0], points.shape[1], -1)


def _inside(points: torch.Tensor, stack: torch.Tensor) -> torch.Tensor:
    """``(K,)``: whether all of a row's ``points`` ``(K, P, 2)`` lie inside ``stack``'s image, a pixel from its edge."""
    h, w = stack.shape[-2:]
    x, y = points[..., 0], points[..., 1]
    return ((x >= 1) & (x <= w - 2) & (y >= 1) & (y <= h - 2)).all(1)


def _normalised(values: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``values`` ``(K, P)`` with zero weighted mean and unit weighted norm, and their norms ``(K, 1)``."""
    centred = values - (values * weight).sum(1, keepdim=True)
    norm = (centred.pow(2) * weight).sum(1, keepdim=True).clamp_min(1e-12).sqrt()
    return centred / norm, norm


def _rotations(angles: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(angles), torch.sin(angles)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def _align_group(template: torch.Tensor, stack2: torch.Tensor, q2: torch.Tensor, grid: torch.Tensor,
                 weight: torch.Tensor, iterations: int, angle_steps: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Affine ``A`` ``(K, 2, 2)`` and shift ``t`` ``(K, 2)`` (float64), final correlation ``(K,)`` and whether the
    final patch lies inside image 2 ``(K,)``, of normalised templates ``(K, P)`` against ``stack2`` around ``q2``
    ``(K, 2)``. Positions are kept in float64, samples and their sums in float32; the 6x6 systems in float64."""
    k = len(q2)
    angles = torch.arange(angle_steps, dtype=torch.float64) * (2 * math.pi / angle_steps)
    turned = torch.einsum("aij,pj->api", _rotations(angles), grid)  # (angles, P, 2)
    first = _sample(stack2[:, :1], (q2[:, None, None, :] + turned[None]).reshape(k, -1, 2))
    first, _ = _normalised(first[..., 0].reshape(k * angle_steps, -1), weight)
    ncc = (first.reshape(k, angle_steps, -1) * template[:, None, :] * weight).sum(-1)
    A = _rotations(angles[ncc.argmax(1)]).contiguous()
    t = torch.zeros(k, 2, dtype=torch.float64)
    reach = float(grid.abs().max())
    u, v = grid[:, 0].float(), grid[:, 1].float()
    eye = 1e-6 * torch.eye(6, dtype=torch.float64)
    active = torch.arange(k)
    for _ in range(iterations):  # rows whose last step moved the patch by under CONVERGED_PX stop
        A_a, t_a = A[active], t[active]
        sampled = _sample(stack2, q2[active, None, :] + torch.einsum("kij,pj->kpi", A_a, grid) + t_a[:, None, :])
        image, norm = _normalised(sampled[..., 0], weight)
        gx, gy = sampled[..., 1], sampled[..., 2]
        jac = torch.stack([gx * u, gx * v, gy * u, gy * v, gx, gy], -1)  # d sample / d (A row-major, t)
        jac = (jac - (jac * weight[None, :, None]).sum(1, keepdim=True)) / norm[..., None]
        weighted = (jac * weight[None, :, None]).transpose(1, 2)  # (K, 6, P)
        hess = torch.bmm(weighted, jac).double() + eye
        grad = torch.bmm(weighted, (image - template[active])[..., None])[..., 0].double()
        step = -torch.linalg.solve(hess, grad)
        A[active], t[active] = A_a + step[:, :4].reshape(-1, 2, 2), t_a + step[:, 4:]
        # the largest move of a patch pixel: |dt| + |dA| x the window's half-width
        moved = step[:, 4:].norm(dim=1) + step[:, :4].abs().amax(1) * reach
        active = active[~(moved < CONVERGED_PX)]
        if len(active) == 0:
            break
    points = q2[:, None, :] + torch.einsum("kij,pj->kpi", A, grid) + t[:, None, :]
    image, _ = _normalised(_sample(stack2[:, :1], points)[..., 0], weight)
    return A, t, (image * template * weight).sum(1), _inside(points, stack2)


def align_matches(image1: torch.Tensor, image2: torch.Tensor, xy1: torch.Tensor, xy2: torch.Tensor,
                  levels: torch.Tensor, scales: Sequence[float], window: int = 8, max_shift: float = 2.0,
                  min_ncc: float = 0.7, iterations: int = 15, angle_steps: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Second points of matches aligned to their first points by the image patches (see the module docstring).

    Args:
        image1, image2: ``(H, W)``, ``(1, H, W)`` or ``(3, H, W)``, values in [0, 1].
        xy1, xy2: ``(M, 2)`` matched points (px) of ``image1`` and ``image2``.
        levels: ``(M, 2)`` long, the level pair (of ``scales``) each match's descriptors agreed at; zeros with
            one level.
        scales: the pyramid scales the levels index (``levels`` < ``len(scales)``).
        window: patch half-width (level px). max_shift: the largest accepted move (level px of image 2).
        min_ncc: the weighted normalised correlation an accepted alignment reaches.
        iterations: the most Gauss-Newton steps (a match stops once a step moves its patch by under
            ``CONVERGED_PX``). angle_steps: rotations tried to start from.
    Returns: ``xy2`` aligned ``(M, 2)`` (``xy2``'s dtype; rejected matches unchanged) and ``(M,)`` bool accepted.
    """
    if xy1.dim() != 2 or xy1.shape[-1] != 2 or xy1.shape != xy2.shape:
        raise ValueError(f"matched points must be two (M, 2) tensors, got {tuple(xy1.shape)} and {tuple(xy2.shape)}")
    if levels.shape != xy1.shape:
        raise ValueError(f"levels must be (M, 2) like the points, got {tuple(levels.shape)} for {tuple(xy1.shape)}")
    if not scales or (levels.numel() and int(levels.max()) >= len(scales)) or (levels.numel() and int(levels.min()) < 0):
        raise ValueError(f"levels must index the {len(scales)} scales {list(scales)}")
    _check(window, max_shift, min_ncc, iterations, angle_steps)
    grey1, grey2 = as_grey_batch(image1), as_grey_batch(image2)
    out, accepted = xy2.clone(), torch.zeros(len(xy2), dtype=torch.bool)
    if len(xy1) == 0:
        return out, accepted
    levels = levels - levels.min(1, keepdim=True).values  # the finest pair with the same zoom
    steps = torch.arange(-window, window + 1, dtype=torch.float64)
    v, u = torch.meshgrid(steps, steps, indexing="ij")
    grid = torch.stack([u.flatten(), v.flatten()], 1)  # (P, 2) x, y
    weight = torch.exp(-grid.pow(2).sum(1) / (2 * (window / 2.0) ** 2))
    weight = (weight / weight.sum()).float()
    size1, size2 = tuple(grey1.shape[-2:]), tuple(grey2.shape[-2:])
    stacks1: dict[int, torch.Tensor] = {}
    stacks2: dict[int, torch.Tensor] = {}
    for a, b in torch.unique(levels, dim=0).tolist():
        sel = ((levels[:, 0] == a) & (levels[:, 1] == b)).nonzero()[:, 0]
        if a not in stacks1:
            stacks1[a] = _level_stack(grey1, float(scales[a]))
        if b not in stacks2:
            stacks2[b] = _level_stack(grey2, float(scales[b]))
        level2 = level_size(size2, float(scales[b]))
        q1 = resize_points(xy1[sel].double(), size1, level_size(size1, float(scales[a])))
        q2 = resize_points(xy2[sel].double(), size2, level2)
        points1 = q1[:, None, :] + grid[None]
        template, _ = _normalised(_sample(stacks1[a][:, :1], points1)[..., 0], weight)
        A, t, ncc, inside2 = _align_group(template, stacks2[b], q2, grid, weight, iterations, angle_steps)
        inside = _inside(points1, stacks1[a]) & inside2
        stretch = torch.linalg.svdvals(A)
        ok = (inside & (ncc >= min_ncc) & (t.norm(dim=1) <= max_shift) & (stretch[:, 0] <= 2.0) & (stretch[:, 1] >= 0.5)
              & torch.isfinite(t).all(1))
        moved = resize_points(q2 + t, level2, size2)
        out[sel[ok]] = moved[ok].to(out.dtype)
        accepted[sel] = ok
    return out, accepted


class MatchAlignment(nn.Module):
    """Matches' second points aligned by :func:`align_matches`, for fixed ``scales`` (the descriptor's pyramid,
    ``[1.0]`` for one descriptor per point) and settings. ``forward(image1, image2, xy1, xy2, desc1, desc2)``:
    descriptors ``(M, L, D)`` give each match's level pair, ``(M, D)`` the single level; returns ``(xy1, xy2)``.
    :meth:`align` also returns which matches were aligned; with ``drop`` the others are to be left out of
    the homography (:class:`MatchSteps` says so in its ``keep``)."""

    def __init__(self, scales: Sequence[float] = (1.0,), window: int = 8, max_shift: float = 2.0, min_ncc: float = 0.7,
                 iterations: int = 15, angle_steps: int = 16, drop: bool = False) -> None:
        super().__init__()
        _check(window, max_shift, min_ncc, iterations, angle_steps, ConfigError)
        self.scales = [float(s) for s in scales] or [1.0]
        self.window, self.max_shift, self.min_ncc = window, float(max_shift), float(min_ncc)
        self.iterations, self.angle_steps, self.drop = iterations, angle_steps, bool(drop)

    def align(self, image1: torch.Tensor, image2: torch.Tensor, xy1: torch.Tensor, xy2: torch.Tensor,
              desc1: torch.Tensor, desc2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(xy1, xy2 aligned, aligned (M,) bool)``."""
        if desc1.dim() == 3 and len(desc1):
            if desc1.shape[1] != len(self.scales):
                raise ValueError(f"descriptors {tuple(desc1.shape)} do not fit the {len(self.scales)} scales {self.scales}")
            levels = matched_level_pairs(desc1, desc2)
        else:
            levels = torch.zeros(len(xy1), 2, dtype=torch.long)
        scales = self.scales if desc1.dim() == 3 else [1.0]
        aligned, ok = align_matches(image1, image2, xy1, xy2, levels, scales, self.window, self.max_shift, self.min_ncc,
                                    self.iterations, self.angle_steps)
        return xy1.clone(), aligned, ok

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, xy1: torch.Tensor, xy2: torch.Tensor,
                desc1: torch.Tensor, desc2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out1, out2, _ = self.align(image1, image2, xy1, xy2, desc1, desc2)
        return out1, out2

    def apply(self, image1: torch.Tensor, image2: torch.Tensor, xy1: torch.Tensor, xy2: torch.Tensor,
              desc1: torch.Tensor, desc2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The match-step form (:class:`MatchSteps`): :meth:`align`'s points and ``keep`` ``(M,)`` bool, the
        aligned matches with ``drop``, else all True."""
        out1, out2, aligned = self.align(image1, image2, xy1, xy2, desc1, desc2)
        return out1, out2, aligned if self.drop else torch.ones_like(aligned)


class MatchSteps(nn.Module):
    """Match steps applied in order, each a module with ``apply(image1, image2, xy1, xy2, desc1, desc2) ->
    (xy1, xy2, keep)`` (:class:`~neurocorr.models.detector.relocation.MatchRelocation`, :class:`MatchAlignment`).
    ``forward`` returns ``(xy1, xy2, keep)``: ``keep`` ``(M,)`` bool, False for a match any step left out (an
    alignment with ``drop`` that could not align it); the homography is estimated from the kept matches."""

    def __init__(self, steps: Sequence[nn.Module]) -> None:
        super().__init__()
        self.steps = nn.ModuleList(steps)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, xy1: torch.Tensor, xy2: torch.Tensor,
                desc1: torch.Tensor, desc2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        keep = torch.ones(len(xy1), dtype=torch.bool)
        for step in self.steps:
            xy1, xy2, kept = step.apply(image1, image2, xy1, xy2, desc1, desc2)
            keep = keep & kept
        return xy1, xy2, keep
