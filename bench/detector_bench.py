"""Detector timings: network forward, keypoints + descriptors, and each baseline, per image.

    python bench/detector_bench.py [--size 256] [--threads 1] [--device cpu]

Prints milliseconds per image (median of --repeats runs). Timings are not asserted in tests.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from neurocorr.data.synthetic.bundled_images import load_bundled
from neurocorr.data.synthetic.homography_sequences import square_crop
from neurocorr.models.detector.baselines import BASELINES, run_baseline
from neurocorr.models.detector.descriptor import polar_descriptor
from neurocorr.models.detector.keypoints import detect_keypoints
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    image = square_crop(load_bundled("coins"), args.size)
    x = (image / 255.0).to(device)
    net = EquivariantDetector().to(device).eval()

    def model() -> None:
        with torch.no_grad():
            out = net(x)
            kp = detect_keypoints(out.score, out.orientation, 300)
            polar_descriptor(out.features, kp.xy, kp.angle)

    print(f"{args.size}x{args.size} grey image, {args.threads} thread(s), {device}")
    print(f"  model (forward + 300 keypoints + descriptors): {timed(model, args.repeats, sync):8.1f} ms")
    grey = image[0, 0].round().to(torch.uint8).numpy().astype(np.uint8)
    for name in BASELINES:
        print(f"  {name:8s}: {timed(lambda: run_baseline(name, grey), args.repeats):8.1f} ms")


if __name__ == "__main__":
    main()
