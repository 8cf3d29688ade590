"""Detector timings: network forward, keypoints + descriptors, and each baseline, per image.

    python bench/detector_bench.py [--height 480 --width 640] [--threads 1] [--device cpu] [--scales 1.0 0.71 0.5] [--handcrafted 0 2]
    python bench/detector_bench.py --ckpt <trained detector checkpoint>

Prints milliseconds per image (median of --repeats runs) for the model (forward, 2000 keypoints,
descriptors; over the pyramid ``--scales``) and each baseline. With ``--ckpt`` the model is that
checkpoint's detector as ``evaluate.py`` runs it (its keypoints and its descriptors at every
``describe_scales`` level), and the match steps it applies before a homography (relocation and patch
alignment, ``model.match_steps``) are timed per pair: the photo against itself rotated by 30 degrees and
zoomed by 0.7, the mutual nearest neighbours of each image's best 1000 points. Timings are not asserted in tests.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from neurocorr.checkpoints import model_from_checkpoint
from neurocorr.data.synthetic.bundled_images import load_bundled
import torch.nn.functional as F
from neurocorr.models.detector.baselines import BASELINES, run_baseline
from neurocorr.models.detector.descriptor import PolarDescriptor
from neurocorr.models.detector.keypoints import detect_pyramid
from neurocorr.models.detector.matching import match_mnn
from neurocorr.models.detector.repeatability import strongest
from neurocorr.models.detector.torch_model import EquivariantDetector


def timed(fn, repeats: int, sync=lambda: None) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def rotated_zoomed(image: torch.Tensor, angle_deg: float = 30.0, zoom: float = 0.7) -> torch.Tensor:
    """``image`` ``(1, C, H, W)`` rotated about its centre and zoomed (bilinear, zeros outside)."""
    a = np.radians(angle_deg)
    theta = torch.tensor([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0]], dtype=image.dtype) / zoom
    theta[:, 2] = 0.0
    h, w = image.shape[-2:]
    theta[0, 1] *= h / w  # normalised coordinates: keep the rotation a rotation in pixels
    theta[1, 0] *= w / h
    grid = F.affine_grid(theta[None], list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", align_corners=False)


def time_match_steps(module, x: torch.Tensor, repeats: int) -> None:
    """Milliseconds of ``module.match_steps()`` on one pair's matches (see the module docstring)."""
    steps = module.match_steps()
    if steps is None:
        print("  match steps: off (model.relocate_px and model.align_px are 0)")
        return
    images = [x.expand(-1, module.net.in_channels, -1, -1)]
    images.append(rotated_zoomed(images[0]))
    found = []
    with torch.no_grad():
        for image in images:
            kp, desc, _ = module.detect(image)
            valid = kp.valid[0]
            xy, score, desc = kp.xy[0][valid].cpu(), kp.score[0][valid].cpu(), desc[0][valid].cpu()
            keep = strongest(xy, score, 1000, 0.0)
            found.append((xy[keep], desc[keep].float()))
    (xy1, d1), (xy2, d2) = found
    pairs = match_mnn(d1, d2).index
    a, b = xy1[pairs[:, 0]].double(), xy2[pairs[:, 1]].double()
    da, db = d1[pairs[:, 0]], d2[pairs[:, 1]]
    first, second = images[0][0].cpu(), images[1][0].cpu()
    ms = timed(lambda: steps(first, second, a, b, da, db), repeats)
    names = ", ".join(type(step).__name__ for step in steps.steps)
    print(f"  match steps ({names}) on {len(pairs)} matches: {ms:8.1f} ms per pair")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--scales", type=float, nargs="+", default=[1.0])
    p.add_argument("--top-k", type=int, default=2000)
    p.add_argument("--handcrafted", type=float, nargs="*", default=[0.0, 2.0], help="blur sigmas of the Harris/Hessian inputs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--ckpt", default=None, help="a trained detector checkpoint, timed as evaluate.py runs it")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    photo = torch.from_numpy(load_bundled("coffee")).float()[None, None]
    image = F.interpolate(photo, size=(args.height, args.width), mode="bilinear", antialias=True, align_corners=False)
    x = (image / 255.0).to(device)
    if args.ckpt:
        module = model_from_checkpoint(args.ckpt)[0].to(device).eval()
        if not hasattr(module, "detect"):
            raise SystemExit(f"{args.ckpt} holds a {type(module).__name__}, not a detector")
        image_in = x.expand(-1, module.net.in_channels, -1, -1)

        def model() -> None:
            with torch.no_grad():
                module.detect(image_in)

        setting = f"checkpoint {args.ckpt}, describe levels {module.describe_scales or [1.0]}"
    else:
        net = EquivariantDetector(handcrafted=tuple(args.handcrafted), harris_skip=4.0 if args.handcrafted else 0.0)
        net = net.to(device).eval()
        describe = PolarDescriptor()

        def model() -> None:
            with torch.no_grad():
                detect_pyramid(net, describe, x, args.scales, args.top_k)

        setting = f"untrained network, scales {args.scales}"
    print(f"{args.width}x{args.height} grey photo, {args.threads} thread(s), {device}, {setting}")
    what = "as evaluate.py runs it" if args.ckpt else f"forward + {args.top_k} keypoints + descriptors"
    print(f"  model ({what}): {timed(model, args.repeats, sync):8.1f} ms")
    if args.ckpt:
        time_match_steps(module, x, args.repeats)
    grey = image[0, 0].round().clamp(0, 255).to(torch.uint8).numpy().astype(np.uint8)
    for name in BASELINES:
        print(f"  {name:8s}: {timed(lambda: run_baseline(name, grey), args.repeats):8.1f} ms")


if __name__ == "__main__":
    main()
