"""python -m workloads.data.synth --out DIR --videos N --seed S : YouTube-8M-like synthetic shards.

The generative model (the README describes it for users) makes *which frames a model sees* matter:

- A world, fixed by the seed: C classes with long-tailed (Zipf) frequencies, grouped into verticals
  (themes) whose classes share part of their look and tend to co-occur; a visual prototype (1024-d) and a
  weaker audio prototype (128-d) for each class; a few dozen generic background scenes.
- A video: a length between min and max frames (a third of videos at the maximum, as YouTube-8M's many
  300-second videos); about 3 labels (1 + Poisson), the later ones mostly from the first label's vertical;
  a sequence of shots of 2-40 frames (mean about 8). Each label is shown in only a few shots (1 + Poisson,
  the first label more often) scattered over the video; the other shots show background scenes.
- A frame: the prototype of its shot's label at a strength drawn per shot, a background scene, shot-level
  noise shared by the shot's frames, frame-level noise and a per-video offset; audio carries the label's
  audio prototype weakly. Values are quantised to bytes exactly as YouTube-8M's features are.

Consequences: k contiguous frames (first, middle, last) see only the few shots inside their window and miss
most labels; k uniformly spaced frames visit every part of the video but catch only a frame or two of each
labelled shot, and miss short shots; all frames see every shot whole. Noise set by `--difficulty`.

Every video is a function of (seed, split, index) alone, so output is identical for any number of workers
or shards, and splits of the same seed share one world but never a video.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from workloads.data.format import AUDIO_DIM, RGB_DIM, ShardInfo, Video, quantize, write_shard
from workloads.data.fs import join
from workloads.errors import DataError

WORLD_STREAM = 0x5EED


@dataclass(frozen=True)
class SynthConfig:
    num_classes: int = 200
    min_frames: int = 120
    max_frames: int = 300
    mean_labels: float = 3.0
    mean_shot_frames: float = 8.0
    difficulty: float = 1.0
    # Amplitudes per feature dimension, before quantisation to [-2, 2].
    signal: float = 0.05
    audio_signal: float = 0.02
    background: float = 0.05
    shot_noise: float = 0.04
    frame_noise: float = 0.15
    video_noise: float = 0.025

    def validate(self) -> None:
        if self.num_classes < 2:
            raise DataError(f"num_classes must be >= 2, got {self.num_classes}")
        if not 1 <= self.min_frames <= self.max_frames:
            raise DataError(f"need 1 <= min_frames <= max_frames, got {self.min_frames} and {self.max_frames}")
        if self.mean_labels < 1:
            raise DataError(f"mean_labels must be >= 1, got {self.mean_labels}")
        if self.mean_shot_frames < 2:
            raise DataError(f"mean_shot_frames must be >= 2, got {self.mean_shot_frames}")
        if self.difficulty <= 0:
            raise DataError(f"difficulty must be > 0, got {self.difficulty}")


@dataclass(frozen=True)
class World:
    """Everything shared by all videos of one seed."""

    class_weights: np.ndarray  # (C,) Zipf frequencies, summing to 1
    vertical_of: np.ndarray  # (C,) vertical of each class
    members: tuple[np.ndarray, ...]  # classes of each vertical
    rgb_prototypes: np.ndarray  # (C, 1024)
    audio_prototypes: np.ndarray  # (C, 128)
    backgrounds: np.ndarray  # (B, 1024)


def make_world(config: SynthConfig, seed: int) -> World:
    rng = np.random.default_rng([seed, WORLD_STREAM])
    c = config.num_classes
    weights = 1.0 / np.arange(1, c + 1) ** 0.9
    num_verticals = max(1, c // 12)
    vertical_of = rng.integers(0, num_verticals, size=c)
    vertical_of[:num_verticals] = np.arange(num_verticals)  # no empty vertical
    members = tuple(np.flatnonzero(vertical_of == v) for v in range(num_verticals))
    # A class looks partly like its vertical (so siblings are confusable) and mostly like itself.
    vertical_looks = rng.standard_normal((num_verticals, RGB_DIM))
    own_looks = rng.standard_normal((c, RGB_DIM))
    rgb = 0.5 * vertical_looks[vertical_of] + np.sqrt(1 - 0.25) * own_looks
    return World(
        class_weights=weights / weights.sum(),
        vertical_of=vertical_of,
        members=members,
        rgb_prototypes=(config.signal * rgb).astype(np.float32),
        audio_prototypes=(config.audio_signal * rng.standard_normal((c, AUDIO_DIM))).astype(np.float32),
        backgrounds=(config.background * rng.standard_normal((32, RGB_DIM))).astype(np.float32),
    )


def split_stream(split: str) -> int:
    return zlib.crc32(split.encode())


def make_video(world: World, config: SynthConfig, seed: int, split: str, index: int) -> Video:
    rng = np.random.default_rng([seed, split_stream(split), index])
    n = _num_frames(rng, config)
    labels = _labels(rng, world, config)
    shot_starts, shot_label = _shots(rng, n, labels, config)
    shot_lengths = np.diff(np.append(shot_starts, n))
    frame_shot = np.repeat(np.arange(shot_starts.size), shot_lengths)

    noise = config.difficulty
    shots = shot_starts.size
    strength = rng.uniform(0.5, 1.5, size=shots).astype(np.float32)
    labelled = shot_label >= 0
    shot_rgb = (
        world.backgrounds[rng.integers(0, world.backgrounds.shape[0], size=shots)]
        + noise * config.shot_noise * rng.standard_normal((shots, RGB_DIM), dtype=np.float32)
    )
    shot_rgb[labelled] += strength[labelled, None] * world.rgb_prototypes[shot_label[labelled]]
    shot_audio = np.zeros((shots, AUDIO_DIM), np.float32)
    shot_audio[labelled] = strength[labelled, None] * world.audio_prototypes[shot_label[labelled]]

    video_offset = noise * config.video_noise * rng.standard_normal(RGB_DIM + AUDIO_DIM, dtype=np.float32)
    frames = rng.standard_normal((n, RGB_DIM + AUDIO_DIM), dtype=np.float32)
    frames *= noise * config.frame_noise
    frames += video_offset
    frames[:, :RGB_DIM] += shot_rgb[frame_shot]
    frames[:, RGB_DIM:] += shot_audio[frame_shot]
    quantised = quantize(frames)
    return Video(
        id=f"syn{seed}-{split}-{index:07d}",
        labels=np.sort(labels).astype(np.int32),
        rgb=np.ascontiguousarray(quantised[:, :RGB_DIM]),
        audio=np.ascontiguousarray(quantised[:, RGB_DIM:]),
    )


def _num_frames(rng: np.random.Generator, config: SynthConfig) -> int:
    if rng.random() < 1 / 3:
        return config.max_frames
    return int(rng.integers(config.min_frames, config.max_frames + 1))


def _labels(rng: np.random.Generator, world: World, config: SynthConfig) -> np.ndarray:
    count = min(1 + rng.poisson(config.mean_labels - 1), 8, world.class_weights.size)
    first = int(rng.choice(world.class_weights.size, p=world.class_weights))
    labels = [first]
    siblings = world.members[world.vertical_of[first]]
    while len(labels) < count:
        pool = siblings if rng.random() < 0.6 and len(set(siblings) - set(labels)) else None
        if pool is None:
            candidate = int(rng.choice(world.class_weights.size, p=world.class_weights))
        else:
            weights = world.class_weights[pool]
            candidate = int(rng.choice(pool, p=weights / weights.sum()))
        if candidate not in labels:
            labels.append(candidate)
    return np.array(labels, dtype=np.int64)


def _shots(
    rng: np.random.Generator, n: int, labels: np.ndarray, config: SynthConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Shot start frames and the label each shot shows (-1: background)."""
    lengths = []
    total = 0
    while total < n:
        length = int(np.clip(np.rint(rng.lognormal(np.log(config.mean_shot_frames) - 0.18, 0.6)), 2, 40))
        lengths.append(length)
        total += length
    starts = np.cumsum([0] + lengths[:-1])
    shot_label = np.full(starts.size, -1, dtype=np.int64)
    free = list(rng.permutation(starts.size))
    for rank, label in enumerate(labels):
        appearances = 1 + rng.poisson(1.5 if rank == 0 else 0.7)
        for _ in range(min(appearances, len(free))):
            shot_label[free.pop()] = label
    return starts, shot_label


def shard_location(out: str, split: str, shard: int) -> str:
    return join(out, f"{split}-{shard:05d}.parquet")


def write_synthetic_shard(
    out: str, config: SynthConfig, seed: int, split: str, shard: int, start: int, stop: int
) -> int:
    world = make_world(config, seed)
    info = ShardInfo(
        num_classes=config.num_classes,
        source="synthetic",
        details={"generator": asdict(config), "seed": seed, "split": split},
    )
    videos = (make_video(world, config, seed, split, i) for i in range(start, stop))
    return write_shard(shard_location(out, split, shard), info, videos)


def _write_one(job: tuple) -> int:
    return write_synthetic_shard(*job)


def generate(
    out: str,
    videos: int,
    seed: int,
    split: str = "train",
    config: SynthConfig | None = None,
    videos_per_shard: int = 1024,
    workers: int = 1,
) -> list[str]:
    """Write `videos` synthetic videos as shards `<out>/<split>-NNNNN.parquet`; returns their locations."""
    config = config or SynthConfig()
    config.validate()
    if videos < 1:
        raise DataError(f"videos must be >= 1, got {videos}")
    if videos_per_shard < 1:
        raise DataError(f"videos_per_shard must be >= 1, got {videos_per_shard}")
    jobs = [
        (out, config, seed, split, shard, start, min(start + videos_per_shard, videos))
        for shard, start in enumerate(range(0, videos, videos_per_shard))
    ]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            list(pool.map(_write_one, jobs))
    else:
        for job in jobs:
            _write_one(job)
    return [shard_location(out, split, job[4]) for job in jobs]


def main(argv: list[str] | None = None) -> int:
    defaults = SynthConfig()
    parser = argparse.ArgumentParser(
        prog="python -m workloads.data.synth",
        description="Write deterministic YouTube-8M-like video shards (see the README for the generative model).",
    )
    parser.add_argument("--out", required=True, help="output folder or URI")
    parser.add_argument("--videos", type=int, required=True, help="number of videos")
    parser.add_argument("--seed", type=int, default=0, help="fixes the world and every video")
    parser.add_argument("--split", default="train", help="split name: shard prefix and video stream (default train)")
    parser.add_argument("--classes", type=int, default=defaults.num_classes, help="vocabulary size")
    parser.add_argument("--min-frames", type=int, default=defaults.min_frames)
    parser.add_argument("--max-frames", type=int, default=defaults.max_frames)
    parser.add_argument("--mean-labels", type=float, default=defaults.mean_labels, help="labels per video")
    parser.add_argument("--mean-shot-frames", type=float, default=defaults.mean_shot_frames)
    parser.add_argument("--difficulty", type=float, default=defaults.difficulty, help="noise multiplier")
    parser.add_argument("--videos-per-shard", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    config = SynthConfig(
        num_classes=args.classes,
        min_frames=args.min_frames,
        max_frames=args.max_frames,
        mean_labels=args.mean_labels,
        mean_shot_frames=args.mean_shot_frames,
        difficulty=args.difficulty,
    )
    start = time.perf_counter()
    try:
        shards = generate(args.out, args.videos, args.seed, args.split, config, args.videos_per_shard, args.workers)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.videos} {args.split} videos in {len(shards)} shard(s) to {args.out} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
