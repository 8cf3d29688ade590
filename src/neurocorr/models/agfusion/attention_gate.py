"""Mutual attention gate: each branch's features are gated by attention computed from both."""

from __future__ import annotations

import torch
from torch import nn


class MutualAttentionGate(nn.Module):
    """Exchange features between two branches through spatial attention.

    For branch a: ``att_a = sigmoid(g([f_a, f_b]))`` (one map per position, computed from both
    branches), and ``f_a' = f_a + att_a * f_b`` (likewise for b with the inputs swapped, same
    weights, so the gate is symmetric). Inputs ``(B, C, H, W)`` each; outputs the two gated maps
    and the two attention maps ``(B, 1, H, W)`` in [0, 1].
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.score = nn.Sequential(
            nn.Conv2d(2 * channels, hidden, kernel_size=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 1, kernel_size=1),
        )
        # start close to "no exchange" (attention ~0.05): mixing half of the other branch into
        # each branch from the first step makes every pair look alike and stalls learning
        nn.init.constant_(self.score[-1].bias, -3.0)

    def forward(self, f_a: torch.Tensor, f_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if f_a.shape != f_b.shape or f_a.dim() != 4:
            raise ValueError(f"gate inputs must be two equal (B, C, H, W) maps, got {tuple(f_a.shape)} and {tuple(f_b.shape)}")
        both = torch.cat([torch.cat([f_a, f_b], 1), torch.cat([f_b, f_a], 1)], 0)  # one pass for both
        att_a, att_b = torch.sigmoid(self.score(both)).chunk(2, 0)
        return f_a + att_a * f_b, f_b + att_b * f_a, att_a, att_b
