"""Class folders: ``<root>/<class>/*.<image>``; one folder per class, images anywhere below it.

Also the train/val/test split of such a folder: by image (stratified per class) or, with a group
pattern, by group (all images of one group, e.g. one author, in one split).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from neurocorr.data.formats.image import check_image, list_images
from neurocorr.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
#: images of every class that every split holds at least (a same-class pair needs two)
MIN_PER_SPLIT = 2
#: the smallest class a three-way split accepts
MIN_PER_CLASS = len(SPLITS) * MIN_PER_SPLIT
GROUP_SPLIT_ATTEMPTS = 200


def read_class_folders(root: str | Path, min_per_class: int = 2, verify: bool = True) -> tuple[list[str], list[list[Path]]]:
    """Return ``(class_names, files_per_class)``, both sorted.

    Raises :class:`DataError` when ``root`` is missing, has fewer than two classes, a class has
    fewer than ``min_per_class`` images, or (``verify``) an image's header is unreadable.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist (expected <root>/<class>/*.png)")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [list_images(c) for c in classes]
    if len(classes) < 2:
        raise DataError(f"data root {root} needs at least two class folders, found {len(classes)}")
    for folder, images in zip(classes, files):
        if len(images) < min_per_class:
            raise DataError(f"class folder {folder} holds {len(images)} images; at least {min_per_class} are needed")
        if verify:
            for path in images:
                check_image(path)
    return [c.name for c in classes], files


@dataclass
class ClassFolderSplit:
    """``files[split][class]``: the images of each class in each split; ``groups[split]``: the
    number of groups (images when there is no group pattern) in each split."""

    files: dict[str, list[list[Path]]]
    groups: dict[str, int]

    def summary(self) -> str:
        """One line: groups / images per split, and the smallest class in each."""
        parts = []
        for split in SPLITS:
            sizes = [len(f) for f in self.files[split]]
            parts.append(f"{split} {self.groups[split]} groups / {sum(sizes)} images (class sizes {min(sizes)}-{max(sizes)})")
        return "; ".join(parts)


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Images of a class of ``n`` (>= MIN_PER_CLASS) per split: near ``fractions``, each >= MIN_PER_SPLIT."""
    counts = [max(MIN_PER_SPLIT, int(round(f * n))) for f in fractions]
    while sum(counts) > n:  # take from the split furthest above its share
        excess = [c - f * n if c > MIN_PER_SPLIT else float("-inf") for c, f in zip(counts, fractions)]
        counts[max(range(len(counts)), key=lambda i: excess[i])] -= 1
    counts[0] += n - sum(counts)
    return counts


def group_of(path: Path, pattern: re.Pattern[str]) -> str:
    """The group of a file: the first capture group of ``pattern`` in its name (or the whole match)."""
    match = pattern.search(path.name)
    if match is None:
        raise DataError(f"data.group_pattern {pattern.pattern!r} does not match the file name of {path}")
    return match.group(1) if match.groups() else match.group(0)


def compile_group_pattern(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise ConfigError(f"data.group_pattern {pattern!r} is not a regular expression: {err}") from err


def split_class_folders(
    files: list[list[Path]], fractions: Sequence[float], seed: int, group_pattern: Optional[str] = None
) -> ClassFolderSplit:
    """Split the images of every class into train/val/test, disjoint, each holding at least
    ``MIN_PER_SPLIT`` images of every class.

    Without ``group_pattern`` every class is split on its own by a seeded shuffle (classes need
    ``MIN_PER_CLASS`` images). With it, whole groups go to one split, near ``fractions`` of the
    images; seeded shuffles are tried until every class has enough images in every split, or a
    :class:`DataError` says why that cannot be done.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) <= 0:
        raise ConfigError(f"data.fractions must be three positive numbers summing to 1, got {list(fractions)}")
    if group_pattern:
        return _split_by_group(files, fractions, seed, compile_group_pattern(group_pattern))
    out: dict[str, list[list[Path]]] = {s: [] for s in SPLITS}
    for class_index, images in enumerate(files):
        if len(images) < MIN_PER_CLASS:
            raise DataError(f"class folder {images[0].parent if images else class_index} holds {len(images)} images; a "
                            f"train/val/test split needs at least {MIN_PER_CLASS} ({MIN_PER_SPLIT} per split)")
        g = torch.Generator().manual_seed(seed * 7919 + class_index)
        order = [images[i] for i in torch.randperm(len(images), generator=g).tolist()]
        start = 0
        for split, count in zip(SPLITS, split_counts(len(order), fractions)):
            out[split].append(order[start : start + count])
            start += count
    return ClassFolderSplit(out, {s: sum(len(f) for f in out[s]) for s in SPLITS})


def _split_by_group(files: list[list[Path]], fractions: Sequence[float], seed: int, pattern: re.Pattern[str]) -> ClassFolderSplit:
    members: dict[str, list[tuple[int, Path]]] = {}
    for class_index, images in enumerate(files):
        for path in images:
            members.setdefault(group_of(path, pattern), []).append((class_index, path))
    names = sorted(members)
    if len(names) < len(SPLITS):
        raise DataError(f"data.group_pattern {pattern.pattern!r} finds {len(names)} groups ({', '.join(names)}); "
                        f"a train/val/test split needs at least {len(SPLITS)}")
    n_classes, total = len(files), sum(len(f) for f in files)
    target = [f * total for f in fractions]
    for attempt in range(GROUP_SPLIT_ATTEMPTS):
        g = torch.Generator().manual_seed(seed * 7919 + attempt)
        order = [names[i] for i in torch.randperm(len(names), generator=g).tolist()]
        assigned: dict[str, list[str]] = {s: [] for s in SPLITS}
        filled = [0.0, 0.0, 0.0]
        for name in order:  # to the split furthest below its share of the images
            split = max(range(3), key=lambda i: (target[i] - filled[i]) / target[i])
            assigned[SPLITS[split]].append(name)
            filled[split] += len(members[name])
        out = {s: [[p for name in sorted(assigned[s]) for c, p in members[name] if c == k] for k in range(n_classes)]
               for s in SPLITS}
        if all(len(images) >= MIN_PER_SPLIT for s in SPLITS for images in out[s]):
            return ClassFolderSplit(out, {s: len(assigned[s]) for s in SPLITS})
    per_class = [len({group_of(p, pattern) for p in images}) for images in files]
    raise DataError(f"data.group_pattern {pattern.pattern!r}: no split of the {len(names)} groups in {GROUP_SPLIT_ATTEMPTS} "
                    f"seeded tries gives every class {MIN_PER_SPLIT} images in each of train/val/test (groups per class: "
                    f"{min(per_class)}-{max(per_class)}); add groups or drop the pattern")
