"""python -m workloads.data.convert --out DIR SRC... : YouTube-8M frame-level TFRecords to video shards.

Each input file becomes one shard `DIR/<name>.parquet`, written under a hidden temporary name and renamed
when complete, so a corrupt or truncated input leaves nothing behind. Files convert in parallel, one process
a core. Exit status 0 when every file converted, 1 when some did not (each named on one line), 2 on bad
arguments, 130 when stopped (Ctrl-C or SIGTERM: the workers stop with it, and no half-written shard stays).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Iterator

import pyarrow.fs as pafs
from tqdm import tqdm

from workloads.data.format import SHARD_SUFFIX, ShardInfo, Video, write_shard
from workloads.data.fs import file_size, join, list_files, resolve
from workloads.data.tfrecord import read_videos
from workloads.errors import DataError
from workloads.memory import keep_freed_memory

TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords")
YOUTUBE8M_CLASSES = 3862


@dataclass
class ConvertStats:
    files: int = 0
    videos: int = 0
    frames: int = 0
    frame_bytes: int = 0
    input_bytes: int = 0

    def add(self, other: "ConvertStats") -> None:
        for name in ("files", "videos", "frames", "frame_bytes", "input_bytes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


    def summary(self, files: int, out: str, seconds: float) -> str:
        return (f"converted {self.files} of {files} files into {out}: {self.videos} videos, {self.frames} frames, "
                f"{self.frame_bytes / 1e6:.1f} MB of frames from {self.input_bytes / 1e6:.1f} MB of TFRecords in "
                f"{seconds:.1f} s ({self.input_bytes / 1e6 / max(seconds, 1e-9):.1f} MB/s)")


def shard_name(source: str) -> str:
    base = source.rstrip("/").rsplit("/", 1)[-1]
    for suffix in TFRECORD_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base + SHARD_SUFFIX


def convert_file(source: str, destination: str, num_classes: int) -> ConvertStats:
    """Convert one TFRecord file into one shard, streaming; raises DataError on bad input."""
    fs, path = resolve(source)
    info = ShardInfo(num_classes=num_classes, source="youtube8m-tfrecord", details={"converted_from": shard_name(source)})
    stats = ConvertStats(files=1, input_bytes=file_size(source))
    if stats.input_bytes == 0:  # a download that failed, not a data set's shard
        raise DataError(f"{source}: empty file: no records")

    def counted(videos: Iterator[Video]) -> Iterator[Video]:
        for video in videos:
            stats.videos += 1
            stats.frames += video.num_frames
            stats.frame_bytes += video.rgb.nbytes + video.audio.nbytes
            yield video

    try:
        with fs.open_input_stream(path) as stream:
            write_shard(destination, info, counted(read_videos(stream, source, num_classes)))
    except OSError as error:
        raise DataError(f"{source}: {error}") from None
    return stats


def _convert_one(job: tuple[str, str, int]) -> tuple[str, ConvertStats | str]:
    """(source, its stats, or why it failed in one line naming it)."""
    try:
        return job[0], convert_file(*job)
    except DataError as error:
        return job[0], str(error)


def expand_sources(sources: list[str]) -> list[str]:
    files: dict[str, str] = {}  # where a file is (a local path made absolute) -> as it was first named
    for source in sources:
        found = list_files(source, suffix="")
        for file in (f for f in found if f == source or f.endswith(TFRECORD_SUFFIXES)):
            # a file named twice (a folder and a file in it; a relative and an absolute path) converts once
            files.setdefault(file if "://" in file else os.path.realpath(file), file)
    return list(files.values())


def plan_files(sources: list[str]) -> dict[str, str]:
    """Shard name -> the TFRecord file it comes from, for every file the sources name (each once); a
    DataError when there are none, or two files would make one shard."""
    files = expand_sources(sources)
    if not files:
        raise DataError(f"no TFRecord files (*.tfrecord) in {' '.join(sources)}")
    names: dict[str, str] = {}
    for source in files:
        name = shard_name(source)
        if name in names:
            raise DataError(f"{source} and {names[name]} would both become {name}; convert them into different --out folders")
        names[name] = source
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workloads.data.convert",
        description="Convert YouTube-8M frame-level TFRecords into Parquet video shards (one shard per file).",
    )
    parser.add_argument("--out", required=True, help="output folder or URI for the shards")
    parser.add_argument("sources", nargs="+", metavar="SRC", help="TFRecord files, or folders searched for *.tfrecord")
    parser.add_argument("--num-classes", type=int, default=YOUTUBE8M_CLASSES,
                        help="size of the label vocabulary (3862 from the 2018 release on, 4716 in 2017)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes")
    args = parser.parse_args(argv)
    try:
        files = plan_files(args.sources)
        check_out_folder(args.out)
    except (DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    jobs = [(source, join(args.out, name), args.num_classes) for name, source in files.items()]
    signal.signal(signal.SIGTERM, _interrupt)  # a batch scheduler's stop ends it as Ctrl-C does
    keep_freed_memory()  # set before the workers start, so that they inherit it
    pool = multiprocessing.Pool(max(1, min(args.workers, len(jobs))), initializer=_worker_signals)
    total, failures, start = ConvertStats(), [], time.perf_counter()
    try:
        _convert_all(pool, jobs, total, failures)
    except KeyboardInterrupt:
        pool.terminate()  # each worker stops mid-file, removing its temporary file
        pool.join()
        print(f"interrupted: {total.files} of {len(jobs)} files converted, their shards complete; no shard was "
              "written for the others", file=sys.stderr)
        return 130
    pool.close()
    pool.join()
    print(total.summary(len(jobs), args.out, time.perf_counter() - start))
    if failures:
        print(f"error: {len(failures)} file(s) failed; no shard was written for them", file=sys.stderr)
        return 1
    return 0


def _convert_all(pool, jobs: list[tuple[str, str, int]], total: ConvertStats, failures: list[str]) -> None:
    input_sizes = {source: file_size(source) for source, _, _ in jobs}
    with tqdm(total=sum(input_sizes.values()), unit="B", unit_scale=True, desc="converting", file=sys.stderr,
              disable=None) as progress:
        for source, converted in pool.imap_unordered(_convert_one, jobs):
            if isinstance(converted, ConvertStats):
                total.add(converted)
            else:
                failures.append(converted)
                progress.write(f"error: {converted}", file=sys.stderr)
            progress.update(input_sizes[source])


def check_out_folder(out: str) -> None:
    """`--out` is a folder or can be made one (a file there would fail every file, one by one)."""
    fs, path = resolve(out)
    if fs.get_file_info(path).type == pafs.FileType.File:
        raise DataError(f"--out {out}: a file, not a folder for the shards")


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _worker_signals() -> None:
    """A worker leaves Ctrl-C (sent to the whole process group) to the parent, which stops the pool; the
    pool's stop (SIGTERM) ends the file it converts by SystemExit, so its temporary file is removed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # quietly, unlike an interrupt


if __name__ == "__main__":
    sys.exit(main())
