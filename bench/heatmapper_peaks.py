"""Benchmark: keypoints from heatmaps by batched peaks (NMS on the device) vs the seed's mean-shift.

64 heatmaps of 3 x 448 x 448 (start, middle, end) rendered from gauge-like scales (sigma 8 px), with
amplitude jitter, a noisy floor and weak spurious blobs as a trained model produces; both methods
are scored with PCK at 10 px against the true points.

    python bench/heatmapper_peaks.py [--n 64 --size 448 --repeats 5 --device auto --bandwidth 16]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from neurocorr.models.heatmapper.keypoints import extract_meanshift, extract_peaks
from neurocorr.models.heatmapper.metrics import KeypointMetrics
from neurocorr.models.heatmapper.heatmaps import render_gaussian_heatmaps


def make_heatmaps(n: int, size: int, sigma: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(n, 3, size, size)`` heatmaps and their true points ``(n, P, 2)`` / labels ``(n, P)``."""
    g = torch.Generator().manual_seed(seed)
    n_major = torch.randint(4, 11, (n,), generator=g)
    p = int(n_major.max()) + 1
    centre = size / 2 + (torch.rand(n, 2, generator=g) - 0.5) * 0.1 * size
    radius = (0.25 + 0.1 * torch.rand(n, generator=g)) * size
    sweep = math.radians(180) + torch.rand(n, generator=g) * math.radians(120)
    start = math.pi / 2 + (2 * math.pi - sweep) / 2 + (torch.rand(n, generator=g) - 0.5)
    idx = torch.arange(p).view(1, -1)
    angle = start.view(n, 1) + idx * (sweep / n_major).view(n, 1)
    points = centre.view(n, 1, 2) + radius.view(n, 1, 1) * torch.stack([angle.cos(), angle.sin()], -1)
    labels = torch.where(idx == 0, 0, torch.where(idx == n_major.view(n, 1), 2, 1))
    labels = torch.where(idx <= n_major.view(n, 1), labels, -1)
    heat = torch.zeros(n, 3, size, size)
    amplitude = 0.6 + 0.4 * torch.rand(n, p, generator=g)
    for j in range(p):  # per point, so each gets its own amplitude
        one = render_gaussian_heatmaps(points[:, j : j + 1], labels[:, j : j + 1], 3, (size, size), sigma)
        heat = torch.maximum(heat, one * amplitude[:, j].view(n, 1, 1, 1))
    spurious = torch.rand(n, 4, 2, generator=g) * size
    weak = render_gaussian_heatmaps(spurious, torch.randint(3, (n, 4), generator=g), 3, (size, size), sigma) * 0.25
    heat = torch.maximum(heat, weak) + 0.05 * torch.rand(heat.shape, generator=g)
    return heat.clamp(0, 1), points, labels


def pck(found, points: torch.Tensor, labels: torch.Tensor, threshold: float) -> dict[str, float]:
    metric = KeypointMetrics(3, threshold)
    metric.update(found.xy.cpu(), found.valid.cpu(), points, labels)
    return {k: float(v) for k, v in metric.compute().items() if k.startswith(("pck", "unmatched"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--sigma", type=float, default=8.0)
    parser.add_argument("--threshold", type=float, default=10.0, help="PCK distance, px")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--bandwidth", default="16", help="mean-shift bandwidth in px (default 2 sigma); none = sklearn's estimate")
    parser.add_argument("--window", type=int, default=5, help="peaks: NMS window")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    bandwidth = None if args.bandwidth.lower() == "none" else float(args.bandwidth)
    max_points = [1, 16, 1]
    heat, points, labels = make_heatmaps(args.n, args.size, args.sigma)
    print(f"{args.n} heatmaps of 3x{args.size}x{args.size}, sigma {args.sigma} px, {int((labels >= 0).sum())} true points; "
          f"peaks on {device}, torch threads {torch.get_num_threads()}")

    on_device = heat.to(device)
    window = args.window
    found = extract_peaks(on_device, max_points, threshold=0.3, window=window)  # warm-up
    times = []
    for _ in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        found = extract_peaks(on_device, max_points, threshold=0.3, window=window)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    t_peaks = min(times)
    r_peaks = pck(found, points, labels, args.threshold)

    t = time.perf_counter()
    found_ms = extract_meanshift(heat, max_points, relative_threshold=0.5, min_score=0.3, bandwidth=bandwidth)
    t_ms = time.perf_counter() - t
    r_ms = pck(found_ms, points, labels, args.threshold)

    print(f"{'method':10s} {'time (s)':>10s} {'pck':>7s} {'pck s+e':>8s} {'pck mid':>8s} {'unmatched':>9s}")
    for name, tt, r in (("peaks", t_peaks, r_peaks), ("meanshift", t_ms, r_ms)):
        unmatched = (r["unmatched_start_end"] + r["unmatched_middle"]) / 2
        print(f"{name:10s} {tt:10.4f} {r['pck']:7.4f} {r['pck_start_end']:8.4f} {r['pck_middle']:8.4f} {unmatched:9.4f}")
    print(f"speed-up {t_ms / t_peaks:.1f}x; PCK difference {abs(r_peaks['pck'] - r_ms['pck']):.4f} "
          f"(target >= 50x, <= 0.01)")


if __name__ == "__main__":
    main()
