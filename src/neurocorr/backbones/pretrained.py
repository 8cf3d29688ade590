"""Loading pretrained weights: ``pretrained: false | true | <local file>``.

Every backbone factory calls :func:`load_pretrained`, so the three cases behave the same for
every family: ``false`` keeps the random initialisation, a path loads that file
(``weights_only=True``), and ``true`` downloads, failing in one line when offline.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Callable, Mapping, Union

import torch
from torch import nn

from neurocorr.errors import WeightsError
from neurocorr.files import load_torch_file

Pretrained = Union[bool, str, Path, None]


def read_state_dict(path: Union[str, Path], name: str) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path``: a plain state dict, or a checkpoint holding one
    under ``state_dict`` or ``model``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"backbone {name}: weights file {path} does not exist")
    try:
        obj = load_torch_file(path)
    except (ValueError, OSError) as err:
        raise WeightsError(f"backbone {name}: cannot read weights file {path}: {err}") from err
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"backbone {name}: {path} holds no state dict of tensors")
    return dict(obj)


def apply_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], name: str, source: str) -> None:
    """Load the keys of ``state`` that ``module`` has; fail naming ``source`` when any of the
    module's parameters is missing or has another shape."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or wrong:
        detail = ", ".join([f"missing {k}" for k in missing[:3]] + [f"shape of {k}" for k in wrong[:3]])
        raise WeightsError(f"backbone {name}: weights in {source} do not fit ({detail})")
    module.load_state_dict({k: state[k] for k in own}, strict=True)


def require_host(host: str, name: str, port: int = 443, timeout: float = 3.0) -> None:
    """Fail at once, in one line, when ``host`` cannot be reached (offline, or ``HF_HUB_OFFLINE=1``),
    instead of waiting through a download library's retries (about 50 s for Hugging Face)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise WeightsError(f"backbone {name}: pretrained=true needs a download and HF_HUB_OFFLINE is set; "
                           f"pass a local file instead: pretrained=/path/to/{name}.pth")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        raise WeightsError(f"backbone {name}: pretrained=true needs {host}, which cannot be reached ({err}); "
                           f"pass a local file instead: pretrained=/path/to/{name}.pth") from err


def load_pretrained(
    module: nn.Module,
    pretrained: Pretrained,
    name: str,
    download: Callable[[], Mapping[str, torch.Tensor]] | None = None,
) -> nn.Module:
    """Fill ``module`` with pretrained weights and return it.

    Args:
        module: the freshly built backbone.
        pretrained: ``False``/``None`` (keep random init), ``True`` (call ``download``) or a
            path to a local ``.pt``/``.pth``/``.ckpt`` file.
        name: the backbone's name, used in error messages.
        download: returns the state dict from the network; any failure becomes one
            :class:`WeightsError` that says to pass a local file.
    """
    if pretrained is None or pretrained is False:
        return module
    if pretrained is True:
        if download is None:
            raise WeightsError(f"backbone {name}: no download source; pass pretrained=<local weights file>")
        try:
            state = download()
        except WeightsError:
            raise
        except Exception as err:
            raise WeightsError(
                f"backbone {name}: pretrained=true needs to download weights and that failed "
                f"({type(err).__name__}); pass a local file instead: pretrained=/path/to/{name}.pth"
            ) from err
        apply_state_dict(module, state, name, "the downloaded weights")
        return module
    if isinstance(pretrained, (str, Path)):
        if str(pretrained).lower() in ("false", "none", ""):
            return module
        if str(pretrained).lower() == "true":
            return load_pretrained(module, True, name, download)
        apply_state_dict(module, read_state_dict(pretrained, name), name, str(pretrained))
        return module
    raise WeightsError(f"backbone {name}: pretrained must be false, true or a file path, got {pretrained!r}")
