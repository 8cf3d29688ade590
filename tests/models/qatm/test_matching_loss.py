"""The matching loss through QATM: batched pair scores, the score-map loss, alpha learning,
self-supervised pairs, multi-scale matching and the NCC baseline."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from neurocorr.backbones.vgg import vgg19_features
from neurocorr.data.synthetic.aerial import render_world
from neurocorr.models.qatm.baselines import ncc_locate
from neurocorr.models.qatm.boxes import extract_boxes, xywh_to_xyxy
from neurocorr.models.qatm.evaluation import centre_cells
from neurocorr.models.qatm.lightning_model import QATMModule
from neurocorr.models.qatm.losses import ScoreMapCrossEntropy, ScoreMapRanking
from neurocorr.models.qatm.multiscale import match_multiscale
from neurocorr.models.qatm.pairs import warped_pairs
from neurocorr.models.qatm.qatm import qatm_pair_log_scores, qatm_score
from neurocorr.models.qatm.torch_model import QATMNet
from neurocorr.models.qatm.training import scale_negative_log_scores
from neurocorr.errors import ConfigError


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(box_iou(xywh_to_xyxy(a.view(1, 4).float()), xywh_to_xyxy(b.view(1, 4).float()))[0, 0])


def test_pair_log_scores_equal_the_qatm_layer():
    g = torch.Generator().manual_seed(0)
    scenes, templates = torch.randn(2, 6, 9, 11, generator=g), torch.randn(2, 6, 3, 4, generator=g)
    batched = qatm_pair_log_scores(scenes, templates, alpha=10.0)
    for b in range(2):
        mask = torch.ones(1, 3, 4, dtype=torch.bool)
        one = qatm_score(scenes[b], templates[b : b + 1], mask, torch.tensor([[3, 4]]), alpha=10.0)[0]
        torch.testing.assert_close(batched[b].exp(), one, atol=1e-5, rtol=1e-4)


def test_score_map_loss_is_lowest_with_the_peak_at_the_true_centre():
    loss = ScoreMapCrossEntropy(sigma=1.0)
    centre = torch.tensor([[5.0, 3.0]])
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(10.0), indexing="ij")
    right = -((xs - 5) ** 2 + (ys - 3) ** 2)[None] / 2
    wrong = -((xs - 1) ** 2 + (ys - 6) ** 2)[None] / 2
    assert loss(right, centre) < loss(wrong, centre)
    outside = right.clone()
    outside[..., :2] = float("-inf")  # positions where the template does not fit are ignored
    assert torch.isfinite(loss(outside, centre))


def test_warped_pairs_put_the_template_in_its_box():
    smooth = F.interpolate(torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(1)), size=(128, 128), mode="bilinear")
    torch.manual_seed(0)
    pairs = warped_pairs(smooth, 32, 8, 96, scale=(1.0, 1.0), rotation=0.0, perspective=0.0)
    assert pairs.template.shape == (3, 3, 48, 48) and pairs.scene.shape == (3, 3, 96, 96)
    for b in range(3):
        x, y, w, h = pairs.box[b].tolist()
        assert (w, h) == pytest.approx((32, 32), abs=1e-3) and x >= 0 and y >= 0 and x + w <= 96 and y + h <= 96
        crop = pairs.scene[b, :, round(y) : round(y) + 32, round(x) : round(x) + 32]
        assert (crop - pairs.template[b, :, 8:40, 8:40]).abs().mean() < 0.02
    torch.manual_seed(0)
    scaled = warped_pairs(smooth, 32, 8, 96, scale=(1.5, 1.5), rotation=0.0, perspective=0.0)
    torch.testing.assert_close(scaled.box[:, 2:], torch.full((3, 2), 48.0), atol=1e-3, rtol=0)


@pytest.mark.parametrize("mild", [0.0, 1.0])
def test_mild_share_keeps_self_supervised_pairs_near_their_source_size(mild):
    net = QATMNet(vgg19_features(width=0.125))
    pairs = {"template_size": 32, "context": 8, "scale": [0.5, 0.5], "rotation": 0.0, "perspective": 0.0, "mild": mild}
    model = QATMModule(net=net, objective="matching", pairs=pairs, augment=False, evaluation={"baselines": []},
                       optimizer=functools.partial(torch.optim.Adam, lr=1e-3))
    image = (torch.rand(4, 3, 96, 96, generator=torch.Generator().manual_seed(2)) * 255).to(torch.uint8)
    batch = {"template": torch.zeros(4, 3, 48, 48, dtype=torch.uint8), "scene": image, "box": torch.zeros(4, 4),
             "warp": torch.tensor([True, True, True, False])}
    out = model._training_pairs(batch)
    side = out["box"][:3, 2:]
    if mild:  # the MILD_WARP range (scale 0.9-1.1, +-5 degrees), not the configured 0.5
        assert bool(((side > 0.85 * 32) & (side < 1.25 * 32)).all())
    else:
        torch.testing.assert_close(side, torch.full((3, 2), 16.0), atol=1e-3, rtol=0)
    assert torch.equal(out["box"][3], torch.zeros(4))  # a CSV pair (warp False) is left as it came


def test_wrong_scale_negatives_enter_the_softmax_and_train_the_backbone():
    torch.manual_seed(0)
    net = QATMNet(vgg19_features(width=0.125))
    model = QATMModule(net=net, loss=ScoreMapCrossEntropy(), objective="matching", evaluation={"baselines": []},
                       pairs={"template_size": 32, "context": 8, "stride": 4, "scale_negatives": [0.5, 2.0]},
                       optimizer=functools.partial(torch.optim.Adam, lr=1e-3))
    model.log_train_mean = lambda *a, **k: None
    images = render_world(torch.Generator().manual_seed(3), 96, 8, centre_building=False)[0][None].expand(2, -1, -1, -1)
    pairs = warped_pairs(images, 32, 8, 80, scale=(1.0, 1.0), rotation=0.0, perspective=0.0)
    batch = {"template": pairs.template, "scene": pairs.scene, "box": pairs.box}
    loss = model.training_step(batch, 0)
    plain = QATMModule(net=net, loss=ScoreMapCrossEntropy(), objective="matching", evaluation={"baselines": []},
                       pairs={"template_size": 32, "context": 8, "stride": 4},
                       optimizer=functools.partial(torch.optim.Adam, lr=1e-3))
    plain.log_train_mean = model.log_train_mean
    assert float(loss) > float(plain.training_step(batch, 0)) + 1e-4  # the wrong scales take probability mass
    loss.backward()
    assert net.backbone.features[0].weight.grad.abs().sum() > 0
    # a template at 1.6x in its scene: 2x is too close to be a wrong answer, 0.5x is not
    scene_feats = net.encode(pairs.scene, 4)
    box = torch.tensor([[0.0, 0.0, 51.2, 51.2], [0.0, 0.0, 32.0, 32.0]])
    half, double = scale_negative_log_scores(net, pairs.template, scene_feats, box, 8, 4, [0.5, 2.0])
    assert torch.isfinite(half).any(dim=(1, 2)).tolist() == [True, True]
    assert torch.isfinite(double).any(dim=(1, 2)).tolist() == [False, True]
    with pytest.raises(ConfigError, match="scale_negatives"):
        QATMModule(net=net, objective="matching", pairs={"scale_negatives": [1.2]}, optimizer=functools.partial(torch.optim.Adam))


def test_alpha_gets_a_gradient_and_moves(tmp_path):
    torch.manual_seed(0)
    net = QATMNet(vgg19_features(width=0.125), learn_alpha=True)
    # loss=qatm_score_rank: score-map cross-entropy + ranking across the batch's scenes
    model = QATMModule(net=net, loss=ScoreMapRanking(), objective="matching", alpha_lr=0.1,
                       optimizer=functools.partial(torch.optim.Adam, lr=1e-3), evaluation={"baselines": []})
    images = render_world(torch.Generator().manual_seed(3), 96, 8, centre_building=False)[0][None].expand(2, -1, -1, -1)
    pairs = warped_pairs(images, 32, 8, 64)
    batch = {"template": pairs.template, "scene": pairs.scene, "box": pairs.box}
    model.log_train_mean = lambda *a, **k: None
    optimizer = model.configure_optimizers()
    before = float(net.qatm.alpha)
    loss = model.training_step(batch, 0)
    loss.backward()
    assert net.qatm.alpha.grad is not None and float(net.qatm.alpha.grad.abs()) > 0
    assert net.backbone.features[0].weight.grad.abs().sum() > 0  # the backbone learns through QATM too
    optimizer.step()
    assert abs(float(net.qatm.alpha) - before) > 1e-3


def test_centre_cells_invert_the_box_placement():
    net = QATMNet(vgg19_features(width=0.125), stride=4)
    scene = render_world(torch.Generator().manual_seed(4), 96, 8, centre_building=False)[0][None]
    gt = torch.tensor([[28.0, 36.0, 32.0, 32.0]])
    with torch.no_grad():
        result = net.match(scene, [], sources=[(scene, gt)])
    boxes = extract_boxes(result, global_ratio=0.0)
    best = boxes.xywh[boxes.score.argmax()]
    cell = centre_cells(best[None], result.sizes[0].tolist(), 4)[0]
    peak = result.feature_score[0].flatten().argmax()
    assert cell.round().tolist() == [float(peak % result.feature_score.shape[-1]), float(peak // result.feature_score.shape[-1])]


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return QATMNet(vgg19_features(width=0.25)).eval()


def test_multiscale_finds_a_rescaled_crop_with_the_winning_size(net):
    world = render_world(torch.Generator().manual_seed(5), 192, 14, centre_building=False)[0]
    gt = torch.tensor([60.0, 50.0, 64.0, 64.0])
    # the template is the scene's box shrunk to half size: at scale 2 it fits the box again
    template = F.interpolate(world[None, :, 50:114, 60:124], size=(32, 32), mode="bilinear", antialias=True)[0]
    result = match_multiscale(net, world[None], [(template, None)], scales=[0.5, 1.0, 2.0], stride=4)
    boxes = extract_boxes(result, global_ratio=0.0)
    best = boxes.xywh[boxes.score.argmax()]
    assert best[2:].tolist() == [64.0, 64.0] and iou(best, gt) > 0.6
    assert result.cell_sizes.shape == (1, *result.feature_score.shape[-2:], 2)


def test_ncc_baseline_finds_an_exact_crop():
    world = (render_world(torch.Generator().manual_seed(6), 96, 8, centre_building=False)[0] * 255).to(torch.uint8)
    box, score, _ = ncc_locate(world, [20, 30, 24, 20], world)
    assert box.tolist() == [20.0, 30.0, 24.0, 20.0] and score == pytest.approx(1.0, abs=1e-4)
