"""Exact crops are found with random-init VGG features; boxes; the real QATM sample."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torchvision.ops import box_iou

from neurocorr.backbones.vgg import vgg19_features
from neurocorr.data.formats.image import read_image
from neurocorr.data.synthetic.aerial import render_world
from neurocorr.models.qatm.boxes import extract_boxes, xywh_to_xyxy
from neurocorr.models.qatm.torch_model import QATMNet

SAMPLE = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "qatm_sample"
needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"shared sample data not found at {SAMPLE} (clone shared/ beside the repo)")


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(box_iou(xywh_to_xyxy(a.view(1, 4).float()), xywh_to_xyxy(b.view(1, 4).float()))[0, 0])


def best_box_per_template(boxes, n):
    out = {}
    for i in range(n):
        sel = boxes.template == i
        if sel.any():
            out[i] = boxes.xywh[sel][boxes.score[sel].argmax()]
    return out


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return QATMNet(vgg19_features(width=0.5)).eval()


def test_crops_cut_from_the_scene_features_are_found(net):
    scene, _ = render_world(torch.Generator().manual_seed(5), 128, 10, centre_building=False)
    gt = torch.tensor([[10.0, 14.0, 40.0, 36.0], [70.0, 60.0, 44.0, 40.0], [37.0, 81.0, 34.0, 33.0]])
    with torch.no_grad():
        result = net.match(scene[None], [], sources=[(scene[None], gt)])
    best = best_box_per_template(extract_boxes(result, global_ratio=0.0), 3)
    assert set(best) == {0, 1, 2}
    for i in range(3):
        assert iou(best[i], gt[i]) > 0.9, (i, best[i], gt[i])


def test_boxes_are_template_sized_scored_and_suppressed(net):
    scene, _ = render_world(torch.Generator().manual_seed(6), 96, 8, centre_building=False)
    gt = torch.tensor([[20.0, 24.0, 36.0, 30.0]])
    with torch.no_grad():
        result = net.match(scene[None], [], sources=[(scene[None], gt)])
    boxes = extract_boxes(result, local_ratio=0.1, nms_iou=0.3)
    assert result.score.shape == (1, 96, 96)
    assert torch.all(boxes.xywh[:, 2:] == torch.tensor([36.0, 30.0]))
    assert torch.all(boxes.score > 0) and boxes.score.max() == pytest.approx(float(result.feature_score.max()))
    overlaps = box_iou(xywh_to_xyxy(boxes.xywh), xywh_to_xyxy(boxes.xywh)).fill_diagonal_(0)
    assert overlaps.max() <= 0.3 + 1e-6


def _sample():
    rows = list(csv.DictReader(open(SAMPLE / "pairs.csv")))
    scene = read_image(SAMPLE / rows[0]["scene_image"]).float()[None] / 255
    templates = [read_image(SAMPLE / r["template_image"]).float() / 255 for r in rows]
    gt = torch.tensor([[float(r[k]) for k in "xywh"] for r in rows])
    dummy = read_image(SAMPLE / "template" / "template1_dummy.png").float() / 255
    return scene, templates, gt, dummy


@pytest.fixture(scope="module")
def vgg_net():
    torch.manual_seed(0)
    return QATMNet(vgg19_features()).eval()


@needs_sample
def test_real_sample_templates_as_boxes_in_their_source(vgg_net):
    """The four templates are exact crops of the scene: cut from its feature map they are found."""
    scene, _, gt, _ = _sample()
    with torch.no_grad():
        result = vgg_net.match(scene, [], sources=[(scene, gt)], stride=2)
    best = best_box_per_template(extract_boxes(result, global_ratio=0.0), 4)
    assert [round(iou(best[i], gt[i]), 2) > 0.9 for i in range(4)] == [True] * 4


@needs_sample
def test_real_sample_bare_templates_reflect_padding_beats_zero_padding(vgg_net):
    """Bare template files: reflect padding finds all four crops and gives the dummy no box;
    zero padding (the seed's way) does worse."""
    scene, templates, gt, dummy = _sample()
    ious = {}
    for padding in ("reflect", "zero"):
        vgg_net.template_padding = padding
        with torch.no_grad():
            result = vgg_net.match(scene, templates + [dummy], stride=2)
        best = best_box_per_template(extract_boxes(result, global_ratio=0.3), 5)
        ious[padding] = [iou(best[i], gt[i]) if i in best else 0.0 for i in range(4)]
        if padding == "reflect":
            assert 4 not in best, "the dummy template must give no box"
    vgg_net.template_padding = "reflect"
    assert min(ious["reflect"]) > 0.75, ious
    assert sum(ious["reflect"]) > sum(ious["zero"]), ious


@needs_sample
def test_peak_to_median_confidence_keeps_the_boxes_and_ranks_the_dummy_last(vgg_net):
    """The confidence unit changes box scores, not places; the template that is not in the scene
    stands out of its own map least."""
    scene, templates, gt, dummy = _sample()
    with torch.no_grad():
        result = vgg_net.match(scene, templates + [dummy], stride=2)
    plain = best_box_per_template(extract_boxes(result, global_ratio=0.0), 5)
    boxes = extract_boxes(result, global_ratio=0.0, confidence="peak_to_median")
    ratio = best_box_per_template(boxes, 5)
    for i in range(5):
        torch.testing.assert_close(ratio[i], plain[i])
    best = {i: float(boxes.score[boxes.template == i].max()) for i in range(5)}
    assert best[4] < min(best[i] for i in range(4)), best
    assert min(best.values()) > 1.0  # peaks over medians
    with pytest.raises(ValueError, match="confidence"):
        extract_boxes(result, confidence="z")
