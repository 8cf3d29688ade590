"""Pair data for the siamese classifier (``agfusion``): synthetic shapes and real class folders.

A batch is a dict: ``image_a``/``image_b`` (B, 3, S, S) uint8, ``label`` (B,) float (1 = same
class), ``class_a``/``class_b`` (B,) long. Images are converted to float and augmented on the
device by the LightningModule.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from neurocorr.data.base import SPLITS, NeurocorrDataModule, check_int
from neurocorr.data.formats.class_folders import MIN_PER_SPLIT, ClassFolderSplit, read_class_folders, split_class_folders
from neurocorr.data.formats.image import read_image
from neurocorr.data.synthetic.drawn_shapes import DrawnStyle, drawn_shape_pairs, resolve_classes
from neurocorr.data.synthetic.shapes import FIGURES, shape_pairs
from neurocorr.errors import ConfigError

log = logging.getLogger(__name__)
PAIR_KEYS = ("image_a", "image_b", "label", "class_a", "class_b")
STYLES = ("easy", "drawn")
CLASS_FOLDER_SPLITS = ("fractions", "all", "test_all")

PairsFn = Callable[[int, torch.Tensor], dict[str, torch.Tensor]]


class ShapePairs(Dataset):
    """``length`` synthetic pairs; sample ``i`` is ``pairs_fn(seed, [i])``, a pure function of (seed, i)."""

    def __init__(self, pairs_fn: PairsFn, seed: int, length: int) -> None:
        self.pairs_fn, self.seed, self.length = pairs_fn, seed, length

    def __len__(self) -> int:
        return self.length

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        return self.pairs_fn(self.seed, torch.as_tensor(list(indices), dtype=torch.long))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


class ClassFolderPairs(Dataset):
    """Balanced pairs drawn from class folders: pair ``i`` is a pure function of (seed, i);
    even ``i`` gives a same-class pair, odd ``i`` a different-class pair. Every class needs
    at least two images."""

    def __init__(self, files: list[list[Path]], seed: int, length: int, image_size: int) -> None:
        self.files, self.seed, self.length, self.image_size = files, seed, length, image_size

    def __len__(self) -> int:
        return self.length

    def _draw(self, index: int) -> tuple[int, int, int, int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        n_classes = len(self.files)
        class_a = int(torch.randint(n_classes, (1,), generator=g))
        if index % 2 == 0:
            class_b = class_a
        else:
            class_b = (class_a + 1 + int(torch.randint(n_classes - 1, (1,), generator=g))) % n_classes
        pick = torch.randperm(len(self.files[class_a]), generator=g)[:2].tolist()
        i_a = pick[0]
        i_b = pick[1] if class_b == class_a else int(torch.randint(len(self.files[class_b]), (1,), generator=g))
        return class_a, i_a, class_b, i_b

    def _load(self, path: Path) -> torch.Tensor:
        image = read_image(path, "RGB").unsqueeze(0).float()
        image = F.interpolate(image, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False)
        return image[0].round().clamp(0, 255).to(torch.uint8)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        class_a, i_a, class_b, i_b = self._draw(index)
        return {
            "image_a": self._load(self.files[class_a][i_a]),
            "image_b": self._load(self.files[class_b][i_b]),
            "label": torch.tensor(float(class_a == class_b)),
            "class_a": torch.tensor(class_a),
            "class_b": torch.tensor(class_b),
        }


class EveryImagePairs(ClassFolderPairs):
    """Two pairs per image, in order: image ``i // 2`` of the flattened class folders with a seeded
    partner of its own class (even ``i``) or of another class (odd ``i``), so that every image is
    tested, once as a positive and once as a negative pair."""

    def __init__(self, files: list[list[Path]], seed: int, image_size: int) -> None:
        self.index = [(k, j) for k, images in enumerate(files) for j in range(len(images))]
        super().__init__(files, seed, 2 * len(self.index), image_size)

    def _draw(self, index: int) -> tuple[int, int, int, int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        class_a, i_a = self.index[index // 2]
        if index % 2 == 0:
            i_b = (i_a + 1 + int(torch.randint(len(self.files[class_a]) - 1, (1,), generator=g))) % len(self.files[class_a])
            return class_a, i_a, class_a, i_b
        n_classes = len(self.files)
        class_b = (class_a + 1 + int(torch.randint(n_classes - 1, (1,), generator=g))) % n_classes
        return class_a, i_a, class_b, int(torch.randint(len(self.files[class_b]), (1,), generator=g))


class ShapesDataModule(NeurocorrDataModule):
    """Synthetic pairs; train, val and test use distinct seeds.

    Args:
        style: ``easy`` (filled circles and squares, flat colours; squares axis-aligned unless
            ``max_angle_deg`` > 0) or ``drawn`` (hand-drawn-looking outlines and filled shapes of
            ``classes``, see :mod:`neurocorr.data.synthetic.drawn_shapes`).
        image_size: side of the square images, px.
        train_size, val_size, test_size: pairs per split.
        split_seeds: three distinct seeds, one per split.
        max_angle_deg: ``easy`` only: squares rotated by up to this angle.
        classes: ``drawn`` only: class names (``None`` = all the generator knows).
        drawn: ``drawn`` only: overrides of :class:`DrawnStyle` fields (ranges of the generator).
        **loader: batch_size, num_workers, pin_memory, seed (see NeurocorrDataModule).
    """

    batch_keys = PAIR_KEYS

    def __init__(
        self,
        *,
        style: str = "easy",
        image_size: int = 64,
        train_size: int = 20000,
        val_size: int = 1000,
        test_size: int = 2000,
        split_seeds: Sequence[int] = (1, 2, 3),
        max_angle_deg: float = 0.0,
        classes: Optional[Sequence[str]] = None,
        drawn: Optional[Mapping[str, Any]] = None,
        **loader: Any,
    ) -> None:
        super().__init__(**loader)
        if style not in STYLES:
            raise ConfigError(f"data.style must be one of {list(STYLES)}, got {style!r}")
        check_int("data.image_size", image_size, minimum=8)
        sizes = (train_size, val_size, test_size)
        for key, n in zip(("data.train_size", "data.val_size", "data.test_size"), sizes):
            check_int(key, n, minimum=1)
        if len(set(split_seeds)) != 3:
            raise ConfigError(f"data.split_seeds must be three distinct seeds, got {list(split_seeds)}")
        pairs_fn: PairsFn
        if style == "easy":
            pairs_fn = functools.partial(shape_pairs, size=image_size, max_angle=math.radians(max_angle_deg))
            self.class_names = list(FIGURES)
        else:
            class_ids = resolve_classes(classes)
            pairs_fn = functools.partial(drawn_shape_pairs, size=image_size, classes=class_ids,
                                         style=DrawnStyle.from_config(drawn))
            self.class_names = [name for name, _ in class_ids]
        self.datasets = {s: ShapePairs(pairs_fn, seed, n) for s, seed, n in zip(SPLITS, split_seeds, sizes)}


class ClassFoldersDataModule(NeurocorrDataModule):
    """Real images in ``<root>/<class>/*``, balanced pairs drawn within each split.

    Args:
        root: the folder of class folders.
        image_size: images are resized to this square size, px.
        pairs: pairs per split (train, val, test).
        fractions: share of the images per split. Every class needs at least 6 images (2 per
            split, disjoint); smaller classes are refused when the module is built.
        group_pattern: a regex on the file name whose first capture group (or whole match) names
            the file's group, e.g. ``'^[^.]+\\.([^.]+)\\.'`` for the author in HDS names
            (``ellipse.u14.0003.png``); all images of a group go to one split.
        split: ``fractions`` (disjoint train/val/test as above), ``all`` (every split draws its
            pairs from all images: for evaluating a model trained on other data) or ``test_all`` (the
            test set is every image, each in one same-class and one different-class pair; ``pairs`` is
            ignored; train and val are empty: evaluation only).
        verify_images: check every image's header when the module is built.
        **loader: batch_size, num_workers, pin_memory, seed, split_seed (see NeurocorrDataModule): the
            split and the val / test pairs follow ``split_seed``, the training pairs ``seed``.
    """

    batch_keys = PAIR_KEYS

    def __init__(
        self,
        *,
        root: str,
        image_size: int = 64,
        pairs: Sequence[int] = (10000, 1000, 1000),
        fractions: Sequence[float] = (0.8, 0.1, 0.1),
        group_pattern: Optional[str] = None,
        split: str = "fractions",
        verify_images: bool = True,
        **loader: Any,
    ) -> None:
        super().__init__(**loader)
        if split not in CLASS_FOLDER_SPLITS:
            raise ConfigError(f"data.split must be one of {list(CLASS_FOLDER_SPLITS)}, got {split!r}")
        check_int("data.image_size", image_size, minimum=8)
        if len(pairs) != 3:
            raise ConfigError(f"data.pairs must be three pair counts (train, val, test), got {list(pairs)}")
        for n in pairs:
            check_int("data.pairs", n, minimum=1)
        self.class_names, files = read_class_folders(root, min_per_class=MIN_PER_SPLIT, verify=verify_images)
        if split == "test_all":
            none: list[list[Path]] = [[] for _ in files]
            self.split = ClassFolderSplit({"train": none, "val": none, "test": files},
                                          {"train": 0, "val": 0, "test": sum(map(len, files))})
            self.datasets = {"train": ClassFolderPairs(none, self.seed, 0, image_size),
                             "val": ClassFolderPairs(none, self.seed, 0, image_size),
                             "test": EveryImagePairs(files, self.split_seed + 303, image_size)}
            return
        if split == "all":
            self.split = ClassFolderSplit({s: files for s in SPLITS}, {s: sum(map(len, files)) for s in SPLITS})
            log.info("class folders %s: split=all, every split draws pairs from all %d images", root, sum(map(len, files)))
        else:
            self.split = split_class_folders(files, fractions, self.split_seed, group_pattern)
            log.info("class folders %s split by %s: %s", root, f"group_pattern {group_pattern!r}" if group_pattern else "image",
                     self.split.summary())
        for i, (name, n) in enumerate(zip(SPLITS, pairs)):
            seed = self.seed if name == "train" else self.split_seed  # val / test pairs: the same in every run
            self.datasets[name] = ClassFolderPairs(self.split.files[name], seed + 101 * (i + 1), n, image_size)
