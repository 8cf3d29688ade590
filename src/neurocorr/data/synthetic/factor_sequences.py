"""One-factor homography sequences from real photos, in HPatches layout: each sequence changes one
thing at a time, so an evaluation says which change a detector fails on.

Factors (each sequence: ``1.png`` the photo, ``2.png ..`` its changed copies, ``H_1_k`` the exact
homographies in the 0-based pixel-centre convention; canvases keep the photo's size, zero-padded):

- ``rotation``: in-plane rotations about the centre by 45, 90, .., 315 degrees;
- ``zoom``: zoom-out about the centre by 0.9, 0.75, 0.6, 0.45, 0.3, 0.2 (antialiased resampling);
- ``noise``: the same view with Gaussian sensor noise of std 4, 8, .., 24 grey levels;
- ``viewpoint``: perspective warps whose corners move by up to 6, 9, .., 18 % of the size (seeded).

Written as ``<out>/<factor>/<factor>_<name>/``; evaluate a factor with
``data=homography_sequences data.root=<out>/<factor>``. The default pictures are the two photos
the detector's photos experiment holds out of training (coffee, rocket).

    python -m neurocorr.data.synthetic.factor_sequences --out data/factor_sequences
    python -m neurocorr.data.synthetic.factor_sequences --out my_groups --images a.jpg b.png
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import kornia.geometry.transform as KT
import torch.nn.functional as F

from neurocorr.data.detector import limit_size
from neurocorr.data.formats.homography_sequences import check_absent, write_sequence
from neurocorr.data.formats.image import read_image
from neurocorr.data.synthetic.bundled_images import load_bundled
from neurocorr.errors import ConfigError
from neurocorr.ops.geometry import warp_image

ANGLES_DEG = (45, 90, 135, 180, 225, 270, 315)
ZOOMS = (0.9, 0.75, 0.6, 0.45, 0.3, 0.2)
NOISE_STDS = (4.0, 8.0, 12.0, 16.0, 20.0, 24.0)
CORNER_SHIFTS = (0.06, 0.09, 0.12, 0.15, 0.18)
DEFAULT_NAMES = ("coffee", "rocket")

Changes = tuple[list[torch.Tensor], list[np.ndarray]]


def _about_centre(A: np.ndarray, width: int, height: int) -> np.ndarray:
    """The 3x3 map ``x -> A (x - c) + c`` with ``c`` the image centre (pixel centres at integers)."""
    c = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    H = np.eye(3)
    H[:2, :2] = A
    H[:2, 2] = c - A @ c
    return H


def _warp(image: torch.Tensor, H: np.ndarray) -> torch.Tensor:
    return warp_image(image[None], torch.from_numpy(H).float()[None], image.shape[-2:])[0]


def rotations(image: torch.Tensor, rng: np.random.Generator) -> Changes:
    """``image`` ``(1, H, W)`` float in [0, 255] turned about its centre by each of ``ANGLES_DEG``."""
    h, w = image.shape[-2:]
    Hs = []
    for deg in ANGLES_DEG:
        t = math.radians(deg)
        Hs.append(_about_centre(np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]), w, h))
    return [_warp(image, H) for H in Hs], Hs


def zooms(image: torch.Tensor, rng: np.random.Generator) -> Changes:
    """``image`` shrunk by each of ``ZOOMS`` (antialiased) and centred on a zero canvas of its size."""
    h, w = image.shape[-2:]
    out, Hs = [], []
    for z in ZOOMS:
        sh, sw = max(2, round(h * z)), max(2, round(w * z))
        small = F.interpolate(image[None], size=(sh, sw), mode="bilinear", antialias=True, align_corners=False)[0]
        top, left = (h - sh) // 2, (w - sw) // 2
        canvas = torch.zeros_like(image)
        canvas[:, top:top + sh, left:left + sw] = small
        rx, ry = sw / w, sh / h  # pixel centres: x' = (x + 0.5) rx - 0.5 + left
        Hs.append(np.array([[rx, 0.0, 0.5 * rx - 0.5 + left], [0.0, ry, 0.5 * ry - 0.5 + top], [0.0, 0.0, 1.0]]))
        out.append(canvas)
    return out, Hs


def noises(image: torch.Tensor, rng: np.random.Generator) -> Changes:
    """``image`` with Gaussian noise of each std of ``NOISE_STDS`` (grey levels); the identity homography."""
    out = [image + torch.from_numpy(rng.normal(0.0, s, tuple(image.shape))).float() for s in NOISE_STDS]
    return out, [np.eye(3) for _ in NOISE_STDS]


def viewpoints(image: torch.Tensor, rng: np.random.Generator) -> Changes:
    """Perspective warps of ``image``: each corner moved by up to ``f`` x the size, for f in ``CORNER_SHIFTS``."""
    h, w = image.shape[-2:]
    src = torch.tensor([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=torch.float64)
    Hs = []
    for f in CORNER_SHIFTS:
        dst = src + torch.from_numpy(rng.uniform(-f, f, (4, 2))) * torch.tensor([w, h], dtype=torch.float64)
        Hs.append(KT.get_perspective_transform(src[None], dst[None])[0].numpy())
    return [_warp(image, H) for H in Hs], Hs


FACTORS: dict[str, Callable[[torch.Tensor, np.random.Generator], Changes]] = {
    "rotation": rotations, "zoom": zooms, "noise": noises, "viewpoint": viewpoints,
}


def _is_file(source: str) -> bool:
    """An image file (a name with a suffix, or an existing path) rather than a scikit-image picture name."""
    return bool(Path(source).suffix) or Path(source).exists()


def load_picture(source: str, max_side: int = 640) -> tuple[str, np.ndarray]:
    """(name, ``(H, W)`` uint8 grey array) of an image file or a scikit-image picture name, its longer
    side brought down to ``max_side`` px."""
    path = Path(source)
    if _is_file(source):  # read_image names it if missing or unreadable
        grey, name = read_image(path, mode="L")[0].numpy(), path.stem
    else:
        grey, name = load_bundled(source), source.replace(":", "_")
    return name, limit_size(torch.from_numpy(grey)[None], max_side)[0][0].numpy()


def write_factor_sequences(out: Path, sources: Sequence[str] = DEFAULT_NAMES,
                           factors: Sequence[str] = tuple(FACTORS), seed: int = 0, max_side: int = 640) -> list[Path]:
    """Write ``<out>/<factor>/<factor>_<name>`` for every source picture (file path or scikit-image
    name) and factor; returns the sequence folders. Nothing is written if a factor is unknown or a
    picture cannot be read."""
    unknown = [f for f in factors if f not in FACTORS]
    if unknown:
        raise ConfigError(f"unknown factor(s) {unknown}; choose from {sorted(FACTORS)}")
    pictures = [load_picture(s, max_side) for s in sources]  # every picture read before anything is written
    stems = [name for name, _ in pictures]
    names = [f"{Path(source).parent.name}_{stem}" if stems.count(stem) > 1 and _is_file(source) else stem
             for source, stem in zip(sources, stems)]  # same file names in different folders (HPatches' 1.ppm)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"pictures {repeated} are given more than once")
    pictures = [(name, grey) for name, (_, grey) in zip(names, pictures)]
    finals = [Path(out) / factor / f"{factor}_{name}" for name, _ in pictures for factor in factors]
    check_absent(finals)
    rng = np.random.default_rng(seed)
    written = []
    for name, grey in pictures:
        image = torch.from_numpy(grey).float()[None]
        for factor in factors:
            changed, Hs = FACTORS[factor](image, rng)
            frames = [im.round().clamp(0, 255).to(torch.uint8)[0].numpy() for im in [image, *changed]]
            written.append(write_sequence(finals[len(written)], frames, Hs))
    return written


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder to write the factor folders into")
    parser.add_argument("--images", nargs="+", default=list(DEFAULT_NAMES),
                        help="image files or skimage.data names (default: %(default)s)")
    parser.add_argument("--factors", nargs="+", default=list(FACTORS), help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-side", type=int, default=640, help="longer side of each picture (px)")
    args = parser.parse_args(argv)
    paths = write_factor_sequences(args.out, args.images, args.factors, args.seed, args.max_side)
    print(f"wrote {len(paths)} sequences under {args.out}")


if __name__ == "__main__":
    main()
