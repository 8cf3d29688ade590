"""Match a folder of templates in a scene: ``python match.py scene=<image> templates=<folder>``
(an alias of ``python predict.py input=<scene> templates=<folder>`` for QATM)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("NEUROCORR_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from neurocorr.tasks.cli import cli  # noqa: E402
from neurocorr.tasks.match import match  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="match")
def main(cfg: DictConfig) -> None:
    if cli(match)(cfg):
        sys.exit(1)


if __name__ == "__main__":
    main()
