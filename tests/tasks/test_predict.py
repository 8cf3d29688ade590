"""predict.py for every family: outputs, original-pixel coordinates, failed inputs, Label Studio file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from neurocorr.checkpoints import DATA_KEY, StoreConfigs, build_model
from neurocorr.data.formats.label_studio_predictions import read_predictions
from neurocorr.models.heatmapper.letterbox import letterbox_geometry, to_original
from neurocorr.tasks.cli import cli
from neurocorr.tasks.predict import predict
from tests.models.detector.tiny import TINY_DETECTOR

TINY = {  # family -> train overrides of a tiny network (the data config is stored, never read)
    "detector": ["model=detector", *[o for o in TINY_DETECTOR if o.startswith("model.")], "data.max_side=64"],
    "heatmapper": ["experiment=heatmapper_gauges_cpu", "data.image_size=48", "backbone.widths=[8,8,8]",
                   "model.extraction.max_points=[1,2,1]"],
    "agfusion": ["experiment=agfusion_drawn", "data.image_size=32", "backbone.widths=[8,8]"],
    "qatm": ["model=qatm", "backbone.width=0.125", "model.net.stride=4"],
    "dino": ["model=dino", "backbone.embed_dim=24", "backbone.depth=1", "backbone.num_heads=2", "backbone.patch_size=4",
             "backbone.img_size=16", "model.net.hidden_dim=16", "model.net.bottleneck_dim=8", "model.net.out_dim=32",
             "model.crops.global_size=16", "data.image_size=16"],
}


def checkpoint(make_cfg, tmp_path: Path, family: str, *overrides: str) -> Path:
    """A checkpoint of an untrained tiny model, its configs stored as training stores them."""
    cfg = make_cfg(*TINY[family], *overrides, "logger=none", run=f"train_{family}")
    torch.manual_seed(0)
    model = build_model(cfg.model)
    state = {"state_dict": model.state_dict()}
    StoreConfigs(OmegaConf.to_container(cfg.data, resolve=True)).on_save_checkpoint(None, model, state)
    path = tmp_path / f"{family}.ckpt"
    torch.save(state, path)
    return path


def images(folder: Path, sizes: list[tuple[int, int]], bad: bool = True) -> Path:
    """Random RGB images of (width, height) ``sizes`` named a.png, b.png..., and broken.png if ``bad``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pixels[h // 4 : h // 2, w // 4 : w // 2] = 255  # a bright block: corners for the detector
        Image.fromarray(pixels).save(folder / f"{chr(97 + i)}.png")
    if bad:
        (folder / "broken.png").write_bytes(b"not an image")
    return folder


def run(make_cfg, ckpt: Path, *overrides: str) -> tuple[int, Path]:
    cfg = make_cfg(f"ckpt_path={ckpt}", "logger=none", *overrides, config_name="predict", run="predict")
    return predict(cfg), Path(cfg.paths.output_dir)


def failed_inputs(out: Path) -> list[str]:
    return [Path(r["input"]).name for r in csv.DictReader(open(out / "failed.csv"))]


def test_detector_keypoints_in_original_pixels_and_pair_matches(make_cfg, tmp_path, capsys):
    ckpt = checkpoint(make_cfg, tmp_path, "detector")
    folder = images(tmp_path / "in", [(120, 72), (96, 96)])  # 120 px wide: downscaled to max_side=64
    (folder / "pairs.csv").write_text("first,second,note\na.png,b.png,x\nb.png,broken.png,y\n")
    failed, out = run(make_cfg, ckpt, f"input={folder / 'pairs.csv'}", "model.top_k=30")
    assert failed == 2 and all(name.endswith("broken.png") for name in failed_inputs(out))  # the image and its pair
    assert "broken.png" in capsys.readouterr().err
    kp = np.load(out / "keypoints" / "a.npz")
    k = kp["xy"].shape[0]
    assert 0 < k <= 30 and kp["descriptors"].shape[0] == k and kp["score"].shape == kp["orientation"].shape == (k,)
    assert tuple(kp["image_size"]) == (72, 120) and np.allclose(kp["scale"], 120 / 64)
    assert (kp["xy"] >= -0.5).all() and (kp["xy"][:, 0] <= 119.5).all() and (kp["xy"][:, 1] <= 71.5).all()
    assert kp["xy"][:, 0].max() > 64  # coordinates of the original, not of the 64 px network input
    assert (out / "keypoints" / "a.png").is_file()
    m = np.load(out / "matches" / "a__b.npz")
    assert m["H"].shape == (3, 3) and m["inlier"].shape == (m["index"].shape[0],)
    info = json.loads((out / "matches" / "a__b.json").read_text())
    assert info["matches"] == m["index"].shape[0] and (out / "matches" / "a__b.png").is_file()
    rows = list(csv.DictReader(open(out / "pairs.csv")))
    assert len(rows) == 1 and Path(rows[0]["image_b"]).name == "b.png"


def test_detector_with_descriptors_at_several_levels_writes_and_matches_them(make_cfg, tmp_path, monkeypatch):
    from neurocorr.models.detector import relocation
    # every match read as image a seen at level 0.5 against b at full size: a's points are relocated
    monkeypatch.setattr(relocation, "matched_level_pairs",
                        lambda d1, d2: torch.tensor([[1, 0]]).expand(d1.shape[0], 2))
    ckpt = checkpoint(make_cfg, tmp_path, "detector", "model.describe_scales=[1.0,0.5]")
    folder = images(tmp_path / "in", [(64, 64), (64, 48)], bad=False)
    failed, out = run(make_cfg, ckpt, f"input=[{folder / 'a.png'},{folder / 'b.png'}]", "model.top_k=20")
    assert failed == 0
    desc = np.load(out / "keypoints" / "a.npz")["descriptors"]
    assert desc.ndim == 3 and desc.shape[:2] == (np.load(out / "keypoints" / "a.npz")["xy"].shape[0], 2)
    info = json.loads((out / "matches" / "a__b.json").read_text())
    assert info["matches"] > 0
    # H is estimated from the matched keypoints relocated at the scale their levels matched at: near them
    m, kp_a = np.load(out / "matches" / "a__b.npz"), np.load(out / "keypoints" / "a.npz")["xy"]
    moved = np.abs(m["xy_a"] - kp_a[m["index"][:, 0]]).max()
    assert 0 < moved <= (1.5 + 0.5) / 0.5 + 1e-4
    # then b's points are aligned to a's by the patches: at most align_px = 2 px of b's coarser level away
    kp_b = np.load(out / "keypoints" / "b.npz")["xy"]
    assert np.abs(m["xy_b"] - kp_b[m["index"][:, 1]]).max() <= 2.0 / 0.5 + 1e-4
    _, plain = run(make_cfg, ckpt, f"input=[{folder / 'a.png'},{folder / 'b.png'}]", "model.top_k=20",
                   "model.relocate_px=0", "model.align_px=0", f"paths.output_dir={tmp_path / 'plain'}")
    m = np.load(plain / "matches" / "a__b.npz")
    np.testing.assert_allclose(m["xy_a"], np.load(plain / "keypoints" / "a.npz")["xy"][m["index"][:, 0]])
    np.testing.assert_allclose(m["xy_b"], np.load(plain / "keypoints" / "b.npz")["xy"][m["index"][:, 1]])


PEAKS = [(24.0, 23.0), (10.0, 22.0), (40.0, 24.0)]  # input pixels of a fake heatmapper's three classes


def fake_heatmaps(self, images: torch.Tensor) -> torch.Tensor:
    """Logits with one Gaussian blob per class at :data:`PEAKS` (replaces HeatmapperNet.forward)."""
    h, w = images.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    maps = [8 * torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4.5) - 4 for x, y in PEAKS]
    return torch.stack(maps)[None].expand(images.shape[0], -1, -1, -1)


def test_heatmapper_keypoints_in_original_pixels_and_label_studio_file(make_cfg, tmp_path, monkeypatch):
    from neurocorr.models.heatmapper.torch_model import HeatmapperNet

    ckpt = checkpoint(make_cfg, tmp_path, "heatmapper")
    monkeypatch.setattr(HeatmapperNet, "forward", fake_heatmaps)
    folder = images(tmp_path / "in", [(150, 60), (40, 100)])
    failed, out = run(make_cfg, ckpt, f"input={folder}")
    assert failed == 1 and failed_inputs(out) == ["broken.png"]
    # b.png (40 x 100) fills input columns 14-33: the middle and end peaks lie on the letterbox border, dropped
    for name, (w, h), kept in (("a", (150, 60), [0, 1, 2]), ("b", (40, 100), [0])):
        record = json.loads((out / "keypoints" / f"{name}.json").read_text())
        assert (record["width"], record["height"]) == (w, h) and (out / "keypoints" / f"{name}.png").is_file()
        _, scale, offset = letterbox_geometry(w, h, 48)  # the checkpoint's data.image_size
        expected = to_original(torch.tensor([PEAKS]), torch.tensor([scale]), torch.tensor([offset], dtype=torch.float32))[0][kept]
        assert [p["label"] for p in record["keypoints"]] == [("start", "middle", "end")[k] for k in kept]
        assert np.allclose([[p["x"], p["y"]] for p in record["keypoints"]], expected.numpy(), atol=0.05)
    tasks = read_predictions(out / "label_studio_predictions.json", image_root=folder)
    assert sorted(t.image.name for t in tasks) == ["a.png", "b.png"]
    a = next(t for t in tasks if t.image.name == "a.png")
    record = json.loads((out / "keypoints" / "a.json").read_text())
    assert (a.width, a.height) == (150, 60) and a.labels.tolist() == [0, 1, 2]
    assert np.allclose(a.points, [[p["x"], p["y"]] for p in record["keypoints"]], atol=1e-3)
    raw = json.loads((out / "label_studio_predictions.json").read_text())
    assert all(t["predictions"][0]["model_version"] == "heatmapper.ckpt" for t in raw)


def test_agfusion_pairs_csv_and_classes(make_cfg, tmp_path):
    ckpt = checkpoint(make_cfg, tmp_path, "agfusion")
    folder = images(tmp_path / "in", [(40, 30), (64, 64), (20, 50)])
    (folder / "pairs.csv").write_text("left,right,truth\na.png,b.png,0\nb.png,c.png,1\nc.png,broken.png,0\n")
    failed, out = run(make_cfg, ckpt, f"input={folder / 'pairs.csv'}", "threshold=0.0", "data.image_size=40")
    rows = list(csv.DictReader(open(out / "pairs.csv")))
    assert failed == 2 and [r["truth"] for r in rows] == ["0", "1"]  # extra columns kept; the bad pair left out
    assert all(0.0 <= float(r["p_same"]) <= 1.0 and r["same"] == "1" for r in rows)
    (folder / "good.csv").write_text("left,right\na.png,b.png\n")  # again into the same folder, nothing bad
    failed, _ = run(make_cfg, ckpt, f"input={folder / 'good.csv'}", f"output={out}", "data.image_size=40")
    assert failed == 0 and failed_inputs(out) == []  # the earlier run's failed.csv does not stay stale
    refs = images(tmp_path / "refs", [(32, 32), (32, 32)], bad=False)
    (refs / "a.png").rename(refs / "circle.png")
    (refs / "b.png").rename(refs / "square.png")
    failed, out = run(make_cfg, ckpt, f"input={folder}", f"references={refs}", "output=" + str(tmp_path / "cls"))
    rows = list(csv.DictReader(open(tmp_path / "cls" / "classes.csv")))
    assert failed == 1 and len(rows) == 3 and {r["class"] for r in rows} <= {"circle", "square"}
    assert all(float(r["p_same"]) == max(float(r["p_circle"]), float(r["p_square"])) for r in rows)


def test_qatm_scene_folder_and_dino_attention(make_cfg, tmp_path):
    ckpt = checkpoint(make_cfg, tmp_path, "qatm")
    scenes = images(tmp_path / "scenes", [(96, 80)])  # and broken.png: a folder of two scenes
    templates = tmp_path / "templates"
    templates.mkdir()
    Image.open(scenes / "a.png").crop((10, 10, 42, 40)).save(templates / "t.png")
    failed, out = run(make_cfg, ckpt, f"input={scenes}", f"templates={templates}", "+match.global_ratio=0.0")
    assert failed == 1 and {"result.png", "heatmap.png", "boxes.csv"} <= {p.name for p in (out / "a").iterdir()}
    rows = list(csv.DictReader(open(out / "boxes.csv")))
    assert rows and {Path(r["scene"]).name for r in rows} == {"a.png"} and not (out / "broken").exists()
    assert all(0 <= float(r["x"]) and float(r["x"]) + float(r["w"]) <= 96.5 for r in rows)
    ckpt = checkpoint(make_cfg, tmp_path, "dino")
    failed, out = run(make_cfg, ckpt, f"input={scenes}", "output=" + str(tmp_path / "dino"))
    features = np.load(tmp_path / "dino" / "features.npz")
    assert failed == 1 and features["features"].shape == (1, 24)
    assert [p.name for p in (tmp_path / "dino" / "attention").iterdir()] == ["a.png"]


def test_bad_checkpoint_and_input_fail_in_one_line(make_cfg, tmp_path, capsys):
    ckpt = checkpoint(make_cfg, tmp_path, "agfusion")
    cfg = make_cfg(f"ckpt_path={ckpt}", f"input={tmp_path / 'nope'}", "logger=none", config_name="predict")
    with pytest.raises(SystemExit) as exit_info:
        cli(predict)(cfg)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "nope" in err[0]
    cfg = make_cfg(f"ckpt_path={ckpt}", f"input={tmp_path}", "data.imagesize=40", "logger=none", config_name="predict")
    with pytest.raises(SystemExit):
        cli(predict)(cfg)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.imagesize" in err[0] and "image_size" in err[0]  # a typo, the valid keys listed
    assert DATA_KEY in torch.load(ckpt, weights_only=True)
