"""Keeping the memory the data path and the training loops touch, instead of faulting fresh pages in for
every batch.

A batch of dequantised frames is a large, short-lived tensor (64 videos of 300 frames: 88 MB), and so are
a training step's activations. glibc serves a block above its mmap threshold (32 MB at most, and anything
above 64 MB in a thread's own arena) with a fresh mapping and unmaps it when freed, so each batch faults
all of its pages in again: 4 bytes of fresh memory per byte the reader decodes, 420 MB per small H-RNN
training step. Where the kernel's first touch of a page is slow (0.63 GB/s on one of our 2-core machines),
that, not the work, sets the speed. Two well-known remedies, both on by default:

- transparent huge pages for PyTorch's CPU tensors of 2 MB and more (`THP_MEM_ALLOC_ENABLE`): 512 times
  fewer faults, where the kernel offers huge pages (`/sys/kernel/mm/transparent_hugepage/enabled` is not
  `never`);
- glibc keeps what is freed: blocks up to 1 GiB come from the heap (`M_MMAP_THRESHOLD`), up to 2 GiB of
  free heap stays mapped (`M_TRIM_THRESHOLD`), and one arena serves every thread (`M_ARENA_MAX`), because
  a thread's own arena maps large blocks afresh whatever the threshold (Ray Train's loop runs in a thread).
  The cost: a process holds on to its peak memory instead of returning it between batches.

`allocator_env()` is what a new process needs (Ray's workers get it through the runtime environment: the
arena limit only takes before a process's threads exist); `keep_freed_memory()` does what a running
process still can. A `MALLOC_*` variable the user set wins over ours, and `FEWER_FRAMES_KEEP_FREED_MEMORY=0`
leaves glibc's defaults alone. `benchmarks/page_faults.py` measures both remedies.
"""

from __future__ import annotations

import ctypes
import os

OPT_OUT = "FEWER_FRAMES_KEEP_FREED_MEMORY"

# glibc's settings by the names of its environment variables (read when a process starts), with our
# values; mallopt takes an int, so 2 GiB - 1 is the largest.
DEFAULTS = {"MALLOC_MMAP_THRESHOLD_": 1 << 30, "MALLOC_TRIM_THRESHOLD_": (1 << 31) - 1, "MALLOC_ARENA_MAX": 1}
_MALLOPT = {"MALLOC_MMAP_THRESHOLD_": -3, "MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_ARENA_MAX": -8}  # M_* numbers


def prefer_huge_pages() -> None:
    """Ask PyTorch for transparent huge pages on large CPU tensors, unless the user chose. PyTorch reads
    the variable at its first large allocation, so this runs when `workloads` is imported."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def allocator_env() -> dict[str, str]:
    """The glibc settings a new process should start with, less any the user set (none when opted out)."""
    if os.environ.get(OPT_OUT, "1") == "0":
        return {}
    return {name: str(value) for name, value in DEFAULTS.items() if name not in os.environ}


def keep_freed_memory() -> dict[str, str]:
    """Apply `allocator_env()` to this process (through glibc's mallopt) and to the processes it starts
    (through the environment). Returns the settings applied: none off glibc, or when opted out. The arena
    limit only reaches threads that have not allocated yet; a process started with the variables has it
    everywhere."""
    settings = allocator_env()
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return {}
    for name, text in settings.items():
        mallopt(_MALLOPT[name], int(text))
    os.environ.update(settings)
    return settings


def describe() -> str:
    """One line: the allocator settings in force for new processes and the kernel's huge-page mode."""
    chosen = {name: os.environ[name] for name in DEFAULTS if name in os.environ}
    kept = ", ".join(f"{name}={value}" for name, value in chosen.items()) or "glibc defaults"
    return f"allocator: {kept}; transparent huge pages: {huge_page_mode()}, THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}"


def huge_page_mode() -> str:
    """The kernel's transparent huge page mode (`always`, `madvise`, `never`), or `unknown`."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as handle:
            text = handle.read()
    except OSError:
        return "unknown"
    chosen = [word[1:-1] for word in text.split() if word.startswith("[")]
    return chosen[0] if chosen else "unknown"


def _glibc_mallopt():
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # musl and others have no such function and no useful mallopt
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt
