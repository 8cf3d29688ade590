"""Tiny data for model=dino experiments (registered by the lead in tests/conftest.py's TINY_DATA)."""

from __future__ import annotations

from pathlib import Path


def tiny_image_folder(tmp_path: Path) -> list[str]:
    """Two class folders of 16x16 drawings (HDS-style names) that serve as the unlabeled folder and
    the k-NN probe; shrinks the ViT, the head and the crops."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for cls in ("ellipse", "rectangle"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for author in range(6):
            for n in range(2):
                pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / cls / f"{cls}.u{author:02d}.{n:04d}.png")
    return [f"data.root={root}", "data.image_size=16", "data.batch_size=4", "data.val_fraction=0.25",
            "data.subset=null", f"data.knn_root={root}", "data.knn_group_pattern=null",
            "backbone.embed_dim=24", "backbone.depth=1", "backbone.num_heads=2", "backbone.patch_size=4",
            "backbone.img_size=16", "model.net.hidden_dim=16", "model.net.bottleneck_dim=8", "model.net.out_dim=32",
            "model.crops.global_size=16", "model.crops.local_size=8", "model.crops.n_local=2"]
