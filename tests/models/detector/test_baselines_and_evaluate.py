"""Baselines in neurocorr's pixel convention, and evaluate.py's table (model beside the baselines)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurocorr.checkpoints import CONFIG_KEY, build_model
from neurocorr.tasks.evaluate import evaluate
from neurocorr.data.synthetic.bundled_images import load_bundled
from neurocorr.data.synthetic.homography_sequences import write_sequences
from neurocorr.models.detector.repeatability import evaluate_pair
from neurocorr.models.detector.baselines import BASELINES, run_baseline
from neurocorr.ops.geometry import warp_points
from tests.models.detector.tiny import TINY_DETECTOR


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_keypoints_follow_the_pixel_convention(name: str) -> None:
    """Under an exact 90-degree rotation, keypoints land where the homography says, with no
    systematic offset (a half-pixel convention slip would show as a mean offset)."""
    image = np.ascontiguousarray(load_bundled("camera")[160:288, 160:288])
    rotated = np.ascontiguousarray(np.rot90(image))
    w = image.shape[1]
    H = torch.tensor([[0, 1, 0], [-1, 0, w - 1], [0, 0, 1]], dtype=torch.float64)  # np.rot90: (x, y) -> (y, W-1-x)
    a, b = run_baseline(name, image), run_baseline(name, rotated)
    assert a["xy"].shape[0] > 20 and a["desc"].shape[0] == a["xy"].shape[0]
    moved = warp_points(a["xy"], H)
    dist, j = torch.cdist(moved, b["xy"]).min(1)
    close = dist < 1.5
    offset = (b["xy"][j[close]] - moved[close]).mean(0).abs()
    assert offset.max() < 0.1, offset
    scores = evaluate_pair(a, b, H, image.shape, rotated.shape, settings=((300, 3.0),))
    assert scores["rep_300_3px"] > 0.85 and scores["match_acc"] > 0.8


def test_evaluate_prints_one_table_of_model_and_baselines(make_cfg, tmp_path: Path, capsys) -> None:
    # a checkpoint as training writes it: the weights and the resolved model config
    cfg = make_cfg("model=detector", "logger=none", *TINY_DETECTOR, root=tmp_path / "train")
    model = build_model(cfg.model)
    ckpt = tmp_path / "detector.ckpt"
    torch.save({"state_dict": model.state_dict(), CONFIG_KEY: model.model_config}, ckpt)
    write_sequences(tmp_path / "seqs", ["coins", "cell"], size=48, n_warps=2, seed=1)
    ev = make_cfg(f"ckpt_path={ckpt}", "model=detector", "data=homography_sequences", f"data.root={tmp_path / 'seqs'}", "logger=none",
                  "trainer=cpu", config_name="evaluate", root=tmp_path / "eval")
    value = evaluate(ev)
    out = Path(ev.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    assert value == metrics["test/rep_match"]                         # the test twin of the monitor val/rep_match
    assert abs(value - (metrics["test/rep_300_3px"] + metrics["test/match_acc"]) / 2) < 1e-6
    for method in ("sift", "orb", "akaze", "harris", "hessian"):
        assert f"test/{method}/rep_300_3px" in metrics
    rows = list(csv.DictReader((out / "detector_eval.csv").open()))
    assert {(r["sequence"], r["method"]) for r in rows} >= {("s_coins", "model"), ("s_cell", "sift"), ("average", "orb")}
    assert all(0 <= float(r["rep_300_3px"]) <= 1 for r in rows)
    printed = capsys.readouterr().out
    assert "average" in printed and "paired bootstrap interval" in printed
    # the model minus each baseline over the same pairs, with its interval
    vs = {(r["method"], r["metric"]): r for r in csv.DictReader((out / "detector_eval_vs_baselines.csv").open())}
    assert set(vs) == {(m, k) for m in ("sift", "orb", "akaze", "harris", "hessian")
                       for k in ("rep_300_3px", "rep_60_1px", "match_acc", "h_auc_3px")}
    harris = vs["harris", "h_auc_3px"]
    assert int(harris["pairs"]) == 4 and float(harris["low"]) <= float(harris["difference"]) <= float(harris["high"])
    assert metrics["test/vs_harris/h_auc_3px"] == pytest.approx(metrics["test/h_auc_3px"] - metrics["test/harris/h_auc_3px"], abs=1e-6)
    assert "test/vs_sift/rep_300_3px_low" in metrics and "test/vs_sift/rep_300_3px_high" in metrics
    for name in ("matches_model", "matches_sift", "score_maps"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
