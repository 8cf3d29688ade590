"""Write a data set folder completely or not at all."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_folder(root: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``root``; when the block ends without an error it replaces
    ``root``, otherwise it is removed and ``root`` is left as it was (no half-written data set)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        yield tmp
        if root.exists():
            shutil.rmtree(root)
        tmp.replace(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
