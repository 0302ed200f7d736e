"""python -m orchestrator.convert SRC... --out URI [--num-classes 3862] [--cpus 1]

Converts a whole YouTube-8M split (3,844 TFRecord files per split) on a Ray cluster: one Ray task per file
(`workloads.data.convert.convert_file`, the per-file converter's own code), sources and output local or
S3. Each file is streamed from its source and its shard written under a temporary name and renamed when
complete. Files whose shard is already complete and valid (its footer reads, it is a video shard of this
class count converted from that file) are skipped, so a stopped conversion resumes where it stopped, and
the hidden temporary files its killed tasks left are removed (beside a shard still to convert, or on S3,
where a move is a copy and a delete, beside a complete one; so run one conversion per output folder at a
time). One progress line counts files, videos and bytes; a closing
summary follows. Failed files are listed by name with the reason while the others convert, and the exit
status is 1. On a cluster, run it under `ray job submit` (RAY_ADDRESS); without one, a local Ray starts.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from orchestrator.driver import session
from orchestrator.errors import OrchestratorError, one_line
from workloads.data.convert import YOUTUBE8M_CLASSES, ConvertStats, check_out_folder, convert_file, plan_files
from workloads.data.format import read_info
from workloads.data.fs import delete, file_size, join, leftover_temporaries
from workloads.errors import DataError

LOOKUPS = 16  # sizes and existing shards' footers asked at once (on S3, a request each)


def converted(shard: str, source_name: str, num_classes: int) -> bool:
    """Whether `shard` is a complete shard of this class count converted from `source_name`. A shard is
    only ever renamed into place whole, so a readable footer means a complete file."""
    try:
        info = read_info(shard)
    except (DataError, OSError):
        return False
    return info.num_classes == num_classes and info.details.get("converted_from") == source_name


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.convert", description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", metavar="SRC", help="TFRecord files or folders, local or s3://")
    parser.add_argument("--out", required=True, help="the folder or URI the shards go to")
    parser.add_argument("--num-classes", type=int, default=YOUTUBE8M_CLASSES,
                        help="size of the label vocabulary (3862 from the 2018 release on, 4716 in 2017)")
    parser.add_argument("--cpus", type=float, default=1.0, help="CPUs per conversion task (default 1)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    try:
        files = plan_files(args.sources)  # shard name -> source
        check_out_folder(args.out)
    except (DataError, OSError) as error:
        raise OrchestratorError(one_line(error)) from None
    with ThreadPoolExecutor(LOOKUPS) as pool:
        sizes = dict(zip(files.values(), pool.map(file_size, files.values())))
        done = [name for name, is_done in zip(files, pool.map(
            lambda name: converted(join(args.out, name), name, args.num_classes), files)) if is_done]
    todo = {name: source for name, source in files.items() if name not in done}
    # A task killed mid-write leaves a hidden temporary file, and on S3 (a move is a copy, then a delete)
    # one killed between the two leaves it beside a complete shard: this run is the folder's one writer
    leftovers = leftover_temporaries(args.out, set(files))
    for leftover in leftovers:
        delete(leftover)
    ray = session.start_ray()
    session.stop_on_sigterm()  # `ray job stop` ends it as Ctrl-C does (after Ray's own handler is in place)
    task = ray.remote(convert_file).options(num_cpus=args.cpus)
    pending = {task.remote(source, join(args.out, name), args.num_classes): source for name, source in todo.items()}
    total, failures, started = ConvertStats(), [], time.perf_counter()
    with tqdm(total=sum(sizes[s] for s in todo.values()), unit="B", unit_scale=True, desc="converting",
              file=sys.stderr, disable=None) as progress:
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            source = pending.pop(ref)
            try:
                total.add(ray.get(ref))
            except Exception as error:  # the task's error, re-raised by Ray: name the file, carry on
                bad_input = session.cause(error, DataError)  # its message names the file (and record) already
                failures.append(one_line(bad_input) if bad_input else f"{source}: {one_line(error)}")
                progress.write(f"error: {failures[-1]}", file=sys.stderr)
            progress.update(sizes[source])
            progress.set_postfix_str(f"{total.files}/{len(todo)} files, {total.videos} videos")
    print(total.summary(len(todo), args.out, time.perf_counter() - started)
          + (f"; {len(done)} already converted, skipped" if done else "")
          + (f"; {len(leftovers)} temporary file(s) of a stopped run removed" if leftovers else ""))
    if failures:
        print(f"error: {len(failures)} file(s) failed; no shard was written for them:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return session.EXIT_FAILED
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return session.exit_status(lambda: run(args), "converted shards are kept; run the same command again to convert the rest")


if __name__ == "__main__":
    sys.exit(main())
