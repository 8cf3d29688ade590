"""QATMModule: fine-tunes the VGG backbone (and alpha) either through the QATM score map (objective
``matching``: template pairs, cross-entropy to a Gaussian at the true centre) or through a pooled
retrieval head (objective ``retrieval``: cross-view pairs, triplet / Smooth-AP). Evaluates by
template localisation (model vs pixel NCC vs the untrained network, multi-scale) and by cross-view
retrieval (pooled embeddings and, optionally, QATM scores), with figures."""

from __future__ import annotations

import copy
import math
from typing import Any, Optional

import kornia.augmentation as K
import torch
from torch import nn
from torchmetrics.detection import MeanAveragePrecision

from neurocorr.distributed import gather_lists
from neurocorr.errors import ConfigError
from neurocorr.models.base import NeurocorrModule
from neurocorr.models.qatm.boxes import CONFIDENCES
from neurocorr.models.qatm.evaluation import (
    centre_cells, localisation_table, template_crop, localise_ncc, localise_qatm, metric_prefix, write_text,
)
from neurocorr.models.qatm.metrics import CrossViewRetrieval, Localisation
from neurocorr.models.qatm.pairs import MILD_WARP, photometric, warped_pairs
from neurocorr.models.qatm.torch_model import QATMNet
from neurocorr.models.qatm.training import (ThresholdCalibration, bare_templates, cross_log_scores, default_threshold,
                                            scale_negative_log_scores)

OBJECTIVES = ("matching", "retrieval")
TRAIN_KEYS = {"matching": ("template", "scene", "box"), "retrieval": ("drone", "satellite", "label")}
EVAL_KEYS = (("template", "scene", "box"), ("image", "label", "role", "index"))
PAIRS_DEFAULTS: dict[str, Any] = {"template_size": 48, "context": 16, "stride": 4, "scale": [0.7, 1.4],
                                  "rotation": 20.0, "perspective": 0.15, "photometric": 1.0, "bare": 0.0, "mild": 0.0,
                                  "scale_negatives": []}
EVAL_DEFAULTS: dict[str, Any] = {"baselines": ["untrained", "ncc"], "figure_pairs": 6, "qatm_retrieval": False,
                                 "retrieval_crop": 0.5, "retrieval_stride": 4, "figure_queries": 6}
LOC_METRICS = ("success_auc", "mean_iou", "success_at_0.5")
RET_METRICS = ("recall_at_1", "recall_at_5", "recall_at_10", "recall_at_top1pct", "ap")


class QATMModule(NeurocorrModule):
    """Args (keyword only):
        net: the :class:`QATMNet`.
        loss: ``matching``: a score-map loss ``(log_scores (B, H, W), centres (B, 2) cells)``; ``retrieval``:
            ``(query, query_labels, gallery, gallery_labels) -> scalar``.
        objective: ``matching`` or ``retrieval`` (what training batches hold; see ``TRAIN_KEYS``).
        augment: augment training images on the device (retrieval: rotation + colour; matching:
            photometric change of templates and scenes).
        match: matching and box settings: ``scales``, ``angles``, ``stride``, ``size_normalise``
            (multi-scale variants) and ``global_ratio``, ``local_ratio``, ``nms_iou``, ``top_k``,
            ``min_score`` (boxes; ``auto``: the threshold calibrated on validation pairs, kept in checkpoints),
            ``confidence`` (the unit of box scores and thresholds: ``score`` or ``peak_to_median``).
        pairs: training pairs (matching): ``template_size`` and ``context`` pixels, ``stride``, and the
            self-supervised warp (``scale`` range, ``rotation`` degrees, ``perspective``, ``photometric``),
            ``bare``: share of templates whose context is replaced by reflection (as bare templates are matched);
            ``mild``: share of self-supervised pairs warped only slightly (:data:`MILD_WARP`), so that
            fine-tuning keeps near-exact copies sharp while it learns invariance on the rest;
            ``scale_negatives``: template scale factors (e.g. ``[0.5, 2.0]``) whose maps join the
            score-map softmax as wrong answers, so that the true scale wins the multi-scale matching.
        evaluation: ``baselines`` (``untrained``, ``ncc``), ``figure_pairs``, ``qatm_retrieval`` (also rank
            by QATM scores), ``retrieval_crop``, ``retrieval_stride``, ``figure_queries``.
        alpha_lr: learning rate of a learnable alpha (its own parameter group; None: the optimiser's).
        **base: optimizer, scheduler, monitor, ... (see :class:`NeurocorrModule`).
    """

    def __init__(
        self, *, net: QATMNet, loss: Optional[nn.Module] = None, objective: str = "retrieval", augment: bool = True,
        match: Optional[dict[str, Any]] = None, pairs: Optional[dict[str, Any]] = None,
        evaluation: Optional[dict[str, Any]] = None, alpha_lr: Optional[float] = None, **base: Any,
    ) -> None:
        base.setdefault("monitor", "val/recall_at_1" if objective == "retrieval" else "val/success_auc")
        base.setdefault("monitor_mode", "max")
        super().__init__(**base)
        if objective not in OBJECTIVES:
            raise ConfigError(f"model.objective must be one of {OBJECTIVES}, got {objective!r}")
        self.objective, self.required_batch_keys = objective, TRAIN_KEYS[objective]
        self.net, self.loss_fn, self.alpha_lr = net, loss, alpha_lr
        self._match_args = dict(match or {})
        if self._match_args.get("confidence", "score") not in CONFIDENCES:
            raise ConfigError(f"model.match.confidence must be one of {CONFIDENCES}, got {self._match_args['confidence']!r}")
        # best-score threshold (model.match.min_score=auto) calibrated on validation pairs; NaN until then
        self.register_buffer("score_threshold", torch.tensor(float("nan")))
        self._register_load_state_dict_pre_hook(default_threshold)
        self._calibration = ThresholdCalibration()
        self.pairs = {**PAIRS_DEFAULTS, **(pairs or {})}
        factors = list(self.pairs["scale_negatives"] or [])
        if any(not float(f) > 0 or abs(math.log(float(f))) < math.log(1.5) for f in factors):
            raise ConfigError(f"model.pairs.scale_negatives must be scale factors <= 1/1.5 or >= 1.5, got {factors}")
        if factors and getattr(loss, "cross_scene", False):
            raise ConfigError("model.pairs.scale_negatives works with the score-map cross-entropy (loss=qatm_score_ce), "
                              f"not with {type(loss).__name__}")
        self.evaluation = {**EVAL_DEFAULTS, **(evaluation or {})}
        unknown = set(self.evaluation["baselines"]) - {"untrained", "ncc"}
        if unknown:
            raise ConfigError(f"model.evaluation.baselines: unknown {sorted(unknown)} (choose from untrained, ncc)")
        self.augment = nn.Sequential(K.RandomRotation(180.0, p=0.8), K.ColorJitter(0.3, 0.3, 0.3, 0.0, p=0.8)) if augment and objective == "retrieval" else None
        self.photometric = float(self.pairs["photometric"]) if augment else 0.0
        # the network as it starts (before fine-tuning): the "untrained" baseline, frozen, kept in checkpoints
        self.untrained_net: Optional[QATMNet] = None
        if "untrained" in self.evaluation["baselines"]:
            self.untrained_net = copy.deepcopy(net).requires_grad_(False)
        self.retrieval = nn.ModuleDict({"val": CrossViewRetrieval(), "test": CrossViewRetrieval()})
        self.localisation = nn.ModuleDict()  # "<stage>|<set>|<method>" -> Localisation, added as sets appear
        self.coco_map = nn.ModuleDict({s: MeanAveragePrecision(box_format="xywh", iou_type="bbox", backend="faster_coco_eval") for s in ("val", "test")})
        self._figure_rows: dict[str, list[dict[str, Any]]] = {}
        self._retrieval_images: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._seen_retrieval = False

    @property
    def match_args(self) -> dict[str, Any]:
        """``model.match`` with ``min_score: auto`` replaced by the calibrated threshold (None before)."""
        t = float(self.score_threshold)
        return {**self._match_args, **({"min_score": t if t == t else None} if self._match_args.get("min_score") == "auto" else {})}

    def configure_optimizers(self) -> Any:
        alpha = self.net.qatm.alpha
        if self.alpha_lr is None or not isinstance(alpha, nn.Parameter):
            return super().configure_optimizers()
        others = [p for p in self.parameters() if p.requires_grad and p is not alpha]
        groups = [{"params": others}, {"params": [alpha], "lr": float(self.alpha_lr), "weight_decay": 0.0}]
        optimizer = self.optimizer_factory(params=groups)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer),
                                                         "interval": self.scheduler_interval, "monitor": self.monitor}}

    def compile_targets(self) -> list[nn.Module]:
        # QATMNet has no forward: training calls net.embed / net.encode (backbone, head), so those
        return [self.net.backbone, self.net.head]

    def missing_batch_keys(self, keys: Any) -> list[str]:
        present = set(keys)
        if any(set(layout) <= present for layout in EVAL_KEYS):  # an evaluation batch of either kind
            return []
        return super().missing_batch_keys(present)

    def validation_metrics(self) -> list[str]:
        loc = [f"val/{m}" for m in LOC_METRICS] + ["val/map", "val/map_50"]  # baselines: test only
        ret = [f"val/{m}" for m in RET_METRICS] + ([f"val/qatm/{m}" for m in RET_METRICS] if self.evaluation["qatm_retrieval"] else [])
        return loc + ret

    # ------------------------------------------------------------------ data on the device
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not isinstance(batch, dict):
            return batch
        out = dict(batch)
        if self.is_fitting and self.objective == "matching":
            return self._training_pairs(out)
        for key in ("drone", "satellite", "image"):
            if key in out:
                img = out[key].float() / 255.0
                if self.is_fitting and self.augment is not None and key != "image":
                    with self.step_rng():
                        img = self.augment(img)
                out[key] = img
        return out

    def _training_pairs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """uint8 pairs -> float; rows flagged ``warp`` become self-supervised pairs of their scene image."""
        template, scene, box = batch["template"].float() / 255.0, batch["scene"].float() / 255.0, batch["box"].float()
        p = self.pairs
        with self.step_rng():
            warp = batch.get("warp")
            if warp is not None and bool(warp.any()):
                template, scene, box = template.clone(), scene.clone(), box.clone()
                # a share of the pairs is warped only as much as consecutive video frames move
                mild = warp & (torch.rand(warp.shape, device=warp.device) < float(p["mild"]))
                for rows, ranges in ((warp & ~mild, (p["scale"], float(p["rotation"]), float(p["perspective"]))), (mild, MILD_WARP)):
                    if bool(rows.any()):
                        made = warped_pairs(scene[rows], int(p["template_size"]), int(p["context"]), scene.shape[-1], *ranges)
                        template[rows], scene[rows], box[rows] = made.template, made.scene, made.box
            template = bare_templates(template, int(p["context"]), float(p["bare"]))
            template, scene = photometric(template, self.photometric), photometric(scene, self.photometric)
        return {**batch, "template": template, "scene": scene, "box": box}

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.loss_fn is None:
            raise ConfigError("model.loss is null: training needs a loss (e.g. loss=qatm_score_ce)")
        missing = [k for k in self.required_batch_keys if k not in batch]
        if missing:
            raise ConfigError(f"model.objective={self.objective} trains on batches with {', '.join(self.required_batch_keys)}; "
                              f"the training batches lack {', '.join(missing)}: choose a data= that fits (template_pairs or university1652)")
        if self.objective == "matching":
            stride, context = int(self.pairs["stride"]), int(self.pairs["context"])
            t = batch["template"].shape[-1] - 2 * context
            cells = (max(1, round(t / stride)),) * 2
            centres = centre_cells(batch["box"], cells, stride)
            factors = [float(f) for f in self.pairs["scale_negatives"]]
            if getattr(self.loss_fn, "cross_scene", False):  # every template in every scene (ranking)
                loss = self.loss_fn(cross_log_scores(self.net, batch["template"], batch["scene"], context, stride), centres)
            elif factors:  # the true scale against wrong ones, compared as matching compares them
                scene_feats = self.net.encode(batch["scene"], stride)
                log_scores = self.net.pair_log_scores(batch["template"], scene_feats, context, stride, encoded=True)
                log_scores = log_scores + 0.5 * math.log(cells[0] * cells[1])
                negatives = scale_negative_log_scores(self.net, batch["template"], scene_feats, batch["box"], context, stride, factors)
                loss = self.loss_fn(log_scores, centres, negatives)
            else:
                loss = self.loss_fn(self.net.pair_log_scores(batch["template"], batch["scene"], context, stride), centres)
            n = batch["box"].shape[0]
        else:
            drone, sat = self.net.embed(batch["drone"]), self.net.embed(batch["satellite"])
            y = batch["label"]
            loss = 0.5 * (self.loss_fn(drone, y, sat, y) + self.loss_fn(sat, y, drone, y))
            n = y.shape[0]
        self.log_train_mean("train/loss", loss, n, prog_bar=True)
        if isinstance(self.net.qatm.alpha, nn.Parameter):
            self.log_train_mean("train/alpha", self.net.qatm.alpha, n)
        return loss

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch: Any, stage: str) -> None:
        if "image" in batch:
            emb = self.net.embed(batch["image"])
            self.retrieval[stage].update(emb, batch["label"], batch["role"], batch["index"])
            self._seen_retrieval = True
            if self.evaluation["qatm_retrieval"] or stage == "test":
                # QATM ranking needs every image; the figures only the gallery and a few queries
                role = batch["role"].cpu()
                keep = torch.ones_like(role, dtype=torch.bool) if self.evaluation["qatm_retrieval"] else role == 1
                if not self.evaluation["qatm_retrieval"]:
                    kept = sum(int((r == 0).sum()) for _, _, r, _ in self._retrieval_images)
                    keep |= (role == 0) & ((role == 0).cumsum(0) + kept <= int(self.evaluation["figure_queries"]))
                self._retrieval_images.append((batch["image"].cpu()[keep], batch["label"].cpu()[keep], role[keep], batch["index"].cpu()[keep]))
        else:
            self._localise(batch, stage)

    def _metric(self, stage: str, set_name: str, method: str) -> Localisation:
        key = f"{stage}|{set_name}|{method}"
        if key not in self.localisation:
            self.localisation[key] = Localisation().to(self.device)
        return self.localisation[key]  # type: ignore[return-value]

    def _localise(self, batch: dict[str, Any], stage: str) -> None:
        sets = batch.get("set") or [""] * len(batch["scene"])
        for i in range(len(batch["scene"])):
            item = {"template": batch["template"][i], "scene": batch["scene"][i], "template_box": batch["template_box"][i]}
            gt = batch["box"][i].float().cpu()
            found = {"model": localise_qatm(self.net, item, self.match_args)}
            if stage == "val" and self._match_args.get("min_score") == "auto":  # own scene vs another pair's
                self._calibration.update(self.net, item, found["model"].score, self.match_args)
            if self.untrained_net is not None and stage == "test":  # baselines do not change: test only
                found["untrained"] = localise_qatm(self.untrained_net, item, self.match_args)
            if "ncc" in self.evaluation["baselines"] and stage == "test":
                found["ncc"] = localise_ncc(item)
            ious = {}
            for method, loc in found.items():
                metric = self._metric(stage, sets[i], method)
                metric.update(loc.box[None].to(self.device), gt[None].to(self.device), torch.tensor([loc.found], device=self.device))
                ious[method] = float(metric.iou[-1][0])
            model = found["model"]
            self.coco_map[stage].update(
                [{"boxes": model.box[None].to(self.device), "scores": torch.tensor([model.score], device=self.device), "labels": torch.zeros(1, dtype=torch.long, device=self.device)}],
                [{"boxes": gt[None].to(self.device), "labels": torch.zeros(1, dtype=torch.long, device=self.device)}])
            rows = self._figure_rows.setdefault(f"{stage}|{sets[i]}", [])
            if len(rows) < int(self.evaluation["figure_pairs"]):
                rows.append({"template": template_crop(item), "scene": item["scene"].cpu(), "gt": gt, "heatmap": model.heatmap,
                             "boxes": {m: loc.box for m, loc in found.items()}, "ious": ious})

    def _eval_epoch_end(self, stage: str) -> None:
        if self._seen_retrieval:
            for k, v in self.retrieval[stage].compute().items():
                self.log(f"{stage}/{k}", v)
            self.retrieval[stage].reset()
            self._qatm_retrieval(stage)
        self._seen_retrieval = False
        self._retrieval_images = []
        if stage == "val" and self._calibration.positive:
            self.score_threshold.fill_(self._calibration.threshold())
            self.log("val/score_threshold", self.score_threshold)
        results: dict[str, dict[str, dict[str, float]]] = {}
        counts: dict[str, int] = {}
        for key in [k for k in self.localisation if k.startswith(f"{stage}|")]:
            _, set_name, method = key.split("|")
            metric = self.localisation[key]
            if set_name not in counts:  # the methods of a set score the same pairs: one count (over all processes)
                counts[set_name] = sum(gather_lists([sum(len(x) for x in metric.iou)]))
            values = metric.compute()
            results.setdefault(set_name, {})[method] = {k: float(v) for k, v in values.items()}
            for k, v in values.items():
                self.log(metric_prefix(stage, set_name, method) + k, v)
            metric.reset()
        if results:
            m = self.coco_map[stage].compute()
            self.log(f"{stage}/map", m["map"])
            self.log(f"{stage}/map_50", m["map_50"])
            self.coco_map[stage].reset()
            if stage == "test" and self.trainer.is_global_zero:
                path = write_text(localisation_table(results, counts), self.run_dir / "localisation_table.md")
                self.log_file(path)
                print(localisation_table(results, counts), flush=True)
        self._figures(stage)

    def _figures(self, stage: str) -> None:
        """The localisation figure of every pair set (validation: overwritten each epoch)."""
        from neurocorr.models.qatm.viz import localisation_grid

        for key in [k for k in self._figure_rows if k.startswith(f"{stage}|")]:
            rows = self._figure_rows.pop(key)
            set_name = key.split("|")[1] or "pairs"
            if rows and self.trainer.is_global_zero:
                self.log_figure(localisation_grid(rows, f"{stage} {set_name}"), f"localisation_{stage}_{set_name}")

    def _qatm_retrieval(self, stage: str) -> None:
        """QATM-score ranking (optional) and the top-5 figure of both rankings (test)."""
        from neurocorr.models.qatm.retrieval_eval import rank_stored_images

        metrics, figures = rank_stored_images(self.net, self._retrieval_images, self.evaluation, self.device, stage == "test")
        for k, v in metrics.items():
            self.log(f"{stage}/qatm/{k}", v)
        for name, fig in figures.items():
            self.log_figure(fig, f"retrieval_top5_{name}")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

