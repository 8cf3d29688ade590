"""Which files a run created, so that a failed run removes exactly those and nothing else.

Hydra creates the run folder before the task starts. :class:`RecordRunFolders` (a Hydra callback,
``conf/hydra/default.yaml``) notes, before any job runs, whether that folder already existed and what
it held. A failed run then removes only paths that were not there before, and the folder itself only
if this run created it. Without that record (a task called outside Hydra, another launcher process),
nothing but Hydra's own files written since the process started is removed, and no folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

PROCESS_START = time.time()
MAX_RECORDED = 100_000  # paths noted in a pre-existing folder; past that, it is left alone entirely
HYDRA_FILES = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml")

# folder -> the set of paths (relative) it held before the run, or None if it did not exist
_before: dict[Path, Optional[frozenset[str]]] = {}


def _snapshot(folder: Path) -> Optional[frozenset[str]]:
    if not folder.exists():
        return None
    seen: set[str] = set()
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            seen.add(os.path.relpath(os.path.join(root, name), folder))
            if len(seen) > MAX_RECORDED:
                return frozenset({"*"})
    return frozenset(seen)


def record(folder: Path) -> None:
    """Note what ``folder`` holds now (call before the run writes into it)."""
    folder = Path(folder).resolve()
    _before.setdefault(folder, _snapshot(folder))


class RecordRunFolders(Callback):
    """Hydra callback: records the run folder (or the sweep folder) before Hydra creates it."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        record(Path(str(config.hydra.run.dir)))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        record(Path(str(config.hydra.sweep.dir)))


def _recorded(folder: Path) -> tuple[bool, Optional[frozenset[str]], Path]:
    """(known, paths before relative to ``folder``, the recorded ancestor)."""
    folder = folder.resolve()
    for base, before in _before.items():
        if folder == base or base in folder.parents:
            if before is None:
                return True, None, base
            if "*" in before:
                return False, None, base
            if folder == base:
                return True, before, base
            rel = os.path.relpath(folder, base)
            inner = frozenset(os.path.relpath(p, rel) for p in before if p == rel or p.startswith(rel + os.sep))
            return True, (inner if rel in before else None), base
    return False, None, folder


def remove_created(folder: Path, task_name: str) -> list[Path]:
    """Remove what this run created in ``folder``; return the removed paths. Never a path that
    existed before the run, never a folder that existed before it."""
    folder = Path(folder)
    if not folder.exists():
        return []
    logging.shutdown()  # Hydra's log file handler writes into the folder
    known, before, _ = _recorded(folder)
    removed: list[Path] = []
    if known and before is None:  # the run created the folder: all of it is ours
        shutil.rmtree(folder, ignore_errors=True)
        return [folder]
    if known:
        candidates = [p for p in folder.rglob("*") if os.path.relpath(p, folder) not in before]
    else:  # unknown history: only Hydra's files and log, written since this process started
        candidates = [folder / f for f in (*HYDRA_FILES, f"{task_name}.log", ".hydra")]
        candidates = [p for p in candidates if p.exists() and p.stat().st_mtime >= PROCESS_START - 1]
    for path in sorted(candidates, key=lambda p: len(p.parts), reverse=True):
        try:
            if path.is_dir() and not path.is_symlink():
                path.rmdir()  # only if empty: files inside were removed first, or belong to someone else
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            continue
    return removed
