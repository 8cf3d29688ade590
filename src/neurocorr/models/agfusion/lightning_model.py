"""AGFusion LightningModule: BCE on the logit, F1 / ROC-AUC / accuracy per split, figures.

Pairs alone are a weak signal for a siamese net trained from scratch: the cosine of two random
embeddings carries no figure information, and the gradient that would create it is proportional to
the (near-zero) figure information already there, so training sits on a saddle for thousands of
steps. An auxiliary identification loss (each image's class from its pooled backbone features,
as in joint identification-verification training) breaks the saddle; ``identification_weight=0``
turns it off.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryConfusionMatrix, BinaryF1Score, BinaryROC

from neurocorr.errors import ConfigError
from neurocorr.models.agfusion.figures import plot_attention_pairs, plot_hardest_pairs
from neurocorr.models.agfusion.torch_model import AGFusionNet, AGFusionOutput
from neurocorr.models.base import NeurocorrModule
from neurocorr.models.agfusion.affine import RandomAffine
from neurocorr.models.agfusion.dihedral import RandomDihedral, apply_dihedral
from neurocorr.viz.plots import plot_confusion_matrix, plot_embeddings, plot_roc


def pair_metrics(prefix: str, validate_args: bool = True) -> MetricCollection:
    """F1, AUROC and accuracy of pair probabilities. ``validate_args=False`` skips torchmetrics' input
    checks, which read values back to the host (a GPU sync per step); the training loop feeds them
    sigmoid outputs and {0, 1} labels, so it needs no checks."""
    kw = {"validate_args": validate_args}
    return MetricCollection({"f1": BinaryF1Score(**kw), "auroc": BinaryAUROC(**kw), "acc": BinaryAccuracy(**kw)},
                            prefix=prefix)


class AGFusionModule(NeurocorrModule):
    """Trains :class:`AGFusionNet` on batches of pairs (see ``neurocorr.data.agfusion``).

    Args:
        net: the network.
        loss: a loss on (logit, label), BCEWithLogitsLoss by default.
        augment: a random flip / 90-degree rotation (an element of D4) of each image, batched on the device.
        augment_affine: ``None`` or the arguments of :class:`RandomAffine` (any rotation, size, aspect,
            shift of each training image, after the D4 element; for small real training sets).
        test_time_augment: at validation and test, the logit is the mean over the 8 elements of D4
            applied to both images (8 forward passes).
        class_names: names of the classes for figures (taken from the data module when it has them).
        max_figure_samples: embeddings kept at test time for the projection figure.
        hardest_pairs: test pairs shown in the hardest-pairs figure (the most wrong probabilities).
        identification_weight: weight of the auxiliary cross-entropy that classifies each image's
            class from its pooled gated features (needs ``class_a``/``class_b`` in the batch);
            0 = pair loss only.
        num_classes: classes of the identification head; ``None`` = read from the data module's
            ``class_names`` at set-up (and stored with the checkpoint's model config).
        **base: optimizer, scheduler, monitor... (see NeurocorrModule).
    """

    #: the keys of a pair batch (``neurocorr.data.agfusion``); the classes feed the identification
    #: loss and the test figures
    required_batch_keys = ("image_a", "image_b", "label", "class_a", "class_b")

    def __init__(
        self,
        *,
        net: AGFusionNet,
        loss: Optional[nn.Module] = None,
        augment: bool = True,
        augment_affine: Optional[dict[str, Any]] = None,
        test_time_augment: bool = False,
        class_names: Optional[list[str]] = None,
        max_figure_samples: int = 2000,
        hardest_pairs: int = 8,
        identification_weight: float = 0.5,
        num_classes: Optional[int] = None,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        if identification_weight < 0:
            raise ConfigError(f"model.identification_weight must be >= 0, got {identification_weight}")
        self.net = net
        self.identification_weight = identification_weight
        self.identifier: Optional[nn.Linear] = None
        if identification_weight > 0 and num_classes is not None:
            self.identifier = nn.Linear(net.feature_channels, int(num_classes))
        self.loss_fn = loss if loss is not None else nn.BCEWithLogitsLoss()
        # one of the 8 flips / 90-degree rotations per image, in one gather (kornia's flip + rot90
        # containers did the same in ~4 ms of Python per batch, a tenth of a CPU step)
        self.augment = RandomDihedral() if augment else None
        self.affine = RandomAffine(**augment_affine) if augment_affine else None
        self.test_time_augment = test_time_augment
        self.class_names = class_names
        self.max_figure_samples = max_figure_samples
        self.hardest_pairs = hardest_pairs
        self.train_metrics = pair_metrics("train/", validate_args=False)
        self.val_metrics = pair_metrics("val/")
        self.test_metrics = pair_metrics("test/")
        self.test_roc = BinaryROC(thresholds=200)
        self.test_confusion = BinaryConfusionMatrix()
        self._kept: dict[str, list[torch.Tensor]] = {}
        self._hardest: dict[str, torch.Tensor] = {}  # the hardest test pairs so far (_keep_hardest)

    def validation_metrics(self) -> list[str]:
        return ["val/loss", *self.val_metrics.keys(keep_base=False)]

    def forward(self, image_a: torch.Tensor, image_b: torch.Tensor) -> AGFusionOutput:
        return self.net(image_a, image_b)

    def setup(self, stage: str) -> None:
        if self.identification_weight == 0 or self.identifier is not None:
            return
        names = self.class_names or getattr(self.trainer.datamodule, "class_names", None)
        if not names or len(names) < 2:
            raise ConfigError("model.identification_weight > 0 needs the class of every image, and the data module "
                              "has no class_names; set model.identification_weight=0 to train on pair labels alone")
        self.identifier = nn.Linear(self.net.feature_channels, len(names)).to(self.device)
        if self.model_config is not None:  # so evaluate.py rebuilds the head from the checkpoint
            self.model_config["num_classes"] = len(names)

    def identification_loss(self, out: AGFusionOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of each image's class from its pooled features, over the 2B images."""
        features = torch.cat([out.pooled_a, out.pooled_b])
        classes = torch.cat([batch["class_a"], batch["class_b"]]).long()
        return F.cross_entropy(self.identifier(features), classes)

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        """uint8 -> float in [0, 1]; random augmentation on the device while training."""
        batch = dict(batch)
        augment = self.augment is not None and self.is_fitting
        with self.step_rng():
            for key in ("image_a", "image_b"):
                image = batch[key].float().div_(255.0)
                if augment:
                    image = self.augment(image)
                if self.affine is not None and self.is_fitting:
                    image = self.affine(image)
                batch[key] = image.contiguous(memory_format=torch.channels_last) if image.is_cuda else image
        return batch

    def compare(self, image_a: torch.Tensor, image_b: torch.Tensor) -> AGFusionOutput:
        """The network on pairs ``(N, 3, S, S)`` in [0, 1]; outside a training step the logit is averaged
        over D4 (the same element on both images) when ``test_time_augment`` is on."""
        out = self.net(image_a, image_b)
        if self.test_time_augment and not self.is_fitting and image_a.shape[-1] == image_a.shape[-2]:
            logits = [out.logit]
            for k in range(1, 8):
                element = torch.full((image_a.shape[0],), k, dtype=torch.long)
                logits.append(self.net(apply_dihedral(image_a, element), apply_dihedral(image_b, element)).logit)
            out = out._replace(logit=torch.stack(logits).mean(0))
        return out

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, AGFusionOutput]:
        out = self.compare(batch["image_a"], batch["image_b"])
        return self.loss_fn(out.logit, batch["label"].float()), out

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, out = self._step(batch)
        self.train_metrics.update(out.logit.detach().sigmoid(), batch["label"].long())
        n = batch["label"].shape[0]
        self.log_train_mean("train/loss_pair", loss, n)
        if self.identifier is not None:
            loss_id = self.identification_loss(out, batch)
            self.log_train_mean("train/loss_id", loss_id, n)
            loss = loss + self.identification_weight * loss_id
        self.log_train_mean("train/loss", loss, n, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log_dict(self.train_metrics.compute(), sync_dist=True)
        self.train_metrics.reset()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, out = self._step(batch)
        self.val_metrics.update(out.logit.sigmoid(), batch["label"].long())
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, out = self._step(batch)
        probability, label = out.logit.sigmoid(), batch["label"].long()
        self.test_metrics.update(probability, label)
        self.test_roc.update(probability, label)
        self.test_confusion.update(probability, label)
        self.log("test/loss", loss, on_epoch=True, sync_dist=True)
        self.log_dict(self.test_metrics, on_epoch=True)
        self._keep(batch, out, probability)
        self._keep_hardest(batch, probability)

    def on_test_epoch_start(self) -> None:
        self._kept = {}
        self._hardest = {}

    def _keep_hardest(self, batch: dict[str, torch.Tensor], probability: torch.Tensor) -> None:
        """Keep the ``hardest_pairs`` test pairs whose probability is furthest from their label."""
        if self.hardest_pairs <= 0:
            return
        new = {"image_a": batch["image_a"], "image_b": batch["image_b"], "probability": probability, "label": batch["label"]}
        merged = {k: torch.cat([self._hardest[k], v.detach().cpu()]) if self._hardest else v.detach().cpu() for k, v in new.items()}
        error = (merged["probability"].float() - merged["label"].float()).abs()
        top = error.topk(min(self.hardest_pairs, error.shape[0])).indices
        self._hardest = {k: v[top] for k, v in merged.items()}

    def _keep(self, batch: dict[str, torch.Tensor], out: AGFusionOutput, probability: torch.Tensor) -> None:
        kept = sum(t.shape[0] for t in self._kept.get("embedding", []))
        if kept >= self.max_figure_samples:
            return
        take = {
            "embedding": torch.cat([out.embedding_a, out.embedding_b]),
            "class": torch.cat([batch["class_a"], batch["class_b"]]),
        }
        if not self._kept:  # the first pairs, for the attention figure
            n = min(6, batch["image_a"].shape[0])
            take.update(image_a=batch["image_a"][:n], image_b=batch["image_b"][:n], attention_a=out.attention_a[:n],
                        attention_b=out.attention_b[:n], probability=probability[:n], label=batch["label"][:n])
        for key, value in take.items():
            self._kept.setdefault(key, []).append(value.detach().cpu())

    def on_test_epoch_end(self) -> None:
        if not self._kept or self.trainer.sanity_checking:
            return
        # computing a metric gathers it from every DDP process: all ranks compute, rank 0 plots
        fpr, tpr, _ = self.test_roc.compute()
        auc = float(self.test_metrics["auroc"].compute()) if self.test_metrics["auroc"].update_count else float("nan")
        confusion = self.test_confusion.compute()
        self.test_roc.reset()
        self.test_confusion.reset()
        if not self.trainer.is_global_zero:
            self._kept = {}
            return
        names = self.class_names or getattr(self.trainer.datamodule, "class_names", None)
        kept = {k: torch.cat(v) for k, v in self._kept.items()}  # rank 0's share of the test set
        n_classes = int(kept["class"].max()) + 1
        names = list(names) if names else [str(k) for k in range(n_classes)]
        self.log_figure(plot_roc(fpr, tpr, auc), "roc_curve")
        self.log_figure(plot_confusion_matrix(confusion, ["different", "same"]), "confusion_matrix")
        self.log_figure(plot_embeddings(kept["embedding"], kept["class"], names), "embeddings_pca")
        self.log_figure(
            plot_attention_pairs(kept["image_a"], kept["image_b"], kept["attention_a"], kept["attention_b"],
                                 kept["probability"], kept["label"]),
            "attention_maps",
        )
        if self._hardest:
            hard = self._hardest
            self.log_figure(plot_hardest_pairs(hard["image_a"], hard["image_b"], hard["probability"], hard["label"]),
                            "hardest_pairs")
        self._kept, self._hardest = {}, {}
