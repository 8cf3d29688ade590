"""The QATM layer: quality-aware matching likelihood of many templates against one scene.

For scene positions ``p`` and template positions ``q`` with cosine similarity ``s(p, q)``::

    L(p, q) = sqrt(softmax_p(alpha * s)[p, q] * softmax_q(alpha * s)[p, q])
    M(p)    = max_q L(p, q)
    score(p) = geometric mean of M over the template-sized window centred at p

The softmax over scene positions is global, so the scene is processed in chunks of positions
in two passes (log-sum-exp over the scene first, then the likelihood): memory is bounded by
``chunk_elements`` whatever the scene size, and the result equals the one-shot computation.
Everything is differentiable and batched over templates (no Python loop over templates).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NEG_INF = float("-inf")


def normalise_features(
    scene: torch.Tensor, templates: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5,
    weights: torch.Tensor | None = None, inplace: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel standardisation with the scene's statistics, then L2 over channels.

    Args:
        scene: ``(P, C)`` scene features (all positions).
        templates: ``(N, Q, C)`` template features, padded.
        mask: ``(N, Q)`` bool, True at real template positions.
        eps: added to the standard deviation and to the L2 norm.
        weights: optional ``(C,)`` channel weights applied after standardisation (e.g. so that
            every backbone tap weighs the same in the cosine whatever its channel count).
        inplace: without autograd, normalise ``scene`` in place (no second copy of a large scene).
    Returns: normalised ``(P, C)`` and ``(N, Q, C)`` (padding positions zero).
    """
    if scene.dim() != 2 or templates.dim() != 3 or templates.shape[-1] != scene.shape[-1]:
        raise ValueError(f"expected scene (P, C) and templates (N, Q, C), got {tuple(scene.shape)}, {tuple(templates.shape)}")
    mean = scene.mean(0)
    std = scene.std(0, unbiased=False) + eps
    if weights is not None:
        std = std / weights
    t = F.normalize((templates - mean) / std, dim=-1, eps=eps) * mask.unsqueeze(-1)
    if not inplace or (torch.is_grad_enabled() and (scene.requires_grad or std.requires_grad)):
        s = F.normalize((scene - mean) / std, dim=-1, eps=eps)
    else:  # inference on a large scene: normalise in place, no second copy of the features
        s = scene.sub_(mean).div_(std)
        s.div_(torch.linalg.vector_norm(s, dim=-1, keepdim=True).clamp_min_(eps))
    return s, t


def qatm_log_likelihood(
    scene: torch.Tensor, templates: torch.Tensor, mask: torch.Tensor, alpha: torch.Tensor | float,
    chunk_elements: int = 1 << 24, cache_elements: int = 1 << 27,
) -> torch.Tensor:
    """``log max_q L(p, q)`` for every scene position and template.

    Args:
        scene: ``(P, C)`` L2-normalised scene features.
        templates: ``(N, Q, C)`` L2-normalised template features (padded).
        mask: ``(N, Q)`` bool, True at real template positions (each template has >= 1).
        alpha: softmax temperature (scalar or 0-d tensor, may require grad).
        chunk_elements: at most this many ``N * chunk * Q`` similarities exist at once.
        cache_elements: when all ``N * P * Q`` similarities fit in this many elements, pass 1
            keeps them for pass 2 instead of computing them again.
    Returns: ``(N, P)`` log-likelihood.
    """
    n, q, c = templates.shape
    p = scene.shape[0]
    chunk = max(1, chunk_elements // max(1, n * q))
    # -inf at padding positions of each template, 0 elsewhere: (N, Q, 1)
    bias = torch.zeros(n, q, 1, dtype=scene.dtype, device=scene.device).masked_fill(~mask.unsqueeze(-1), NEG_INF)
    scaled = (alpha * templates).reshape(n * q, c)  # alpha folded into the templates

    def logits(start: int) -> torch.Tensor:  # (N, Q, chunk): one matmul, scene positions last
        return (scaled @ scene[start : start + chunk].t()).view(n, q, -1)

    # pass 1: log-sum-exp over all scene positions, per (template, template position)
    lse_scene = torch.full((n, q, 1), NEG_INF, dtype=scene.dtype, device=scene.device)
    cache: dict[int, torch.Tensor] = {}
    keep = n * q * p <= cache_elements
    for start in range(0, p, chunk):
        z = logits(start)
        if keep:
            cache[start] = z
        lse_scene = torch.logaddexp(lse_scene, torch.logsumexp(z, dim=2, keepdim=True))
    # pass 2: log sqrt(softmax_p * softmax_q) = z - lse_scene[q] / 2 - lse_template[p] / 2, max over q
    offset = bias - 0.5 * lse_scene.masked_fill(~mask.unsqueeze(-1), 0.0)
    out = []
    for start in range(0, p, chunk):
        z = cache.pop(start) if keep else logits(start)
        lse_tmpl = torch.logsumexp(z + bias, dim=1)  # (N, chunk)
        out.append((z + offset).amax(dim=1) - 0.5 * lse_tmpl)
    return torch.cat(out, dim=1)


def window_mean(log_map: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Mean of ``log_map`` over a per-template window centred at every position.

    Args:
        log_map: ``(N, H, W)``.
        sizes: ``(N, 2)`` long window (h, w) per template, each <= (H, W).
    Returns: ``(N, H, W)``: at (i, j) the mean over rows ``i - h//2 .. i - h//2 + h - 1`` and
    the same for columns; ``-inf`` where that window leaves the map.
    """
    n, h_map, w_map = log_map.shape
    finite = torch.isfinite(log_map)
    safe = torch.where(finite, log_map, torch.zeros_like(log_map))
    integral = F.pad(safe.cumsum(1).cumsum(2), (1, 0, 1, 0))  # (N, H+1, W+1)
    rows = torch.arange(h_map, device=log_map.device)
    cols = torch.arange(w_map, device=log_map.device)
    hh, ww = sizes[:, 0].view(n, 1), sizes[:, 1].view(n, 1)
    y0, x0 = rows - hh // 2, cols - ww // 2  # (N, H), (N, W)
    y1, x1 = y0 + hh, x0 + ww
    inside = ((y0 >= 0) & (y1 <= h_map)).unsqueeze(2) & ((x0 >= 0) & (x1 <= w_map)).unsqueeze(1)
    y0c, y1c = y0.clamp(0, h_map), y1.clamp(0, h_map)
    x0c, x1c = x0.clamp(0, w_map), x1.clamp(0, w_map)

    def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        flat = (yy.unsqueeze(2) * (w_map + 1) + xx.unsqueeze(1)).flatten(1)
        return integral.flatten(1).gather(1, flat).view(n, h_map, w_map)

    total = at(y1c, x1c) - at(y0c, x1c) - at(y1c, x0c) + at(y0c, x0c)
    area = (hh * ww).view(n, 1, 1).to(log_map.dtype)
    # a window holding a -inf (no likelihood) is -inf
    bad = F.pad((~finite).to(log_map.dtype).cumsum(1).cumsum(2), (1, 0, 1, 0))
    flat_bad = lambda yy, xx: bad.flatten(1).gather(1, (yy.unsqueeze(2) * (w_map + 1) + xx.unsqueeze(1)).flatten(1)).view(n, h_map, w_map)  # noqa: E731
    n_bad = flat_bad(y1c, x1c) - flat_bad(y0c, x1c) - flat_bad(y1c, x0c) + flat_bad(y0c, x0c)
    mean = total / area
    return mean.masked_fill(~inside | (n_bad > 0.5), NEG_INF)


def qatm_score(
    scene: torch.Tensor, templates: torch.Tensor, mask: torch.Tensor, sizes: torch.Tensor,
    alpha: torch.Tensor | float = 25.0, eps: float = 1e-5, chunk_elements: int = 1 << 24,
    weights: torch.Tensor | None = None, inplace: bool = False,
) -> torch.Tensor:
    """QATM score maps of ``N`` templates in one scene, at feature resolution.

    Args:
        scene: ``(C, H, W)`` scene feature map.
        templates: ``(N, C, h, w)`` template feature maps, each padded to the largest (h, w).
        mask: ``(N, h, w)`` bool, True inside each template's own ``sizes[n]`` top-left area.
        sizes: ``(N, 2)`` long, each template's feature size (h_n, w_n).
        alpha: softmax temperature.
        weights: optional ``(C,)`` channel weights (see :func:`normalise_features`).
        inplace: allow overwriting ``scene`` (see :func:`normalise_features`).
    Returns: ``(N, H, W)`` score in [0, 1]: the geometric mean of the QATM likelihood over the
    template-sized window centred at each position; 0 where the window leaves the scene.
    """
    if scene.dim() != 3 or templates.dim() != 4 or templates.shape[1] != scene.shape[0]:
        raise ValueError(f"expected scene (C, H, W) and templates (N, C, h, w), got {tuple(scene.shape)}, {tuple(templates.shape)}")
    c, h, w = scene.shape
    if bool((sizes[:, 0] > h).any() or (sizes[:, 1] > w).any()):
        raise ValueError(f"template feature sizes {sizes.tolist()} exceed the scene's {h}x{w}")
    n = templates.shape[0]
    s_flat = scene.flatten(1).t()
    t_flat = templates.flatten(2).transpose(1, 2)
    m_flat = mask.flatten(1)
    s_norm, t_norm = normalise_features(s_flat, t_flat, m_flat, eps, weights, inplace)
    log_l = qatm_log_likelihood(s_norm, t_norm, m_flat, alpha, chunk_elements).view(n, h, w)
    return window_mean(log_l, sizes).exp()


def qatm_pair_log_scores(
    scenes: torch.Tensor, templates: torch.Tensor, alpha: torch.Tensor | float = 25.0, eps: float = 1e-5,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Differentiable log QATM score of template ``b`` in scene ``b``, for a batch of equal-sized pairs.

    The same quantity as ``qatm_score(...).log()`` (scene statistics standardise both sides), batched
    over pairs for training: no padding, no chunking (training maps are small).

    Args:
        scenes: ``(B, C, H, W)`` scene feature maps.
        templates: ``(B, C, h, w)`` template feature maps (h <= H, w <= W).
        alpha: softmax temperature (may require grad).
        weights: optional ``(C,)`` channel weights (see :func:`normalise_features`).
    Returns: ``(B, H, W)`` window-mean log-likelihood; ``-inf`` where the window leaves the scene.
    """
    if scenes.dim() != 4 or templates.shape[:2] != scenes.shape[:2]:
        raise ValueError(f"expected scenes (B, C, H, W) and templates (B, C, h, w), got {tuple(scenes.shape)}, {tuple(templates.shape)}")
    b, _, h, w = scenes.shape
    th, tw = templates.shape[-2:]
    s = scenes.flatten(2).transpose(1, 2)  # (B, P, C)
    t = templates.flatten(2).transpose(1, 2)  # (B, Q, C)
    mean = s.mean(1, keepdim=True)
    std = s.std(1, unbiased=False, keepdim=True) + eps
    if weights is not None:
        std = std / weights
    s = F.normalize((s - mean) / std, dim=-1, eps=eps)
    t = F.normalize((t - mean) / std, dim=-1, eps=eps)
    z = alpha * torch.bmm(t, s.transpose(1, 2))  # (B, Q, P)
    log_l = (0.5 * (z.log_softmax(2) + z.log_softmax(1))).amax(1)  # (B, P)
    sizes = torch.tensor([[th, tw]], device=scenes.device).expand(b, 2)
    return window_mean(log_l.view(b, h, w), sizes)


class QATM(nn.Module):
    """Module form of :func:`qatm_score` with ``alpha`` (default 25) optionally learnable."""

    def __init__(self, alpha: float = 25.0, learn_alpha: bool = False, eps: float = 1e-5, chunk_elements: int = 1 << 24) -> None:
        super().__init__()
        if alpha <= 0 or not math.isfinite(alpha):
            raise ValueError(f"QATM alpha must be a positive number, got {alpha}")
        value = torch.tensor(float(alpha))
        if learn_alpha:
            self.alpha = nn.Parameter(value)
        else:
            self.register_buffer("alpha", value)
        self.eps, self.chunk_elements = eps, chunk_elements

    def forward(
        self, scene: torch.Tensor, templates: torch.Tensor, mask: torch.Tensor, sizes: torch.Tensor,
        weights: torch.Tensor | None = None, inplace: bool = False,
    ) -> torch.Tensor:
        return qatm_score(scene, templates, mask, sizes, self.alpha, self.eps, self.chunk_elements, weights, inplace)
