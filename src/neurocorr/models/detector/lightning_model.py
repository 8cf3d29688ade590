"""Self-supervised training and evaluation of the equivariant keypoint detector.

Training: each batch of crops gets fresh random homographies (kornia ``RandomAffine`` +-90 deg,
translation 0.05, ``RandomPerspective`` 0.05), applied on the device to the image and its validity
mask together in ``on_after_batch_transfer``. Loss = score-map triplet (anchor = warp(score(I)),
positive = score(warp(I)), negative = score of another warped image) + ``desc_weight`` x descriptor
triplet at the keypoints of I, their warped locations in warp(I), and the same locations in the
negative.

Validation/test: fixed pairs with known homographies. The test hook scores this model and the
classical baselines (SIFT, ORB, AKAZE, Harris, Hessian) with the same code
(``neurocorr.metrics.repeatability``), prints one table per sequence and on average, writes it as
``<run_dir>/detector_eval.csv`` and draws matches.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn

from neurocorr.metrics.repeatability import Repeatability, evaluate_pair
from neurocorr.models.base import NeurocorrModule
from neurocorr.models.detector.baselines import run_baseline
from neurocorr.models.detector.descriptor import PolarDescriptor
from neurocorr.models.detector.figures import plot_matches, plot_score_maps
from neurocorr.models.detector.keypoints import Keypoints, detect_keypoints, keypoint_angles
from neurocorr.models.detector.loss import ScoreMapTriplet, descriptor_triplet
from neurocorr.models.detector.table import format_table, summarise, write_csv
from neurocorr.models.detector.torch_model import EquivariantDetector
from neurocorr.ops.geometry import homography_grid, inside, warp_image, warp_mask, warp_points
from neurocorr.ops.matching import match_mnn
from neurocorr.ops.peaks import running_max
from neurocorr.errors import ConfigError


class DetectorModule(NeurocorrModule):
    """Args:
        net: the equivariant network.
        loss: score-map triplet loss (``conf/loss/ssim_triplet.yaml`` or ``mse_triplet.yaml``).
        descriptor: polar descriptor sampler.
        desc_weight: lambda of the descriptor loss. desc_margin: its triplet margin (L2, unit vectors).
        desc_top_k: keypoints per training image for the descriptor loss.
        degrees, translate, perspective: random warp ranges (degrees, fraction of size, distortion).
        border: px removed along the edges of the loss mask.
        top_k, nms_window, threshold, detect_border: keypoint extraction at evaluation.
        eval_settings: (top_k, px) pairs for repeatability. match_threshold: px for a correct match.
        baselines: classical detectors scored beside the model at test time.
        figure_pairs: test pairs drawn as match figures.
        dedupe_px: at evaluation, drop keypoints within this distance of a higher-scoring one before
            taking the top k (0 = off; see ``metrics.repeatability.select_keypoints``).
        torch_threads: set torch's intra-op threads at fit/test start (1 is far faster on a busy shared CPU).
        **base: optimizer, scheduler, monitor, monitor_mode (see NeurocorrModule).
    """

    def __init__(
        self,
        net: EquivariantDetector,
        loss: Optional[nn.Module] = None,
        descriptor: Optional[PolarDescriptor] = None,
        desc_weight: float = 1.0,
        desc_margin: float = 0.5,
        desc_top_k: int = 64,
        degrees: float = 90.0,
        translate: float = 0.05,
        perspective: float = 0.05,
        border: int = 4,
        top_k: int = 300,
        nms_window: int = 5,
        threshold: float = 0.0,
        detect_border: int = 4,
        eval_settings: Sequence[Sequence[float]] = ((300, 3.0), (60, 1.0)),
        match_threshold: float = 3.0,
        baselines: Sequence[str] = ("sift", "orb", "akaze", "harris", "hessian"),
        figure_pairs: int = 3,
        dedupe_px: float = 0.0,
        torch_threads: Optional[int] = None,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self.net = net
        self.loss_fn = loss if loss is not None else ScoreMapTriplet("ssim", 1.0, 5)
        self.descriptor = descriptor if descriptor is not None else PolarDescriptor()
        self.desc_weight, self.desc_margin, self.desc_top_k = desc_weight, desc_margin, desc_top_k
        self.affine = K.RandomAffine(degrees=degrees, translate=(translate, translate), p=1.0)
        self.perspective = K.RandomPerspective(distortion_scale=perspective, p=1.0)
        self.border, self.top_k, self.nms_window = border, top_k, nms_window
        self.threshold, self.detect_border = threshold, detect_border
        self.eval_settings = [(int(k), float(t)) for k, t in eval_settings]
        self.match_threshold = match_threshold
        self.baselines = list(baselines)
        self.figure_pairs, self.torch_threads, self.dedupe_px = figure_pairs, torch_threads, dedupe_px
        k0, t0 = self.eval_settings[0]
        self.headline = f"rep_{k0}_{t0:g}px"
        self.val_rep = Repeatability(k0, t0)
        self._rows: list[dict] = []
        self._panels: list[dict] = []

    # ------------------------------------------------------------------ inference

    def forward(self, image: torch.Tensor):
        return self.net(image)

    def detect(self, image: torch.Tensor) -> tuple[Keypoints, torch.Tensor, Any]:
        """Keypoints ``(B, K)`` and descriptors ``(B, K, D)`` of images ``(B, C, H, W)`` in [0, 1]."""
        out = self.net(image)
        kp = detect_keypoints(out.score, out.orientation, self.top_k, self.threshold, self.nms_window, self.detect_border)
        desc = self.descriptor(out.features, kp.xy, kp.angle)
        return kp, desc, out

    # ------------------------------------------------------------------ data

    def random_homographies(self, image: torch.Tensor) -> torch.Tensor:
        """Fresh ``(B, 3, 3)`` homographies for ``image`` ``(B, C, H, W)`` (kornia's parameter
        samplers; the global RNG advances every batch)."""
        shape = image.shape
        pa = self.affine.forward_parameters(shape)
        pp = self.perspective.forward_parameters(shape)
        Ha = self.affine.compute_transformation(image, pa, self.affine.flags)
        Hp = self.perspective.compute_transformation(image, pp, self.perspective.flags)
        return (Hp @ Ha).to(image.dtype)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        batch = dict(batch)
        if "image" in batch:  # training crops: warp on the device, image and mask together
            image = batch.pop("image").float() / 255.0
            H = self.random_homographies(image)
            # one sampling grid warps the image and its mask here and the score map in the loss
            grid = homography_grid(H, image.shape[-2:], image.shape[-2:]).to(image.dtype)
            mask = torch.ones_like(image[:, :1])
            warped = F.grid_sample(torch.cat([image, mask], 1), grid, align_corners=True)
            batch.update(image1=image, image2=warped[:, :-1], H=H, mask2=(warped[:, -1:] > 0.999).float(), grid=grid)
        else:
            for key in ("image1", "image2"):
                batch[key] = batch[key].float() / 255.0
            batch["mask2"] = warp_mask(torch.ones_like(batch["image1"][:, :1]), batch["H"].float(), batch["image2"].shape[-2:])
        return batch

    # ------------------------------------------------------------------ loss

    def _border_mask(self, mask: torch.Tensor) -> torch.Tensor:
        if self.border <= 0:
            return mask
        m = torch.zeros_like(mask)
        b = self.border
        m[..., b:-b, b:-b] = 1
        # erode the warped validity mask too: keep pixels whose (2b+1)^2 neighbourhood is valid
        # (a square min is a min over rows of a min over columns: two 1-D running maxima of -mask)
        k = 2 * b + 1
        eroded = -running_max(running_max(-mask, k, -1), k, -2)
        return m * eroded

    def compute_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        image1, image2, H = batch["image1"], batch["image2"], batch["H"].float()
        if image1.shape[0] < 2:
            raise ConfigError("the detector's triplet loss needs data.batch_size >= 2 (negatives come from the batch)")
        out1, out2 = self.net(image1), self.net(image2)
        size = image2.shape[-2:]
        mask = self._border_mask(batch["mask2"])
        grid = batch.get("grid")
        anchor = warp_image(out1.score, H, size) if grid is None else F.grid_sample(out1.score, grid, align_corners=True)
        positive, negative = out2.score, out2.score.roll(1, 0)
        kp_loss = self.loss_fn(anchor, positive, negative, mask)
        loss = kp_loss
        result = {"kp_loss": kp_loss}
        if self.desc_weight > 0:
            kp = detect_keypoints(out1.score.detach(), out1.orientation, self.desc_top_k, 0.0, self.nms_window,
                                  self.border)
            xy2 = warp_points(kp.xy, H)
            valid = kp.valid & inside(xy2, size, self.border)
            # positive: warped image b at xy2[b]; negative: warped image b-1 (the batch rolled) at the same xy2[b],
            # in that image's own orientation. Image j is read at its own points and at xy2[j+1] in one call,
            # and the second half is rolled back, rather than copying rolled feature maps.
            k = xy2.shape[1]
            xy2_both = torch.cat([xy2, xy2.roll(-1, 0)], 1)                                   # (B, 2K, 2)
            d_2 = self.descriptor(out2.features, xy2_both, keypoint_angles(out2.orientation, xy2_both))
            d_p, d_n = d_2[:, :k], d_2[:, k:].roll(1, 0)
            d_a = self.descriptor(out1.features, kp.xy, kp.angle)
            desc_loss = descriptor_triplet(d_a, d_p, d_n, valid, self.desc_margin)
            loss = loss + self.desc_weight * desc_loss
            result["desc_loss"] = desc_loss
        result["loss"] = loss
        return result

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.compute_loss(batch)
        for name, value in losses.items():
            self.log_train_mean(f"train/{name}", value, batch["image1"].shape[0], prog_bar=name == "loss")
        return losses["loss"]

    # ------------------------------------------------------------------ validation

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self._set_threads()

    def on_test_start(self) -> None:
        super().on_test_start()
        self._set_threads()

    def _set_threads(self) -> None:
        if self.torch_threads and self.device.type == "cpu":
            torch.set_num_threads(int(self.torch_threads))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if batch["image1"].shape[0] >= 2 and batch["image1"].shape[-2:] == batch["image2"].shape[-2:]:
            losses = self.compute_loss(batch)
            self.log("val/loss", losses["loss"], on_epoch=True, prog_bar=True, batch_size=batch["image1"].shape[0])
        kp1, _, _ = self.detect(batch["image1"])
        kp2, _, _ = self.detect(batch["image2"])
        for b in range(kp1.xy.shape[0]):
            v1, v2 = kp1.valid[b], kp2.valid[b]
            self.val_rep.update(kp1.xy[b][v1], kp1.score[b][v1], kp2.xy[b][v2], kp2.score[b][v2], batch["H"][b],
                                batch["image1"].shape[-2:], batch["image2"].shape[-2:])
        self.log(f"val/{self.headline}", self.val_rep, on_epoch=True, prog_bar=True)

    # ------------------------------------------------------------------ test: model + baselines, one table

    def on_test_epoch_start(self) -> None:
        self._rows, self._panels = [], []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        kp1, desc1, out1 = self.detect(batch["image1"])
        kp2, desc2, _ = self.detect(batch["image2"])
        size1, size2 = tuple(batch["image1"].shape[-2:]), tuple(batch["image2"].shape[-2:])
        for b in range(kp1.xy.shape[0]):
            H = batch["H"][b].double().cpu()
            v1, v2 = kp1.valid[b], kp2.valid[b]
            feats = {
                "model": (
                    {"xy": kp1.xy[b][v1].double().cpu(), "score": kp1.score[b][v1].cpu(), "desc": desc1[b][v1].cpu()},
                    {"xy": kp2.xy[b][v2].double().cpu(), "score": kp2.score[b][v2].cpu(), "desc": desc2[b][v2].cpu()},
                )
            }
            for name in self.baselines:
                feats[name] = (run_baseline(name, batch["image1"][b]), run_baseline(name, batch["image2"][b]))
            sequence, pair = str(batch["sequence"][b]), int(batch["pair"][b])
            for method, (f1, f2) in feats.items():
                row = evaluate_pair(f1, f2, H, size1, size2, self.eval_settings, self.eval_settings[0][0], self.match_threshold,
                                    self.dedupe_px)
                self._rows.append({"method": method, "sequence": sequence, "pair": pair, **row})
            if len(self._panels) < self.figure_pairs:
                self._keep_panel(batch, b, feats, H, out1.score[b])

    def _keep_panel(self, batch: dict[str, Any], b: int, feats: dict, H: torch.Tensor, score: torch.Tensor) -> None:
        panel = {"image1": batch["image1"][b].cpu(), "image2": batch["image2"][b].cpu(), "score": score.cpu(),
                 "label": f"{batch['sequence'][b]} 1-{int(batch['pair'][b])}", "matches": {}}
        for method in ("model", "sift"):
            if method not in feats:
                continue
            f1, f2 = feats[method]
            m = match_mnn(f1["desc"].float(), f2["desc"].float())
            xy1, xy2 = f1["xy"][m.index[:, 0]], f2["xy"][m.index[:, 1]]
            correct = (warp_points(xy1, H) - xy2).norm(dim=-1) < self.match_threshold
            panel["matches"][method] = (xy1, xy2, correct)
            panel.setdefault("keypoints", f1["xy"])
        self._panels.append(panel)

    def on_test_epoch_end(self) -> None:
        if not self._rows:
            return
        summary = summarise(self._rows)
        for entry in summary:
            if entry["sequence"] != "average":
                continue
            prefix = "test/" if entry["method"] == "model" else f"test/{entry['method']}/"
            for key in ("rep_300_3px", "rep_60_1px", "match_acc", "loc_err_300_3px"):
                value = entry.get(key)
                if value is not None and value == value:
                    self.log(prefix + key, float(value))
        if not self.trainer.is_global_zero or self.trainer.sanity_checking:
            return
        print("\n" + format_table(summary), flush=True)
        path = write_csv(summary, self.run_dir / "detector_eval.csv")
        write_csv(self._rows, self.run_dir / "detector_eval_pairs.csv",
                  metrics=[k for k in self._rows[0] if k not in ("method", "sequence", "pair")],
                  keys=("sequence", "pair", "method"))
        print(f"[neurocorr] detector evaluation table: {path}", flush=True)
        self.log_file(path, "tables")
        for method in ("model", "sift"):
            panels = [{"image1": p["image1"], "image2": p["image2"], "xy1": p["matches"][method][0],
                       "xy2": p["matches"][method][1], "correct": p["matches"][method][2], "label": f"{method} {p['label']}"}
                      for p in self._panels if method in p["matches"]]
            if panels:
                self.log_figure(plot_matches(panels), f"matches_{method}")
        if self._panels:
            self.log_figure(plot_score_maps([p["image1"] for p in self._panels], [p["score"] for p in self._panels],
                                            [p["keypoints"] for p in self._panels]), "score_maps")
