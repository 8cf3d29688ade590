"""Saving figures as files in the run folder and logging files to MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import matplotlib.pyplot as plt
from pytorch_lightning.loggers import Logger, MLFlowLogger

from neurocorr.files import write_atomic


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (PNG unless the suffix says otherwise), close it, return the path.

    Written to a temporary name first and renamed, so no half-written figure is left behind.
    """
    try:
        return write_atomic(Path(path), lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix[1:] or "png"))
    finally:
        plt.close(fig)


def log_artifact(loggers: Iterable[Logger], path: str | Path, artifact_path: str | None = None) -> None:
    """Log a file to every MLflow logger among ``loggers`` (others are skipped)."""
    for logger in loggers:
        if isinstance(logger, MLFlowLogger) and logger.run_id is not None:
            logger.experiment.log_artifact(logger.run_id, str(path), artifact_path=artifact_path)
