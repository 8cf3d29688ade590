"""The match task: every template of a folder located in a scene (QATM), three files out."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from neurocorr.checkpoints import build_model, model_from_checkpoint, resolve_ckpt_path
from neurocorr.errors import ConfigError
from neurocorr.families import FAMILIES
from neurocorr.tasks import common
from neurocorr.viz.artifacts import log_artifact


def match(cfg: DictConfig) -> Optional[float]:
    """``python match.py scene=<image> templates=<folder> [ckpt_path=<qatm checkpoint|last>]``: writes
    ``result.png``, ``heatmap.png`` and ``boxes.csv`` in the run folder and logs them to MLflow."""
    from neurocorr.models.qatm.match import match_folder

    if not cfg.get("scene") or not cfg.get("templates"):
        raise ConfigError("match needs scene=<image> and templates=<folder>")
    output_dir = Path(cfg.paths.output_dir)
    ckpt = resolve_ckpt_path(cfg.get("ckpt_path"), Path(cfg.paths.log_dir), FAMILIES["qatm"])
    model = model_from_checkpoint(ckpt)[0] if ckpt is not None else build_model(cfg.model)
    if (model.model_config or {}).get("_target_") != FAMILIES["qatm"]:
        raise ConfigError(f"match needs a qatm model; {ckpt} holds {type(model).__name__}")
    args = dict(model.match_args)
    if cfg.get("match"):
        args.update(OmegaConf.to_container(cfg.match, resolve=True))
    loggers = common.build_loggers(cfg, output_dir)
    common.start_runs(loggers, output_dir, common.mlflow_uri(cfg))
    for lg in loggers:
        lg.log_hyperparams({"scene": str(cfg.scene), "templates": str(cfg.templates), "ckpt_path": str(ckpt)})
    paths = match_folder(model.net, cfg.scene, cfg.templates, output_dir, args, cfg.get("device", "cpu"))
    for path in paths.values():
        log_artifact(loggers, path)
    for lg in loggers:
        lg.finalize("success")
    for key, path in paths.items():
        print(f"[neurocorr] {key}: {path}", flush=True)
    common.CURRENT = common.RunRecord()
    return None
