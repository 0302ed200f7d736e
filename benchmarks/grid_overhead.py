"""Orchestration overhead and rerun time of a whole grid.

    python benchmarks/grid_overhead.py [--preset smoke] [--store DIR]

Runs the preset into a fresh store, then runs it again. Prints the grid's wall time, the compute the
cells and teachers did themselves (the sum of their own wall times, divided by how many run at once on
this machine), the overhead (wall - compute / slots) as a share of the wall time, and the rerun's wall
time. Targets: overhead <= 15% on smoke; rerun of a finished grid <= 30 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from machine import describe_machine  # benchmarks/machine.py, beside this script


def run(preset: str, store: str) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "orchestrator.grid", "--preset", preset, "--store", store],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"the grid failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return time.perf_counter() - start, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--store", help="a fresh folder (default: a temporary one)")
    parser.add_argument("--slots", type=float, default=os.cpu_count(), help="cells that run at once (CPUs)")
    args = parser.parse_args()
    print(describe_machine())  # the machine's own limits: figures below read as shares of them
    scratch = None if args.store else tempfile.mkdtemp()
    store = args.store or scratch
    try:
        wall, output = run(args.preset, store)
        rerun, _ = run(args.preset, store)
        results = [json.loads(p.read_text()) for p in Path(store, "results").glob("*.json")]
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    compute = sum(r["wall_seconds"] for r in results)
    ideal = compute / args.slots
    overhead = (wall - ideal) / wall
    print(output[output.find("###"):].strip() if "###" in output else output[-3000:])
    print()
    print(f"grid {args.preset}: {len(results)} cells")
    print(f"{'wall time':<40}{wall:>8.0f} s")
    print(f"{'cells and teachers, own wall time':<40}{compute:>8.0f} s  (/ {args.slots:g} slots = {ideal:.0f} s)")
    print(f"overhead: {overhead:.1%} of the wall time (target <= 15%): {'PASS' if overhead <= 0.15 else 'FAIL'}")
    print(f"rerun of the finished grid: {rerun:.1f} s (target <= 30 s): {'PASS' if rerun <= 30 else 'FAIL'}")


if __name__ == "__main__":
    main()
