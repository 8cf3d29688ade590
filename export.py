"""Export a checkpoint's network: ``python export.py ckpt_path=<file|last> format=onnx [opset=..] [output=..]``."""

import os
from pathlib import Path

os.environ.setdefault("NEUROCORR_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from neurocorr.tasks.cli import cli  # noqa: E402
from neurocorr.tasks.export import export  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> float | None:
    return cli(export)(cfg)


if __name__ == "__main__":
    main()
