"""The data path under page faults: how much fresh memory the reader, the converter and a training step
touch per byte of work, with glibc's defaults and with `workloads.memory`'s settings, with and without
transparent huge pages.

    python benchmarks/page_faults.py [--videos 256] [--rounds 3]

Each of the four set-ups runs in a fresh process (glibc reads its settings when a process starts):
- "glibc defaults" sets FEWER_FRAMES_KEEP_FREED_MEMORY=0; "kept" starts with `allocator_env()`;
- "4 KB pages" turns transparent huge pages off for the process (prctl PR_SET_THP_DISABLE), as on a
  machine whose kernel offers none; "huge pages" leaves the kernel's mode (printed first) as it is.
The work runs in a thread, as Ray Train runs a training loop. Printed per work and set-up: its rate, and
the fresh memory it faulted in (minor page faults x 4 KB; with huge pages a fault maps up to 2 MB, so that
column counts faults). Fresh bytes per byte is the figure that travels: on a machine whose first touch runs
at F GB/s, it costs about (bytes per byte) / F seconds per GB of work.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
PR_SET_THP_DISABLE = 41
PAGE = resource.getpagesize()
SETUPS = [("glibc defaults", "4 KB pages"), ("kept", "4 KB pages"), ("glibc defaults", "huge pages"), ("kept", "huge pages")]


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measured(work, rounds: int) -> dict:
    """`work()` -> units of work done; once to warm up, then `rounds` times: best rate, faults per unit."""
    work()
    best, total_faults, total_units = 0.0, 0, 0
    for _ in range(rounds):
        before, start = faults(), time.perf_counter()
        units = work()
        seconds = time.perf_counter() - start
        total_faults += faults() - before
        total_units += units
        best = max(best, units / seconds)
    return {"rate": best, "faults_per_unit": total_faults / total_units}


def read_all(shards: str):
    from workloads.data.format import FEATURE_DIM
    from workloads.data.reader import VideoShards

    dataset = VideoShards(shards, batch_size=64)

    def work() -> int:
        return sum(int(batch.mask.sum()) * FEATURE_DIM for batch in dataset)  # uint8 frame bytes decoded
    return work


def convert(records: str, out: str):
    from workloads.data.convert import convert_file

    def work() -> int:
        convert_file(records, out, 3862)
        return os.path.getsize(records)  # TFRecord bytes in
    return work


def train_steps(shards: str, steps: int = 4):
    import torch

    from workloads.data.reader import VideoShards
    from workloads.models.base import build_model

    torch.manual_seed(0)
    dataset = VideoShards(shards, batch_size=32)
    batches = [batch for batch, _ in zip(dataset, range(steps))]
    model = build_model("hrnn", "small", dataset.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)

    def work() -> int:
        for batch in batches:
            logits = model(batch.frames, batch.mask).logits
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return len(batches)
    return work


def child(args: argparse.Namespace) -> None:
    """One set-up in this process: THP off first if asked (before any large allocation), then each work
    in a thread; prints one JSON line."""
    if args.no_huge_pages:
        ctypes.CDLL(None).prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)
    import torch
    import pyarrow as pa

    torch.set_num_threads(1)
    pa.set_cpu_count(1)
    works = {"reader, all frames": read_all(args.shards),
             "conversion": convert(args.records, os.path.join(args.scratch, f"out-{os.getpid()}.parquet")),
             "H-RNN small training step": train_steps(args.shards)}
    results = {}

    def run() -> None:
        for name, work in works.items():
            results[name] = measured(work, args.rounds)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    print(json.dumps(results))


def run_setup(allocator: str, pages: str, shards: str, records: str, scratch: str, rounds: int) -> dict:
    from workloads.memory import OPT_OUT, allocator_env

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.pop(OPT_OUT, None)
    if allocator == "kept":
        env.update(allocator_env())
    else:
        env[OPT_OUT] = "0"
    command = [sys.executable, __file__, "--child", "--shards", shards, "--records", records, "--scratch", scratch,
               "--rounds", str(rounds)] + (["--no-huge-pages"] if pages == "4 KB pages" else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-huge-pages", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shards", help=argparse.SUPPRESS)
    parser.add_argument("--records", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from machine import describe_machine  # benchmarks/machine.py, beside this script
    from workloads.data.synth import SynthConfig, generate
    from youtube8m_records import tfrecord, video_record

    print(describe_machine())
    with tempfile.TemporaryDirectory() as scratch:
        shards = os.path.join(scratch, "shards")
        generate(shards, args.videos, seed=0, config=SynthConfig(min_frames=300, max_frames=300), workers=2)
        records = os.path.join(scratch, "train0000.tfrecord")
        rng = np.random.default_rng(0)
        with open(records, "wb") as out:
            out.write(tfrecord([video_record(f"v{i:05d}", [1, 2], rng.integers(0, 256, (300, 1024), dtype=np.uint8),
                                             rng.integers(0, 256, (300, 128), dtype=np.uint8))
                                for i in range(args.videos // 2)]))
        table = {setup: run_setup(*setup, shards, records, scratch, args.rounds) for setup in SETUPS}
    print(f"{args.videos} videos of 300 frames; each work in a thread, one core; best of {args.rounds} rounds")
    units = {"reader, all frames": ("GB/s decoded", 1e-9, "bytes"), "conversion": ("GB/s of TFRecords", 1e-9, "bytes"),
             "H-RNN small training step": ("steps/s", 1.0, "steps")}
    for work, (rate_unit, scale, unit) in units.items():
        print(f"\n{work}")
        print(f"  {'allocator':<16}{'pages':<12}{rate_unit:>20}{'faults per ' + unit[:-1]:>18}{'fresh bytes per ' + unit[:-1]:>24}")
        for (allocator, pages), results in table.items():
            row = results[work]
            fresh = row["faults_per_unit"] * PAGE
            fresh_text = f"{fresh:.2f}" if unit == "bytes" else f"{fresh / 1e6:.0f} MB"
            print(f"  {allocator:<16}{pages:<12}{row['rate'] * scale:>20.2f}{row['faults_per_unit']:>18.3g}"
                  f"{fresh_text if pages == '4 KB pages' else '(huge pages)':>24}")
        for pages in ("4 KB pages", "huge pages"):
            speedup = table[("kept", pages)][work]["rate"] / table[("glibc defaults", pages)][work]["rate"]
            print(f"  kept vs glibc defaults, {pages}: {speedup:.2f}x")


if __name__ == "__main__":
    main()
