"""Retrieval head for cross-view training: pooled taps -> linear -> L2-normalised embedding."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class RetrievalHead(nn.Module):
    """Global-average-pool each tap (after a ReLU, so raw conv taps give non-linear statistics),
    concatenate, project to ``dim``, L2-normalise.

    Input: list of ``(B, C_k, h_k, w_k)``; output ``(B, dim)`` with unit norm.
    """

    def __init__(self, in_channels: Sequence[int], dim: int = 128) -> None:
        super().__init__()
        self.proj = nn.Linear(int(sum(in_channels)), dim)

    def forward(self, taps: Sequence[torch.Tensor]) -> torch.Tensor:
        pooled = torch.cat([F.relu(t).mean(dim=(-2, -1)) for t in taps], dim=1)
        return F.normalize(self.proj(pooled), dim=1)
