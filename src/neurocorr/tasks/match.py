"""The match task, kept as an alias of ``predict.py`` for QATM: ``python match.py scene=<image>
templates=<folder>`` is ``python predict.py input=<image> templates=<folder>`` with a qatm model
(``conf/match.yaml`` chooses ``model=qatm``, so a checkpoint of another family is refused and no
checkpoint means the untrained network of ``model.*``/``backbone.*``)."""

from __future__ import annotations

from typing import Optional

from omegaconf import DictConfig

from neurocorr.errors import ConfigError
from neurocorr.tasks.predict import predict


def match(cfg: DictConfig) -> Optional[float]:
    """Writes ``result.png``, ``heatmap.png`` and ``boxes.csv`` in the run folder (see
    :mod:`neurocorr.models.qatm.predict`); returns the number of scenes that could not be read."""
    if not cfg.get("scene") or not cfg.get("templates"):
        raise ConfigError("match needs scene=<image> and templates=<folder>")
    return predict(cfg)
