"""Local paths and filesystem URIs (file://, s3://, ...) as PyArrow filesystems, and atomic writes.

`workloads` reads and writes through PyArrow's filesystems so the same code serves a local folder and an
object store; `orchestrator.store.access` builds on these helpers and adds credentials and retries.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import uuid
from typing import Callable

import pyarrow.fs as pafs

from workloads.errors import DataError


def resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or any URI PyArrow understands."""
    if "://" not in location:
        return pafs.LocalFileSystem(), os.path.abspath(location)
    scheme, rest = location.split("://", 1)
    try:
        if scheme in ("s3", "gs"):  # object stores: paths are "bucket/key"
            return _filesystem(f"{scheme}://{rest.split('/', 1)[0]}", _aws_settings()), rest.rstrip("/")
        return pafs.FileSystem.from_uri(location)
    except (ValueError, OSError) as error:  # pyarrow.ArrowInvalid is a ValueError
        raise DataError(f"{location}: cannot open this location: {error}") from None


def _aws_settings() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))


@functools.lru_cache(maxsize=32)
def _filesystem(root: str, settings: tuple[tuple[str, str], ...]) -> pafs.FileSystem:
    """One filesystem per bucket (and AWS settings): making an S3 filesystem costs ~10 ms (it resolves the
    bucket's region), which a reader asking for every row group would pay again and again."""
    return pafs.FileSystem.from_uri(root)[0]


def join(base: str, *parts: str) -> str:
    """Join path parts under a local path or a URI, keeping its scheme."""
    if "://" in base:
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def list_files(location: str, suffix: str) -> list[str]:
    """Sorted locations of the files ending in `suffix` at `location` (a file, or a folder searched
    recursively); hidden and temporary files (names starting with '.' or '_') are skipped."""
    fs, path = resolve(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"{location}: no such file or folder")
    if info.type == pafs.FileType.File:
        return [location]
    selector = pafs.FileSelector(path, recursive=True)
    found = []
    for entry in fs.get_file_info(selector):
        if entry.type != pafs.FileType.File or not entry.base_name.endswith(suffix):
            continue
        relative = posixpath.relpath(entry.path, path) if "://" in location else os.path.relpath(entry.path, path)
        if any(part.startswith((".", "_")) for part in relative.replace(os.sep, "/").split("/")):
            continue
        found.append(join(location, relative))
    return sorted(found)


def file_size(location: str) -> int:
    fs, path = resolve(location)
    return fs.get_file_info(path).size or 0


_TEMPORARY = re.compile(r"\.(?P<name>.+)\.tmp-[0-9a-f]{12}")  # write_atomically's temporary names


def leftover_temporaries(folder: str, names: set[str]) -> list[str]:
    """The hidden temporary files (`write_atomically`'s `.name.tmp-*`) directly in `folder` that a writer
    of one of `names` left when it was killed: only a writer of that name made them, and none runs now if
    the caller is the folder's one writer."""
    fs, path = resolve(folder)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    found = []
    for entry in fs.get_file_info(pafs.FileSelector(path)):
        match = _TEMPORARY.fullmatch(entry.base_name)
        if entry.type == pafs.FileType.File and match and match["name"] in names:
            found.append(join(folder, entry.base_name))
    return sorted(found)


def is_file(location: str) -> bool:
    fs, path = resolve(location)
    return fs.get_file_info(path).type == pafs.FileType.File


def delete(location: str) -> None:
    fs, path = resolve(location)
    fs.delete_file(path)


def write_atomically(location: str, write: Callable[[pafs.FileSystem, str], None]) -> None:
    """Call `write(fs, temporary_path)`, then move the result to `location`.

    A writer that fails or is killed leaves at most a hidden `.name.tmp-*` file, never a file under the
    final name, so readers (which skip hidden names) never see half a shard.
    """
    fs, path = resolve(location)
    parent, name = posixpath.split(path) if "://" in location else os.path.split(path)
    fs.create_dir(parent, recursive=True)
    temporary = (posixpath.join if "://" in location else os.path.join)(
        parent, f".{name}.tmp-{uuid.uuid4().hex[:12]}"
    )
    try:
        write(fs, temporary)
        fs.move(temporary, path)
    except BaseException:
        try:
            fs.delete_file(temporary)
        except (OSError, FileNotFoundError):
            pass
        raise


def write_bytes(location: str, data: bytes) -> None:
    """Write a small file atomically (a manifest, a marker, a state dict)."""

    def write(fs, path):
        with fs.open_output_stream(path) as out:
            out.write(data)

    write_atomically(location, write)
