"""Reading the teacher cache from S3 vs the raw read throughput of the same objects, in one run.

    python benchmarks/s3_cache_read.py [--videos 4096] [--dim 4096] [--classes 3862]

Starts a SeaweedFS server on 127.0.0.1 (the test fixture's), writes an H-RNN-sized teacher cache to it,
then measures, in interleaved rounds, (1) raw: every part object read whole through PyArrow's S3
filesystem, and (2) the cache: every video looked up once through a fresh `ParquetTeacherCache`, in
batches of 128 as a serial student asks for them (row groups in the reader's shuffled order, videos
shuffled within each, announced `PREFETCH_BATCHES` ahead by the training loop's own `_prefetched`), and
(3) the same in file order. All are MB/s of the parts' bytes, medians over the rounds. Target: the cache at least 70%
of raw.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from s3_server import start_s3_server  # noqa: E402

from orchestrator.cache.reader import ParquetTeacherCache  # noqa: E402
from orchestrator.cache.files import write_teacher_cache  # noqa: E402
from workloads.data.fs import join, resolve  # noqa: E402
from workloads.data.reader import Unit, epoch_order  # noqa: E402
from workloads.memory import keep_freed_memory
from workloads.teacher_outputs import TeacherRecord  # noqa: E402
from workloads.train import _prefetched  # noqa: E402
from machine import describe_machine  # noqa: E402 - benchmarks/machine.py, beside this script


def records(start: int, count: int, dim: int, classes: int):
    rng = np.random.default_rng(start)
    for i in range(start, start + count):
        yield TeacherRecord(f"video-{i:07d}", rng.random(dim, dtype=np.float32), rng.random(classes, dtype=np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4096)
    parser.add_argument("--per-part", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--classes", type=int, default=3862)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    keep_freed_memory()  # as the project's own processes run (workloads.memory)
    print(describe_machine())  # the machine's own limits: figures below read as shares of them
    server = start_s3_server()
    try:
        os.environ.update(server.env)
        server.client().create_bucket(Bucket="bench")
        location = "s3://bench/cache"
        parts = [records(start, min(args.per_part, args.videos - start), args.dim, args.classes)
                 for start in range(0, args.videos, args.per_part)]
        manifest = write_teacher_cache(location, parts, {}, {})
        sizes = []
        for part in manifest.parts:
            fs, path = resolve(join(location, part))
            sizes.append(fs.get_file_info(path).size)
        total = sum(sizes)

        ids = [f"video-{i:07d}" for i in range(args.videos)]
        # A student's epoch: its reader's order of row groups (the cache's parts stand for its shards),
        # videos shuffled within each.
        units = [Unit(f"shard-{lo // args.per_part}", (lo % args.per_part) // 128, 128) for lo in range(0, len(ids), 128)]
        rng = np.random.default_rng(0)
        shuffled = [video for u in epoch_order(units, shuffle=True, seed=0, epoch=0)
                    for video in rng.permutation(ids[u * 128 : (u + 1) * 128]).tolist()]

        def read_raw() -> float:
            start = time.perf_counter()
            for part in manifest.parts:
                fs, path = resolve(join(location, part))
                with fs.open_input_stream(path) as stream:
                    while stream.read(16 << 20):
                        pass
            return total / (time.perf_counter() - start) / 1e6

        def read_cache(order: list[str]) -> float:
            cache = ParquetTeacherCache(location)  # a new reader each round: nothing cached in memory
            batches = [SimpleNamespace(ids=order[lo : lo + 128]) for lo in range(0, len(order), 128)]
            start = time.perf_counter()
            for batch in _prefetched(batches, cache):
                cache.targets(batch.ids, torch.device("cpu"))
            return total / (time.perf_counter() - start) / 1e6

        # Interleaved rounds and medians: the server shares this machine's cores, single runs swing.
        rounds = [(read_raw(), read_cache(shuffled), read_cache(ids)) for _ in range(args.rounds)]
        print("rounds (raw, shuffled, in order; MB/s):", [tuple(round(x) for x in r) for r in rounds])
        raw, cached, in_order = (statistics.median(r[i] for r in rounds) for i in range(3))
    finally:
        server.stop()
    ratio = cached / raw
    print(f"teacher cache on S3 (SeaweedFS, 127.0.0.1): {args.videos} videos, E {args.dim}-d + P {args.classes}, "
          f"{total / 1e6:.0f} MB in {len(sizes)} parts")
    print(f"{'raw reads of the part objects':<40}{raw:>8.0f} MB/s  (median of {args.rounds} rounds)")
    print(f"{'cache, a shuffled student (128/batch)':<40}{cached:>8.0f} MB/s")
    print(f"{'cache, in file order':<40}{in_order:>8.0f} MB/s")
    print(f"shuffled student / raw: {ratio:.0%} (target >= 70%): {'PASS' if ratio >= 0.7 else 'FAIL'}")


if __name__ == "__main__":
    main()
