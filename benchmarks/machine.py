"""The machine's own limits, printed by a benchmark beside its figures so that a figure reads as a share of
the machine it ran on (machines of one kind differ by up to 3x): cores, copy bandwidth of memory already
touched, first-touch bandwidth of fresh memory (page faults included), and fp32 matmul GFLOP/s.

    python benchmarks/machine.py
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

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


def first_touch_gbps() -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fresh = np.empty(BYTES, dtype=np.uint8)
        fresh.fill(1)  # every page faulted in for the first time
        times.append(time.perf_counter() - start)
        del fresh
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
            f"first touch {first_touch_gbps():.2f} GB/s; fp32 matmul {matmul_gflops():.0f} GFLOP/s")


if __name__ == "__main__":
    print(describe_machine())
