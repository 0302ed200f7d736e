"""The teacher cache's files: how a cache is written, and whether one is complete and intact.

A cache is a folder holding one part per data shard, `part-NNNNN.parquet`, in the shard's video order, in
row groups of 128 videos; each row is a video: `id`, `representation` E_T and `probabilities` P_T as raw
float32 bytes, and for intermediate matching `intermediates` I_T (steps x d float32 bytes) at
`positions`. Parts carry Parquet page checksums and, in their metadata, the teacher they belong to.
Beside them the teacher's classifier weights `_classifier.pt`, and `_manifest.json`, written last: it
lists the parts with their sizes and videos. No manifest, no cache: a writer killed half-way leaves a
cache that counts as absent and is rebuilt. Names starting with `_` are skipped by `pyarrow.dataset`
(and so DuckDB, Polars, pandas): the folder opens as a Parquet data set as it is.

`read_manifest` tells an absent cache (None) from a damaged one (`DamagedCache`: the manifest unreadable,
a part missing or of another size); `ParquetTeacherCache` finds the rest when it reads (a part from
another teacher, a page whose checksum fails).
"""

from __future__ import annotations

import dataclasses
import io
import json
import posixpath
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch

from orchestrator.errors import OrchestratorError
from orchestrator.store.files import DamagedFile
from workloads.data.fs import file_size, join, resolve, write_atomically, write_bytes
from workloads.teacher_outputs import TeacherRecord

MANIFEST = "_manifest.json"
CLASSIFIER = "_classifier.pt"
FORMAT = 3
READABLE = {2: "classifier.pt", 3: CLASSIFIER}  # format -> its classifier's file (2: parts without sizes)
ROWS_PER_GROUP = 128
METADATA_KEY = b"fewer_frames_cache"  # a part's schema metadata: JSON with the teacher's id

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("representation", pa.binary(), nullable=False),
        pa.field("probabilities", pa.binary(), nullable=False),
        pa.field("intermediates", pa.binary()),
        pa.field("positions", pa.list_(pa.int32())),
    ]
)


class DamagedCache(DamagedFile):
    """A cache whose files are not what its manifest promises; `location` is the cache's folder."""

    what = "teacher cache damaged: "


class MissingCache(OrchestratorError):
    """No complete cache at `location` (no manifest): never written, or set aside as damaged."""

    problem = "no complete teacher cache here (no manifest)"

    def __init__(self, location: str):
        super().__init__(f"{location}: {self.problem}")
        self.location = location

    def __reduce__(self):  # raised in a Ray task, it crosses to the driver whole (as DamagedFile does)
        return type(self), (self.location,)


@dataclass(frozen=True)
class Manifest:
    """A complete cache's `_manifest.json`, typed. Written last, it lists the parts (one per data shard, in
    its order) with their sizes and videos. A cache of format 2 (before parts recorded their sizes, their
    videos and their teacher) reads with `part_bytes` and `part_videos` None: its parts are checked by what
    they hold only."""

    parts: tuple[str, ...]
    videos: int
    representation_dim: int
    num_classes: int
    classifier: str = CLASSIFIER
    part_bytes: tuple[int, ...] | None = None
    part_videos: tuple[int, ...] | None = None
    teacher_id: str = ""
    intermediates: str | None = None  # the key of a cache of intermediate states; None for `base`
    format: int = FORMAT

    @property
    def parts_know_their_teacher(self) -> bool:
        """Whether each part records its teacher and the manifest its videos (format 3 on)."""
        return self.part_videos is not None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, found: dict) -> Manifest:
        """Raises KeyError, TypeError or ValueError when `found` is not a manifest of a readable format."""
        version = found["format"]
        sizes = {key: tuple(found[key]) for key in ("part_bytes", "part_videos") if version >= 3}
        return cls(parts=tuple(found["parts"]), videos=int(found["videos"]),
                   representation_dim=int(found["representation_dim"]), num_classes=int(found["num_classes"]),
                   classifier=READABLE[version], teacher_id=found.get("teacher_id") or "",
                   intermediates=found.get("intermediates"), format=version, **sizes)


def _table(records: list[TeacherRecord]) -> pa.Table:
    return pa.table(
        {
            "id": [r.id for r in records],
            "representation": [np.asarray(r.representation, np.float32).tobytes() for r in records],
            "probabilities": [np.asarray(r.probabilities, np.float32).tobytes() for r in records],
            "intermediates": [None if r.intermediates is None else np.asarray(r.intermediates, np.float32).tobytes()
                              for r in records],
            "positions": [None if r.positions is None else np.asarray(r.positions, np.int32) for r in records],
        },
        schema=SCHEMA,
    )


def write_teacher_cache(location: str, parts: Iterable[Iterable[TeacherRecord]],
                        classifier_state: dict[str, torch.Tensor], owner: dict[str, str | None]) -> Manifest:
    """Write a cache from `parts` (one iterable of records per data shard, in its order); returns the
    manifest. Parts first, each atomically, then the classifier, the manifest last. `owner`: the teacher's
    id (`teacher_id`) and, for a cache of intermediate states, its key (`intermediates`)."""
    teacher_id = str(owner.get("teacher_id", ""))
    written = [write_cache_part(location, index, records, teacher_id) for index, records in enumerate(parts)]
    return finish_teacher_cache(location, written, classifier_state, owner)


def write_cache_part(location: str, index: int, records: Iterable[TeacherRecord], teacher_id: str) -> dict:
    """Write part `index` (the records of data shard `index`, in its order) atomically; returns what
    `finish_teacher_cache` needs of it. Data-parallel replicas write different parts at once."""
    name = f"part-{index:05d}.parquet"
    schema = SCHEMA.with_metadata({METADATA_KEY: json.dumps({"teacher_id": teacher_id}).encode()})
    count, dims = 0, None

    def write(fs, path):
        nonlocal count, dims
        with pq.ParquetWriter(path, schema, filesystem=fs, compression="none", use_dictionary=False,
                              write_page_checksum=True) as writer:
            group: list[TeacherRecord] = []
            for record in records:
                if dims is None:
                    dims = (int(np.asarray(record.representation).size), int(np.asarray(record.probabilities).size))
                group.append(record)
                if len(group) == ROWS_PER_GROUP:
                    writer.write_table(_table(group))
                    count += len(group)
                    group = []
            if group or count == 0:
                writer.write_table(_table(group))
                count += len(group)

    write_atomically(join(location, name), write)
    return {"index": index, "name": name, "videos": count, "dims": dims, "bytes": file_size(join(location, name))}


def finish_teacher_cache(location: str, written: list[dict], classifier_state: dict[str, torch.Tensor],
                         owner: dict[str, str | None]) -> Manifest:
    """Complete a cache whose parts are all written (`written`: what `write_cache_part` returned for each,
    in any order): the classifier, then the manifest that makes the cache exist. Returns the manifest."""
    written = sorted(written, key=lambda part: part["index"])
    if [part["index"] for part in written] != list(range(len(written))):
        raise OrchestratorError(f"{location}: parts {[p['index'] for p in written]} are not 0..{len(written) - 1}")
    dims = next((part["dims"] for part in written if part["dims"] is not None), None)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in classifier_state.items()}, buffer)
    write_bytes(join(location, CLASSIFIER), buffer.getvalue())
    manifest = Manifest(parts=tuple(part["name"] for part in written), videos=sum(part["videos"] for part in written),
                        representation_dim=dims[0] if dims else 0, num_classes=dims[1] if dims else 0,
                        part_bytes=tuple(part["bytes"] for part in written),
                        part_videos=tuple(part["videos"] for part in written),
                        teacher_id=str(owner.get("teacher_id") or ""), intermediates=owner.get("intermediates"))
    write_bytes(join(location, MANIFEST), json.dumps(manifest.to_json(), indent=1, sort_keys=True).encode())
    return manifest


def read_manifest(location: str) -> Manifest | None:
    """The manifest of a complete cache; None when there is none (absent, or written only in part).
    Raises `DamagedCache` when the manifest cannot be read or a file it lists is missing or of another size."""
    fs, path = resolve(location)
    if fs.get_file_info(posixpath.join(path, MANIFEST)).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(posixpath.join(path, MANIFEST)) as stream:
        text = stream.read()
    try:
        manifest = Manifest.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as error:
        raise DamagedCache(location, f"{MANIFEST} cannot be read ({len(text)} bytes): {error!r}") from None
    found = {entry.base_name: entry.size for entry in fs.get_file_info(pafs.FileSelector(path))
             if entry.type == pafs.FileType.File}
    sizes = manifest.part_bytes or (None,) * len(manifest.parts)
    for name, size in [*zip(manifest.parts, sizes), (manifest.classifier, None)]:
        if name not in found:
            raise DamagedCache(location, f"{name} is missing")
        if size is not None and found[name] != size:
            raise DamagedCache(location, f"{name} holds {found[name]} bytes, the manifest says {size}")
    return manifest


def set_aside(location: str) -> str | None:
    """Take a damaged cache out of use: its manifest renamed (kept), so the cache counts as absent and is
    written again. Returns the manifest's new name, None when there was none."""
    fs, path = resolve(location)
    manifest = posixpath.join(path, MANIFEST)
    if fs.get_file_info(manifest).type != pafs.FileType.File:
        return None
    aside = f"{MANIFEST}.damaged-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}"
    fs.move(manifest, posixpath.join(path, aside))
    return aside
