"""QATM benchmark (CPU): batched matching vs a per-template loop, and peak memory of a tiled scene.

    python bench/qatm_bench.py speed   [--scene 1024 --templates 8 --size 64 --repeats 3]
    python bench/qatm_bench.py memory  [--scene 4000]

``speed``: scene pairs per second of one batched pass (scene encoded once, all templates in one
QATM call) against a plain loop calling the same model once per template; both score maps must
agree to 1e-4. ``memory``: peak resident memory (whole process, ru_maxrss) of matching 8 templates
in a ``--scene`` square scene with tiling. VGG19 at full width, random weights (speed does not
depend on the weights).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from neurocorr.backbones.vgg import vgg19_features
from neurocorr.data.synthetic.aerial import render_world
from neurocorr.models.qatm.torch_model import QATMNet


def make_scene(size: int, seed: int = 0) -> torch.Tensor:
    base = render_world(torch.Generator().manual_seed(seed), min(size, 512), n_buildings=20, centre_building=False)[0]
    reps = -(-size // base.shape[-1])
    return base.repeat(1, reps, reps)[:, :size, :size].contiguous()[None]


def templates_from(scene: torch.Tensor, n: int, size: int, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    h, w = scene.shape[-2:]
    out = []
    for _ in range(n):
        y, x = int(torch.randint(h - size, (1,), generator=g)), int(torch.randint(w - size, (1,), generator=g))
        out.append(scene[0, :, y : y + size, x : x + size].clone())
    return out


@torch.no_grad()
def speed(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    net = QATMNet(vgg19_features()).eval()
    scene = make_scene(args.scene)
    tmpls = templates_from(scene, args.templates, args.size)
    net.match(scene[..., :256, :256], tmpls[:1])  # warm-up
    t0 = time.perf_counter()
    for _ in range(args.repeats):
        batched = net.match(scene, tmpls).score
    t_batched = (time.perf_counter() - t0) / args.repeats
    t0 = time.perf_counter()
    for _ in range(args.repeats):
        looped = torch.cat([net.match(scene, [t]).score for t in tmpls])
    t_loop = (time.perf_counter() - t0) / args.repeats
    diff = float((batched - looped).abs().max())
    print(f"scene {args.scene}x{args.scene}, {args.templates} templates of {args.size}x{args.size}, threads {torch.get_num_threads()}")
    print(f"batched : {t_batched:.2f} s/scene  = {1 / t_batched:.3f} scene pairs/s")
    print(f"loop    : {t_loop:.2f} s/scene  = {1 / t_loop:.3f} scene pairs/s")
    print(f"speed-up: {t_loop / t_batched:.1f}x   max |batched - loop| = {diff:.2e}  ({'OK' if diff <= 1e-4 else 'MISMATCH'} at 1e-4)")


@torch.no_grad()
def memory(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    net = QATMNet(vgg19_features()).eval()
    scene = make_scene(args.scene)
    tmpls = templates_from(scene, args.templates, args.size)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    result = net.match(scene, tmpls)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"scene {args.scene}x{args.scene}, {args.templates} templates {args.size}px, stride {result.stride}, tile {net.tile_cells * result.stride}px: {dt:.0f} s")
    print(f"peak RSS of the whole process: {peak:.0f} MiB (before matching: {base:.0f} MiB)  -> {'OK' if peak < 4096 else 'OVER'} (< 4 GB)")


def main() -> None:
    p = argparse.ArgumentParser(description="QATM benchmark")
    p.add_argument("mode", choices=["speed", "memory"])
    p.add_argument("--scene", type=int, default=None)
    p.add_argument("--templates", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    args.scene = args.scene or (1024 if args.mode == "speed" else 4000)
    speed(args) if args.mode == "speed" else memory(args)


if __name__ == "__main__":
    main()
