"""Reader throughput: all frames vs Uniform-30 of 300-frame videos, from local Parquet, on one core.

    python benchmarks/reader_throughput.py [--videos 1024] [--batch-size 64] [--repeats 3]

Prints, side by side from one run: videos/s, MB/s of uint8 frame bytes decoded (the frames that reach the
batch) and MB/s of frame bytes scanned (every stored frame of the videos read), then the ratios that the
targets are stated in: all-frame decode >= 1 GB/s, Uniform-30 >= 5x the videos/s of all frames.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import pyarrow as pa
import torch

from workloads.data.batch import FrameSelection
from workloads.data.format import FEATURE_DIM
from workloads.data.reader import VideoShards
from workloads.data.synth import SynthConfig, generate
from workloads.memory import keep_freed_memory
from machine import describe_machine  # benchmarks/machine.py, beside this script


def measure(source: str, selection: FrameSelection | None, batch_size: int, repeats: int) -> dict:
    dataset = VideoShards(source, batch_size=batch_size, selection=selection)
    for _ in dataset:  # warm the page cache and the allocator
        pass
    best = None
    for _ in range(repeats):
        videos = decoded = scanned = 0
        start = time.perf_counter()
        for batch in dataset:
            videos += len(batch.ids)
            decoded += int(batch.mask.sum()) * FEATURE_DIM
            scanned += int(batch.num_frames.sum()) * FEATURE_DIM
        seconds = time.perf_counter() - start
        run = {"videos/s": videos / seconds, "decoded MB/s": decoded / seconds / 1e6, "scanned MB/s": scanned / seconds / 1e6}
        best = run if best is None or run["videos/s"] > best["videos/s"] else best
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", help="existing shards of 300-frame videos (default: generate them)")
    args = parser.parse_args()
    keep_freed_memory()  # as the project's own processes run (workloads.memory)
    print(describe_machine())  # the machine's own limits: figures below read as shares of them
    torch.set_num_threads(1)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    with tempfile.TemporaryDirectory() as scratch:
        source = args.data or scratch
        if not args.data:
            generate(scratch, args.videos, seed=0, config=SynthConfig(min_frames=300, max_frames=300), workers=2)
        rows = {
            "all frames": measure(source, None, args.batch_size, args.repeats),
            "uniform-30": measure(source, FrameSelection("uniform", k=30), args.batch_size, args.repeats),
        }
    print(f"{'reader (1 core, batch ' + str(args.batch_size) + ')':<28}{'videos/s':>12}{'decoded MB/s':>15}{'scanned MB/s':>15}")
    for name, row in rows.items():
        print(f"{name:<28}{row['videos/s']:>12.0f}{row['decoded MB/s']:>15.0f}{row['scanned MB/s']:>15.0f}")
    decode = rows["all frames"]["decoded MB/s"] / 1000
    speedup = rows["uniform-30"]["videos/s"] / rows["all frames"]["videos/s"]
    print(f"all-frame decode: {decode:.2f} GB/s (target >= 1.0): {'PASS' if decode >= 1.0 else 'FAIL'}")
    print(f"uniform-30 vs all frames: {speedup:.1f}x videos/s (target >= 5x): {'PASS' if speedup >= 5 else 'FAIL'}")


if __name__ == "__main__":
    main()
