"""Training throughput: the full Lightning loop of each family beside its bare network.

For every family's default experiment this runs, in one process:

* ``loop``: ``trainer.fit`` as ``train.py`` builds it (data loading, synthetic generation,
  augmentation on the device, loss, metrics, logging, optimiser), timed over ``--steps`` training
  steps after ``--warmup`` steps, from one batch start to the batch start ``--steps`` later;
* ``bare``: the family's network alone on the very tensors it received in the loop (captured
  after ``on_after_batch_transfer``): the same network calls, forward + backward (sum of the
  outputs' means) + AdamW step, nothing else; one bare step runs between every two timed loop
  steps (and is not counted in the loop's time), so both see the same machine state;

and reports samples/s of both and their ratio (loop / bare) as JSON and a Markdown table.

    python bench/throughput.py --mode cpu                  # CPU experiment configs and batch sizes
    python bench/throughput.py --mode gpu                  # bf16-mixed, channels_last, the issue's batch shapes
    python bench/throughput.py --families agfusion qatm --steps 10

Generated data for qatm and heatmapper is cached under ``--data-dir`` (default data/bench).
Validation is switched off: the figure is training throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("NEUROCORR_ROOT", str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

from neurocorr.tasks.host_memory import keep_freed_host_memory  # noqa: E402
from neurocorr.checkpoints import build_model  # noqa: E402
from neurocorr.families import FAMILIES as REGISTERED  # noqa: E402

FAMILIES = tuple(REGISTERED)  # every registered family (neurocorr.families)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_timing import BareStep, StepTimer, batch_size_of, output_scalar, record_calls  # noqa: E402, F401


@dataclass
class Spec:
    """How to run one family: experiment overrides, and which network methods one training step calls."""

    overrides: list[str]
    entry_points: tuple[str, ...]  # methods of ``module.net`` called by training_step
    prepare: Optional[Callable[[Path], list[str]]] = None  # writes data, returns overrides


def _qatm_data(data_dir: Path) -> list[str]:
    from neurocorr.data.synthetic.aerial import make_dataset

    root = data_dir / "university1652"
    if not (root / "train").is_dir():
        make_dataset(root, n_train=48, n_test=4, views=6, size=128, n_maps=1, templates=2, map_size=192)
    return [f"data.root={root}"]


def _gauges_data(size: int) -> Callable[[Path], list[str]]:
    def make(data_dir: Path) -> list[str]:
        from neurocorr.data.synthetic.gauges import make_dataset

        root = data_dir / f"gauges_{size}"
        if not root.is_dir() or not any(root.iterdir()):
            make_dataset(root, n_train=400, n_val=8, n_test=8, size=size, overwrite=True)
        return [f"data.root={root}"]

    return make


def specs(mode: str) -> dict[str, Spec]:
    """Experiment configs per family: the CPU experiments on the CPU, the issue's batch shapes on a GPU;
    a family without its own entry runs its default pairing (``model=<family>``)."""
    tuned = _tuned_specs(mode)
    gpu = ["trainer=gpu", "trainer.accelerator=gpu"] if mode == "gpu" else []
    return {family: tuned.get(family, Spec([f"model={family}", *gpu], ("forward",))) for family in FAMILIES}


def _tuned_specs(mode: str) -> dict[str, Spec]:
    if mode == "cpu":
        return {
            "agfusion": Spec(["experiment=agfusion_shapes"], ("forward",)),
            "qatm": Spec(["experiment=qatm_synthetic_cpu"], ("embed",), _qatm_data),
            "heatmapper": Spec(["experiment=heatmapper_gauges_cpu"], ("forward",), _gauges_data(128)),
            "detector": Spec(["experiment=detector_textures_cpu"], ("forward",)),
        }
    gpu = ["trainer=gpu", "data.num_workers=8"]
    return {
        "agfusion": Spec(["experiment=agfusion_shapes", *gpu, "data.image_size=128", "data.batch_size=256",
                          "data.train_size=65536"], ("forward",)),
        "qatm": Spec(["model=qatm", "data=university1652", *gpu, "data.image_size=256", "data.batch_size=64"],
                     ("embed",), _qatm_data),
        "heatmapper": Spec(["experiment=heatmapper_gauges_dinov2", *gpu, "data.batch_size=64"], ("forward",),
                           _gauges_data(448)),
        "detector": Spec(["experiment=detector_textures_cpu", *gpu], ("forward",)),
    }


def compose_config(overrides: list[str], root: Path) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        run_dir = root / "logs" / "bench" / "run"
        cfg.paths.output_dir = str(run_dir)
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


def measure(family: str, spec: Spec, args: argparse.Namespace) -> dict[str, Any]:
    data_overrides = spec.prepare(args.data_dir) if spec.prepare else []
    root = args.data_dir / "runs"
    cfg = compose_config([*spec.overrides, *data_overrides, "logger=none", "callbacks.progress_bar=null",
                          *args.override], root)
    with open_dict(cfg):
        cfg.trainer.max_epochs = 1000
        cfg.trainer.max_steps = args.warmup + args.steps + 8  # the timer stops the fit once both counts are full
        cfg.trainer.limit_val_batches = 0
        cfg.trainer.num_sanity_val_steps = 0
        cfg.trainer.enable_checkpointing = False
        cfg.trainer.enable_progress_bar = False
        cfg.trainer.enable_model_summary = False
        cfg.trainer.logger = False
    pl.seed_everything(cfg.seed, verbose=False)
    datamodule = instantiate(cfg.data)
    module = build_model(cfg.model)
    calls: list = []
    timer = StepTimer(args.warmup, args.steps, calls, str(cfg.trainer.precision))
    record_calls(module.net, spec.entry_points, timer)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=[timer])
    trainer.fit(module, datamodule=datamodule)
    if not timer.done:
        raise RuntimeError(f"{family}: the loop ran fewer than {args.warmup + args.steps + timer.bare_warmup + 1} "
                           "steps (too little data?)")
    per_step = timer.batch_size
    # medians of per-step times: a busy neighbour on a shared machine shifts a mean, rarely a median
    loop = per_step / statistics.median(timer.step_times)
    bare = per_step / statistics.median(timer.bare_times)
    shapes = sorted({tuple(a.shape) for _, call_args, _ in calls for a in call_args if torch.is_tensor(a)})
    return {
        "family": family,
        "device": str(module.device),
        "batch_size": per_step,
        "input_shapes": [list(s) for s in shapes],
        "precision": str(cfg.trainer.precision),
        "loop_samples_per_s": round(loop, 2),
        "bare_samples_per_s": round(bare, 2),
        "ratio": round(loop / bare, 3),
        "loop_mean_samples_per_s": round(per_step * len(timer.step_times) / sum(timer.step_times), 2),
        "bare_mean_samples_per_s": round(per_step * len(timer.bare_times) / sum(timer.bare_times), 2),
        "threads": torch.get_num_threads(),
    }


def markdown(results: list[dict[str, Any]], mode: str) -> str:
    lines = [f"Training throughput ({mode}; samples/s; loop = full Lightning training loop, bare = network "
             "forward + backward + AdamW step on the same tensors)", "",
             "| family | batch | network inputs | precision | loop | bare | loop / bare |", "|---|---|---|---|---|---|---|"]
    for r in results:
        shapes = ", ".join("x".join(map(str, s)) for s in r["input_shapes"])
        lines.append(f"| {r['family']} | {r['batch_size']} | {shapes} | {r['precision']} | {r['loop_samples_per_s']:.1f} "
                     f"| {r['bare_samples_per_s']:.1f} | {r['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--data-dir", type=Path, default=REPO / "data" / "bench")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for every family")
    args = parser.parse_args(argv)
    if args.mode == "gpu" and not torch.cuda.is_available():
        print("neurocorr: error: --mode gpu needs a CUDA device", file=sys.stderr)
        return 2
    args.data_dir.mkdir(parents=True, exist_ok=True)
    keep_freed_host_memory()  # as train.py does: both measurements run in this process
    results = []
    threads = torch.get_num_threads()
    for family in args.families:
        torch.set_num_threads(threads)  # a family may set its own (model.torch_threads); the next starts afresh
        result = measure(family, specs(args.mode)[family], args)
        print(json.dumps(result), flush=True)
        results.append(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"throughput_{args.mode}.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results, args.mode)
    (args.out / f"throughput_{args.mode}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
