"""Python objects across the processes of a distributed run (DDP): evaluations that keep per-sample
rows (the detector's per-pair table) instead of torchmetrics states, which sync themselves."""

from __future__ import annotations

from typing import Any, Callable, Hashable, Sequence

import torch.distributed as dist


def world_size() -> int:
    """Processes in the current ``torch.distributed`` group; 1 outside a distributed run."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_lists(items: Sequence[Any]) -> list[Any]:
    """Every process's ``items`` concatenated in rank order; every process gets the same list (a
    collective: all processes must call it). Outside a distributed run: ``list(items)``."""
    if world_size() == 1:
        return list(items)
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, list(items))
    return [item for part in parts for item in part]


def unique_by(items: Sequence[Any], key: Callable[[Any], Hashable]) -> list[Any]:
    """``items`` without later repeats of a key, first order kept. A ``DistributedSampler`` pads the
    last round with samples another process already has, so gathered rows can repeat."""
    seen: set[Hashable] = set()
    out = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out
