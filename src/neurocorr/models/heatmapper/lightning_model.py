"""Heatmapper LightningModule: augmentation and heatmap rendering on the device, BCE on logits,
keypoint extraction, PCK / mean distance / unmatched share, figures."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from neurocorr.errors import ConfigError
from neurocorr.models.base import NeurocorrModule
from neurocorr.models.heatmapper.augment import KeypointAugment
from neurocorr.models.heatmapper.figures import plot_keypoints
from neurocorr.models.heatmapper.keypoints import Keypoints, extract_keypoints
from neurocorr.models.heatmapper.letterbox import to_original
from neurocorr.models.heatmapper.loss import HeatmapBCELoss
from neurocorr.models.heatmapper.metrics import KeypointMetrics
from neurocorr.models.heatmapper.torch_model import HeatmapperNet
from neurocorr.models.heatmapper.heatmaps import render_gaussian_heatmaps

Batch = dict[str, torch.Tensor]


class HeatmapperModule(NeurocorrModule):
    """Trains :class:`HeatmapperNet` on batches from ``neurocorr.data.heatmapper``.

    Follows the family contract (``neurocorr.models.base``): keyword arguments, ``self.net``,
    ``self.loss_fn``, augmentation drawn inside ``self.step_rng()`` while fitting.

    Sizes given "at ``reference_size``" (sigma, metric threshold) scale with the input size, so
    ``sigma: 8`` means 8 px on a 448 px image and 2.3 px on a 128 px image; metrics report
    distances in pixels at ``reference_size``.

    Args:
        net: the network.
        loss: heatmap loss on (logits, target heatmaps); BCE with logits by default.
        class_names: one name per heatmap channel.
        sigma: Gaussian sigma of the target heatmaps, px at ``reference_size``.
        cutoff: heatmap support radius in sigmas.
        reference_size: the image side the pixel sizes refer to.
        augment: KeypointAugment options (dict) or None for no augmentation.
        extraction: ``method`` (peaks | meanshift), ``max_points`` per class, and per method a dict
            of its options (``peaks: {threshold, window}``, ``meanshift: {relative_threshold, ...}``).
        pck_threshold: match distance for the metrics, px at ``reference_size``.
        figure_samples: test images shown in the figure.
        **base: optimizer, scheduler, monitor... (see NeurocorrModule).
    """

    #: ``scale``/``offset`` (the letterbox, ``neurocorr.data.heatmapper``) are used when a batch has them
    required_batch_keys = ("image", "points", "labels")

    def __init__(
        self,
        *,
        net: HeatmapperNet,
        loss: Optional[nn.Module] = None,
        class_names: Sequence[str] = ("start", "middle", "end"),
        sigma: float = 8.0,
        cutoff: float = 3.0,
        reference_size: int = 448,
        augment: Optional[Mapping[str, Any]] = None,
        extraction: Optional[Mapping[str, Any]] = None,
        pck_threshold: float = 10.0,
        figure_samples: int = 8,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self.net = net
        self.loss_fn = loss if loss is not None else HeatmapBCELoss()
        self.class_names = list(class_names)
        if len(self.class_names) != net.num_classes:
            raise ConfigError(f"model.class_names has {len(self.class_names)} names for {net.num_classes} heatmaps")
        if sigma <= 0:
            raise ConfigError(f"model.sigma must be > 0, got {sigma}")
        self.sigma, self.cutoff, self.reference_size = float(sigma), float(cutoff), int(reference_size)
        self.augment = KeypointAugment(**dict(augment)) if augment else None
        options = dict(extraction or {})
        self.method = str(options.pop("method", "peaks"))
        self.max_points = list(options.pop("max_points", [1, 16, 1]))
        if len(self.max_points) != net.num_classes:
            raise ConfigError(f"model.extraction.max_points needs {net.num_classes} counts, got {self.max_points}")
        if self.method not in ("peaks", "meanshift"):
            raise ConfigError(f"model.extraction.method must be 'peaks' or 'meanshift', got {self.method!r}")
        self.extraction_options = dict(options.get(self.method) or {})
        self._default_bandwidth = self.method == "meanshift" and self.extraction_options.get("bandwidth", None) is None
        extract_keypoints(torch.zeros(1, net.num_classes, 4, 4), self.method, self.max_points, **self.extraction_options)  # validate early
        self.pck_threshold = float(pck_threshold)
        self.val_metrics = KeypointMetrics(net.num_classes, pck_threshold)
        self.test_metrics = KeypointMetrics(net.num_classes, pck_threshold)
        # the same matches in the original images' pixels (per-image thresholds: pck_threshold at reference_size)
        self.test_metrics_px = KeypointMetrics(net.num_classes, pck_threshold)
        self.figure_samples = figure_samples
        self._kept: dict[str, torch.Tensor] = {}
        self._threshold_px: list[torch.Tensor] = []

    def check_data(self, datamodule: Any) -> None:
        names = getattr(datamodule, "class_names", None)
        if names is not None and list(names) != self.class_names:
            raise ConfigError(f"model.class_names={self.class_names} but the data's keypoint classes are {list(names)}")
        if len(self.class_names) != self.net.num_classes:
            raise ConfigError(f"model.class_names has {len(self.class_names)} names for "
                              f"model.net.num_classes={self.net.num_classes} heatmaps")

    def validation_metrics(self) -> list[str]:
        names = ["pck"] + [f"{m}_{g}" for g in self.val_metrics.groups for m in ("pck", "mean_dist", "unmatched")]
        return ["val/loss"] + [f"val/{n}" for n in names]

    # ------------------------------------------------------------------ data on the device

    def scale(self, size: int) -> float:
        """Input pixels -> pixels at ``reference_size``."""
        return self.reference_size / float(size)

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        """uint8 -> float in [0, 1]; random keypoint-aware augmentation while training; target heatmaps."""
        batch = dict(batch)
        points, labels = batch["points"].float(), batch["labels"]
        if self.augment is not None and self.is_fitting:
            with self.step_rng():
                images, points, labels = self.augment(batch["image"], points, labels)  # uint8 in, [0, 1] out
        else:
            images = batch["image"].float().div_(255.0)
        h, w = images.shape[-2:]
        batch["heatmaps"] = render_gaussian_heatmaps(
            points, labels, self.net.num_classes, (h, w), self.sigma / self.scale(w), self.cutoff
        )
        batch.update(image=images, points=points, labels=labels)
        return batch

    # ------------------------------------------------------------------ steps

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def keypoints(self, logits: torch.Tensor) -> Keypoints:
        """Keypoints ``(B, K, P, 2)`` in input pixels from heatmap logits ``(B, K, H, W)``."""
        options = dict(self.extraction_options)
        if self.method == "peaks":  # NMS on logits: no ties where probabilities saturate
            return extract_keypoints(logits.float(), "peaks", self.max_points, logits=True, **options)
        if self._default_bandwidth:  # mean-shift bandwidth: twice the target sigma at this input size
            options["bandwidth"] = 2.0 * self.sigma / self.scale(logits.shape[-1])
        return extract_keypoints(logits.float().sigmoid(), self.method, self.max_points, **options)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self.loss_fn(self.net(batch["image"]), batch["heatmaps"])
        self.log_train_mean("train/loss", loss, batch["image"].shape[0], prog_bar=True)
        return loss

    def _evaluate(self, batch: Batch, metrics: KeypointMetrics, split: str) -> tuple[torch.Tensor, Keypoints]:
        logits = self.net(batch["image"])
        loss = self.loss_fn(logits, batch["heatmaps"])
        probabilities = logits.float().sigmoid()
        found = self.keypoints(logits)
        s = self.scale(batch["image"].shape[-1])
        metrics.update(found.xy * s, found.valid, batch["points"] * s, batch["labels"])
        if split == "test" and "scale" in batch:
            self._update_original_pixels(batch, found)
        self.log(f"{split}/loss", loss, on_epoch=True, prog_bar=split == "val", sync_dist=True)
        return probabilities, found

    def _update_original_pixels(self, batch: Batch, found: Keypoints) -> None:
        """Test matches in original-image pixels: a letterboxed input pixel is 1 / scale original pixels,
        so the threshold at ``reference_size`` is ``pck_threshold / self.scale(S) / scale`` there."""
        scale, offset = batch["scale"].to(found.xy), batch["offset"].to(found.xy)
        threshold = self.pck_threshold / self.scale(batch["image"].shape[-1]) / scale.mean(-1)
        self._threshold_px.append(threshold.detach())
        self.test_metrics_px.update(to_original(found.xy, scale, offset), found.valid,
                                    to_original(batch["points"], scale, offset), batch["labels"], threshold)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        """Keypoints of a batch: ``xy`` ``(B, K, P, 2)`` in original-image pixels when the batch has its
        letterbox (``scale``, ``offset``), else in input pixels; ``score`` and ``valid`` ``(B, K, P)``."""
        found = self.keypoints(self.net(batch["image"]))
        xy = found.xy
        if "scale" in batch:
            xy = to_original(xy, batch["scale"].to(xy), batch["offset"].to(xy))
        return {"xy": xy, "score": found.score, "valid": found.valid}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        probabilities, found = self._evaluate(batch, self.test_metrics, "test")
        kept = self._kept.get("image")
        if self.figure_samples > 0 and (kept is None or kept.shape[0] < self.figure_samples):  # 0: no figure
            n = self.figure_samples - (0 if kept is None else kept.shape[0])
            take = {"image": batch["image"][:n], "heat": probabilities[:n], "xy": found.xy[:n], "valid": found.valid[:n],
                    "points": batch["points"][:n], "labels": batch["labels"][:n]}
            for key, value in take.items():
                value = value.detach().cpu()
                value = value.float() if value.is_floating_point() else value  # bf16 has no numpy
                if key in ("points", "labels") and key in self._kept:  # pad to a common number of points
                    old = self._kept[key]
                    m = max(old.shape[1], value.shape[1])
                    fill = -1 if key == "labels" else 0
                    pad = lambda t: torch.cat([t, t.new_full((t.shape[0], m - t.shape[1], *t.shape[2:]), fill)], 1)  # noqa: E731
                    old, value = pad(old), pad(value)
                    self._kept[key] = old
                self._kept[key] = value if key not in self._kept else torch.cat([self._kept[key], value])

    def on_test_epoch_start(self) -> None:
        self._kept, self._threshold_px = {}, []

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, "test")
        if self._threshold_px:  # PCK and distances in the original images' pixels, and that threshold's mean
            self.log("test/pck_threshold_px", torch.cat(self._threshold_px).mean())
            self._log_metrics(self.test_metrics_px, "test", suffix="_px")
        self._threshold_px = []
        if self._kept and self.trainer.is_global_zero:
            k = self._kept
            fig = plot_keypoints(k["image"], k["heat"], k["xy"], k["valid"], k["points"], k["labels"], self.class_names)
            self.log_figure(fig, "test_keypoints")
        self._kept = {}

    def _log_metrics(self, metrics: KeypointMetrics, split: str, suffix: str = "") -> None:
        values = metrics.compute()
        for name, value in values.items():
            if suffix and not name.startswith("mean_dist"):
                continue  # PCK and unmatched are the same in both frames; distances differ
            self.log(f"{split}/{name}{suffix}", value, prog_bar=split == "val" and name.startswith("pck"))
        metrics.reset()
