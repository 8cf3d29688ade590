"""Saving figures as files in the run folder and logging files to MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
from pytorch_lightning.loggers import Logger, MLFlowLogger  # noqa: E402


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (PNG unless the suffix says otherwise), close it, return the path.

    Written to a temporary name first and renamed, so no half-written figure is left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix or '.png'}")
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        tmp.replace(path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


def log_artifact(loggers: Iterable[Logger], path: str | Path, artifact_path: str | None = None) -> None:
    """Log a file to every MLflow logger among ``loggers`` (others are skipped)."""
    for logger in loggers:
        if isinstance(logger, MLFlowLogger) and logger.run_id is not None:
            logger.experiment.log_artifact(logger.run_id, str(path), artifact_path=artifact_path)
