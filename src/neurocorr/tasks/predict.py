"""The predict task: a trained model of any family on an image, a folder, two images or a pairs CSV.

``python predict.py ckpt_path=<file|last> input=<...> [output=<folder>]``. The family comes from the
checkpoint; its predictor is ``neurocorr.models.<family>.predict.predict(ctx)`` (the family's package
is read from :data:`neurocorr.families.FAMILIES`; :data:`PREDICTORS` may name another function).
A predictor works through :class:`PredictContext`: ``ctx.attempt`` runs one input and, if that input
is unreadable (:class:`DataError`), prints one line, records it and goes on; ``failed.csv`` in the
output folder lists what was skipped and :func:`predict` returns their number (``predict.py`` then
exits with status 1). Everything is written to a temporary name and renamed (``neurocorr.files``).
"""

from __future__ import annotations

import csv
import importlib
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, TypeVar

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from tqdm import tqdm

from neurocorr.checkpoints import (DATA_KEY, build_model, checked_target, model_from_checkpoint, override_config,
                                   resolve_ckpt_path, settings_of)
from neurocorr.data.formats.image import IMAGE_SUFFIXES, is_image_file, list_images
from neurocorr.errors import ConfigError, DataError
from neurocorr.families import FAMILIES, family_of
from neurocorr.files import write_atomic
from neurocorr.models.base import NeurocorrModule
from neurocorr.tasks import common
import neurocorr.tasks.evaluate  # noqa: F401  registers the open model/data 'checkpoint' nodes of predict.yaml
from neurocorr.viz.artifacts import log_artifact

log = logging.getLogger("neurocorr")
T = TypeVar("T")

#: family -> "module.function" of its predictor, where it is not ``neurocorr.models.<family>.predict.predict``
PREDICTORS: dict[str, str] = {}


def predictor_of(family: str) -> Callable[["PredictContext"], list[Path]]:
    """The predict function of ``family`` (see the module docstring), or one ConfigError."""
    path = PREDICTORS.get(family) or FAMILIES[family].rsplit(".", 2)[0] + ".predict.predict"
    module, name = path.rsplit(".", 1)
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"family {family} has no predictor ({path}): {err}") from err


@dataclass
class PairsTable:
    """A pairs CSV: ``rows`` (every column kept, as read), the names of its two image columns ``a`` and
    ``b``, and ``paths`` ``(N, 2)``: the images of each row (relative to the CSV's folder unless absolute)."""

    columns: list[str]
    a: str
    b: str
    rows: list[dict[str, str]]
    paths: list[tuple[Path, Path]]


@dataclass
class PredictContext:
    """What a family's predictor gets: the model, the inputs, the output folder, the options."""

    model: NeurocorrModule
    family: str
    cfg: DictConfig
    output: Path
    images: list[Path]
    pairs: Optional[PairsTable]
    input_root: Path  # images are named by their path relative to this folder
    stored_data: dict[str, Any]
    device: torch.device
    data_settings: dict[str, Any] = field(default_factory=dict)  # data.<key>= of the command line
    failed: list[tuple[str, str]] = field(default_factory=list)

    def setting(self, key: str, default: Any = None) -> Any:
        """A preprocessing value: ``data.<key>=`` of the command line if given (with a warning when it
        differs from the checkpoint's), else the checkpoint's ``data.<key>``, else ``default``."""
        stored = self.stored_data.get(key)
        given = self.data_settings.get(key)
        if given is None:
            return default if stored is None else stored
        if stored is not None and given != stored:
            log.warning("data.%s=%s was given; the checkpoint was trained with data.%s=%s: predicting at %s",
                        key, given, key, stored, given)
        return given

    def name(self, path: Path) -> str:
        """A file-name-safe name of an input image: its path relative to the input folder, without
        suffix, with folders joined by ``__`` (so images of nested folders never collide)."""
        try:
            rel = Path(path).resolve().relative_to(self.input_root.resolve())
        except ValueError:
            rel = Path(Path(path).name)
        return "__".join(rel.with_suffix("").parts)

    def progress(self, items: list[T], what: str) -> Iterable[T]:
        """``items`` with a progress bar on stderr (none for a single item)."""
        return tqdm(items, desc=what, disable=len(items) < 2, file=sys.stderr, dynamic_ncols=True)

    def attempt(self, what: str, fn: Callable[[], T]) -> Optional[T]:
        """``fn()``, or None if it raised a :class:`DataError` (printed in one line and recorded)."""
        try:
            return fn()
        except DataError as err:
            message = " ".join(str(err).split())
            tqdm.write(f"neurocorr: error: {what}: {message}", file=sys.stderr)
            self.failed.append((what, message))
            return None


def read_pairs_csv(path: Path) -> PairsTable:
    """The image columns of a CSV are the first two whose first value names an image file; a first row
    of such names is data (columns ``image_a``, ``image_b``, ...), anything else is the header."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"input: pairs CSV {path} cannot be read: {err}") from err
    def image_columns(row: list[str]) -> list[int]:
        return [i for i, c in enumerate(row) if Path(c.strip()).suffix.lower() in IMAGE_SUFFIXES][:2]
    headerless = bool(rows) and len(image_columns(rows[0])) == 2
    body = rows if headerless else rows[1:]
    if not body or len(image_columns(body[0])) < 2:
        raise ConfigError(f"input: pairs CSV {path} needs two columns of image paths (and a row of data)")
    width = max(len(r) for r in rows)
    columns = ["image_a", "image_b"] + [f"column_{i}" for i in range(2, width)] if headerless else rows[0]
    ia, ib = image_columns(body[0])
    bad = [n for n, r in enumerate(body) if len(r) <= ib or not r[ia].strip() or not r[ib].strip()]
    if bad:
        raise ConfigError(f"input: pairs CSV {path}: row {bad[0] + 1 + (not headerless)} has no two image paths")
    resolve = (lambda p: p if p.is_absolute() else path.parent / p)  # noqa: E731
    paths = [(resolve(Path(r[ia].strip())), resolve(Path(r[ib].strip()))) for r in body]
    return PairsTable(columns, columns[ia], columns[ib], [dict(zip(columns, r)) for r in body], paths)


def parse_input(value: Any) -> tuple[list[Path], Optional[PairsTable], Path]:
    """(images, pairs, input root) of ``input=``: an image, a folder (recursive), a pairs CSV, or a
    list of images (a list of two is also one pair)."""
    if value is None or value == "":
        raise ConfigError("predict needs input=<image | folder | pairs CSV | [a.png,b.png]>")
    if isinstance(value, (ListConfig, list, tuple)):
        images = [Path(str(v)).expanduser() for v in value]
        if not images:
            raise ConfigError("input: the list of images is empty")
        pairs = None
        if len(images) == 2:
            pairs = PairsTable(["image_a", "image_b"], "image_a", "image_b",
                               [{"image_a": str(images[0]), "image_b": str(images[1])}], [(images[0], images[1])])
        return images, pairs, common_root(images)
    path = Path(str(value)).expanduser()
    if path.is_dir():
        images = list_images(path, recursive=True)
        if not images:
            raise ConfigError(f"input: folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return images, None, path
    if not path.exists():
        raise ConfigError(f"input: {path} does not exist")
    if path.suffix.lower() == ".csv":
        pairs = read_pairs_csv(path)
        images = list(dict.fromkeys(p for pair in pairs.paths for p in pair))
        return images, pairs, common_root(images)
    if not is_image_file(path):
        raise ConfigError(f"input: {path} is not an image ({', '.join(sorted(IMAGE_SUFFIXES))}), a folder or a .csv")
    return [path], None, path.parent


def common_root(paths: list[Path]) -> Path:
    """The deepest folder holding every path (images are named relative to it)."""
    parents = [p.resolve().parent for p in paths]
    root = parents[0]
    while any(root not in q.parents and root != q for q in parents):
        root = root.parent
    return root


#: preprocessing keys predict reads (``data.<key>=``) beyond those of the stored data config
PREDICT_DATA_KEYS = ("image_size", "grey", "max_side")


def load_model(cfg: DictConfig) -> tuple[NeurocorrModule, dict[str, Any], dict[str, Any], str]:
    """(model, stored data config, ``data.<key>=`` settings, where it came from): from ``ckpt_path``
    (``last``: the newest ``last.ckpt`` of ``model=``'s family, or of any) with ``model.<key>=``
    applied to its stored model config, or the untrained ``model=<family>``."""
    node = cfg.get("model")
    chosen = node if isinstance(node, DictConfig) and "_target_" in node else None
    target = checked_target(chosen, "model") if chosen else None
    ckpt = resolve_ckpt_path(cfg.get("ckpt_path"), Path(cfg.paths.log_dir), target)
    data = settings_of(cfg.get("data")) or {}
    if ckpt is not None:
        model, state = model_from_checkpoint(ckpt, overrides=settings_of(node))
        if target is not None and (model.model_config or {}).get("_target_") != target:
            raise ConfigError(f"model={target} was given, but checkpoint {ckpt} holds {type(model).__name__}")
        stored = dict(state.get(DATA_KEY) or {})
        if data:  # typos refused, listing the valid keys
            override_config(stored, data, "data", f"the data config in {ckpt}", PREDICT_DATA_KEYS)
        return model, stored, data, f"checkpoint {ckpt}"
    if chosen:
        return build_model(chosen), {}, data, "untrained"
    raise ConfigError("predict needs ckpt_path=<file|last> (or model=<family> backbone=<name> for an untrained network)")


def write_csv(path: Path, columns: list[str], rows: Iterable[dict[str, Any]]) -> Path:
    """A CSV with ``columns``, written atomically."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return write_atomic(path, write)


def predict(cfg: DictConfig) -> int:
    """Run the checkpoint's family on ``cfg.input`` (see the module docstring); returns the number of
    inputs that could not be processed."""
    torch.manual_seed(int(cfg.get("seed", 0)))
    model, stored_data, data_settings, source = load_model(cfg)
    family = family_of((model.model_config or {}).get("_target_"))
    if family is None:
        raise ConfigError(f"{source} holds no registered family")
    run = predictor_of(family)
    images, pairs, root = parse_input(cfg.get("input"))
    output = Path(str(cfg.get("output") or cfg.paths.output_dir)).expanduser()
    device = torch.device(str(cfg.get("device") or "cpu"))
    model = model.to(device).eval()
    ctx = PredictContext(model, family, cfg, output, images, pairs, root, stored_data, device, data_settings)
    loggers = common.build_loggers(cfg, output, experiment_name=f"neurocorr-{family}")
    common.start_runs(loggers, output, common.mlflow_uri(cfg))
    for lg in loggers:
        lg.log_hyperparams({"input": str(cfg.get("input")), "source": source, "family": family,
                            "output": str(output), **{f"data.{k}": v for k, v in stored_data.items()
                                                      if isinstance(v, (int, float, str, bool))}})
    print(f"[neurocorr] predicting with the {family} model from {source}: {len(images)} image(s)"
          + (f", {len(pairs.rows)} pair(s)" if pairs is not None else ""), flush=True)
    with torch.no_grad():
        written = run(ctx)
    # written even when empty: a failed.csv of an earlier run into the same folder must not stay stale
    written.append(write_csv(output / "failed.csv", ["input", "error"],
                             ({"input": w, "error": e} for w, e in ctx.failed)))
    for path in written:
        log_artifact(loggers, path)
    for lg in loggers:
        lg.finalize("success")
    common.CURRENT = common.RunRecord()
    for path in written:
        print(f"[neurocorr] wrote {path}", flush=True)
    if ctx.failed:
        print(f"neurocorr: {len(ctx.failed)} input(s) failed (listed in {output / 'failed.csv'}):", file=sys.stderr)
        for what, message in ctx.failed:
            print(f"  {what}: {message}", file=sys.stderr)
    else:
        print(f"[neurocorr] every input processed; outputs in {output}", flush=True)
    return len(ctx.failed)


def options(cfg: DictConfig, key: str) -> dict[str, Any]:
    """A mapping option of the config as a plain dict (empty when unset)."""
    node = cfg.get(key)
    return dict(OmegaConf.to_container(node, resolve=True)) if node else {}
