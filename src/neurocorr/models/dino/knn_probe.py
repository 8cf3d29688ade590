"""Frozen-feature k-NN probe of a finished DINO run: random init vs the run's teacher backbone.

``python -m neurocorr.models.dino.knn_probe <run_dir> [--split test] [--k 20]`` rebuilds the run's
backbone twice from ``<run_dir>/config.yaml`` (random init with the run's seed, and
``pretrained=<run_dir>/dino_backbone.pth``), pools features as DINO does (``DINONet.features``) and
prints the weighted k-NN accuracy of the run's labelled folder (``data.knn_root``): bank = its
train split, queries = ``--split`` (``test``: groups never seen by the run's k-NN probe).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from neurocorr.errors import ConfigError
from neurocorr.models.dino.monitor import knn_accuracy
from neurocorr.models.dino.torch_model import DINONet


@torch.no_grad()
def probe(run_dir: Path, split: str = "test", k: int = 20) -> dict[str, float]:
    """``{"random": acc, "dino": acc}``: k-NN accuracy of frozen features of both initialisations."""
    cfg = OmegaConf.load(run_dir / "config.yaml")
    if not cfg.data.get("knn_root"):
        raise ConfigError(f"{run_dir}/config.yaml: data.knn_root is not set; the probe needs a labelled folder")
    data_cfg = OmegaConf.merge(cfg.data, {"knn_split": split})
    knn = instantiate(data_cfg, _convert_="partial").knn
    net_cfg = cfg.model.net
    out: dict[str, float] = {}
    for name, pretrained in (("random", False), ("dino", str(run_dir / "dino_backbone.pth"))):
        torch.manual_seed(int(cfg.seed))
        backbone = instantiate(OmegaConf.merge(net_cfg.backbone, {"pretrained": pretrained}))
        net = DINONet(backbone, net_cfg.hidden_dim, net_cfg.bottleneck_dim, net_cfg.out_dim,
                      input_norm=net_cfg.input_norm).eval()
        bank = net.features(knn["bank_image"].float() / 255.0)
        query = net.features(knn["query_image"].float() / 255.0)
        out[name] = float(knn_accuracy(bank, knn["bank_label"], query, knn["query_label"], k))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args()
    result = probe(args.run_dir, args.split, args.k)
    print(f"k-NN accuracy ({args.split} split, k={args.k}): random init {result['random']:.4f}, "
          f"DINO init {result['dino']:.4f}")


if __name__ == "__main__":
    main()
