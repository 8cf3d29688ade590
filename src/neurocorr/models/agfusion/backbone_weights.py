"""Take the backbone out of an AGFusion checkpoint, to start another run from it.

    python -m neurocorr.models.agfusion.backbone_weights <agfusion.ckpt> <backbone.pth>
    python train.py experiment=agfusion_hds backbone.pretrained=<backbone.pth>

The file holds the backbone's plain state dict (``net.backbone.`` removed from the keys), which
every backbone factory loads through ``pretrained: <path>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from neurocorr.errors import WeightsError

PREFIX = "net.backbone."


def backbone_state(ckpt_path: str | Path) -> dict[str, torch.Tensor]:
    """The ``net.backbone.*`` tensors of a checkpoint, without the prefix (read with ``weights_only``)."""
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for unreadable files
        raise WeightsError(f"cannot read checkpoint {ckpt_path}: {err}") from err
    state = checkpoint.get("state_dict", {}) if isinstance(checkpoint, dict) else {}
    backbone = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    if not backbone:
        raise WeightsError(f"checkpoint {ckpt_path} holds no {PREFIX}* weights (not an AGFusion checkpoint?)")
    return backbone


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    torch.save(backbone_state(argv[0]), argv[1])
    print(f"backbone weights of {argv[0]} written to {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
