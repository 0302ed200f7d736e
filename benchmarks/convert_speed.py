"""YouTube-8M conversion on one core: TFRecord bytes to a video shard, against reading and CRC-checking the
same bytes.

    python benchmarks/convert_speed.py [--videos 300] [--rounds 3]

Writes one TFRecord file of full-length (300-frame) videos in YouTube-8M's frame-level layout (as
TensorFlow writes it), then times, in this one process, rounds interleaved, median of the rounds:
- reading every record and checking its two CRC-32C (`workloads.data.tfrecord.iter_records`): the floor;
- converting the file into a shard (`workloads.data.convert.convert_file`: parse, check, the Arrow table,
  the Parquet write under a temporary name).
Prints GB/s of TFRecord input for both (target: conversion at least 0.6 GB/s per core) and where the
conversion's time goes, with the machine's own limits first.

With `--job-files N` it then runs `python -m orchestrator.convert`'s job on a local Ray over N files (the
same file under N names) beside one process converting them one after another: what the cores add, and
what one Ray task per file costs beyond the conversion.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

from workloads.data.convert import convert_file
from workloads.data.tfrecord import iter_records
from workloads.memory import keep_freed_memory

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from machine import describe_machine  # noqa: E402 - benchmarks/machine.py, beside this script
from youtube8m_records import tfrecord, video_record  # noqa: E402

FRAMES = 300


def write_records(path: str, videos: int) -> int:
    rng = np.random.default_rng(0)
    payloads = [video_record(f"v{i:05d}", rng.choice(3862, 3, replace=False),
                             rng.integers(0, 256, (FRAMES, 1024), dtype=np.uint8),
                             rng.integers(0, 256, (FRAMES, 128), dtype=np.uint8)) for i in range(videos)]
    data = tfrecord(payloads)
    with open(path, "wb") as out:
        out.write(data)
    return len(data)


def read_and_check(path: str) -> None:
    with open(path, "rb") as stream:
        for _ in iter_records(stream, path):
            pass


def job_rate(source: str, files: int, scratch: str) -> None:
    """orchestrator.convert's Ray job over `files` names of `source` (Ray started before the clock) against
    one process converting the same files one after another. Both write `files` new shards: new files cost
    page-cache writeback that rewriting one file in place (the rounds above) does not."""
    from orchestrator.convert import parse_args, run
    from orchestrator.driver import session

    split = os.path.join(scratch, "split")
    os.makedirs(split)
    for i in range(files):
        os.link(source, os.path.join(split, f"train{i:04d}.tfrecord"))
    ray = session.start_ray()
    cores = int(ray.cluster_resources()["CPU"])
    try:
        start = time.perf_counter()
        code = run(parse_args([split, "--out", os.path.join(scratch, "shards")]))
        seconds = time.perf_counter() - start
    finally:
        ray.shutdown()
    assert code == 0, code
    shutil.rmtree(os.path.join(scratch, "shards"))  # each pass starts with the same free memory
    start = time.perf_counter()
    for i in range(files):
        convert_file(os.path.join(split, f"train{i:04d}.tfrecord"), os.path.join(scratch, "one", f"{i}.parquet"), 3862)
    one_process = time.perf_counter() - start
    shutil.rmtree(os.path.join(scratch, "one"))
    total = files * os.path.getsize(source)
    print(f"{files} files of {os.path.getsize(source) / 1e6:.0f} MB, each to a new shard:")
    print(f"  one process, one after another: {one_process:.1f} s, {total / one_process / 1e9:.2f} GB/s")
    print(f"  Ray job on {cores} cores: {seconds:.1f} s, {total / seconds / 1e9:.2f} GB/s, "
          f"{total / seconds / cores / 1e9:.2f} GB/s per core: {one_process / seconds:.2f}x one process; "
          f"{(seconds * cores - one_process) / files:.3f} core-seconds per file beyond the one process's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also print where a conversion spends its time")
    parser.add_argument("--job-files", type=int, default=0, help="also time the Ray job over this many files")
    args = parser.parse_args()
    keep_freed_memory()  # as the project's own processes run (workloads.memory)
    print(describe_machine())
    with tempfile.TemporaryDirectory() as scratch:
        source = os.path.join(scratch, "train0000.tfrecord")
        size = write_records(source, args.videos)
        out = os.path.join(scratch, "train0000.parquet")
        timings: dict[str, list[float]] = {"read + CRC": [], "convert": []}
        work = {"read + CRC": lambda: read_and_check(source), "convert": lambda: convert_file(source, out, 3862)}
        for job in work.values():  # warm-up: the page cache, the allocator
            job()
        for _ in range(args.rounds):
            for name, job in work.items():
                start = time.perf_counter()
                job()
                timings[name].append(time.perf_counter() - start)
        print(f"one core, {args.videos} videos of {FRAMES} frames, {size / 1e6:.0f} MB of TFRecords, "
              f"median of {args.rounds} rounds")
        for name, values in timings.items():
            seconds = statistics.median(values)
            print(f"{name:<12}{seconds:>8.3f} s{size / seconds / 1e9:>8.2f} GB/s")
        rate = size / statistics.median(timings["convert"]) / 1e9
        print(f"conversion {rate:.2f} GB/s per core (target >= 0.6): {'PASS' if rate >= 0.6 else 'FAIL'}")
        if args.job_files:
            job_rate(source, args.job_files, scratch)
        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(convert_file, source, out, 3862)
            pstats.Stats(profile).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
