"""Gauge keypoint data for the heatmapper: Label Studio exports (real or synthetic).

Two ways to point at data:
- ``root`` holding ``{train,val,test}/export.json`` (what ``python -m neurocorr.data.synthetic.gauges``
  writes), or
- ``annotations=<one Label Studio export.json>`` (a user's export), split into train/val/test by a
  seeded shuffle with ``fractions``; images are found under ``image_root`` (default: the export's folder).

A batch is a dict: ``image`` (B, 3, S, S) uint8, ``points`` (B, N, 2) float (x, y) px in the resized
image, ``labels`` (B, N) long class index, -1 for padding. Heatmaps are rendered on the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from neurocorr.data.formats.image import read_image
from neurocorr.data.formats.label_studio import KeypointTask, read_label_studio
from neurocorr.data.samplers import EpochSeededRandomSampler
from neurocorr.data.split_loaders import SplitLoaders
from neurocorr.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


class GaugeKeypoints(Dataset):
    """Images resized to ``image_size`` x ``image_size`` with their keypoints moved accordingly.

    Label Studio stores percentages, so points are scaled by ``image_size / original size``
    whatever the size of the file on disk. ``cache`` keeps the resized uint8 images in memory
    (``3 * image_size**2`` bytes each); :meth:`preload` fills it in one pass, before training.
    """

    def __init__(self, tasks: list[KeypointTask], image_size: int, cache: bool = True) -> None:
        self.tasks, self.image_size, self.cache = tasks, image_size, cache
        self._images: dict[int, torch.Tensor] = {}
        # points in resized-image pixels and labels, converted once rather than in every __getitem__
        self._points = [(torch.from_numpy(t.points).float() + 0.5) * torch.tensor([image_size / t.width, image_size / t.height])
                        - 0.5 for t in tasks]
        self._labels = [torch.from_numpy(t.labels).long() for t in tasks]

    def __len__(self) -> int:
        return len(self.tasks)

    def _image(self, index: int) -> torch.Tensor:
        if index in self._images:
            return self._images[index]
        task = self.tasks[index]
        try:
            image = read_image(task.image, "RGB")
        except DataError as err:
            raise DataError(f"task {task.task_id}: {err}") from err
        s = self.image_size
        if image.shape[-2:] != (s, s):
            image = F.interpolate(image.unsqueeze(0).float(), size=(s, s), mode="bilinear", antialias=True, align_corners=False)
            image = image[0].round().clamp(0, 255).to(torch.uint8)
        if self.cache:
            self._images[index] = image
        return image

    def preload(self) -> None:
        """Decode and resize every image now (with ``cache``), so that no training step waits on a
        decoder; a bad file fails here, naming its task, before any step has run."""
        if self.cache:
            for index in range(len(self.tasks)):
                self._image(index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self._image(index), "points": self._points[index], "labels": self._labels[index]}


def collate_keypoints(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack images; pad points with zeros and labels with -1 to the most points in the batch
    (at least one slot, so a batch without points still has a points axis)."""
    points = pad_sequence([item["points"] for item in items] + [torch.zeros(1, 2)], batch_first=True)[:-1]
    labels = pad_sequence([item["labels"] for item in items] + [torch.zeros(1, dtype=torch.long)], batch_first=True,
                          padding_value=-1)[:-1]
    return {"image": torch.stack([item["image"] for item in items]), "points": points, "labels": labels}


def how_to_make(root: Path) -> str:
    return (f"make synthetic gauges with: python -m neurocorr.data.synthetic.gauges {root} "
            "(add --size 128 for the CPU experiment), or pass data.annotations=<Label Studio export.json>")


class GaugesDataModule(SplitLoaders):
    """Gauge images with start/middle/end keypoints (see the module docstring)."""

    def __init__(
        self,
        root: Optional[str] = None,
        annotations: Optional[str] = None,
        image_root: Optional[str] = None,
        image_size: int = 448,
        fractions: Sequence[float] = (0.8, 0.1, 0.1),
        cache: bool = True,
        batch_size: int = 8,
        num_workers: int = 0,
        pin_memory: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        if image_size < 8:
            raise ConfigError(f"data.image_size must be >= 8, got {image_size}")
        if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
            raise ConfigError(f"data.fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
        self.batch_size, self.num_workers, self.pin_memory, self.seed = batch_size, num_workers, pin_memory, seed
        self.class_names = ["start", "middle", "end"]
        if annotations:
            tasks = read_label_studio(annotations, image_root)
            order = torch.randperm(len(tasks), generator=torch.Generator().manual_seed(seed)).tolist()
            n_train = int(round(fractions[0] * len(tasks)))
            n_val = int(round(fractions[1] * len(tasks)))
            cuts = {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
            split_tasks = {s: [tasks[i] for i in cuts[s]] for s in SPLITS}
            if not split_tasks["train"]:
                raise DataError(f"Label Studio export {annotations}: {len(tasks)} annotated tasks leave none for training")
            source = str(annotations)
        else:
            if not root:
                raise ConfigError("data.root or data.annotations must be set")
            base = Path(root)
            if not (base / "train" / "export.json").is_file():
                raise DataError(f"gauge data not found at {base} (no train/export.json); " + how_to_make(base))
            split_tasks = {}
            for s in SPLITS:
                path = base / s / "export.json"
                split_tasks[s] = read_label_studio(path, image_root) if path.is_file() else []
            source = str(base)
        for s in ("val", "test"):
            if not split_tasks[s]:
                raise DataError(f"gauge data {source}: the {s} split is empty")
        self.datasets = {s: GaugeKeypoints(split_tasks[s], image_size, cache) for s in SPLITS}

    def setup(self, stage: Optional[str] = None) -> None:
        """With ``cache``, decode the images of the stage's splits once, here, outside the loop."""
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage or "", SPLITS)
        for split in splits:
            self.datasets[split].preload()

    def _loader(self, split: str) -> DataLoader:
        dataset = self.datasets[split]
        sampler = EpochSeededRandomSampler(len(dataset), self.seed) if split == "train" else None
        return DataLoader(
            dataset, batch_size=self.batch_size, sampler=sampler, shuffle=False, num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(), persistent_workers=self.num_workers > 0,
            collate_fn=collate_keypoints, drop_last=split == "train" and len(dataset) > self.batch_size,
        )
