"""keep_freed_host_memory: glibc keeps freed blocks mapped, so a training-like loop of allocations
stops faulting pages in. Run in subprocesses: the setting is process-wide."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")

LOOP = """
import resource, sys, torch
from neurocorr.tasks.host_memory import keep_freed_host_memory
print(keep_freed_host_memory() if sys.argv[1] == "keep" else "default")
torch.set_num_threads(1)
def step():  # a step's worth of fresh 4 MiB tensors (40 MiB), all freed at its end, as in training
    tensors = [torch.ones(1024, 1024) for _ in range(10)]
    del tensors
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(mode: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", LOOP, mode], env={**os.environ, **(env or {})}, capture_output=True,
                         text=True, check=True)
    status, faults = out.stdout.split()
    return status, int(faults)


def test_freed_blocks_stay_mapped_and_an_environment_setting_wins() -> None:
    # glibc's starting thresholds (128 KiB), fixed: each 4 MiB block is mapped afresh, ~10k faults a step.
    # (Left to adapt, glibc's thresholds give 0 or 200k faults here depending on the address layout.)
    small = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024), "MALLOC_TRIM_THRESHOLD_": str(128 * 1024)}
    status, faults_small = _run("keep", small)
    assert status == "False"  # an environment setting wins: keep_freed_host_memory leaves it alone
    was_set, faults = _run("keep")
    assert was_set == "True"
    assert faults_small > 20 * 10_000 and faults * 100 < faults_small, (faults, faults_small)
