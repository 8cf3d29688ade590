"""Gauge keypoint data for the heatmapper: Label Studio exports (real or synthetic).

Two ways to point at data:
- ``root`` holding ``{train,val,<test_split>}/export.json`` (what ``python -m neurocorr.data.synthetic.gauges``
  writes: ``test`` in the training styles, ``test_heldout`` in styles held back from training), or
- ``annotations=<one Label Studio export.json>`` (a user's export), split into train/val/test by a
  seeded shuffle with ``fractions``; images are found under ``image_root`` (default: the export's folder).

Images of any size and aspect are letterboxed to ``image_size`` x ``image_size``
(``neurocorr.models.heatmapper.letterbox``). A batch is a dict: ``image`` (B, 3, S, S) uint8,
``points`` (B, N, 2) float (x, y) px in the letterboxed image, ``labels`` (B, N) long class index, -1 for
padding, ``scale`` and ``offset`` (B, 2) float, the map back to original pixels. Heatmaps are rendered on
the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from neurocorr.data.base import SPLITS, NeurocorrDataModule, check_int
from neurocorr.data.formats.image import read_image
from neurocorr.data.formats.label_studio import KeypointTask, read_label_studio
from neurocorr.errors import ConfigError, DataError
from neurocorr.models.heatmapper.letterbox import letterbox_geometry, letterbox_image, to_input

GAUGE_SPLITS = ("fractions", "test_all")


class GaugeKeypoints(Dataset):
    """Images letterboxed to ``image_size`` x ``image_size`` with their keypoints moved accordingly.

    Label Studio stores percentages of ``original_width/height``, so points follow the letterbox of the
    annotated size whatever the size of the file on disk. ``cache`` keeps the letterboxed uint8 images
    in memory (``3 * image_size**2`` bytes each); :meth:`preload` fills it in one pass, before training.
    """

    def __init__(self, tasks: list[KeypointTask], image_size: int, cache: bool = True) -> None:
        self.tasks, self.image_size, self.cache = tasks, image_size, cache
        self._images: dict[int, torch.Tensor] = {}
        # the letterbox of each task's annotated size, and its points in input pixels, computed once
        self._scale, self._offset, self._points = [], [], []
        for t in tasks:
            _, scale, offset = letterbox_geometry(t.width, t.height, image_size)
            self._scale.append(torch.tensor(scale))
            self._offset.append(torch.tensor(offset, dtype=torch.float32))
            self._points.append(to_input(torch.from_numpy(t.points).float(), self._scale[-1], self._offset[-1]))
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
        h, w = image.shape[-2:]
        if abs(w * task.height - h * task.width) > max(w, h, task.width, task.height):  # aspect differs by > ~1 px
            raise DataError(f"task {task.task_id}: image {task.image} is {w} x {h} but was annotated at "
                            f"{task.width} x {task.height} (another aspect)")
        image, _, _ = letterbox_image(image, self.image_size)
        if self.cache:
            self._images[index] = image
        return image

    def preload(self) -> None:
        """Decode and letterbox every image now (with ``cache``), so that no training step waits on a
        decoder; a bad file fails here, naming its task, before any step has run."""
        if self.cache:
            for index in range(len(self.tasks)):
                self._image(index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self._image(index), "points": self._points[index], "labels": self._labels[index],
                "scale": self._scale[index], "offset": self._offset[index]}


def collate_keypoints(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack images (and ``scale``/``offset`` when present); pad points with zeros and labels with -1
    to the most points in the batch (at least one slot, so a batch without points has a points axis)."""
    points = pad_sequence([item["points"] for item in items] + [torch.zeros(1, 2)], batch_first=True)[:-1]
    labels = pad_sequence([item["labels"] for item in items] + [torch.zeros(1, dtype=torch.long)], batch_first=True,
                          padding_value=-1)[:-1]
    batch = {"image": torch.stack([item["image"] for item in items]), "points": points, "labels": labels}
    for key in ("scale", "offset"):
        if key in items[0]:
            batch[key] = torch.stack([item[key] for item in items])
    return batch


def how_to_make(root: Path) -> str:
    return (f"make synthetic gauges with: python -m neurocorr.data.synthetic.gauges {root} "
            "(add --size 128 for the CPU experiment), or pass data.annotations=<Label Studio export.json>")


class GaugesDataModule(NeurocorrDataModule):
    """Gauge images with start/middle/end keypoints (see the module docstring).

    Args:
        root: folder with ``train``, ``val`` and ``test_split`` sub-folders, each an ``export.json``.
        annotations: one Label Studio export split by ``fractions`` (instead of ``root``).
        image_root: where the export's images are (default: the export's folder).
        image_size: model input side S in pixels (letterboxed).
        fractions: train/val/test shares of ``annotations``.
        cache: keep the letterboxed images in memory.
        test_split: the folder under ``root`` that ``test`` reads (``test`` or ``test_heldout``).
        split: ``fractions`` (train/val/test as above) or ``test_all``: every labelled task (of
            ``annotations``, or of all the exports under ``root``) is the test set, train and val are
            empty (for evaluating a whole real set; fitting needs ``fractions``).
        **base: batch_size, num_workers, pin_memory, seed, split_seed (see NeurocorrDataModule).
    """

    batch_keys = ("image", "points", "labels", "scale", "offset")

    def __init__(
        self,
        *,
        root: Optional[str] = None,
        annotations: Optional[str] = None,
        image_root: Optional[str] = None,
        image_size: int = 448,
        fractions: Sequence[float] = (0.8, 0.1, 0.1),
        cache: bool = True,
        test_split: str = "test",
        split: str = "fractions",
        **base: Any,
    ) -> None:
        super().__init__(**base)
        check_int("data.image_size", image_size, minimum=8)
        if split not in GAUGE_SPLITS:
            raise ConfigError(f"data.split must be one of {list(GAUGE_SPLITS)}, got {split!r}")
        if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
            raise ConfigError(f"data.fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
        self.class_names = ["start", "middle", "end"]
        self.split = split
        if annotations:
            split_tasks, source = self._split_export(annotations, image_root, fractions)
        else:
            split_tasks, source = self._read_root(root, image_root, test_split)
        if split == "test_all":  # one test set of every labelled task; nothing to fit on
            split_tasks = {"train": [], "val": [], "test": [t for s in SPLITS for t in split_tasks[s]]}
        for s in SPLITS:
            if split == "test_all" and s != "test":
                continue
            if s != "train" and not split_tasks[s]:
                raise DataError(f"gauge data {source}: the {s} split is empty")
            if split_tasks[s] and not any(len(t.labels) for t in split_tasks[s]):  # its PCK would be NaN
                raise DataError(f"gauge data {source}: the {s} split ({len(split_tasks[s])} tasks) holds no keypoints")
        self.datasets = {s: GaugeKeypoints(split_tasks[s], image_size, cache) for s in SPLITS}

    def _split_export(self, annotations: str, image_root: Optional[str], fractions: Sequence[float]) -> tuple[dict, str]:
        tasks = read_label_studio(annotations, image_root)
        order = torch.randperm(len(tasks), generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        n_train = int(round(fractions[0] * len(tasks)))
        n_val = int(round(fractions[1] * len(tasks)))
        cuts = {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
        split_tasks = {s: [tasks[i] for i in cuts[s]] for s in SPLITS}
        if not split_tasks["train"] and self.split != "test_all":
            raise DataError(f"Label Studio export {annotations}: {len(tasks)} annotated tasks leave none for training")
        return split_tasks, str(annotations)

    @staticmethod
    def _read_root(root: Optional[str], image_root: Optional[str], test_split: str) -> tuple[dict, str]:
        if not root:
            raise ConfigError("data.root or data.annotations must be set")
        base = Path(root)
        if not (base / "train" / "export.json").is_file():
            raise DataError(f"gauge data not found at {base} (no train/export.json); " + how_to_make(base))
        folders = {"train": "train", "val": "val", "test": str(test_split)}
        if not (base / folders["test"] / "export.json").is_file() and test_split != "test":
            raise ConfigError(f"data.test_split={test_split!r}: {base / test_split / 'export.json'} does not exist")
        split_tasks = {}
        for s, folder in folders.items():
            path = base / folder / "export.json"
            split_tasks[s] = read_label_studio(path, image_root) if path.is_file() else []
        return split_tasks, str(base)

    def setup(self, stage: Optional[str] = None) -> None:
        """With ``cache``, decode the images of the stage's splits once, here, outside the loop."""
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage or "", SPLITS)
        for split in splits:
            self.datasets[split].preload()

    def collate(self, split: str) -> Optional[Callable[[Any], Any]]:
        return collate_keypoints
