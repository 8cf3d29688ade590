"""Detector predictions: keypoints and descriptors per image, matches and a RANSAC homography per pair.

Per image ``keypoints/<name>.npz``: ``xy`` ``(K, 2)`` float32 (x, y) in the original image's pixels
(pixel centres at integers), ``score`` ``(K,)``, ``orientation`` ``(K,)`` radians (x right, y down),
``scale`` ``(K,)`` original pixels per network pixel (the downscale of a large image), ``descriptors``
``(K, D)`` (``(K, L, D)`` with ``model.describe_scales``: one per pyramid level), ``image_size``
``(H, W)``; and ``keypoints/<name>.png`` (keypoints with orientation ticks over the image, the score
map below). Per pair (a pairs CSV or ``input=[a,b]``) ``matches/<a>__<b>``:
``.npz`` (``index`` ``(M, 2)`` keypoint rows of a and b, ``xy_a``, ``xy_b`` the matched points H is
estimated from, ``distance``, ``inlier`` ``(M,)`` bool, ``H`` ``(3, 3)`` a -> b, NaN when none was found),
``.json`` (counts and H), ``.png`` (side by side, inliers green); ``pairs.csv`` sums up every pair. With
``model.relocate_px`` > 0 and multi-level descriptors, ``xy_a``/``xy_b`` are the keypoints relocated at the
scale their descriptors matched at (``relocation.py``), and with ``model.align_px`` > 0 each ``xy_b`` is then
aligned to its ``xy_a`` by the image patches (``alignment.py``), so they may differ from the keypoint files' ``xy``;
with ``model.align_drop`` the matches it cannot align are left out of ``H`` and are no ``inlier``. With
``model.guided_px`` > 0 the matches are those made again under a first homography (``guided.py``) and ``H`` is
estimated from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from neurocorr.data.detector import limit_size
from neurocorr.data.formats.image import read_image
from neurocorr.files import write_atomic, write_json
from neurocorr.models.detector.figures import plot_matches, plot_score_maps
from neurocorr.models.detector.guided import guided_matches
from neurocorr.models.detector.homography import estimate_homography
from neurocorr.models.detector.matching import Matches, match_mnn
from neurocorr.ops.geometry import warp_points
from neurocorr.tasks.predict import PredictContext, write_csv
from neurocorr.viz.artifacts import save_figure

DEFAULT_MAX_SIDE = 1024


def detect_file(ctx: PredictContext, path: Path, grey: bool, max_side: Optional[int]) -> dict[str, Any]:
    """Keypoints of one image file in its original pixels (see the module docstring)."""
    original = read_image(path, "L" if grey else "RGB")
    image, s = limit_size(original, max_side)
    kp, desc, score = ctx.model.detect(image[None].to(ctx.device).float() / 255.0)
    valid = kp.valid[0]
    xy = (kp.xy[0][valid].double().cpu() + 0.5) / s - 0.5  # network pixels -> original pixels
    return {"image": original, "net_image": image, "net_scale": s, "xy": xy, "score": kp.score[0][valid].cpu(),
            "angle": kp.angle[0][valid].cpu(), "scale": torch.full((int(valid.sum()),), 1.0 / s),
            "desc": desc[0][valid].float().cpu(), "score_map": score[0].cpu()}


def after_match_steps(ctx: PredictContext, fa: dict[str, Any], fb: dict[str, Any], xy_a: torch.Tensor, xy_b: torch.Tensor,
              index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Matched points in original pixels, relocated and aligned in the network's pixels where the model says so
    (``match_steps``), and which of them the homography is estimated from ``(M,)`` bool."""
    steps = ctx.model.match_steps()
    if steps is None:
        return xy_a, xy_b, torch.ones(len(xy_a), dtype=torch.bool)
    sa, sb = fa["net_scale"], fb["net_scale"]
    ra, rb, keep = steps(fa["net_image"].float() / 255.0, fb["net_image"].float() / 255.0,
                         (xy_a + 0.5) * sa - 0.5, (xy_b + 0.5) * sb - 0.5, fa["desc"][index[:, 0]], fb["desc"][index[:, 1]])
    return (ra + 0.5) / sa - 0.5, (rb + 0.5) / sb - 0.5, keep


def save_keypoints(ctx: PredictContext, path: Path, found: dict[str, Any]) -> list[Path]:
    name = ctx.name(path)
    folder = ctx.output / "keypoints"
    arrays = {"xy": found["xy"].float().numpy(), "score": found["score"].float().numpy(),
              "orientation": found["angle"].float().numpy(), "scale": found["scale"].float().numpy(),
              "descriptors": found["desc"].numpy(), "image_size": np.asarray(found["image"].shape[-2:])}
    npz = write_atomic(folder / f"{name}.npz", lambda tmp: np.savez(tmp, **arrays))
    top = found["score"].argsort(descending=True)[:500]  # the strongest, so the figure stays legible
    fig = plot_score_maps([found["image"]], [found["score_map"]], [found["xy"][top].float()], [found["angle"][top]])
    return [npz, save_figure(fig, folder / f"{name}.png")]


def matches_and_homography(ctx: PredictContext, fa: dict[str, Any], fb: dict[str, Any], ransac_px: float
                           ) -> tuple[Matches, torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Matches, their points ``xy_a``, ``xy_b`` ``(M, 2)`` after the match steps, which of them the homography is
    estimated from ``(M,)`` bool, and that homography a -> b (None when none was found): from the mutual nearest
    neighbours, then, with the model's ``guided_px`` > 0, again from the matches made under the first estimate."""
    method, guided_px = ctx.model.evaluation.ransac_method, ctx.model.evaluation.guided_px

    def estimate(m: Matches):
        xy_a, xy_b, keep = after_match_steps(ctx, fa, fb, fa["xy"][m.index[:, 0]], fb["xy"][m.index[:, 1]], m.index)
        return m, xy_a, xy_b, keep, estimate_homography(xy_a[keep], xy_b[keep], ransac_px, method=method)

    first = estimate(match_mnn(fa["desc"], fb["desc"]))
    if guided_px <= 0 or first[-1] is None:
        return first
    # in original pixels, as the keypoint files' xy and the first estimate
    return estimate(guided_matches(fa["xy"], fb["xy"], fa["desc"], fb["desc"], first[-1], guided_px))


def match_pair(ctx: PredictContext, a: Path, b: Path, fa: dict[str, Any], fb: dict[str, Any],
               ransac_px: float) -> dict[str, Any]:
    """Matches, the RANSAC homography a -> b and its inliers (:func:`matches_and_homography`); files written."""
    m, xy_a, xy_b, keep, H = matches_and_homography(ctx, fa, fb, ransac_px)
    inlier = torch.zeros(len(xy_a), dtype=torch.bool)
    if H is not None:  # a match left out of the estimate (alignment failed) is no inlier
        inlier = keep & ((warp_points(xy_a, H) - xy_b).norm(dim=-1) < ransac_px)
    stem = ctx.output / "matches" / f"{ctx.name(a)}__{ctx.name(b)}"
    arrays = {"index": m.index.numpy(), "xy_a": xy_a.float().numpy(), "xy_b": xy_b.float().numpy(),
              "distance": m.distance.numpy(), "inlier": inlier.numpy(),
              "H": H.numpy() if H is not None else np.full((3, 3), np.nan)}
    write_atomic(stem.with_suffix(".npz"), lambda tmp: np.savez(tmp, **arrays))
    summary = {"image_a": str(a), "image_b": str(b), "keypoints_a": len(fa["xy"]), "keypoints_b": len(fb["xy"]),
               "matches": len(xy_a), "inliers": int(inlier.sum()), "ransac_px": ransac_px,
               "H": H.tolist() if H is not None else None}
    write_json(stem.with_suffix(".json"), summary)
    panel = {"image1": fa["image"], "image2": fb["image"], "xy1": xy_a, "xy2": xy_b, "correct": inlier,
             "label": f"{a.name} - {b.name}, RANSAC inliers green"}
    save_figure(plot_matches([panel]), stem.with_suffix(".png"))
    return summary


def predict(ctx: PredictContext) -> list[Path]:
    """Keypoints of every input image, then matches of every pair (see the module docstring)."""
    grey = bool(ctx.setting("grey", ctx.model.net.in_channels == 1))
    max_side = ctx.setting("max_side") or DEFAULT_MAX_SIDE
    found: dict[Path, dict[str, Any]] = {}
    for path in ctx.progress(ctx.images, "detect"):
        result = ctx.attempt(str(path), lambda: detect_file(ctx, path, grey, int(max_side)))
        if result is not None:
            ctx.attempt(str(path), lambda: save_keypoints(ctx, path, result))
            found[path] = {k: v for k, v in result.items() if k != "score_map"}
    if ctx.pairs is None:
        return []  # per-image files stay in the output folder; only summaries are logged to MLflow
    summaries = []
    ransac_px = float(ctx.model.evaluation.ransac_px)
    for a, b in ctx.progress(ctx.pairs.paths, "match"):
        if a not in found or b not in found:
            ctx.failed.append((f"{a} - {b}", f"pair skipped: {a if a not in found else b} was not read"))
            continue
        summary = ctx.attempt(f"{a} - {b}", lambda: match_pair(ctx, a, b, found[a], found[b], ransac_px))
        if summary is not None:
            summaries.append(summary)
    columns = ["image_a", "image_b", "keypoints_a", "keypoints_b", "matches", "inliers"]
    return [write_csv(ctx.output / "pairs.csv", columns, summaries)]
