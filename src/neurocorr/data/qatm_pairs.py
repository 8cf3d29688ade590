"""Template-pair datasets of the qatm family.

Evaluation items (``PairItems``): native sizes, batched as a dict of lists by :func:`collate_pairs`:
``template`` / ``scene`` lists of uint8 ``(3, h, w)``, ``template_box`` ``(B, 4)`` (NaN = whole
template image), ``box`` ``(B, 4)`` xywh, ``set`` list of pair-set names, ``row`` list of CSV rows.

Training items, fixed sizes so that they stack: ``template`` ``(3, T + 2c, T + 2c)`` uint8 (the
template box resized to ``T`` x ``T`` with ``c`` pixels of context), ``scene`` ``(3, S, S)`` uint8,
``box`` ``(4,)`` xywh in the scene, ``warp`` bool. ``CsvTrainingPairs`` come from template-pairs
CSVs (the scene rescaled like the template, cropped around the box); ``ImageCrops`` are crops of
plain images with ``warp`` True: the model turns them into self-supervised pairs on the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from neurocorr.data.formats.image import read_image
from neurocorr.data.formats.template_pairs import TemplatePair, read_template_pairs
from neurocorr.models.qatm.pairs import MILD_WARP, warped_pairs  # the model's own pair maker (qatm family)


class PairItems(Dataset):
    """The rows of a template-pairs CSV at their native sizes, tagged with a pair-set name."""

    def __init__(self, csv_path: str | Path, set_name: str = "") -> None:
        self.pairs, self.set_name = read_template_pairs(csv_path), set_name

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        p = self.pairs[i]
        return {
            "template": read_image(p.template_image), "scene": read_image(p.scene_image),
            "template_box": torch.tensor(p.template_box if p.template_box else [float("nan")] * 4),
            "box": torch.tensor(p.box), "row": p.row, "set": self.set_name,
        }


def collate_pairs(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Evaluation items -> one dict: images as lists (sizes differ), boxes stacked."""
    return {
        "template": [it["template"] for it in items], "scene": [it["scene"] for it in items],
        "template_box": torch.stack([it["template_box"] for it in items]), "box": torch.stack([it["box"] for it in items]),
        "set": [it["set"] for it in items], "row": [it["row"] for it in items],
    }


def crop_resize(image: torch.Tensor, box: Sequence[float], out_h: int, out_w: int) -> torch.Tensor:
    """The region ``box`` (x, y, w, h, may leave the image: reflected) of ``(3, H, W)`` uint8,
    resampled to ``(3, out_h, out_w)`` uint8 (bilinear, antialiased by a pre-resize when shrinking)."""
    x, y, w, h = (float(v) for v in box)
    img = image[None].float()
    factor = min(out_w / w, out_h / h)
    if factor < 0.75:  # shrink the whole image first so that sampling does not alias
        size = (max(1, round(image.shape[-2] * factor)), max(1, round(image.shape[-1] * factor)))
        sy, sx = size[0] / image.shape[-2], size[1] / image.shape[-1]
        img = F.interpolate(img, size=size, mode="bilinear", antialias=True, align_corners=False)
        x, y, w, h = x * sx, y * sy, w * sx, h * sy
    big_h, big_w = img.shape[-2:]
    theta = torch.tensor([[w / big_w, 0.0, 2 * (x + w / 2) / big_w - 1], [0.0, h / big_h, 2 * (y + h / 2) / big_h - 1]])
    grid = F.affine_grid(theta[None], [1, 3, out_h, out_w], align_corners=False)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)


class CsvTrainingPairs(Dataset):
    """Fixed-size training pairs from template-pairs CSV rows (rows whose scaled box does not fit
    in the scene are skipped). The box's place in the scene crop is a function of the row and seed."""

    def __init__(self, csv_paths: Sequence[str | Path], template_size: int, context: int, scene_size: int, seed: int = 0) -> None:
        self.t, self.c, self.s, self.seed = int(template_size), int(context), int(scene_size), int(seed)
        self.pairs: list[TemplatePair] = []
        for path in csv_paths:
            for p in read_template_pairs(path):
                tw, th = p.template_box[2:] if p.template_box else (None, None)
                if tw is None:
                    with_size = read_image(p.template_image).shape[-2:]
                    th, tw = float(with_size[0]), float(with_size[1])
                if p.box[2] * self.t / tw <= self.s and p.box[3] * self.t / th <= self.s:
                    self.pairs.append(p)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        p = self.pairs[i]
        source = read_image(p.template_image)
        tx, ty, tw, th = p.template_box or (0.0, 0.0, float(source.shape[-1]), float(source.shape[-2]))
        sx, sy = self.t / tw, self.t / th  # template pixels -> training pixels
        cx, cy = self.c / sx, self.c / sy
        side = self.t + 2 * self.c
        template = crop_resize(source, (tx - cx, ty - cy, tw + 2 * cx, th + 2 * cy), side, side)
        x, y, w, h = p.box
        bw, bh = w * sx, h * sy
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        ox, oy = (torch.rand(2, generator=g) * torch.tensor([self.s - bw, self.s - bh]).clamp_min(0)).tolist()
        # the scene window (in scene pixels) that puts the box at (ox, oy) of the crop
        window = (x - ox / sx, y - oy / sy, self.s / sx, self.s / sy)
        scene = crop_resize(read_image(p.scene_image), window, self.s, self.s)
        return {"template": template, "scene": scene, "box": torch.tensor([ox, oy, bw, bh]), "warp": False}


class ImageCrops(Dataset):
    """``crops`` square crops of side ``S`` per image, each to become a self-supervised pair
    (``warp`` True). Images are loaded once, shrunk so their short side is at most ``max_side``."""

    def __init__(self, images: Sequence[torch.Tensor], template_size: int, context: int, scene_size: int,
                 crops: int = 16, max_side: int = 384, seed: int = 0) -> None:
        self.t, self.c, self.s, self.crops, self.seed = int(template_size), int(context), int(scene_size), int(crops), int(seed)
        self.images = []
        for img in images:
            img = img.expand(3, -1, -1) if img.shape[0] == 1 else img
            short = min(img.shape[-2:])
            if short > max_side:
                size = (round(img.shape[-2] * max_side / short), round(img.shape[-1] * max_side / short))
                img = F.interpolate(img[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
            if min(img.shape[-2:]) >= self.s:
                self.images.append(img.contiguous())

    def __len__(self) -> int:
        return len(self.images) * self.crops

    def __getitem__(self, i: int) -> dict[str, Any]:
        img = self.images[i % len(self.images)]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        y = int(torch.randint(img.shape[-2] - self.s + 1, (1,), generator=g))
        x = int(torch.randint(img.shape[-1] - self.s + 1, (1,), generator=g))
        side = self.t + 2 * self.c
        return {"template": torch.zeros(3, side, side, dtype=torch.uint8), "scene": img[:, y : y + self.s, x : x + self.s].contiguous(),
                "box": torch.zeros(4), "warp": True}


class WarpedValidationPairs(Dataset):
    """Fixed self-supervised evaluation pairs (``PairItems`` layout) from held-out images: pair ``i``
    is a crop of image ``i % n`` under a homography drawn from seed and ``i`` (the same every epoch).
    Every other pair moves only as much as consecutive video frames (scale 0.9-1.1, +-5 degrees), the
    others over the training ranges. The template is the crop with its context, ``template_box`` the
    template inside it.
    """

    def __init__(self, images: Sequence[torch.Tensor], template_size: int, context: int, scene_size: int,
                 pairs_per_image: int = 8, scale: Sequence[float] = (0.7, 1.4), rotation: float = 20.0,
                 perspective: float = 0.15, seed: int = 0, set_name: str = "") -> None:
        self.crops = ImageCrops(images, template_size, context, scene_size, pairs_per_image, seed=seed + 1)
        self.ranges = [(tuple(scale), float(rotation), float(perspective)), MILD_WARP]
        self.seed, self.set_name = int(seed), set_name

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> dict[str, Any]:
        crop = self.crops[i]["scene"]
        t, c = self.crops.t, self.crops.c
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + i)
            made = warped_pairs(crop[None].float() / 255.0, t, c, crop.shape[-1], *self.ranges[i % 2])
        as_uint8 = lambda x: (x[0] * 255).round().clamp(0, 255).to(torch.uint8)  # noqa: E731
        return {"template": as_uint8(made.template), "scene": as_uint8(made.scene),
                "template_box": torch.tensor([float(c), float(c), float(t), float(t)]), "box": made.box[0],
                "row": i, "set": self.set_name}


def load_image_sources(folders: Optional[Sequence[str]], bundled: Optional[Sequence[str]]) -> list[torch.Tensor]:
    """uint8 ``(C, H, W)`` images of ``folders`` (recursively) and of scikit-image's bundled pictures."""
    from neurocorr.data.formats.image_folder import read_image_folder

    images = [read_image(p) for folder in folders or () for p in read_image_folder(folder)]
    if bundled:
        from neurocorr.data.synthetic.bundled_images import load_bundled

        images += [torch.from_numpy(np.ascontiguousarray(load_bundled(name)))[None] for name in bundled]
    return images

