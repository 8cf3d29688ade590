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
from neurocorr.host_memory import keep_freed_host_memory
print(keep_freed_host_memory())
torch.set_num_threads(1)
x = torch.ones(16, 3, 128, 128)
def step():  # fresh 3-16 MiB tensors every step, as in a training step
    y = x * 2; z = y + x; big = torch.zeros(4096, 1024); mid = torch.zeros(1000, 1000); del y, z, big, mid
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(env: dict[str, str]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", LOOP], env={**os.environ, **env}, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_freed_blocks_stay_mapped_and_an_environment_setting_wins() -> None:
    was_set, faults = _run({})
    assert was_set == "True" and int(faults) < 100  # glibc's defaults fault ~1500 pages in this loop
    env = {"MALLOC_TRIM_THRESHOLD_": str(128 * 1024)}
    assert _run(env)[0] == "False"  # the user's own setting is left alone
