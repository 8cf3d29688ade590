"""Training pieces of the qatm matcher: template pairs scored in every scene of the batch, bare
(reflect-padded) templates, and the score threshold calibrated on validation pairs."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from neurocorr.models.qatm.qatm import qatm_pair_log_scores
from neurocorr.models.qatm.torch_model import QATMNet


def cross_log_scores(net: QATMNet, templates: torch.Tensor, scenes: torch.Tensor, context: int, stride: int) -> torch.Tensor:
    """Differentiable log QATM maps of every template in every scene: ``(B, B, H', W')``, ``[i, j]`` =
    template ``i`` in scene ``j`` (each backbone pass once; see :meth:`QATMNet.pair_log_scores`)."""
    c = context // stride
    t = net.encode(templates, stride)
    if c:
        t = t[..., c:-c, c:-c]
    s = net.encode(scenes, stride)
    b = t.shape[0]
    ti = t.repeat_interleave(b, 0)  # row i*B + j: template i
    sj = s.repeat(b, 1, 1, 1)  # row i*B + j: scene j
    out = qatm_pair_log_scores(sj, ti, net.qatm.alpha, net.qatm.eps, net.tap_weights)
    return out.view(b, b, *out.shape[-2:])


def scale_negative_log_scores(
    net: QATMNet, templates: torch.Tensor, scene_feats: torch.Tensor, box: torch.Tensor, context: int, stride: int,
    factors: Sequence[float],
) -> list[torch.Tensor]:
    """Log QATM maps ``(B, H', W')`` of each template resampled by each of ``factors``, in the scene
    features ``scene_feats`` ``(B, C, H', W')``, size-normalised as matching compares scales (log score
    + 0.5 log cells, :func:`~neurocorr.models.qatm.multiscale.normalise_variants`). They are the wrong
    scales that the true one must beat: a map is ``-inf`` where its factor is within 1.5x of the
    template's size in the scene (``box (B, 4)`` xywh against the template side), or where the
    resampled template does not fit the scene.

    Args:
        templates: ``(B, 3, T + 2 context, T + 2 context)``, context a multiple of ``stride``.
    """
    side = templates.shape[-1] - 2 * context
    # the box of a rotated or tilted template is up to ~1.3x its size: bounds of the true scale
    size = (box[:, 2] * box[:, 3]).clamp_min(1).sqrt() / side
    low, high = size / 1.3, size
    out = []
    for f in factors:
        inner = max(1, round(side * f / stride))
        ring = round(context * f / stride)
        if inner > min(scene_feats.shape[-2:]):
            continue
        resized = F.interpolate(templates, size=((inner + 2 * ring) * stride,) * 2, mode="bilinear",
                                antialias=f < 1, align_corners=False)
        t = net.encode(resized, stride)
        if ring:
            t = t[..., ring:-ring, ring:-ring]
        log_map = qatm_pair_log_scores(scene_feats, t, net.qatm.alpha, net.qatm.eps, net.tap_weights)
        log_map = log_map + 0.5 * math.log(inner * inner)
        far = (f >= 1.5 * high) | (f <= low / 1.5)
        out.append(torch.where(far.view(-1, 1, 1), log_map, torch.full_like(log_map, float("-inf"))))
    return out


def bare_templates(templates: torch.Tensor, context: int, share: float) -> torch.Tensor:
    """Replace the context ring of a random ``share`` of ``templates`` ``(B, 3, T + 2c, T + 2c)`` by a
    reflection of the template itself: the look of a bare template (a file in a templates folder),
    which matching pads by reflection. Random numbers: the global generator."""
    if share <= 0 or context <= 0:
        return templates
    c = int(context)
    pick = torch.rand(templates.shape[0], device=templates.device) < share
    if not bool(pick.any()):
        return templates
    out = templates.clone()
    out[pick] = F.pad(templates[pick][..., c:-c, c:-c], (c, c, c, c), mode="reflect")
    return out


def calibrate_threshold(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """The score threshold between templates' best scores in their own scenes (``positive (N,)``) and
    in scenes that do not hold them (``negative (M,)``) that maximises balanced accuracy; among equal
    ones, the geometric midpoint of the gap. NaN when either list is empty."""
    pos, neg = positive.float().flatten(), negative.float().flatten()
    if pos.numel() == 0 or neg.numel() == 0:
        return float("nan")
    cands = torch.cat([pos, neg]).unique()  # threshold t: "present" when score >= t
    acc = 0.5 * ((pos.view(1, -1) >= cands.view(-1, 1)).float().mean(1) + (neg.view(1, -1) < cands.view(-1, 1)).float().mean(1))
    i = int(acc.argmax())
    t = float(cands[i])
    below = neg[neg < t]
    below = torch.cat([below, pos[pos < t]])
    lower = float(below.max()) if below.numel() else t
    return float((max(lower, 1e-12) * t) ** 0.5) if lower > 0 and t > 0 else t


class ThresholdCalibration:
    """Collects, over validation pairs, each template's best score in its own scene and in a scene of
    another pair whose template image differs (so the template is not there), and gives the
    threshold between them (:func:`calibrate_threshold`)."""

    def __init__(self) -> None:
        self.positive: list[float] = []
        self.negative: list[float] = []
        self._recent: list[tuple[torch.Tensor, torch.Tensor]] = []  # (template image, scene), distinct templates

    def other_scene(self, template: torch.Tensor) -> torch.Tensor | None:
        """A recent scene of a pair with a different template image (None: none seen yet)."""
        for t, scene in reversed(self._recent):
            if t.shape != template.shape or not torch.equal(t, template):
                return scene
        return None

    def remember(self, template: torch.Tensor, scene: torch.Tensor) -> None:
        if self._recent and self._recent[-1][0].shape == template.shape and torch.equal(self._recent[-1][0], template):
            self._recent[-1] = (template, scene)
        else:
            self._recent = (self._recent + [(template, scene)])[-2:]

    def update(self, net: QATMNet, item: dict[str, Any], score: float, match_args: dict[str, Any]) -> None:
        """Record ``score`` (the template's best in its own scene) and its best in another pair's scene."""
        from neurocorr.models.qatm.evaluation import localise_qatm

        other = self.other_scene(item["template"])
        self.remember(item["template"], item["scene"])
        if other is None:
            return
        try:
            negative = localise_qatm(net, {**item, "scene": other}, match_args).score
        except ValueError:  # the template does not fit in that scene
            return
        self.positive.append(score)
        self.negative.append(negative)

    def threshold(self) -> float:
        """The calibrated threshold (NaN without both kinds of scores); resets the collection."""
        t = calibrate_threshold(torch.tensor(self.positive), torch.tensor(self.negative))
        self.positive, self.negative, self._recent = [], [], []
        return t


def default_threshold(state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook: checkpoints written before the calibrated threshold existed load
    with it unset (NaN)."""
    state_dict.setdefault(prefix + "score_threshold", torch.tensor(float("nan")))
