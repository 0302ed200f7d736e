"""Data-parallel teacher training: videos/s of one epoch on 1 worker and on n, side by side.

    python benchmarks/teacher_scaling.py [--family hrnn] [--size small] [--workers 2] [--videos 1024]
                                         [--batch-size 64] [--device cpu|cuda]

What `resources.teacher.num_workers: n` buys: the same global batch, each of n processes (one per GPU on
CUDA, NCCL; gloo on CPU, the cores split evenly between them) reading its share of the row groups, DDP
averaging gradients, scores pooled. Each run trains one epoch of the teacher (all frames) through
`workloads.train.train_classifier`, validation on one batch included. Prints videos/s, the speed-up over
one worker and the scaling efficiency (speed-up / n). On a 4-GPU node, `--workers 4 --device cuda`.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from workloads.data.reader import VideoShards
from workloads.data.synth import SynthConfig, generate
from workloads.distributed import replicate
from workloads.memory import keep_freed_memory
from workloads.models import build_model
from workloads.train import TrainConfig, seed_everything, train_classifier
from machine import describe_machine  # benchmarks/machine.py, beside this script

CLASSES = 200


def _replica(rank: int, replicas: int, port: int, args: argparse.Namespace, train: str, val: str, out: str) -> None:
    cuda = args.device == "cuda"
    device = torch.device(f"cuda:{rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // replicas))
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=replicas)
    try:
        seed_everything(0)
        model = build_model(args.family, args.size, CLASSES)
        share = {"rank": rank, "world_size": replicas}
        batch = args.batch_size // replicas
        data = VideoShards(train, batch, shuffle=True, **share), VideoShards(val, batch, **share)
        dist.barrier()
        start = time.perf_counter()
        train_classifier(replicate(model, device), *data, TrainConfig(epochs=1, device=str(device)))
        dist.barrier()
        if rank == 0:
            with open(out, "w") as result:
                result.write(str(time.perf_counter() - start))
    finally:
        dist.destroy_process_group()


def epoch_seconds(replicas: int, args: argparse.Namespace, train: str, val: str, scratch: str) -> float:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = os.path.join(scratch, f"seconds-{replicas}")
    mp.start_processes(_replica, args=(replicas, port, args, train, val, out), nprocs=replicas, join=True,
                       start_method="spawn")
    with open(out) as result:
        return float(result.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="hrnn")
    parser.add_argument("--size", default="small")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--videos", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    keep_freed_memory()  # as the project's own processes run (workloads.memory)
    print(describe_machine())  # the machine's own limits: figures below read as shares of them
    if args.batch_size % args.workers:
        parser.error(f"--batch-size {args.batch_size} does not divide among {args.workers} workers")
    if args.device == "cuda" and torch.cuda.device_count() < args.workers:
        parser.error(f"{args.workers} workers need as many GPUs; this machine has {torch.cuda.device_count()}")
    print(f"teacher scaling: {args.family} {args.size}, {args.videos} videos of 120-300 frames, {args.device}, "
          f"global batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as scratch:
        train, val = f"{scratch}/train", f"{scratch}/val"
        # Shards of one row group each, so that every worker gets whole shards' worth of work.
        generate(train, args.videos, seed=0, config=SynthConfig(num_classes=CLASSES), videos_per_shard=128, workers=2)
        generate(val, args.batch_size, seed=0, split="validate", config=SynthConfig(num_classes=CLASSES))
        one = epoch_seconds(1, args, train, val, scratch)
        many = epoch_seconds(args.workers, args, train, val, scratch)
    print(f"{'workers':<10}{'videos/s':>10}{'speed-up':>10}{'efficiency':>12}")
    print(f"{1:<10}{args.videos / one:>10.1f}{1.0:>10.2f}{1.0:>12.0%}")
    speedup = one / many
    print(f"{args.workers:<10}{args.videos / many:>10.1f}{speedup:>10.2f}{speedup / args.workers:>12.0%}")


if __name__ == "__main__":
    main()
