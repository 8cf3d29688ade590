"""Synthetic homography sequences in HPatches layout, from the images scikit-image ships.

Each sequence: ``1.png`` (a centre square crop of a bundled image, resized to ``size``) and
``2.png .. <n+1>.png``, warps of it by random homographies (rotation uniform in 0-360 degrees
about the centre, scale, a little shear and perspective, translation), with mild noise, plus
``H_1_k`` text files (0-based pixel-centre convention). The warps of one sequence are done in
one batched call.

    python -m neurocorr.data.synthetic.homography_sequences --out data/homography_sequences
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from neurocorr.data.formats.homography_sequences import check_absent, write_sequence
from neurocorr.data.synthetic.bundled_images import HELD_OUT_IMAGES, load_bundled
from neurocorr.ops.geometry import warp_image


def random_homographies(n: int, size: int, generator: torch.Generator, max_angle_deg: float = 360.0,
                        scale: tuple[float, float] = (0.8, 1.25), perspective: float = 2e-4,
                        shear: float = 0.1, translate: float = 0.05) -> torch.Tensor:
    """``(n, 3, 3)`` float64 homographies of a ``size`` x ``size`` image about its centre."""
    u = torch.rand(n, 8, generator=generator, dtype=torch.float64)
    angle = torch.deg2rad(u[:, 0] * max_angle_deg)
    s = torch.exp(math.log(scale[0]) + u[:, 1] * (math.log(scale[1]) - math.log(scale[0])))
    sh = (u[:, 2] * 2 - 1) * shear
    t = (u[:, 3:5] * 2 - 1) * translate * size
    p = (u[:, 5:7] * 2 - 1) * perspective
    c = (size - 1) / 2.0
    to_centre = torch.tensor([[1, 0, -c], [0, 1, -c], [0, 0, 1]], dtype=torch.float64)
    back = torch.tensor([[1, 0, c], [0, 1, c], [0, 0, 1]], dtype=torch.float64)
    H = torch.zeros(n, 3, 3, dtype=torch.float64)
    cos, sin = angle.cos(), angle.sin()
    H[:, 0, 0], H[:, 0, 1] = s * cos, s * (-sin + sh * cos)
    H[:, 1, 0], H[:, 1, 1] = s * sin, s * (cos + sh * sin)
    H[:, 0, 2], H[:, 1, 2] = t[:, 0], t[:, 1]
    H[:, 2, 0], H[:, 2, 1], H[:, 2, 2] = p[:, 0], p[:, 1], 1.0
    return back @ H @ to_centre


def square_crop(image: np.ndarray, size: int) -> torch.Tensor:
    """Centre square crop of a grey uint8 image, resized to ``size``: ``(1, 1, size, size)`` float."""
    h, w = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = torch.from_numpy(image[top : top + side, left : left + side].copy()).float()[None, None]
    if side != size:
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return crop


def make_sequence(image: np.ndarray, size: int, n_warps: int, generator: torch.Generator,
                  noise_std: float = 2.0, **homography: float) -> tuple[list[np.ndarray], torch.Tensor]:
    """Reference image and ``n_warps`` warps: (list of ``(size, size)`` uint8 arrays, ``(n, 3, 3)`` H)."""
    ref = square_crop(image, size)
    H = random_homographies(n_warps, size, generator, **homography)
    warped = warp_image(ref.expand(n_warps, -1, -1, -1), H.float(), (size, size))
    warped = warped + noise_std * torch.randn(warped.shape, generator=generator)
    images = torch.cat([ref, warped]).clamp(0, 255).round().to(torch.uint8)[:, 0]
    return [im.numpy() for im in images], H


def write_sequences(out: Path, names: Sequence[str] = HELD_OUT_IMAGES, size: int = 256, n_warps: int = 5,
                    seed: int = 0, noise_std: float = 2.0, max_angle_deg: float = 360.0) -> list[Path]:
    """Write one HPatches-layout sequence per bundled image name under ``out`` (each written to a
    temporary folder and renamed into place). An existing sequence of the same name is never
    replaced: a DataError names it before anything is written."""
    out = Path(out)
    check_absent([out / f"s_{name}" for name in names])
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    written = []
    for name in names:
        images, H = make_sequence(load_bundled(name), size, n_warps, generator, noise_std, max_angle_deg=max_angle_deg)
        written.append(write_sequence(out / f"s_{name}", images, list(H.numpy())))
    return written


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder to write sequences into")
    parser.add_argument("--images", default=",".join(HELD_OUT_IMAGES), help="comma-separated skimage.data names")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--warps", type=int, default=5, help="warped images per sequence")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=2.0, help="Gaussian noise std (grey levels)")
    parser.add_argument("--max-angle", type=float, default=360.0, help="rotations drawn from [0, max-angle] degrees")
    args = parser.parse_args(argv)
    paths = write_sequences(args.out, [n for n in args.images.split(",") if n], args.size, args.warps, args.seed,
                            args.noise, args.max_angle)
    print(f"wrote {len(paths)} sequences to {args.out}")


if __name__ == "__main__":
    main()
