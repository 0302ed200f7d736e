"""Frame selection: which k of a video's frames a student (or a k-frame baseline) sees.

Every selector has one signature, `(num_frames, k, seed) -> sorted int64 indices`, and joins the registry
with `@register_selector(name)`; `select(name, ...)` is the one entry point.

Videos shorter than k: every selector returns all `num_frames` frames (0..num_frames-1), never an index
past the end and never a repeated frame; the reader pads the rest and masks it out. A video with no frames
gives an empty selection.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from workloads.errors import WorkloadError

Seed = int | np.random.Generator | None
Selector = Callable[[int, int, Seed], np.ndarray]

SELECTORS: dict[str, Selector] = {}


def register_selector(name: str) -> Callable[[Selector], Selector]:
    def add(fn: Selector) -> Selector:
        if name in SELECTORS:
            raise ValueError(f"frame selector {name!r} is registered twice")
        SELECTORS[name] = fn
        return fn

    return add


def select(
    name: str,
    num_frames: int,
    k: int | None = None,
    seed: Seed = None,
    *,
    j: int | None = None,
) -> np.ndarray:
    """Sorted, distinct int64 indices of the frames that selector `name` keeps out of `num_frames`.

    `k` is the number of frames to keep. `uniform` may instead (or also) take the stride `j`: every j-th
    frame from frame 0, capped at k frames when k is given too. `seed` only matters for `random`.
    """
    if name not in SELECTORS:
        raise WorkloadError(f"unknown frame selector {name!r}; known: {', '.join(sorted(SELECTORS))}")
    if num_frames < 0:
        raise WorkloadError(f"num_frames must be >= 0, got {num_frames}")
    if j is not None:
        if name != "uniform":
            raise WorkloadError(f"a stride j is only meaningful for 'uniform', not {name!r}")
        if j < 1:
            raise WorkloadError(f"stride j must be >= 1, got {j}")
        return select_uniform_stride(num_frames, j, k)
    if k is None or k < 1:
        raise WorkloadError(f"frame selector {name!r} needs k >= 1, got {k}")
    if num_frames <= k:
        return np.arange(num_frames, dtype=np.int64)
    return SELECTORS[name](num_frames, k, seed)


def select_uniform_stride(num_frames: int, j: int, k: int | None = None) -> np.ndarray:
    """Every j-th frame from frame 0 (0, j, 2j, ... < num_frames), the first k of them when k is given."""
    indices = np.arange(0, num_frames, j, dtype=np.int64)
    return indices if k is None else indices[:k]


@register_selector("uniform")
def select_uniform(num_frames: int, k: int, seed: Seed) -> np.ndarray:
    """Every j-th frame from frame 0 with j = num_frames // k: uniform(300, 30) = 0, 10, ..., 290."""
    return select_uniform_stride(num_frames, num_frames // k, k)


@register_selector("random")
def select_random(num_frames: int, k: int, seed: Seed) -> np.ndarray:
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return np.sort(rng.choice(num_frames, size=k, replace=False)).astype(np.int64)


@register_selector("first")
def select_first(num_frames: int, k: int, seed: Seed) -> np.ndarray:
    return np.arange(k, dtype=np.int64)


@register_selector("middle")
def select_middle(num_frames: int, k: int, seed: Seed) -> np.ndarray:
    """The k central frames; when they cannot be exactly central, the extra frame falls before the centre."""
    start = (num_frames - k) // 2
    return np.arange(start, start + k, dtype=np.int64)


@register_selector("last")
def select_last(num_frames: int, k: int, seed: Seed) -> np.ndarray:
    return np.arange(num_frames - k, num_frames, dtype=np.int64)


@register_selector("first_middle_last")
def select_first_middle_last(num_frames: int, k: int, seed: Seed) -> np.ndarray:
    """k // 3 first frames, k // 3 last frames, and the remaining k - 2 (k // 3) central frames.

    With num_frames > k the three runs never overlap, so the result always has exactly k frames.
    """
    edge = k // 3
    middle = k - 2 * edge
    return np.concatenate(
        [
            np.arange(edge, dtype=np.int64),
            select_middle(num_frames, middle, seed),
            np.arange(num_frames - edge, num_frames, dtype=np.int64),
        ]
    )
