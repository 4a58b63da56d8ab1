"""keep_freed_memory: a large block freed and allocated again reuses its pages."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from dfer.runtime import keep_freed_memory

def _huge_pages_always() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[always]" in f.read()
    except OSError:
        return False


glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="mallopt is glibc's")
# with huge pages always on, a fresh mapping faults in 2 MiB steps: too few faults to count
small_pages = pytest.mark.skipif(_huge_pages_always(), reason="transparent huge pages are always on")

# allocate, write and free a 64 MiB block round after round, as a training step does its
# activations; report the page faults of the last rounds, once the heap has settled
SCRIPT = """
import json, resource, sys
import torch
from dfer.runtime import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "keep" else None
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for r in range(12):
    if r == 4:
        before = faults()
    block = torch.ones(16 << 20)  # 64 MiB of float32, written
    small = [torch.zeros(1000) for _ in range(50)]  # other allocations in between
    del block
print(json.dumps({"took": took, "faults": faults() - before, "pages": 4 * (16 << 20) // resource.getpagesize()}))
"""


def _last_rounds(mode: str, env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})})
    return json.loads(out.stdout)


@glibc
@small_pages
def test_a_freed_block_is_reused_without_faulting_its_pages_in_again():
    plain = _last_rounds("plain")
    kept = _last_rounds("keep")
    assert plain["faults"] > 0.9 * 8 * plain["pages"]  # the default: a fresh mapping each round, every page faults
    assert kept["took"] is True
    # the same pages again: the heap may still grow once or twice as small blocks settle in it
    assert kept["faults"] < 0.3 * plain["faults"]


@glibc
@pytest.mark.parametrize("env", [{"MALLOC_TRIM_THRESHOLD_": "131072"}, {"MALLOC_MMAP_MAX_": "65536"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"}])
def test_the_users_own_malloc_setting_stands(env):
    assert _last_rounds("keep", env)["took"] is False


def test_it_is_a_no_op_off_glibc(monkeypatch):
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert keep_freed_memory() is False
