"""Heatmap loss: binary cross-entropy on the logits (not on sigmoid outputs) with soft Gaussian
targets, optionally up-weighting the rare positive pixels."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class HeatmapBCELoss(nn.Module):
    """``mean(BCEWithLogits(logits, target, pos_weight))`` over all pixels and classes.

    logits, target: ``(B, K, H, W)``; target float in [0, 1]. ``pos_weight`` multiplies the
    positive term ``target * log sigmoid(logit)`` (``None`` or 1 = plain BCE).
    """

    def __init__(self, pos_weight: Optional[float] = None) -> None:
        super().__init__()
        if pos_weight is not None and pos_weight <= 0:
            raise ValueError(f"loss.pos_weight must be > 0, got {pos_weight}")
        self.pos_weight = None if pos_weight is None else float(pos_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
        pw = None if self.pos_weight is None else logits.new_tensor(self.pos_weight)
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), pos_weight=pw)
