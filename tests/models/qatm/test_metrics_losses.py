"""Retrieval metrics on hand-made similarities, losses, localisation metrics, COCO mAP cross-check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.detection import MeanAveragePrecision

from neurocorr.models.qatm.losses import BatchHardTriplet, SmoothAP
from neurocorr.models.qatm.metrics import CrossViewRetrieval, Localisation, retrieval_metrics


def test_recall_and_ap_on_a_hand_made_similarity_matrix():
    # 3 queries, gallery labels [0, 1, 2, 0, 3]
    sim = torch.tensor([
        [0.9, 0.1, 0.2, 0.3, 0.0],   # label 0: positives at ranks 1 and 2 -> AP 1
        [0.8, 0.7, 0.1, 0.2, 0.9],   # label 1: positive at rank 3        -> AP 1/3
        [0.1, 0.2, 0.3, 0.4, 0.5],   # label 2: positive at rank 3        -> AP 1/3
    ])
    out = retrieval_metrics(sim, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2, 0, 3]), ks=(1, 2, 3))
    assert out["recall_at_1"].item() == pytest.approx(1 / 3)
    assert out["recall_at_2"].item() == pytest.approx(1 / 3)
    assert out["recall_at_3"].item() == pytest.approx(1.0)
    assert out["recall_at_top1pct"].item() == pytest.approx(1 / 3)  # 1% of 5 -> top 1
    assert out["ap"].item() == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)


def test_own_image_is_excluded_exactly_once_and_the_true_first_hit_stays():
    # the query is also in the gallery (index 0) with the highest similarity; its true match is item 1
    sim = torch.tensor([[1.0, 0.9, 0.5, 0.95]])
    exclude = torch.tensor([[True, False, False, False]])
    out = retrieval_metrics(sim, torch.tensor([7]), torch.tensor([7, 7, 3, 4]), exclude, ks=(1, 2))
    assert out["recall_at_1"].item() == 0.0  # item 3 (label 4) outranks the true match
    assert out["recall_at_2"].item() == 1.0
    assert out["ap"].item() == pytest.approx(0.5)
    # the metric class excludes by image identity
    m = CrossViewRetrieval(ks=(1,))
    emb = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=1)
    m.update(emb, torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 1, 1]), torch.tensor([0, 0, 1, 2]))
    res = m.compute()
    assert res["recall_at_1"].item() == 1.0 and res["ap"].item() == pytest.approx(1.0)


def _toy(seed=0, n=6, per=3, dim=8):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n).repeat_interleave(per)
    return torch.randn(n * per, dim, generator=g, requires_grad=True), labels


@pytest.mark.parametrize("loss_fn", [SmoothAP(tau=0.05), BatchHardTriplet(margin=0.3)])
def test_losses_decrease_on_a_toy_problem(loss_fn):
    raw, labels = _toy()
    own = torch.eye(len(labels), dtype=torch.bool)

    def ap_now() -> float:
        emb = torch.nn.functional.normalize(raw.detach(), dim=1)
        return retrieval_metrics(emb @ emb.t(), labels, labels, own)["ap"].item()

    ap_before = ap_now()
    opt = torch.optim.SGD([raw], lr=2.0)
    losses = []
    for _ in range(40):
        emb = torch.nn.functional.normalize(raw, dim=1)
        loss = loss_fn(emb, labels, emb, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    assert ap_now() > ap_before + 0.2


def test_smooth_ap_approaches_true_ap_at_low_temperature():
    g = torch.Generator().manual_seed(3)
    q, gal = torch.nn.functional.normalize(torch.randn(4, 5, generator=g), dim=1), torch.nn.functional.normalize(torch.randn(9, 5, generator=g), dim=1)
    ql, gl = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 2, 0, 1, 2, 3, 3, 0])
    true_ap = retrieval_metrics(q @ gal.t(), ql, gl)["ap"].item()
    assert 1 - SmoothAP(tau=1e-4)(q, ql, gal, gl).item() == pytest.approx(true_ap, abs=1e-3)


def test_localisation_success_auc_and_mean_iou():
    m = Localisation()
    target = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    pred = torch.tensor([[0.0, 0, 10, 10], [5, 0, 10, 10], [0, 0, 10, 10]])  # IoU 1, 1/3, (no box)
    m.update(pred, target, torch.tensor([True, True, False]))
    out = m.compute()
    assert out["mean_iou"].item() == pytest.approx((1 + 1 / 3) / 3)
    assert out["success_at_0.5"].item() == pytest.approx(1 / 3)
    thresholds = np.linspace(0, 1, 21)
    expected = np.mean([np.mean([1 > t, 1 / 3 > t, 0 > t]) for t in thresholds])
    assert out["success_auc"].item() == pytest.approx(expected)


def test_coco_map_faster_coco_eval_agrees_with_pycocotools():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    g = torch.Generator().manual_seed(0)
    preds, targets = [], []
    images, anns, dets = [], [], []
    for i in range(6):
        gt = torch.rand(2, 2, generator=g) * 60
        gt = torch.cat([gt, 10 + torch.rand(2, 2, generator=g) * 30], 1)  # xywh
        noisy = gt + torch.randn(gt.shape, generator=g) * 3
        extra = torch.tensor([[70.0, 70, 20, 20]])
        boxes = torch.cat([noisy, extra])
        scores = torch.rand(3, generator=g)
        preds.append({"boxes": boxes, "scores": scores, "labels": torch.zeros(3, dtype=torch.long)})
        targets.append({"boxes": gt, "labels": torch.zeros(2, dtype=torch.long)})
        images.append({"id": i, "width": 128, "height": 128})
        for b in gt.tolist():
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": b, "area": b[2] * b[3], "iscrowd": 0})
        for b, s in zip(boxes.tolist(), scores.tolist()):
            dets.append({"image_id": i, "category_id": 1, "bbox": b, "score": s})
    ours = MeanAveragePrecision(box_format="xywh", backend="faster_coco_eval")
    ours.update(preds, targets)
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "t"}]}
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(dets), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ours.compute()["map"].item() == pytest.approx(ev.stats[0], abs=1e-4)
