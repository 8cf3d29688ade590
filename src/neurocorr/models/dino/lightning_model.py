"""DINO LightningModule: student ``self.net`` + EMA teacher, multi-crop on the device, cosine schedules.

Uses lightly 1.6: ``DINOLoss`` (cross-entropy of sharpened, centred teacher vs student over every
pair of different views, with the centre's moving average), ``DINOProjectionHead`` (in
``torch_model``) and ``update_momentum`` (the EMA), ``cosine_schedule``; the crops, schedules,
monitoring and outputs are ours. At the end of fitting the teacher's backbone is written to
``<run>/dino_backbone.pth`` (the state dict that ``backbone.pretrained=<file>`` loads) and logged.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

import torch
from lightly.loss import DINOLoss
from lightly.models.utils import update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from neurocorr.errors import ConfigError
from neurocorr.models.base import NeurocorrModule
from neurocorr.models.dino.monitor import knn_accuracy, normalised_std, plot_attention, teacher_entropy
from neurocorr.models.dino.multicrop import MultiCrop
from neurocorr.models.dino.torch_model import DINONet, backbone_weights

WEIGHTS_FILE = "dino_backbone.pth"


def ema_copy(net: nn.Module) -> nn.Module:
    """A frozen copy of ``net``. Weight-normalised layers hold their computed ``weight`` as a non-leaf
    tensor that deepcopy refuses; it is recomputed from ``weight_g``/``weight_v`` every forward, so a
    detached copy of it is set first."""
    for module in net.modules():
        weight = getattr(module, "weight", None)
        if hasattr(module, "weight_g") and isinstance(weight, torch.Tensor) and not weight.is_leaf:
            module.weight = weight.detach()
    return copy.deepcopy(net).requires_grad_(False)


class DINOModule(NeurocorrModule):
    """Self-distillation with no labels (see ``neurocorr.data.image_folder``).

    Args:
        net: the student (:class:`DINONet`); the teacher is a copy updated only by EMA.
        loss: lightly ``DINOLoss`` (``None``: built from ``student_temp`` and ``center_momentum``).
        crops: :class:`MultiCrop` (2 global + N local views).
        teacher_temp, warmup_teacher_temp, warmup_teacher_temp_epochs: teacher temperature, linear
            from the warm-up value over the first epochs (sharpening).
        student_temp, center_momentum: of the default loss.
        momentum: teacher EMA momentum at step 0, cosine to 1 at the last step.
        warmup_epochs, min_lr: linear lr warm-up (fraction of epochs allowed), then cosine to min_lr.
        weight_decay_end: weight decay goes by cosine from the optimiser's value to this.
        freeze_last_layer_epochs: epochs in which the head's last layer gets no update.
        knn_k: neighbours of the k-NN probe (run when the data module has a labelled folder).
        figure_images: images in the attention-map figure (ViT backbones).
        weights_file: where the teacher's backbone goes, relative to the run folder.
    """

    required_batch_keys = ("image",)

    def __init__(
        self, *, net: DINONet, loss: Optional[nn.Module] = None, crops: Optional[MultiCrop] = None,
        teacher_temp: float = 0.04, warmup_teacher_temp: float = 0.04, warmup_teacher_temp_epochs: int = 0,
        student_temp: float = 0.1, center_momentum: float = 0.9, momentum: float = 0.996, warmup_epochs: float = 0.0,
        min_lr: float = 1.0e-6, weight_decay_end: float = 0.4, freeze_last_layer_epochs: int = 0, knn_k: int = 20,
        figure_images: int = 4, weights_file: str = WEIGHTS_FILE, **base: Any,
    ) -> None:
        super().__init__(**base)
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"model.momentum must lie in [0, 1], got {momentum}")
        if teacher_temp <= 0 or warmup_teacher_temp <= 0 or student_temp <= 0:
            raise ConfigError("model.teacher_temp, model.warmup_teacher_temp and model.student_temp must be > 0")
        self.net = net
        self.teacher = ema_copy(net)
        self.loss_fn = loss if loss is not None else DINOLoss(net.out_dim, teacher_temp=teacher_temp,
                                                              student_temp=student_temp, center_momentum=center_momentum)
        self.crops = crops if crops is not None else MultiCrop()
        self.teacher_temp, self.warmup_teacher_temp = teacher_temp, warmup_teacher_temp
        self.warmup_teacher_temp_epochs = int(warmup_teacher_temp_epochs)
        self.momentum, self.warmup_epochs, self.min_lr = momentum, warmup_epochs, min_lr
        self.weight_decay_end, self.freeze_last_layer_epochs = weight_decay_end, int(freeze_last_layer_epochs)
        self.knn_k, self.figure_images, self.weights_file = int(knn_k), int(figure_images), weights_file
        self.base_lr: Optional[float] = None
        self.base_weight_decay: Optional[float] = None
        self.weights_path: Optional[Path] = None
        self._figure_batch: Optional[torch.Tensor] = None
        self._has_knn = True  # until check_data has seen the data module

    def check_data(self, datamodule: Any) -> None:
        self._has_knn = getattr(datamodule, "knn", None) is not None

    def validation_metrics(self) -> list[str]:
        """``val/knn_acc`` only when the data module has a labelled folder (``data.knn_root``)."""
        names = ["val/loss", "val/teacher_std", "val/teacher_entropy"]
        return names + ["val/knn_acc"] if self._has_knn else names

    def configure_optimizers(self) -> Any:
        """Two parameter groups: weights decay, biases and norms (1-D parameters) do not."""
        params = [p for p in self.net.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
        optimizer = self.optimizer_factory(params=groups)
        self.base_lr = float(optimizer.param_groups[0]["lr"])
        self.base_weight_decay = float(optimizer.param_groups[0].get("weight_decay", 0.0))
        if self.scheduler_factory is not None:
            raise ConfigError("model=dino sets its own cosine lr / weight-decay schedule per step: use scheduler=null")
        return optimizer

    # ---- schedules (per step) -------------------------------------------------------------
    def _progress(self) -> tuple[int, int]:
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return min(int(self.global_step), total - 1), total

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        step, total = self._progress()
        warmup = int(self.warmup_epochs * total / max(1, self.trainer.max_epochs or 1))
        if step < warmup:
            lr = self.base_lr * (step + 1) / warmup
        else:
            lr = cosine_schedule(step - warmup, max(1, total - warmup), self.base_lr, self.min_lr)
        wd = cosine_schedule(step, total, self.base_weight_decay, self.weight_decay_end)
        for i, group in enumerate(self.optimizers().optimizer.param_groups):
            group["lr"] = lr
            if i == 0:
                group["weight_decay"] = wd

    def teacher_temperature(self) -> float:
        epoch, warm = int(self.current_epoch), self.warmup_teacher_temp_epochs
        if epoch >= warm:
            return self.teacher_temp
        return self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * epoch / warm

    def current_momentum(self) -> float:
        step, total = self._progress()
        return cosine_schedule(step, total, self.momentum, 1.0)

    @torch.no_grad()
    def ema_update(self, momentum: float) -> None:
        """teacher <- momentum * teacher + (1 - momentum) * student, every parameter."""
        update_momentum(self.net, self.teacher, momentum)

    def on_after_backward(self) -> None:
        if self.current_epoch < self.freeze_last_layer_epochs:
            self.net.head.cancel_last_layer_gradients(self.current_epoch)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.ema_update(self.current_momentum())
        self.log_train_mean("train/momentum", torch.tensor(self.current_momentum()), 1)

    # ---- steps --------------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, Any]:
        """uint8 -> float in [0, 1], then the multi-crop views (seeded by the step)."""
        image = batch["image"].float().div_(255.0)
        with self.step_rng():
            views = self.crops(image)
        return {**batch, "image": image, "views": views}

    def _loss(self, views: list[torch.Tensor], update_center: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n_global = self.crops.n_global
        with torch.no_grad():
            teacher = self.teacher(torch.cat(views[:n_global])).chunk(n_global)
        student = list(self.net(torch.cat(views[:n_global])).chunk(n_global))
        if len(views) > n_global:
            student += list(self.net(torch.cat(views[n_global:])).chunk(len(views) - n_global))
        temperature = self.teacher_temperature()
        stacked = torch.cat(teacher).detach()
        stats = {"teacher_entropy": teacher_entropy(stacked, self.loss_fn.center, temperature),
                 "teacher_std": normalised_std(stacked)}
        center = self.loss_fn.center.clone()
        loss = self.loss_fn(list(teacher), student, teacher_temp=temperature)
        if not update_center:
            self.loss_fn.center.copy_(center)
        return loss, stats

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, stats = self._loss(batch["views"], update_center=True)
        b = batch["image"].shape[0]
        self.log_train_mean("train/loss", loss, b, prog_bar=True)
        for name, value in stats.items():
            self.log_train_mean(f"train/{name}", value, b)
        return loss

    def _evaluate(self, batch: dict[str, Any], prefix: str) -> None:
        loss, stats = self._loss(batch["views"], update_center=False)
        b = batch["image"].shape[0]
        self.log(f"{prefix}/loss", loss, on_epoch=True, prog_bar=True, batch_size=b, sync_dist=True)
        for name, value in stats.items():
            self.log(f"{prefix}/{name}", value, on_epoch=True, batch_size=b, sync_dist=True)
        if self._figure_batch is None:
            self._figure_batch = batch["image"][: self.figure_images].detach()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    @torch.no_grad()
    def teacher_features(self, images: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """``(N, C)`` teacher backbone features of uint8 ``(N, 3, H, W)`` images (in chunks)."""
        out = [self.teacher.features(images[i : i + chunk].to(self.device).float() / 255.0)
               for i in range(0, images.shape[0], chunk)]
        return torch.cat(out)

    def on_validation_epoch_end(self) -> None:
        knn = getattr(self.trainer.datamodule, "knn", None) if self._trainer is not None else None
        if knn is None:
            return
        bank = self.teacher_features(knn["bank_image"])
        query = self.teacher_features(knn["query_image"])
        acc = knn_accuracy(bank, knn["bank_label"].to(self.device), query, knn["query_label"].to(self.device), self.knn_k)
        self.log("val/knn_acc", acc, prog_bar=True)

    # ---- outputs ------------------------------------------------------------------------------
    def save_backbone(self, path: Path) -> Path:
        """Write the teacher's backbone state dict (what ``backbone.pretrained=<file>`` loads)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(backbone_weights(self.teacher.backbone), path)
        return path

    def on_test_epoch_start(self) -> None:
        self._figure_batch = None  # the figure of a test shows test images

    def on_test_epoch_end(self) -> None:
        if self._figure_batch is not None and self.trainer.is_global_zero:
            self.attention_figure(self._figure_batch, "dino_attention_test")

    def attention_figure(self, images: torch.Tensor, name: str = "dino_attention") -> Optional[Path]:
        """The teacher's last-layer CLS attention per head over ``images`` (ViT only), logged."""
        if not self.teacher.is_vit or images.numel() == 0:
            return None
        size = (self.crops.global_size, self.crops.global_size)
        images = torch.nn.functional.interpolate(images, size=size, mode="bilinear", align_corners=False)
        return self.log_figure(plot_attention(images, self.teacher.attention(images)), name)

    def on_train_end(self) -> None:
        if not self.trainer.is_global_zero:
            return
        self.weights_path = self.save_backbone(self.run_dir / self.weights_file)
        self.log_file(self.weights_path)
        if self._figure_batch is not None:
            self.attention_figure(self._figure_batch)
        print(f"DINO teacher backbone written to {self.weights_path} (load it with backbone.pretrained=<file>)")
