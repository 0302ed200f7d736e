"""Every GPU figure in one call: a prepared check for whatever GPU machine is lent, done in at most 8 minutes.

    python benchmarks/gpu_check.py --out DIR [--device cuda|cpu] [--quick] [--budget 400]

Writes DIR/gpu_check.json, DIR/gpu_check.md (the same figures as tables) and DIR/rates.json (seconds per
video in the format `python -m orchestrator.grid --plan --rates` reads). Needs PyTorch, NumPy, PyArrow and
PyYAML only: the `workloads/` science and the cost model, no Ray, MLflow, Optuna or boto3.

1. throughput: per family at paper size, the teacher (300 frames) and the students at each of the paper
   preset's k, training (forward, backward, Adam) and inference videos per second, in float32, float16 with
   loss scaling and bfloat16 without, at two batch sizes;
2. cpu_vs_gpu: one batch's float32 forward on the GPU and on the CPU, same weights: the largest difference
   of the logits (cuDNN's LSTM against PyTorch's CPU one, for H-RNN) and the GAP of each;
3. data_parallel: a two-process data-parallel training step, over NCCL when two processes may share the
   one GPU, else over Gloo with the GPU's tensors and NCCL checked in one process; the two replicas must
   end the step with the same weights; and a checkpoint saved on the GPU, resumed on the CPU;
4. reader: the videos per second one core's reader gives (all 300 frames of each video) against what each
   family's teacher step consumes, so the cores a GPU needs are known;
5. cost: the `paper` preset's and the full cross-product's (`paper_full`) device-hours from the measured
   rates (the precision the loops use on this device: bfloat16 where supported).

A time budget (`--budget` seconds) bounds it: what the budget leaves no time for is listed as skipped, and
the rest is still written. `--quick --device cpu` is the dry run the test suite runs: small models, tiny
batches, the same code paths.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: the repository

from orchestrator.driver.cost import YOUTUBE8M_TRAIN, YOUTUBE8M_VALIDATE, Rates, device_hours  # noqa: E402
from orchestrator.experiment.matrix import expand  # noqa: E402
from orchestrator.experiment.presets import load_preset  # noqa: E402
from workloads.data.convert import YOUTUBE8M_CLASSES  # noqa: E402
from workloads.data.reader import VideoShards  # noqa: E402
from workloads.data.synth import SynthConfig, generate  # noqa: E402
from workloads.errors import WorkloadError  # noqa: E402
from workloads.metrics import gap  # noqa: E402
from workloads.models import build_model  # noqa: E402
from workloads.precision import PRECISIONS, resolve  # noqa: E402
from workloads.throughput import inputs, measure  # noqa: E402

FAMILIES = ("hrnn", "netvlad", "nextvlad")
MEASURED = ("float32", "float16", "bfloat16")
REPLICA_SECONDS = 60  # two replicas' start (a Python and PyTorch each) and one step


class Budget:
    """Seconds left of the check's budget; a part that would start past it is skipped, and said so."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds
        self.skipped: list[str] = []

    def allows(self, what: str, reserve: float = 0.0) -> bool:
        if time.monotonic() + reserve < self.deadline:
            return True
        self.skipped.append(what)
        return False


def machine(device: str) -> dict:
    found = {"python": platform.python_version(), "torch": torch.__version__, "cores": os.cpu_count(),
             "device": device}
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        found |= {"gpu": properties.name, "gpu_memory_gib": round(properties.total_memory / 2**30, 1),
                  "capability": f"{properties.major}.{properties.minor}", "cuda": torch.version.cuda,
                  "cudnn": torch.backends.cudnn.version(), "bf16_supported": torch.cuda.is_bf16_supported()}
    return found


def throughput(plan: dict, device: str, budget: Budget) -> list[dict]:
    """Videos per second of every model, precision and batch size."""
    rows = []
    for family in plan["families"]:
        for k in (None, *plan["ks"]):
            model = build_model(family, plan["size"], plan["classes"], **({"k": k} if k else {})).to(device)
            frames = k or plan["frames"]
            for precision in MEASURED:
                for batch in plan["batches"]:
                    what = f"throughput {family} {'teacher' if k is None else f'k={k}'} {precision} batch {batch}"
                    if not budget.allows(what, reserve=plan["reserve"]):
                        continue
                    row = {"family": family, "k": k, "precision": precision, "batch": batch}
                    try:
                        train, infer = measure(model, frames, batch, plan["steps"], device, precision)
                        row |= {"train_videos_per_s": 1 / train, "inference_videos_per_s": 1 / infer}
                    except (RuntimeError, ValueError, WorkloadError) as error:  # out of memory, a dtype the device lacks
                        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
                        if device == "cuda":
                            torch.cuda.empty_cache()
                    rows.append(row)
                    print(f"  {what}: {_rates_line(row)}", flush=True)
            del model
            if device == "cuda":
                torch.cuda.empty_cache()
    return rows


def _rates_line(row: dict) -> str:
    if "error" in row:
        return row["error"]
    return f"train {row['train_videos_per_s']:,.1f} videos/s, inference {row['inference_videos_per_s']:,.1f} videos/s"


def cpu_vs_gpu(plan: dict, device: str) -> list[dict]:
    """One batch's float32 logits on `device` and on the CPU, same weights and inputs."""
    rows = []
    generator = torch.Generator().manual_seed(0)
    for family in plan["families"]:
        torch.manual_seed(0)
        model = build_model(family, plan["size"], plan["classes"]).eval()
        x, mask, positions = inputs(plan["compare_batch"], plan["frames"], "cpu", generator)
        labels = (torch.rand(plan["compare_batch"], plan["classes"], generator=generator) < 0.002).float()
        labels[:, 0] = 1  # every video has a label: GAP is defined
        with torch.no_grad():
            on_cpu = model(x, mask, positions).logits
            there = model.to(device)(x.to(device), mask.to(device), positions.to(device)).logits.float().cpu()
        difference = (there - on_cpu).abs()
        rows.append({"family": family, "max_abs_logit_difference": float(difference.max()),
                     "mean_abs_logit_difference": float(difference.mean()),
                     "gap_on_device": gap(torch.sigmoid(there).numpy(), labels.numpy()),
                     "gap_on_cpu": gap(torch.sigmoid(on_cpu).numpy(), labels.numpy())})
        print(f"  {family}: largest logit difference {rows[-1]['max_abs_logit_difference']:.2e}, GAP "
              f"{rows[-1]['gap_on_device']:.6f} ({device}) vs {rows[-1]['gap_on_cpu']:.6f} (cpu)", flush=True)
    return rows


def _replica(rank: int, world: int, backend: str, device: str, address: str, plan: dict, out: str) -> None:
    """One replica of the data-parallel step: its share of a batch, gradients averaged, weights written."""
    init = f"file://{address}"
    dist.init_process_group(backend, init_method=init, rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = build_model("hrnn", plan["size"], plan["classes"]).to(device)
        replica = torch.nn.parallel.DistributedDataParallel(model, device_ids=[0] if device == "cuda" else None)
        generator = torch.Generator().manual_seed(rank)  # each replica its own share of the data
        x, mask, positions = inputs(plan["batches"][0], plan["frames"], "cpu", generator)
        labels = (torch.rand(plan["batches"][0], plan["classes"], generator=generator) < 0.01).float()
        optimizer = torch.optim.Adam(replica.parameters())
        logits = replica(x.to(device), mask.to(device), positions.to(device)).logits
        torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.to(device)).backward()
        optimizer.step()
        flat = torch.cat([p.detach().float().cpu().flatten() for p in model.parameters()])
        torch.save(flat, os.path.join(out, f"replica{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _two_replicas(backend: str, device: str, plan: dict) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        address = os.path.join(scratch, "rendezvous")
        started = time.perf_counter()
        replicas = mp.start_processes(_replica, args=(2, backend, device, address, plan, scratch), nprocs=2,
                                      join=False, start_method="spawn")
        # A backend that cannot put two ranks on one GPU may hang rather than fail: bounded, then killed
        while not replicas.join(timeout=1):
            if time.perf_counter() - started > REPLICA_SECONDS:
                for process in replicas.processes:
                    process.kill()
                raise TimeoutError(f"the two replicas did not finish their step in {REPLICA_SECONDS} s")
        seconds = time.perf_counter() - started
        first, second = (torch.load(os.path.join(scratch, f"replica{r}.pt")) for r in (0, 1))
    return {"backend": backend, "replicas": 2, "seconds": round(seconds, 2),
            "largest_weight_difference": float((first - second).abs().max())}


def data_parallel(plan: dict, device: str) -> dict:
    """Two replicas' step over NCCL on the one GPU, or the nearest check it allows; then a checkpoint."""
    found: dict = {"attempts": []}
    backends = ("nccl", "gloo") if device == "cuda" else ("gloo",)
    for backend in backends:
        try:
            found["step"] = _two_replicas(backend, device, plan)
            break
        except Exception as error:  # noqa: BLE001 - NCCL refuses two ranks on one GPU: recorded, then Gloo
            found["attempts"].append(f"{backend}: {type(error).__name__}: {str(error).splitlines()[-1][:300]}")
    if device == "cuda" and found.get("step", {}).get("backend") != "nccl":
        found["nccl_one_process"] = _nccl_alone()
    found["checkpoint"] = _checkpoint_to_cpu(plan, device)
    print(f"  data parallel: {found.get('step')}; attempts that failed: {found['attempts'] or 'none'}", flush=True)
    print(f"  checkpoint on {device}, resumed on cpu: {found['checkpoint']}", flush=True)
    return found


def _nccl_alone() -> str:
    """NCCL in a one-process group on the GPU: an all-reduce runs (what a one-GPU machine can show of it)."""
    with tempfile.TemporaryDirectory() as scratch:
        try:
            dist.init_process_group("nccl", init_method=f"file://{scratch}/rendezvous", rank=0, world_size=1)
            value = torch.ones(4, device="cuda")
            dist.all_reduce(value)
            torch.cuda.synchronize()
            return f"ok (NCCL {'.'.join(map(str, torch.cuda.nccl.version()))})"
        except Exception as error:  # noqa: BLE001 - recorded, not fatal
            return f"failed: {type(error).__name__}: {error}"
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()


def _checkpoint_to_cpu(plan: dict, device: str) -> dict:
    """A model and its optimiser saved after a step on `device`, loaded on the CPU: the same logits, and
    the next step runs there."""
    torch.manual_seed(0)
    model = build_model("hrnn", plan["size"], plan["classes"]).to(device)
    optimizer = torch.optim.Adam(model.parameters())
    x, mask, positions = inputs(plan["batches"][0], plan["frames"], device, torch.Generator().manual_seed(1))
    model(x, mask, positions).logits.float().square().mean().backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        before = model(x, mask, positions).logits.float().cpu()
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "checkpoint.pt")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
        state = torch.load(path, map_location="cpu")
    resumed = build_model("hrnn", plan["size"], plan["classes"])
    resumed.load_state_dict(state["model"])
    resumed_optimizer = torch.optim.Adam(resumed.parameters())
    resumed_optimizer.load_state_dict(state["optimizer"])
    resumed.eval()
    with torch.no_grad():
        after = resumed(x.cpu(), mask.cpu(), positions.cpu()).logits
    resumed.train()
    resumed(x.cpu(), mask.cpu(), positions.cpu()).logits.square().mean().backward()
    resumed_optimizer.step()  # the optimiser's state, moved to the CPU, steps there
    return {"largest_logit_difference": float((after - before).abs().max()), "resumed_step": "ok"}


def reader(plan: dict, rows: list[dict]) -> dict:
    """One core's reader (all frames) against each family's teacher step at its best precision."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            frames = plan["frames"]
            generate(scratch, plan["reader_videos"], seed=0, workers=1,
                     config=SynthConfig(min_frames=frames, max_frames=frames, num_classes=plan["classes"]))
            shards = VideoShards(scratch, batch_size=64)
            for _ in shards:  # warm: page cache and allocator
                pass
            started, videos = time.perf_counter(), 0
            for batch in shards:
                videos += len(batch.ids)
            per_core = videos / (time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    found = {"reader_videos_per_s_per_core": per_core, "cores_a_gpu_needs": {}}
    for family in plan["families"]:
        teacher = [r for r in rows if r["family"] == family and r["k"] is None and "train_videos_per_s" in r]
        if teacher:
            fastest = max(teacher, key=lambda r: r["train_videos_per_s"])
            found["cores_a_gpu_needs"][family] = {
                "teacher_step_videos_per_s": fastest["train_videos_per_s"], "precision": fastest["precision"],
                "batch": fastest["batch"], "cores": fastest["train_videos_per_s"] / per_core}
    print(f"  reader: {per_core:,.0f} videos/s on one core (all {plan['frames']} frames); cores a GPU needs: "
          + ", ".join(f"{f} {v['cores']:.1f}" for f, v in found["cores_a_gpu_needs"].items()), flush=True)
    return found


def cost(plan: dict, rows: list[dict], device: str, out: str) -> dict:
    """Rates at the precision the loops use here, largest batch; the paper presets' device-hours."""
    used = resolve("auto", torch.device(device))
    precision = "float32" if used is None else {torch.bfloat16: "bfloat16", torch.float16: "float16"}[used]
    seconds = {}
    for row in rows:
        if row["precision"] == precision and row["batch"] == max(plan["batches"]) and "train_videos_per_s" in row:
            seconds[(row["family"], row["k"])] = (1 / row["train_videos_per_s"], 1 / row["inference_videos_per_s"])
    rates = Rates(f"{device} ({precision})", plan["size"], seconds)
    rates.save(os.path.join(out, "rates.json"))
    found = {"precision": precision, "rates": "rates.json", "device_hours": {}}
    for name in ("paper", "paper_full"):
        preset = load_preset(name)
        teachers, cells = expand(preset, "yt8m")
        try:
            hours = device_hours(teachers, cells, rates, YOUTUBE8M_TRAIN, YOUTUBE8M_VALIDATE,
                                 preset.resources.cell.parallel_group)
        except Exception as error:  # noqa: BLE001 - a model the budget skipped has no rate
            found["device_hours"][name] = f"not estimated: {error}"
            print(f"  {name}: {found['device_hours'][name]}", flush=True)
            continue
        found["device_hours"][name] = {"cells": len(cells), "teachers": len(teachers),
                                       **{kind: round(value, 1) for kind, value in sorted(hours.items())},
                                       "total": round(sum(hours.values()), 1)}
        print(f"  {name}: {found['device_hours'][name]}", flush=True)
    if plan["size"] != "paper":
        found["note"] = "quick: small models, so the paper presets' hours are not estimated from these rates"
    return found


def plan_of(args: argparse.Namespace) -> dict:
    paper = load_preset("paper")
    if args.quick:
        return {"families": FAMILIES, "size": "small", "classes": 50, "frames": 30, "ks": (10,), "batches": (4, 8),
                "steps": 1, "compare_batch": 4, "reader_videos": 64, "reserve": 0.0}
    return {"families": FAMILIES, "size": "paper", "classes": YOUTUBE8M_CLASSES, "frames": paper.data.max_frames,
            "ks": tuple(paper.ks), "batches": (64, 256), "steps": 2, "compare_batch": 64, "reader_videos": 1024,
            "reserve": 150.0}  # the seconds the parts after throughput take on an H200, kept for them


def markdown(found: dict) -> str:
    lines = [f"# GPU check: {found['machine'].get('gpu', found['machine']['device'])}", "",
             "```", json.dumps(found["machine"], indent=1), "```", "", "## Throughput (videos/s)", "",
             "| family | model | precision | batch | train | inference |", "|---|---|---|---|---|---|"]
    for row in found["throughput"]:
        model = "teacher" if row["k"] is None else f"k={row['k']}"
        cells = (f"{row['train_videos_per_s']:,.1f} | {row['inference_videos_per_s']:,.1f}" if "error" not in row
                 else f"{row['error']} | ")
        lines.append(f"| {row['family']} | {model} | {row['precision']} | {row['batch']} | {cells} |")
    lines += ["", "## float32 forward, device against CPU", "",
              "| family | largest logit difference | mean | GAP device | GAP CPU |", "|---|---|---|---|---|"]
    lines += [f"| {r['family']} | {r['max_abs_logit_difference']:.2e} | {r['mean_abs_logit_difference']:.2e} | "
              f"{r['gap_on_device']:.6f} | {r['gap_on_cpu']:.6f} |" for r in found["cpu_vs_gpu"]]
    for title, key in (("Data parallel and checkpoint", "data_parallel"), ("Reader against the GPU", "reader"),
                       ("Device-hours", "cost")):
        lines += ["", f"## {title}", "", "```", json.dumps(found.get(key), indent=1, default=str), "```"]
    lines += ["", f"Skipped for the time budget: {', '.join(found['skipped']) or 'nothing'}; "
                  f"{found['seconds']:.0f} s in all."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for gpu_check.json, gpu_check.md and rates.json")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    parser.add_argument("--quick", action="store_true", help="small models and batches: the suite's dry run")
    parser.add_argument("--budget", type=float, default=400.0,
                        help="seconds for the whole check (default 400: with Python's start, under 8 minutes)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here (give --device cpu for the dry run)")
    os.makedirs(args.out, exist_ok=True)
    started, budget, plan = time.monotonic(), Budget(args.budget), plan_of(args)
    torch.backends.cudnn.benchmark = True  # as a training run would: the fastest kernels for each shape
    found: dict = {"machine": machine(args.device), "plan": {k: v for k, v in plan.items()},
                   "precisions_known": list(PRECISIONS)}
    print(f"gpu check on {found['machine']}", flush=True)
    print("throughput:", flush=True)
    found["throughput"] = throughput(plan, args.device, budget)
    print("float32 forward, device against CPU:", flush=True)
    found["cpu_vs_gpu"] = cpu_vs_gpu(plan, args.device)
    print("data parallel and checkpoint:", flush=True)
    found["data_parallel"] = data_parallel(plan, args.device)
    print("reader:", flush=True)
    found["reader"] = reader(plan, found["throughput"])
    print("cost:", flush=True)
    found["cost"] = cost(plan, found["throughput"], args.device, args.out)
    found["skipped"], found["seconds"] = budget.skipped, time.monotonic() - started
    with open(os.path.join(args.out, "gpu_check.json"), "w") as file:
        json.dump(found, file, indent=1, default=str)
    with open(os.path.join(args.out, "gpu_check.md"), "w") as file:
        file.write(markdown(found))
    print(f"written: {args.out}/gpu_check.json, gpu_check.md, rates.json ({found['seconds']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
