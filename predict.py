"""Use a trained model: ``python predict.py ckpt_path=<file|last> input=<image | folder | pairs CSV> [output=<folder>]``.

Exit status: 0 when every input was processed, 1 when some could not be read (listed in
``<output>/failed.csv``; the others are processed), 2 for a bad checkpoint or option.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("NEUROCORR_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from neurocorr.tasks.cli import cli  # noqa: E402
from neurocorr.tasks.predict import predict  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    if cli(predict)(cfg):
        sys.exit(1)


if __name__ == "__main__":
    main()
