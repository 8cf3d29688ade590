"""The export task: a checkpoint's network, with its tensor-only pre- and post-processing, as an ONNX
(or TorchScript) file, checked against PyTorch and logged to the checkpoint's MLflow run.

Each family gives its export wrapper in ``<family package>/export.py``: ``export_network(module, **options)``
returns an ``nn.Module`` with ``input_names``, ``output_names``, ``dynamic_axes()`` (the axes that may
vary), ``sample_inputs(batch, (H, W))`` and a ``dynamic_note`` where sizes are fixed; ``preprocessing(module)``
says what the inputs must be. ONNX files are written by ``torch.onnx.export(dynamo=True)`` with
``Dim.AUTO`` on the axes the family declares: what stays dynamic in the file is read back from it.
"""

from __future__ import annotations

import importlib
import logging
import math
from pathlib import Path
from types import ModuleType
from typing import Any, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig

from neurocorr.checkpoints import model_from_checkpoint, resolve_ckpt_path, run_folder_of, stored_preprocessing
from neurocorr.errors import ConfigError, NeurocorrError
from neurocorr.families import FAMILIES, family_of
from neurocorr.files import write_atomic, write_json
from neurocorr.tasks import common, tracking

log = logging.getLogger("neurocorr")

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
Inputs = tuple[torch.Tensor, ...]


class ExportMismatch(NeurocorrError):
    """The exported file's outputs differ from PyTorch's by more than the tolerance."""


def family_exporter(target: str) -> ModuleType:
    """``<package of the family's LightningModule>.export``, or one ConfigError."""
    package = target.rsplit(".", 2)[0]
    try:
        return importlib.import_module(f"{package}.export")
    except ModuleNotFoundError as err:
        raise ConfigError(f"the {family_of(target)} family has no export ({package}.export is missing)") from err


def as_tuple(out: Any) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def max_abs_diff(got: Sequence[np.ndarray], want: Sequence[torch.Tensor]) -> float:
    """Largest |got - want| over every output (equal infinities count as 0; a shape mismatch is inf)."""
    worst = 0.0
    for a, b in zip(got, want, strict=True):
        b = b.detach().cpu().numpy()
        if a.shape != b.shape:
            return math.inf
        diff = np.where(a == b, 0.0, np.abs(a.astype(np.float64) - b.astype(np.float64)))
        worst = max(worst, float(np.nan_to_num(diff, nan=math.inf).max(initial=0.0)))
    return worst


def write_onnx(wrapper: torch.nn.Module, sample: Inputs, path: Path, opset: int, optimize: bool = True) -> dict[str, dict[int, str]]:
    """Export with ``Dim.AUTO`` on the declared axes; returns the input axes that stayed dynamic.
    ``optimize``: run onnxscript's graph optimiser (constant folding; the unoptimised graph where it fails)."""
    import onnx

    declared = wrapper.dynamic_axes()
    shapes = tuple({axis: torch.export.Dim.AUTO for axis in declared.get(name, {})} or None for name in wrapper.input_names)

    def write(tmp: Path) -> None:
        kwargs = dict(input_names=list(wrapper.input_names), output_names=list(wrapper.output_names),
                      opset_version=opset, dynamo=True, dynamic_shapes=shapes, external_data=False, verbose=False)
        try:
            torch.onnx.export(wrapper, sample, str(tmp), optimize=optimize, **kwargs)
        except Exception as err:  # noqa: BLE001 - onnxscript's graph optimiser fails on some graphs (agfusion's split)
            if not optimize:
                raise
            log.warning("ONNX graph optimisation failed (%s); writing the unoptimised graph", type(err).__name__)
            torch.onnx.export(wrapper, sample, str(tmp), optimize=False, **kwargs)

    with torch.no_grad():
        write_atomic(path, write)
    proto = onnx.load(str(path))
    graph = proto.graph
    names = {d.dim_param: declared[i.name][k] for i in graph.input for k, d in enumerate(i.type.tensor_type.shape.dim)
             if d.dim_param and k in declared.get(i.name, {})}
    for value in [*graph.input, *graph.output, *graph.value_info]:  # the exporter's s0, s1 -> batch, height, width
        for d in value.type.tensor_type.shape.dim:
            if d.dim_param in names:
                d.dim_param = names[d.dim_param]
    write_atomic(path, lambda tmp: onnx.save(proto, str(tmp)))
    return {i.name: {k: d.dim_param for k, d in enumerate(i.type.tensor_type.shape.dim) if d.dim_param}
            for i in graph.input if i.name in wrapper.input_names}


def load_runner(path: Path, fmt: str, names: Sequence[str]) -> Any:
    """A callable running the written file on the CPU: inputs (tensors) -> outputs (numpy arrays)."""
    if fmt == "torchscript":
        module = torch.jit.load(str(path))
        return lambda *inputs: [t.numpy() for t in as_tuple(module(*inputs))]
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda *inputs: session.run(None, {name: x.numpy() for name, x in zip(names, inputs)})


def check_samples(wrapper: torch.nn.Module, batch: int, size: tuple[int, int], dynamic: dict[str, dict[int, str]]) -> list[Inputs]:
    """The export sample, and one with another batch and (where the file allows) another image size."""
    samples = [wrapper.sample_inputs(batch, size)]
    axes = {axis for name in dynamic.values() for axis in name}
    other_size = (size[0] + 16, size[1] + 24) if {2, 3} & axes else size
    if 0 in axes or other_size != size:
        samples.append(wrapper.sample_inputs(batch + 1 if 0 in axes else batch, other_size))
    return samples


def run_checks(path: Path, fmt: str, wrapper: torch.nn.Module, samples: list[Inputs]) -> tuple[float, list[str]]:
    """(max abs difference of the file vs PyTorch over ``samples``, the input shapes checked)."""
    worst, shapes = 0.0, []
    run = load_runner(path, fmt, wrapper.input_names)
    with torch.no_grad():
        for inputs in samples:
            worst = max(worst, max_abs_diff(run(*inputs), as_tuple(wrapper(*inputs))))
            shapes.append(" + ".join("x".join(map(str, x.shape)) for x in inputs))
    return worst, shapes


def write_torchscript(wrapper: torch.nn.Module, sample: Inputs, path: Path) -> dict[str, dict[int, str]]:
    """Trace and save; the dynamic axes are those whose change still gives PyTorch's outputs (checked later)."""
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, sample, strict=False, check_trace=False)
    write_atomic(path, lambda tmp: torch.jit.save(traced, str(tmp)))
    batch_only = {name: {0: "batch"} for name in wrapper.input_names}
    other = wrapper.sample_inputs(sample[0].shape[0], (sample[-1].shape[-2] + 16, sample[-1].shape[-1] + 24))
    try:
        diff, _ = run_checks(path, "torchscript", wrapper, [other])
    except RuntimeError:
        return batch_only
    declared = {name: axes for name, axes in wrapper.dynamic_axes().items() if name in wrapper.input_names}
    return declared if diff <= 1e-4 else batch_only


def has_artifact(client: Any, run_id: str, name: str, size: int, path: Optional[str] = None) -> bool:
    """Whether the run already holds a file called ``name`` of ``size`` bytes (Lightning's ``log_model``
    logs checkpoints as ``<stem>/<name>``)."""
    for item in client.list_artifacts(run_id, path):
        if item.is_dir and has_artifact(client, run_id, name, size, item.path):
            return True
        if not item.is_dir and Path(item.path).name == name and item.file_size == size:
            return True
    return False


def log_to_mlflow(cfg: DictConfig, ckpt: Path, family: str, files: list[Path], log_checkpoint: bool) -> Optional[str]:
    """Log ``files`` (and the checkpoint, unless its run has it) to the MLflow run that wrote ``ckpt``,
    else to a new run in ``neurocorr-<family>``; returns the run id (None without an MLflow logger)."""
    uri = common.mlflow_uri(cfg)
    if uri is None:
        return None
    from mlflow import MlflowClient

    tracking.prepare_store(uri)
    client, experiment = MlflowClient(tracking_uri=uri), f"neurocorr-{family}"
    folder = run_folder_of(ckpt)
    run_id = tracking.find_run(uri, experiment, folder) if folder is not None else None
    new = run_id is None
    if new:
        found = client.get_experiment_by_name(experiment)
        location = str(cfg.logger.mlflow.get("artifact_location") or "") or None
        exp_id = found.experiment_id if found else client.create_experiment(experiment, artifact_location=location)
        run_id = client.create_run(exp_id, run_name=f"export-{family}", tags={
            tracking.OUTPUT_TAG: str(cfg.paths.output_dir), "neurocorr.checkpoint": str(ckpt)}).info.run_id
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path="export")
    if log_checkpoint and not has_artifact(client, run_id, ckpt.name, ckpt.stat().st_size):
        client.log_artifact(run_id, str(ckpt), artifact_path="export/checkpoint")
    if new:
        client.set_terminated(run_id, "FINISHED")
    print(f"[neurocorr] logged to MLflow run {run_id} ({'a new run' if new else 'the run of the checkpoint'}) in '{experiment}' ({uri})")
    return run_id


def export(cfg: DictConfig) -> Optional[float]:
    """Write the export of ``cfg.ckpt_path``, check it, log it; returns the max abs difference to PyTorch."""
    fmt = str(cfg.get("format") or "onnx")
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    ckpt = resolve_ckpt_path(cfg.get("ckpt_path"), Path(cfg.paths.log_dir))
    if ckpt is None:
        raise ConfigError(f"export needs ckpt_path=<file|last> (a checkpoint of {', '.join(FAMILIES)})")
    model, state = model_from_checkpoint(ckpt)
    target = str((model.model_config or {}).get("_target_"))
    family = family_of(target) or "model"
    exporter = family_exporter(target)
    options = {"template_size": tuple(int(v) for v in cfg.template_size)} if family == "qatm" and cfg.get("template_size") else {}
    wrapper = exporter.export_network(model.eval(), **options)
    stored = stored_preprocessing(state)
    side = int(stored.get("image_size") or cfg.get("default_size") or 64)
    size = tuple(int(v) for v in cfg.input_size) if cfg.get("input_size") else (side, side)
    batch = int(cfg.get("batch_size") or 2)
    sample = wrapper.sample_inputs(batch, size)
    output_dir = Path(cfg.paths.output_dir)
    path = Path(cfg.output) if cfg.get("output") else output_dir / f"{family}{FORMATS[fmt]}"
    print(f"[neurocorr] exporting {family} from {ckpt} to {path} ({fmt}, sample "
          f"{' + '.join('x'.join(map(str, x.shape)) for x in sample)})", flush=True)
    if fmt == "onnx":
        dynamic = write_onnx(wrapper, sample, path, int(cfg.opset), bool(cfg.get("optimize", True)))
    else:
        dynamic = write_torchscript(wrapper, sample, path)
    diff, shapes = run_checks(path, fmt, wrapper, check_samples(wrapper, batch, size, dynamic))
    tolerance = float(cfg.get("tolerance") or 1e-4)
    if not diff <= tolerance:
        path.unlink(missing_ok=True)
        raise ExportMismatch(f"{fmt} export of {ckpt}: outputs differ from PyTorch by {diff:.3g} > {tolerance:g} "
                             f"(inputs {', '.join(shapes)}); the file was removed")
    info = {
        "family": family, "format": fmt, "file": path.name, "checkpoint": str(ckpt.resolve()),
        "opset": int(cfg.opset) if fmt == "onnx" else None, "optimize": bool(cfg.get("optimize", True)) if fmt == "onnx" else None,
        "input_names": list(wrapper.input_names), "output_names": list(wrapper.output_names),
        "input_shapes": {n: [dynamic.get(n, {}).get(k, d) for k, d in enumerate(x.shape)]
                         for n, x in zip(wrapper.input_names, sample)},
        "dynamic_axes": dynamic, "fixed": getattr(wrapper, "dynamic_note", None),
        "input_size": list(size), "stored_preprocessing": stored, "preprocessing": exporter.preprocessing(model),
        "parity": {"max_abs_diff": diff, "tolerance": tolerance, "inputs": shapes,
                   "runtime": "onnxruntime CPU" if fmt == "onnx" else "torch.jit"},
    }
    info_path = write_json(path.with_name(path.name + ".json"), info)  # heatmapper.onnx.json
    size_mb = path.stat().st_size / 2**20
    print(f"[neurocorr] {path} ({size_mb:.2f} MiB) and {info_path.name}; dynamic axes {dynamic}; "
          f"max |{fmt} - torch| = {diff:.3g} over inputs {', '.join(shapes)}", flush=True)
    log_to_mlflow(cfg, ckpt, family, [path, info_path], bool(cfg.get("log_checkpoint", True)))
    return diff
