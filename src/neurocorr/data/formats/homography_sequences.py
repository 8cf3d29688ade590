"""Homography sequences on disk: HPatches and Oxford (Mikolajczyk) layouts.

HPatches: ``<seq>/1.ppm .. 6.ppm`` and ``H_1_2 .. H_1_6`` (text, 3x3, image 1 -> image k).
Oxford:   ``<seq>/img1.ppm .. img6.ppm`` and ``H1to2p .. H1to6p``.
Any image extension is accepted (ppm, pgm, png, jpg, ...). ``root`` is either one sequence folder
or a folder of sequence folders.

The returned homographies follow neurocorr's pixel convention (pixel centres at integer,
0-based coordinates). ``origin`` says which convention the files use (1 = 1-based, Matlab-style
coordinates; converted by ``T^-1 H T``). Both layouts' files are 0-based: on the Oxford boat
sequence, SIFT matches reproject with a median error of 0.4-0.7 px and a mean offset < 0.2 px
under ``origin=0``, against 0.6-1.3 px and offsets up to 1.1 px under ``origin=1``. The choice
decides a repeatability figure at 1 px, so it is a parameter rather than a guess.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from neurocorr.data.formats.image import is_image_file
from neurocorr.errors import DataError
from neurocorr.ops.geometry import shift_origin

LAYOUT_ORIGIN = {"hpatches": 0.0, "oxford": 0.0}


@dataclass
class HomographySequence:
    """One sequence: ``images[0]`` is the reference; ``homographies[k]`` (3, 3) float64 maps
    image 1 to ``images[k + 1]``."""

    name: str
    layout: str
    images: list[Path]
    homographies: list[torch.Tensor] = field(default_factory=list)


def read_homography_file(path: Path) -> torch.Tensor:
    """A 3x3 homography from a text file (9 numbers); :class:`DataError` naming the file if it is
    missing, malformed or singular."""
    if not path.is_file():
        raise DataError(f"homography file {path} is missing")
    try:
        values = [float(v) for v in path.read_text().split()]
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"homography file {path} is malformed: {err}") from err
    if len(values) != 9:
        raise DataError(f"homography file {path} is malformed: expected 9 numbers (3x3), found {len(values)}")
    H = torch.tensor(values, dtype=torch.float64).view(3, 3)
    if not torch.isfinite(H).all() or abs(float(torch.linalg.det(H))) < 1e-12:
        raise DataError(f"homography file {path} is malformed: not a finite invertible 3x3 matrix")
    return H / H[2, 2] if abs(float(H[2, 2])) > 1e-12 else H


def _image_by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if is_image_file(p)}


def detect_layout(folder: Path) -> Optional[str]:
    """``hpatches``, ``oxford`` or None for a folder."""
    stems = _image_by_stem(folder)
    if "1" in stems and any(re.fullmatch(r"H_1_\d+", p.name) for p in folder.iterdir()):
        return "hpatches"
    if "img1" in stems and any(re.fullmatch(r"H1to\d+p", p.name) for p in folder.iterdir()):
        return "oxford"
    if "1" in stems and "2" in stems:
        return "hpatches"
    if "img1" in stems and "img2" in stems:
        return "oxford"
    return None


def read_sequence(folder: Union[str, Path], origin: Union[str, float] = "auto") -> HomographySequence:
    """Read one sequence folder (layout detected from the file names)."""
    folder = Path(folder)
    layout = detect_layout(folder)
    if layout is None:
        raise DataError(f"{folder} is not a homography sequence: expected 1.<ext> + H_1_2.. (HPatches) "
                        f"or img1.<ext> + H1to2p.. (Oxford)")
    stems = _image_by_stem(folder)
    prefix = "" if layout == "hpatches" else "img"
    images, k = [], 1
    while f"{prefix}{k}" in stems:
        images.append(stems[f"{prefix}{k}"])
        k += 1
    if len(images) < 2:
        raise DataError(f"homography sequence {folder} has fewer than two images")
    shift = LAYOUT_ORIGIN[layout] if origin == "auto" else float(origin)
    homographies = []
    for k in range(2, len(images) + 1):
        name = f"H_1_{k}" if layout == "hpatches" else f"H1to{k}p"
        homographies.append(shift_origin(read_homography_file(folder / name), shift))
    return HomographySequence(folder.name, layout, images, homographies)


def read_homography_sequences(root: Union[str, Path], origin: Union[str, float] = "auto") -> list[HomographySequence]:
    """All sequences under ``root`` (itself a sequence, or a folder of sequence folders), sorted
    by name. :class:`DataError` if ``root`` is missing or holds no sequence."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"homography sequence folder {root} does not exist; make synthetic sequences with "
                        f"python -m neurocorr.data.synthetic.homography_sequences --out {root}")
    if detect_layout(root) is not None:
        return [read_sequence(root, origin)]
    found = [read_sequence(d, origin) for d in sorted(root.iterdir()) if d.is_dir() and detect_layout(d) is not None]
    if not found:
        raise DataError(f"{root} holds no homography sequence (HPatches <seq>/1.ppm + H_1_2.. or Oxford img1.* + H1to2p..)")
    return found


def write_homography_file(H: np.ndarray, path: Path) -> None:
    """Write a 3x3 homography as text (HPatches style), through a temporary file."""
    tmp = path.with_name(f".{path.name}.tmp")
    np.savetxt(tmp, np.asarray(H, dtype=np.float64).reshape(3, 3), fmt="%.10g")
    tmp.replace(path)


def check_absent(folders: Sequence[Path]) -> None:
    """DataError naming the first of ``folders`` that already exists (before a writer starts, so that
    nothing is written when any sequence would collide with one already there)."""
    taken = [str(f) for f in folders if Path(f).exists()]
    if taken:
        raise DataError(f"{taken[0]} already exists ({len(taken)} of the sequences): choose another --out or "
                        f"remove them yourself")


def write_sequence(final: Path, images: Sequence[np.ndarray], homographies: Sequence[np.ndarray]) -> Path:
    """Write an HPatches-layout sequence ``final``: ``images`` (``(H, W)`` uint8 arrays) as ``1.png ..``
    and ``H_1_2 ..``, through a temporary folder renamed into place, so a failure leaves nothing
    half-written. An existing ``final`` is never touched (a DataError names it)."""
    final = Path(final)
    check_absent([final])
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        for k, im in enumerate(images, start=1):
            Image.fromarray(im).save(tmp / f"{k}.png")
        for k, H in enumerate(homographies, start=2):
            write_homography_file(H, tmp / f"H_1_{k}")
        tmp.replace(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
