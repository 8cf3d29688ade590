"""Reader of the University-1652 layout.

``train/{drone,satellite,street,google}/<building_id>/*`` and
``test/{query_*,gallery_*}/<building_id>/*``; views absent from a copy are simply not listed.
"""

from __future__ import annotations

from pathlib import Path

from neurocorr.data.formats.image import list_images
from neurocorr.errors import DataError

HOW_TO_GET = (
    "request University-1652 from its authors (https://github.com/layumi/University1652-Baseline) "
    "or write a synthetic stand-in with: python -m neurocorr.data.synthetic.aerial {root}"
)

Views = dict[str, dict[str, list[Path]]]


def check_root(root: str | Path) -> Path:
    root = Path(root).expanduser()
    if not (root / "train").is_dir() and not (root / "test").is_dir():
        raise DataError(f"University-1652 data not found at {root} (no train/ or test/); " + HOW_TO_GET.format(root=root))
    return root


def read_split(root: str | Path, split: str) -> Views:
    """``{view: {building_id: [image paths]}}`` of ``root/split``; raises :class:`DataError` for a
    missing split or a building folder with no images."""
    folder = check_root(root) / split
    if not folder.is_dir():
        raise DataError(f"University-1652: split folder {folder} does not exist; " + HOW_TO_GET.format(root=Path(root)))
    views: Views = {}
    for view_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        buildings = {}
        for b in sorted(p for p in view_dir.iterdir() if p.is_dir()):
            images = list_images(b, recursive=False)
            if not images:
                raise DataError(f"University-1652: building folder {b} holds no images")
            buildings[b.name] = images
        views[view_dir.name] = buildings
    return views


def require_view(views: Views, name: str, split_dir: Path) -> dict[str, list[Path]]:
    if name not in views or not views[name]:
        raise DataError(f"University-1652: view folder {split_dir / name} is missing or empty (found: {sorted(views)})")
    return views[name]


def paired_buildings(first: dict[str, list[Path]], second: dict[str, list[Path]], where: Path) -> list[str]:
    """Building ids present in both views; a building of ``first`` missing in ``second`` is an error."""
    missing = sorted(set(first) - set(second))
    if missing:
        raise DataError(f"University-1652: building {missing[0]} under {where} has no counterpart view ({len(missing)} missing)")
    return sorted(first)
