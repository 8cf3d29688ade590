"""QATMModule: cross-view fine-tuning of the VGG backbone (retrieval head + triplet / Smooth-AP
loss) and evaluation by retrieval (University-1652) or template localisation (template pairs)."""

from __future__ import annotations

from typing import Any, Optional

import kornia.augmentation as K
import torch
from torch import nn
from torchmetrics.detection import MeanAveragePrecision

from neurocorr.models.base import NeurocorrModule
from neurocorr.models.qatm.boxes import extract_boxes
from neurocorr.models.qatm.metrics import CrossViewRetrieval, Localisation
from neurocorr.models.qatm.torch_model import QATMNet


class QATMModule(NeurocorrModule):
    """Args:
        net: the :class:`QATMNet`.
        loss: a retrieval loss ``(query, query_labels, gallery, gallery_labels) -> scalar``.
        augment: batched kornia augmentation of training images (rotation, colour).
        match: box extraction settings (``global_ratio``, ``local_ratio``, ``nms_iou``, ``top_k``).
        optimizer, scheduler, monitor, monitor_mode, **base (compile...): see :class:`NeurocorrModule`.
    """

    def __init__(
        self, net: QATMNet, loss: nn.Module, optimizer: Any, scheduler: Any = None, augment: bool = True,
        match: Optional[dict[str, float]] = None, monitor: str = "val/recall_at_1", monitor_mode: str = "max",
        scheduler_interval: str = "epoch", **base: Any,
    ) -> None:
        super().__init__(optimizer, scheduler, scheduler_interval, monitor, monitor_mode, **base)
        self.net, self.loss = net, loss
        self.match_args = dict(match or {})
        self.augment = nn.Sequential(K.RandomRotation(180.0, p=0.8), K.ColorJitter(0.3, 0.3, 0.3, 0.0, p=0.8)) if augment else None
        self.retrieval = nn.ModuleDict({"val": CrossViewRetrieval(), "test": CrossViewRetrieval()})
        self.localisation = nn.ModuleDict({"val": Localisation(), "test": Localisation()})
        self.coco_map = nn.ModuleDict({s: MeanAveragePrecision(box_format="xywh", iou_type="bbox", backend="faster_coco_eval") for s in ("val", "test")})
        self._figure_pair: Optional[dict[str, Any]] = None

    def compile_targets(self) -> list[nn.Module]:
        # QATMNet has no forward: training calls net.embed (backbone + head), matching calls the
        # backbone on scene tiles, so those are what model.compile compiles
        return [self.net.backbone, self.net.head]

    # ------------------------------------------------------------------ data on the device
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not isinstance(batch, dict):
            return batch
        out = dict(batch)
        for key in ("drone", "satellite", "image"):
            if key in out:
                img = out[key].float() / 255.0
                if self.training and self.augment is not None and key != "image":
                    img = self.augment(img)
                out[key] = img
        return out

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        drone, sat = self.net.embed(batch["drone"]), self.net.embed(batch["satellite"])
        y = batch["label"]
        loss = 0.5 * (self.loss(drone, y, sat, y) + self.loss(sat, y, drone, y))
        # epoch means only: a per-step value in the progress bar is read back (.item()) every step,
        # a host sync on a GPU
        self.log_train_mean("train/loss", loss, y.shape[0], prog_bar=True)
        return loss

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch: Any, stage: str) -> None:
        if isinstance(batch, dict):
            emb = self.net.embed(batch["image"])
            self.retrieval[stage].update(emb, batch["label"], batch["role"], batch["index"])
            self._seen_retrieval = True
        else:
            self._localise(batch, stage)

    def _localise(self, items: list[dict[str, Any]], stage: str) -> None:
        preds, targets, tops, gts, has = [], [], [], [], []
        for item in items:
            scene = item["scene"].to(self.device)[None].float() / 255.0
            template = item["template"].to(self.device).float() / 255.0
            tbox = item["template_box"]
            if torch.isnan(tbox).any():
                result = self.net.match(scene, [template])
            else:
                result = self.net.match(scene, [], sources=[(template[None], tbox[None].to(self.device))])
            boxes = extract_boxes(result, **self.match_args)
            preds.append({"boxes": boxes.xywh, "scores": boxes.score, "labels": torch.zeros_like(boxes.template)})
            gt = item["box"].to(self.device).float()
            targets.append({"boxes": gt[None], "labels": torch.zeros(1, dtype=torch.long, device=self.device)})
            best = boxes.score.argmax() if boxes.score.numel() else None
            tops.append(boxes.xywh[best] if best is not None else torch.zeros(4, device=self.device))
            has.append(best is not None)
            gts.append(gt)
            if self._figure_pair is None and stage == "test":
                self._figure_pair = {"scene": item["scene"], "score": result.score[0].cpu(), "boxes": boxes.xywh.cpu(), "gt": gt.cpu()}
        self.localisation[stage].update(torch.stack(tops), torch.stack(gts), torch.tensor(has, device=self.device))
        self.coco_map[stage].update(preds, targets)
        self._seen_localisation = True

    def _eval_epoch_end(self, stage: str) -> None:
        if getattr(self, "_seen_retrieval", False):
            for k, v in self.retrieval[stage].compute().items():
                self.log(f"{stage}/{k}", v)
            self.retrieval[stage].reset()
        if getattr(self, "_seen_localisation", False):
            for k, v in self.localisation[stage].compute().items():
                self.log(f"{stage}/{k}", v)
            m = self.coco_map[stage].compute()
            self.log(f"{stage}/map", m["map"])
            self.log(f"{stage}/map_50", m["map_50"])
            self.localisation[stage].reset()
            self.coco_map[stage].reset()
        self._seen_retrieval = self._seen_localisation = False

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")
        if self._figure_pair is not None:
            from neurocorr.models.qatm.viz import localisation_figure

            p = self._figure_pair
            self.log_figure(localisation_figure(p["scene"], p["score"], p["boxes"], p["gt"]), "localisation")
            self._figure_pair = None
