"""Writing files whole or not at all: every writer goes through a temporary name and a rename."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable


def write_atomic(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``. A failed
    write leaves neither a half-written ``path`` nor the temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as strict JSON (non-finite numbers become null) atomically."""
    return write_text(path, json.dumps(strict_json(data), indent=2, sort_keys=True, allow_nan=False))


def load_torch_file(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; any failure is a ``ValueError`` whose
    message is one short line saying why (not a PyTorch file, truncated, or unsafe objects inside)."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if path.stat().st_size == 0:
        raise ValueError("the file is empty")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        with open(path, "rb") as f:
            pickled = zipfile.is_zipfile(path) or f.read(1) == b"\x80"  # a zip archive or a pickle stream
        if pickled and "Weights only load failed" in str(err):
            raise ValueError("it holds objects other than tensors and plain data, which are never loaded "
                             "(weights_only=True)") from err
        raise ValueError("not a PyTorch file") from err
    except Exception as err:  # torch raises many types for damaged files
        kind = "a damaged or truncated PyTorch file" if zipfile.is_zipfile(path) else "not a PyTorch file"
        raise ValueError(f"{kind} ({_first_line(err)})") from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else type(err).__name__
