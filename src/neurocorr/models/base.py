"""The LightningModule base that every family builds on: optimiser and scheduler from
Hydra partials, the run folder, figures saved and logged to MLflow.

The family contract (every family follows it; ``tests/models/test_family_contract.py`` checks it):

1. ``__init__(self, net, loss=None, <family keywords>, **base)``: everything is passed by keyword,
   and the base keywords (optimizer, scheduler, scheduler_interval, monitor, monitor_mode, compile,
   channels_last) go through ``**base`` to :class:`NeurocorrModule`. Every attribute is created in
   ``__init__`` (``None`` until it is known), never first in a hook.
2. The network is ``self.net``: a plain ``nn.Module`` from the family's ``torch_model.py`` (tensors
   in, tensors out, no Lightning, Hydra or files). The training loss is ``self.loss_fn``.
3. Every random draw in a step (augmentation, sampling, negatives) happens inside
   ``with self.step_rng():``, so a run is a function of its seed and a resumed run draws what an
   uninterrupted one would have.
4. "Are we training?" is ``self.is_fitting`` (the trainer's state), not ``self.training``
   (which is also False while validating inside a fit).
5. ``required_batch_keys`` names the keys a batch must carry; the first batch is checked once and a
   missing key stops the run with one line naming the data module and the keys. Data modules
   declare the keys they yield as ``batch_keys``, so a model x data mismatch is caught before the
   run starts.
6. ``validation_metrics()`` names what the module logs at validation, so a ``monitor`` it never
   logs is refused before training.
7. Training steps log through :meth:`log_train_mean` (device-side epoch means), never ``self.log``.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import matplotlib.pyplot as plt
import pytorch_lightning as pl
import torch

from neurocorr.errors import ConfigError
from neurocorr.viz.artifacts import log_artifact, save_figure

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class NeurocorrModule(pl.LightningModule):
    """Base module (the family contract is in this module's docstring).

    Args:
        optimizer: partial optimiser (``_partial_: true``), called with the trainable params.
        scheduler: partial LR scheduler called with the optimiser, or ``None``.
        scheduler_interval: ``epoch`` or ``step``.
        monitor: the metric that picks the best checkpoint and that ``run.train`` returns.
        monitor_mode: ``max`` or ``min``.
        compile: ``torch.compile`` the network (``self.net``) once, in place, when Lightning
            configures the model: ``False`` (default) = eager; ``True`` = the default backend
            (inductor); a string = that backend's name (e.g. ``aot_eager``). ``nn.Module.compile``
            keeps the state-dict keys, so checkpoints load with or without it.
        channels_last: on a CUDA device, keep the weights in ``torch.channels_last`` memory
            format (the tensor-core layout for convolutions under bf16); ignored on the CPU.
        seed: the run's seed; :meth:`step_rng` draws from (seed, global step).
    """

    #: keys every batch must carry (checked once, on the first batch; see the family contract)
    required_batch_keys: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        optimizer: OptimizerFactory,
        scheduler: Optional[SchedulerFactory] = None,
        scheduler_interval: str = "epoch",
        monitor: str = "val/loss",
        monitor_mode: str = "min",
        compile: bool | str = False,
        channels_last: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.channels_last = bool(channels_last)
        # not ``self.compile``: that is nn.Module.compile
        self.compile_backend = compile_backend(compile)
        self._net_compiled = False
        if monitor_mode not in ("min", "max"):
            raise ConfigError(f"model.monitor_mode must be 'min' or 'max', got {monitor_mode!r}")
        if scheduler_interval not in ("epoch", "step"):
            raise ConfigError(f"model.scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        self.monitor = monitor
        self.monitor_mode = monitor_mode
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        # Set by neurocorr.checkpoints.build_model: the resolved model config, stored in checkpoints
        # so that evaluate.py rebuilds the same module from the checkpoint alone.
        self.model_config: Optional[dict[str, Any]] = None
        self.rng_seed = int(seed)
        # name -> [sum of value * batch size (a device tensor), samples, prog_bar] (log_train_mean)
        self._train_sums: dict[str, list[Any]] = {}
        self._batch_keys_checked = False

    @property
    def is_fitting(self) -> bool:
        """True inside a training step of ``fit`` (the trainer's state, not ``nn.Module.training``)."""
        return self._trainer is not None and bool(self.trainer.training)

    def validation_metrics(self) -> list[str]:
        """Names this module logs at validation (``monitor`` must be one of them)."""
        return ["val/loss"]

    def check_data(self, datamodule: Any) -> None:
        """Refuse (ConfigError) a data module whose settings disagree with this model's (for example
        the input channels); called once before the run starts. The base checks nothing more."""

    def missing_batch_keys(self, keys: Any) -> list[str]:
        """The ``required_batch_keys`` that ``keys`` lacks."""
        present = set(keys)
        return [key for key in self.required_batch_keys if key not in present]

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not self._batch_keys_checked:
            missing = self.missing_batch_keys(batch.keys()) if isinstance(batch, dict) else list(self.required_batch_keys)
            if missing:
                source = type(self.trainer.datamodule).__name__ if self._trainer is not None else "the data"
                raise ConfigError(f"{source} yields batches without {', '.join(missing)}, which "
                                  f"{type(self).__name__} needs: choose a data= that fits model=")
            self._batch_keys_checked = True
        return batch

    def compile_targets(self) -> list[torch.nn.Module]:
        """The modules that ``compile`` compiles: ``self.net`` (a family whose net is called through
        other methods than ``forward`` returns the submodules those methods call)."""
        net = getattr(self, "net", None)
        return [net] if isinstance(net, torch.nn.Module) else []

    def configure_model(self) -> None:
        # Lightning calls this hook in fit, validate and test alike: compile once
        if self.compile_backend is None or self._net_compiled:
            return
        targets = self.compile_targets()
        if not targets:
            raise ConfigError(f"model.compile={self.compile_backend!r}: {type(self).__name__} has no network (self.net) to compile")
        for module in targets:
            module.compile(backend=self.compile_backend)
        self._net_compiled = True

    def _to_channels_last(self) -> None:
        if self.channels_last and self.device.type == "cuda":
            self.to(memory_format=torch.channels_last)

    def on_fit_start(self) -> None:
        self._to_channels_last()

    def on_test_start(self) -> None:
        self._to_channels_last()

    def log_train_mean(self, name: str, value: torch.Tensor, batch_size: int, prog_bar: bool = False) -> None:
        """Add a training step's ``value`` (a scalar tensor) to its epoch mean, weighted by ``batch_size``;
        the mean is logged as ``name`` when the training epoch ends (averaged over DDP ranks).

        What ``self.log(name, value, on_step=False, on_epoch=True)`` records, as a running sum on the
        device: no read-back to the host, and none of ``self.log``'s per-call bookkeeping, which
        costs about 0.7 ms a call on the CPU (as much as the heatmapper's loss itself)."""
        weighted = value.detach().float() * batch_size
        entry = self._train_sums.get(name)
        if entry is None:
            self._train_sums[name] = [weighted, batch_size, prog_bar]
        else:
            entry[0] = entry[0] + weighted
            entry[1] += batch_size

    def on_train_epoch_start(self) -> None:
        self._train_sums = {}

    def on_train_epoch_end(self) -> None:
        for name, (total, samples, prog_bar) in self._train_sums.items():
            self.log(name, total / samples, prog_bar=prog_bar, sync_dist=True)
        self._train_sums = {}

    @contextmanager
    def step_rng(self) -> Iterator[None]:
        """Random numbers drawn inside come from a generator seeded by (run seed, global step):
        fresh randomness in every batch, and a resumed run draws exactly what an uninterrupted
        run would have. The global RNG state is restored afterwards."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.rng_seed * 1_000_003 + int(self.global_step))
            yield

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params=params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": self.scheduler_interval,
                "monitor": self.monitor,
            },
        }

    @property
    def run_dir(self) -> Path:
        """The run's output folder (the trainer's ``default_root_dir``)."""
        return Path(self.trainer.default_root_dir) if self._trainer is not None else Path.cwd()

    def log_figure(self, fig: plt.Figure, name: str) -> Path:
        """Save ``fig`` as ``<run_dir>/figures/<name>.png`` and log it to MLflow."""
        path = save_figure(fig, self.run_dir / "figures" / f"{name}.png")
        self.log_file(path, "figures")
        return path

    def log_file(self, path: Path, artifact_path: Optional[str] = None) -> None:
        """Log an existing file to MLflow (no-op without an MLflow logger)."""
        if self._trainer is not None and self.trainer.is_global_zero:
            log_artifact(self.loggers, path, artifact_path)


def compile_backend(value: Any) -> Optional[str]:
    """``model.compile`` -> the ``torch.compile`` backend name, or ``None`` for eager."""
    if value is None or value is False:
        return None
    if value is True:
        return "inductor"
    if isinstance(value, str) and value:
        from torch._dynamo import list_backends  # imported only when asked for a backend by name

        if value in list_backends(exclude_tags=None):  # with the debug backends (eager, aot_eager)
            return value
        examples = ", ".join([*list_backends(), "aot_eager", "eager"])
        raise ConfigError(f"model.compile must be true, false or a torch.compile backend ({examples}...), got {value!r}")
    raise ConfigError(f"model.compile must be true, false or a torch.compile backend name, got {value!r}")
