"""Write a generated data set folder completely or not at all, and never over a user's folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from neurocorr.errors import DataError

#: written into every generated folder: only a folder holding it may be replaced by a new one
MARKER = ".neurocorr-generated"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_folder(root: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``root``; when the block ends without an error it replaces
    ``root``, otherwise it is removed and ``root`` is left as it was (no half-written data set).

    ``root`` may be missing, empty, or a folder this function wrote before (it holds ``MARKER``);
    any other existing folder or file is refused with a DataError, so a user's files are never
    replaced. The new folder gets the permissions of any folder (``0o777`` less the umask)."""
    root = Path(root)
    if root.exists() and not (root.is_dir() and ((root / MARKER).is_file() or not any(root.iterdir()))):
        raise DataError(f"{root} exists and was not written by a neurocorr generator: "
                        f"choose a new folder (existing files are never replaced)")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700 folders
        yield tmp
        (tmp / MARKER).write_text("written by a neurocorr data generator; safe to regenerate\n")
        if root.exists():
            shutil.rmtree(root)
        tmp.replace(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
