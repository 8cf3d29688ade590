"""Hand-drawn-looking shape pairs: shapes and range, purity in (seed, index), class balance, styles."""

from __future__ import annotations

import math

import pytest
import torch

from neurocorr.data.agfusion import ShapesDataModule
from neurocorr.data.synthetic.drawn_outlines import CLASS_NAMES
from neurocorr.data.synthetic.drawn_shapes import DrawnStyle, drawn_shape_pairs, resolve_classes, stroke_distance
from neurocorr.errors import ConfigError


def test_batch_shapes_dtype_and_value_range() -> None:
    for size in (32, 48, 64):
        batch = drawn_shape_pairs(0, torch.arange(16), size)
        assert batch["image_a"].shape == (16, 3, size, size) and batch["image_a"].dtype == torch.uint8
        assert batch["label"].shape == (16,) and batch["class_a"].dtype == torch.long
        images = torch.cat([batch["image_a"], batch["image_b"]]).float()
        spread = images.flatten(1).amax(1) - images.flatten(1).amin(1)
        assert float(spread.min()) > 60  # every image shows its figure against the paper


def test_sample_is_a_pure_function_of_seed_and_index() -> None:
    batch = drawn_shape_pairs(7, torch.tensor([3, 10, 11]), 32)
    again = drawn_shape_pairs(7, torch.tensor([11, 3]), 32)
    for key in batch:
        assert torch.equal(batch[key][0], again[key][1]) and torch.equal(batch[key][2], again[key][0])
    assert not torch.equal(batch["image_a"][0], drawn_shape_pairs(8, torch.tensor([3]), 32)["image_a"][0])


def test_classes_are_balanced_and_label_means_same_class() -> None:
    batch = drawn_shape_pairs(1, torch.arange(1200), 16)
    assert torch.equal(batch["label"], (batch["class_a"] == batch["class_b"]).float())
    assert 0.45 < float(batch["label"].mean()) < 0.55
    for key in ("class_a", "class_b"):
        counts = torch.bincount(batch[key], minlength=len(CLASS_NAMES)).float()
        expected = 1200 / len(CLASS_NAMES)
        assert float(counts.min()) > 0.75 * expected and float(counts.max()) < 1.25 * expected, counts


def test_a_subset_of_classes_is_indexed_from_zero() -> None:
    classes = resolve_classes(["rectangle", "ellipse"])
    batch = drawn_shape_pairs(2, torch.arange(200), 16, classes=classes)
    assert set(batch["class_a"].tolist()) == {0, 1} and set(batch["class_b"].tolist()) == {0, 1}
    dm = ShapesDataModule(style="drawn", classes=["rectangle", "ellipse"], image_size=16, train_size=8, val_size=4,
                          test_size=4, batch_size=4)
    assert dm.class_names == ["rectangle", "ellipse"]
    assert next(iter(dm.train_dataloader()))["image_a"].shape == (4, 3, 16, 16)


def test_outlines_are_thin_and_filled_figures_cover_their_inside() -> None:
    clean = dict(noise=(0.0, 0.0), blur_px=(0.0, 0.0), inverted_p=0.0, shading=0.0, stroke_px=(2.0, 2.0), scale=(0.8, 0.8))
    outline = drawn_shape_pairs(3, torch.arange(24), 48, style=DrawnStyle(filled_p=0.0, **clean))
    filled = drawn_shape_pairs(3, torch.arange(24), 48, style=DrawnStyle(filled_p=1.0, **clean))

    def ink_share(images: torch.Tensor) -> torch.Tensor:
        grey = images.float().mean(1).flatten(1)
        paper, ink = grey.amax(1, keepdim=True), grey.amin(1, keepdim=True)
        return (grey < (paper + ink) / 2).float().mean(1)

    thin, solid = ink_share(outline["image_a"]), ink_share(filled["image_a"])
    assert float(thin.max()) < 0.25 and float(thin.min()) > 0.01
    assert bool((solid >= thin).all()) and float(solid.mean()) > 2 * float(thin.mean())


def test_stroke_distance_is_the_distance_to_the_nearest_point() -> None:
    points = torch.tensor([[[5.3, 7.8], [9.9, 2.2], [0.0, 11.0]]])
    dist = stroke_distance(points, 12, radius=3)
    coords = torch.arange(12.0)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    exact = torch.stack([torch.hypot(x - px, y - py) for px, py in points[0].tolist()]).amin(0)
    near = exact <= 2.5
    assert torch.allclose(dist[0][near], exact[near], atol=1e-5)
    assert bool((dist[0][~near] >= 2.5 - 1e-5).all())


def test_bad_style_or_classes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"data.drawn has unknown keys \['wobbel'\]"):
        DrawnStyle.from_config({"wobbel": [0, 1]})
    with pytest.raises(ConfigError, match="data.drawn.stroke_px must be a range"):
        DrawnStyle.from_config({"stroke_px": [6, 1]})
    assert DrawnStyle.from_config({"stroke_px": [1, 3]}).stroke_px == (1.0, 3.0)
    with pytest.raises(ConfigError, match="data.classes must be two or more distinct names"):
        resolve_classes(["circle", "square"])
    with pytest.raises(ConfigError, match="data.style must be one of"):
        ShapesDataModule(style="sketchy")


def test_easy_style_is_kept_by_config() -> None:
    easy = ShapesDataModule(style="easy", image_size=16, train_size=4, val_size=4, test_size=4)
    assert easy.class_names == ["circle", "square"]
    pixels = easy.datasets["train"][0]["image_a"]
    assert len(torch.unique(pixels.flatten(1), dim=1).T) <= 40  # two flat colours and their anti-aliased edge
    assert math.isclose(float(drawn_shape_pairs(0, torch.arange(1), 16)["label"].numel()), 1.0)


def test_hard_pairs_share_their_look_and_pointed_ellipses_have_tips() -> None:
    from neurocorr.data.synthetic.drawn_outlines import closed_outline

    plain = {"noise": (0.0, 0.0), "shading": 0.0, "inverted_p": 0.0, "filled_p": 0.0}
    paper = lambda b: b.float().flatten(2).median(2).values  # noqa: E731  (N, 3) background colour
    for p, expect_same in ((1.0, True), (0.0, False)):
        batch = drawn_shape_pairs(5, torch.arange(32), 24, style=DrawnStyle.from_config({**plain, "shared_geometry_p": p}))
        same_paper = (paper(batch["image_a"]) - paper(batch["image_b"])).abs().amax(1) <= 1
        assert bool(same_paper.all()) if expect_same else float(same_paper.float().mean()) < 0.5
    # a lens (pointedness 1) is thinner near its ends than the ellipse it came from, and as wide in the middle
    zeros, two = torch.zeros(2, 12, 2), torch.full((2,), 2.0)
    lens = closed_outline(zeros, torch.zeros(2, dtype=torch.long), two, pointed=torch.tensor([0.0, 1.0]))
    near_end = lens[..., 0].abs() > 0.9
    half_width = [float(lens[i][near_end[i], 1].abs().max()) for i in range(2)]
    assert half_width[1] < 0.6 * half_width[0] and float(lens[1, :, 1].abs().max()) > 0.95
