"""The two clocks of bench/throughput.py: the loop's step timer (a Lightning callback that runs one
bare step between every two timed loop steps) and the bare step of the network alone."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import pytorch_lightning as pl
import torch
from torch import nn


class StepTimer(pl.Callback):
    """Interleaves the two measurements inside one ``trainer.fit``, so that both see the same machine
    state (a shared CPU's load, clock and caches drift between two separate runs by more than the
    gap being measured):

    * the inputs of the network calls of the first timed step are kept (``net_calls``);
    * after every timed loop step, one bare step (network alone, :class:`BareStep`) runs and is timed;
    * a loop step is timed from its batch start to the next batch start, less the bare step in between.

    Loop steps count after ``warmup`` steps, bare steps after ``bare_warmup`` of their own; it stops the
    fit once both have ``steps`` times.
    """

    def __init__(self, warmup: int, steps: int, net_calls: list, precision: str = "32-true", bare_warmup: int = 3) -> None:
        self.warmup, self.steps, self.net_calls = warmup, steps, net_calls
        self.precision, self.bare_warmup = precision, bare_warmup
        self.step_times: list[float] = []
        self.bare_times: list[float] = []
        self.batch_size = 0
        self.recording = False
        self._bare: Optional[BareStep] = None
        self._bare_runs = 0
        self._last: Optional[float] = None
        self._pause = 0.0

    @property
    def done(self) -> bool:
        return len(self.step_times) >= self.steps and len(self.bare_times) >= self.steps

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step < self.warmup:
            return
        _sync(module.device)
        now = time.perf_counter()
        if self._last is not None and len(self.step_times) < self.steps:
            self.step_times.append(now - self._last - self._pause)
        self._last, self._pause = now, 0.0
        if self.done:
            trainer.should_stop = True
            return
        self.batch_size = self.batch_size or batch_size_of(batch)
        self.recording = not self.net_calls

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.recording = False
        if self._last is None or not self.net_calls or len(self.bare_times) >= self.steps:
            return
        start = time.perf_counter()
        if self._bare is None:
            self._bare = BareStep(module, self.net_calls, self.precision)
        seconds = self._bare()
        if self._bare_runs >= self.bare_warmup:
            self.bare_times.append(seconds)
        self._bare_runs += 1
        self._pause += time.perf_counter() - start


def batch_size_of(batch: Any) -> int:
    if isinstance(batch, dict):
        batch = next(v for v in batch.values() if torch.is_tensor(v))
    elif isinstance(batch, (list, tuple)):
        return batch_size_of(batch[0])
    return int(batch.shape[0])


def record_calls(net: nn.Module, names: tuple[str, ...], timer: StepTimer) -> None:
    """Wrap ``net.<name>`` so the inputs of the first timed step are kept (detached clones)."""
    for name in names:
        original = getattr(net, name)

        def wrapped(*args: Any, _original: Callable = original, _name: str = name, **kwargs: Any) -> Any:
            if timer.recording:
                keep = [a.detach().clone() if torch.is_tensor(a) else a for a in args]
                timer.net_calls.append((_name, keep, dict(kwargs)))
            return _original(*args, **kwargs)

        setattr(net, name, wrapped)


def output_scalar(out: Any) -> torch.Tensor:
    """Sum of the means of every floating tensor in a network output (tensor, tuple, dataclass...)."""
    if torch.is_tensor(out):
        return out.float().mean() if out.is_floating_point() and out.requires_grad else out.new_zeros(())
    if hasattr(out, "tensor") and torch.is_tensor(out.tensor):  # e2cnn GeometricTensor
        return output_scalar(out.tensor)
    if isinstance(out, dict):
        out = list(out.values())
    elif hasattr(out, "__dataclass_fields__"):
        out = [getattr(out, f) for f in out.__dataclass_fields__]
    if isinstance(out, (list, tuple)):
        parts = [output_scalar(o) for o in out]
        parts = [p for p in parts if p.requires_grad]
        return torch.stack(parts).sum() if parts else torch.zeros(())
    return torch.zeros(())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class BareStep:
    """One step of the network alone on the recorded calls: forward (the same methods, the same
    tensors), backward of the sum of the outputs' means, AdamW step. ``__call__`` -> seconds."""

    def __init__(self, module: pl.LightningModule, calls: list, precision: str) -> None:
        self.net, self.calls, self.device = module.net, calls, module.device
        params = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=1e-6)
        self.bf16 = precision.startswith("bf16")

    def __call__(self) -> float:
        # fresh copies each step, as the loop's tensors are: one fixed buffer can sit at an address
        # that oneDNN handles unusually fast or slow for a whole run
        calls = [(name, [a.clone() if torch.is_tensor(a) else a for a in args], kwargs) for name, args, kwargs in self.calls]
        _sync(self.device)
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            total = sum(output_scalar(getattr(self.net, name)(*args, **kwargs)) for name, args, kwargs in calls)
        total.backward()
        self.optimizer.step()
        _sync(self.device)
        return time.perf_counter() - start
