"""Process-wide settings, made once by the entry points and nowhere else in the library."""

from __future__ import annotations

import logging
import os
import signal
import warnings
from types import FrameType
from typing import Callable, Optional

from neurocorr.tasks.host_memory import keep_freed_host_memory


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: the signal that interrupted the running task (None while none has)
received: Optional[int] = None


def _raise_interrupted(signum: int, frame: Optional[FrameType]) -> None:
    global received
    received = signum
    raise Interrupted(signum)


def set_threads(threads: object) -> Optional[int]:
    """``torch.set_num_threads(threads)`` (``None``: unchanged); returns the previous count, or None."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        from neurocorr.errors import ConfigError

        raise ConfigError(f"threads must be an integer >= 1 or null, got {threads!r}")
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    return previous


def configure_process() -> Callable[[], None]:
    """Settings for a task process: no telemetry, a file-only plotting backend, the host allocator
    tuned for training, and SIGTERM/SIGINT that interrupt the task (so it
    can mark its MLflow run KILLED and exit non-zero). Environment settings of the user win.
    Returns a function that restores the signal handlers."""
    global received
    received = None
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # MLFLOW_DISABLE_TELEMETRY=false turns it on
    if "MPLBACKEND" not in os.environ:  # figures are files; never open a window
        import matplotlib

        matplotlib.use("Agg")
    keep_freed_host_memory()
    logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)  # its INFO lines flood every evaluation
    # every family transfers batches through its module's hooks, as intended: Lightning's note on it is noise
    warnings.filterwarnings("ignore", message="You have overridden `on_(before|after)_batch_transfer`")
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, _raise_interrupted)

    def restore() -> None:
        """Put back the signal handlers that were there before (the rest stays for the process)."""
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
