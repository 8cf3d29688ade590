"""Synthetic shape pairs: pure functions of (seed, index), correct labels, distinct splits."""

from __future__ import annotations

import torch

from neurocorr.data.agfusion import ShapePairs, ShapesDataModule
from neurocorr.data.synthetic.shapes import CIRCLE, SQUARE, render, sample_parameters, shape_pairs


def test_sample_is_a_pure_function_of_seed_and_index() -> None:
    batch = shape_pairs(7, torch.tensor([3, 10, 11]), 32)
    again = shape_pairs(7, torch.tensor([11, 3]), 32)
    assert torch.equal(batch["image_a"][0], again["image_a"][1])
    assert torch.equal(batch["image_b"][2], again["image_b"][0])
    other_seed = shape_pairs(8, torch.tensor([3]), 32)
    assert not torch.equal(batch["image_a"][0], other_seed["image_a"][0])


def test_shapes_dtypes_and_label_means_same_figure() -> None:
    batch = shape_pairs(1, torch.arange(400), 40)
    assert batch["image_a"].shape == (400, 3, 40, 40) and batch["image_a"].dtype == torch.uint8
    assert torch.equal(batch["label"], (batch["class_a"] == batch["class_b"]).float())
    assert 0.4 < float(batch["label"].mean()) < 0.6
    assert set(batch["class_a"].tolist()) == {CIRCLE, SQUARE}


def test_rendered_figure_area_matches_its_parameters() -> None:
    params = sample_parameters(3, torch.arange(50), 64)
    images = render(params, 64).float()
    background = params["background"][:, 0]
    inside = (images[:, 0] - background[..., None, None] * 255).abs().amax(1) > 20  # pixels off the background
    area = inside.flatten(1).sum(1).float()
    expected = torch.pi * params["radius"][:, 0] ** 2  # squares are drawn with the circle's area
    assert torch.allclose(area, expected, rtol=0.25)


def test_single_item_equals_batched_item() -> None:
    dataset = ShapesDataModule(image_size=32, train_size=20, val_size=4, test_size=4, split_seeds=(5, 6, 7)).datasets["train"]
    assert isinstance(dataset, ShapePairs)
    batch = dataset.__getitems__([4, 9])
    single = dataset[9]
    assert all(torch.equal(single[k], batch[k][1]) for k in single)


def test_datamodule_splits_come_from_distinct_seeds() -> None:
    dm = ShapesDataModule(image_size=32, train_size=32, val_size=32, test_size=32, batch_size=8)
    firsts = [dm.datasets[s][0]["image_a"] for s in ("train", "val", "test")]
    assert not torch.equal(firsts[0], firsts[1]) and not torch.equal(firsts[1], firsts[2])
    batch = next(iter(dm.train_dataloader()))
    assert batch["image_a"].shape == (8, 3, 32, 32)
