"""The machine's own limits, printed by a benchmark beside its figures so that a figure reads as a share of
the machine it ran on (machines of one kind differ by up to 3x): cores, copy bandwidth of memory already
touched, first-touch bandwidth of fresh memory (page faults included) with 4 KB and with huge pages, fp32
matmul GFLOP/s, and the allocator settings and huge-page mode that decide how often the data path faults.

    python benchmarks/machine.py
"""

from __future__ import annotations

import mmap
import os
import time

import numpy as np
import torch

from workloads import memory

BYTES = 256 << 20


def _best(seconds: list[float]) -> float:
    return min(seconds)


def copy_gbps() -> float:
    source = np.ones(BYTES, dtype=np.uint8)
    target = np.ones(BYTES, dtype=np.uint8)  # touched: its pages exist
    times = []
    for _ in range(3):
        start = time.perf_counter()
        np.copyto(target, source)
        times.append(time.perf_counter() - start)
    return BYTES / _best(times) / 1e9


def first_touch_gbps(huge_pages: bool) -> float:
    """Writing memory no one has touched yet: every page faulted in first. With 4 KB pages this is the
    figure that varies most between machines of one kind (0.63 to 4 GB/s seen); huge pages, where the
    kernel gives them, fault 512 times less often."""
    times = []
    for _ in range(3):
        fresh = mmap.mmap(-1, BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        fresh.madvise(mmap.MADV_HUGEPAGE if huge_pages else mmap.MADV_NOHUGEPAGE)
        start = time.perf_counter()
        np.frombuffer(fresh, dtype=np.uint8).fill(1)
        times.append(time.perf_counter() - start)
        fresh.close()
    return BYTES / _best(times) / 1e9


def matmul_gflops(n: int = 2048) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / _best(times) / 1e9


def describe_machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"machine: {cores} cores, {torch.get_num_threads()} torch threads; memory copy {copy_gbps():.1f} GB/s, "
            f"first touch {first_touch_gbps(False):.2f} GB/s with 4 KB pages, {first_touch_gbps(True):.2f} with "
            f"huge pages; fp32 matmul {matmul_gflops():.0f} GFLOP/s\n{memory.describe()}")


if __name__ == "__main__":
    print(describe_machine())
