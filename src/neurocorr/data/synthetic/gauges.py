"""Synthetic analog gauges with their scale keypoints, written as images + a Label Studio export.

A gauge (``gauges_dial``) has a bezel, a dial face, one or two concentric scales (the inner one with
other units, colour, tick shapes and sweep), numbers in a style's fonts, a needle (taper, arrow, bar or
lance) that may rest on the start or end tick, a hub and glass glare. The scene (``gauges_scene``)
tilts the dial plane (up to 35 degrees), places it off-centre on a real photo (scikit-image's bundled
pictures), clutter or a wall, casts a shadow, and runs a camera: defocus and motion blur, colour cast,
exposure, noise, JPEG. Keypoints are the centres of the major ticks of the labelled scale: ``primary``
``outer``, ``inner`` or ``both``. Styles (``gauges_style``: fonts, colour schemes, tilt range,
backgrounds, needles, ticks) are config, so that a test set in held-back styles exists. Rendering is
batched tensor code (supersampled 2x), a pure function of the seed; only text and JPEG go through PIL.

    python -m neurocorr.data.synthetic.gauges <root> [--train 2000 --val 200 --test 200 --size 448]
        [--style train] [--heldout-style heldout] [--primary outer]

writes ``<root>/{train,val,test,test_heldout}/images/*.png`` and ``.../export.json`` (train, val and
test in ``--style``, test_heldout in ``--heldout-style``, as many as test) and ``<root>/styles.json``;
the splits use distinct seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from kornia.geometry.transform import warp_perspective
from PIL import Image

from neurocorr.data.formats.label_studio import task_to_json, write_label_studio
from neurocorr.data.synthetic.atomic import atomic_folder
from neurocorr.data.synthetic.gauges_dial import BEZEL, render_dials, uniform
from neurocorr.data.synthetic.gauges_scene import apply_homography, backgrounds, camera, cast_shadow, place, tilt_homography
from neurocorr.data.synthetic.gauges_style import PRIMARY, GaugeStyle, load_style, style_dict
from neurocorr.errors import ConfigError, DataError, NeurocorrError

SPLITS = ("train", "val", "test")
HELDOUT_SPLIT = "test_heldout"
SUPERSAMPLE = 2


@dataclass
class GaugeBatch:
    """images: ``(B, 3, S, S)`` uint8; points: ``(B, N, 2)`` float (x, y) px; labels: ``(B, N)`` long (-1 = padding)."""

    images: torch.Tensor
    points: torch.Tensor
    labels: torch.Tensor


def render_gauges(g: torch.Generator, batch: int, size: int, style: str | GaugeStyle = "train",
                  primary: str = "outer") -> GaugeBatch:
    """Render ``batch`` gauges of ``size`` x ``size`` pixels in ``style`` with the keypoints of the
    ``primary`` scale(s); every labelled point lies inside the image."""
    if primary not in PRIMARY:
        raise ConfigError(f"gauges primary must be one of {', '.join(PRIMARY)}, got {primary!r}")
    style = load_style(style)
    b, ss = batch, SUPERSAMPLE
    r = size * ss
    dial = render_dials(g, b, r, style, primary)
    h = tilt_homography(g, b, r, BEZEL * r, r, style)
    h = place(g, h, dial.points, dial.labels, r, style.crop, margin=2.0 * ss)
    layers = torch.cat([dial.colour * dial.alpha.unsqueeze(1), dial.alpha.unsqueeze(1)], 1)  # premultiplied
    warped = warp_perspective(layers, h, (r, r), align_corners=True, padding_mode="zeros")
    colour, alpha = warped[:, :3], warped[:, 3:].clamp(0, 1)
    scene = F.interpolate(backgrounds(g, b, size, style), scale_factor=ss, mode="bilinear", align_corners=False)
    img = scene * cast_shadow(g, alpha, uniform(g, b, *style.shadow)) * (1 - alpha) + colour
    # uneven light across the scene
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, r), torch.linspace(-1, 1, r), indexing="ij")
    direction = uniform(g, b, 0, 2 * math.pi).view(b, 1, 1)
    ramp = (xs * torch.cos(direction) + ys * torch.sin(direction)).clamp(min=0)
    img = img * (1 - uniform(g, b, 0, 0.4).view(b, 1, 1, 1) * ramp.unsqueeze(1))
    img = F.avg_pool2d(img.clamp(0, 1), ss)
    points = (apply_homography(h, dial.points) + 0.5) / ss - 0.5  # pixel centres: x = (x_hr + 0.5) / ss - 0.5
    inside = (points >= -0.5).all(-1) & (points <= size - 0.5).all(-1)
    labels = torch.where(inside, dial.labels, -1)
    return GaugeBatch(camera(g, img, style), points, labels)


def write_split(folder: Path, n: int, size: int, seed: int, name: str, style: GaugeStyle, primary: str) -> Path:
    """Write ``n`` gauges to ``folder/images`` and ``folder/export.json``; returns the export."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    per_batch = max(1, min(64, 3_000_000 // (size * SUPERSAMPLE) ** 2))
    tasks, done = [], 0
    while done < n:
        g = torch.Generator().manual_seed(seed * 1_000_003 + done)
        count = min(per_batch, n - done)
        out = render_gauges(g, count, size, style, primary)
        for i in range(count):
            task_id = done + i + 1
            file_name = f"{name}_{task_id:05d}.png"
            Image.fromarray(out.images[i].permute(1, 2, 0).numpy()).save(folder / "images" / file_name)
            keep = out.labels[i] >= 0
            tasks.append(task_to_json(task_id, f"/data/local-files/?d=images/{file_name}", size, size,
                                      out.points[i][keep].numpy(), out.labels[i][keep].tolist()))
        done += count
    return write_label_studio(tasks, folder / "export.json")


def make_dataset(
    root: str | Path, n_train: int = 2000, n_val: int = 200, n_test: int = 200, size: int = 448, seed: int = 0,
    overwrite: bool = False, style: str | GaugeStyle = "train", heldout_style: str | GaugeStyle | None = "heldout",
    primary: str = "outer",
) -> Path:
    """Write train/val/test in ``style`` and test_heldout in ``heldout_style`` (none if ``None``) under
    ``root`` (built in a temporary folder, then renamed), with ``styles.json`` saying which."""
    root = Path(root)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise DataError(f"synthetic gauges: {root} exists and is not empty (pass --overwrite to replace it)")
    if size < 32:
        raise DataError(f"synthetic gauges: size must be >= 32 pixels, got {size}")
    if primary not in PRIMARY:
        raise ConfigError(f"synthetic gauges: primary must be one of {', '.join(PRIMARY)}, got {primary!r}")
    styles = {"train": load_style(style)}
    plan = [(split, n, styles["train"]) for split, n in zip(SPLITS, (n_train, n_val, n_test))]
    if heldout_style is not None:
        styles["heldout"] = load_style(heldout_style)
        plan.append((HELDOUT_SPLIT, n_test, styles["heldout"]))
    with atomic_folder(root) as tmp:
        for i, (split, n, split_style) in enumerate(plan):
            write_split(tmp / split, n, size, seed * 10 + i + 1, split, split_style, primary)
        names = {"train": str(style if isinstance(style, str) else "custom"),
                 "heldout": None if heldout_style is None else str(heldout_style if isinstance(heldout_style, str) else "custom")}
        info = {"primary": primary, "size": size, "seed": seed, "splits": {s: ("heldout" if s == HELDOUT_SPLIT else "train") for s, _, _ in plan},
                "styles": {k: {"name": names[k], **style_dict(v)} for k, v in styles.items()}}
        (tmp / "styles.json").write_text(json.dumps(info, indent=1, ensure_ascii=False))
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=200)
    parser.add_argument("--test", type=int, default=200, help="images in test and in test_heldout each")
    parser.add_argument("--size", type=int, default=448, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--style", default="train", help="train | heldout | easy | a YAML file of style fields")
    parser.add_argument("--heldout-style", default="heldout", help="style of test_heldout; 'none' for no such split")
    parser.add_argument("--primary", default="outer", choices=PRIMARY, help="the labelled scale")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    heldout = None if args.heldout_style.lower() == "none" else args.heldout_style
    try:
        root = make_dataset(args.root, args.train, args.val, args.test, args.size, args.seed, args.overwrite,
                            args.style, heldout, args.primary)
    except NeurocorrError as err:
        print(f"neurocorr: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote synthetic gauges (images + Label Studio exports) to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
