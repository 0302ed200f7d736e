"""The video shard format: Parquet, one row per video, frames as raw quantised bytes.

| column       | type              | content                                                            |
|--------------|-------------------|--------------------------------------------------------------------|
| `id`         | string            | the video's id                                                     |
| `labels`     | list<int32>       | class indices, each in [0, num_classes)                            |
| `num_frames` | int32             | frames in the video (one a second, at most 300 in YouTube-8M)       |
| `rgb`        | binary            | num_frames x 1024 uint8, row-major (frame after frame)             |
| `audio`      | binary            | num_frames x 128 uint8, row-major                                  |

Values are quantised exactly as YouTube-8M ships them; `dequantize` maps a byte x to
x * 4/255 + 4/512 - 2. Frame columns are stored without dictionary encoding and without compression:
the bytes decode with `np.frombuffer` at memory speed, and quantised features barely compress. The schema's
metadata key `fewer_frames` holds JSON with the format version, `num_classes` and where the data came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workloads.data.fs import resolve, write_atomically
from workloads.errors import DataError

FORMAT_VERSION = 1
RGB_DIM = 1024
AUDIO_DIM = 128
FEATURE_DIM = RGB_DIM + AUDIO_DIM
SHARD_SUFFIX = ".parquet"
METADATA_KEY = b"fewer_frames"

# x * 4/255 + 4/512 - 2, the inverse of YouTube-8M's 8-bit quantisation of [-2, 2].
DEQUANTIZE_SCALE = 4.0 / 255.0
DEQUANTIZE_BIAS = 4.0 / 512.0 - 2.0

# Enough videos per row group to amortise Parquet's per-page work, few enough (~40 MB of frames) that
# readers shard and shuffle at a fine grain and a remote reader fetches a row group in one ranged read.
ROWS_PER_GROUP = 128

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("labels", pa.list_(pa.field("item", pa.int32(), nullable=False)), nullable=False),
        pa.field("num_frames", pa.int32(), nullable=False),
        pa.field("rgb", pa.binary(), nullable=False),
        pa.field("audio", pa.binary(), nullable=False),
    ]
)


@dataclass(frozen=True)
class Video:
    """One video in memory: quantised frames, (num_frames, 1024) and (num_frames, 128) uint8."""

    id: str
    labels: np.ndarray
    rgb: np.ndarray
    audio: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.rgb.shape[0])


@dataclass(frozen=True)
class ShardInfo:
    """What a shard's metadata says about its data set."""

    num_classes: int
    source: str
    details: dict[str, Any]


def dequantize(values: np.ndarray) -> np.ndarray:
    """uint8 YouTube-8M features to float32 in about [-2, 2]."""
    return values.astype(np.float32) * np.float32(DEQUANTIZE_SCALE) + np.float32(DEQUANTIZE_BIAS)


def quantize(values: np.ndarray) -> np.ndarray:
    """float features in [-2, 2] to the nearest YouTube-8M byte (values outside are clipped)."""
    scaled = np.rint((np.asarray(values, dtype=np.float64) - DEQUANTIZE_BIAS) / DEQUANTIZE_SCALE)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def videos_to_table(videos: Sequence[Video], info: ShardInfo) -> pa.Table:
    """A shard table from in-memory videos, checking shapes and labels on the way."""
    for video in videos:
        check_video(video, info.num_classes, where=f"video {video.id!r}")
    frames = [np.int32(v.num_frames) for v in videos]
    table = pa.table(
        {
            "id": pa.array([v.id for v in videos], pa.string()),
            "labels": pa.array([np.asarray(v.labels, np.int32) for v in videos], SCHEMA.field("labels").type),
            "num_frames": pa.array(frames, pa.int32()),
            "rgb": _binary([v.rgb for v in videos]),
            "audio": _binary([v.audio for v in videos]),
        },
        schema=SCHEMA,
    )
    return table.replace_schema_metadata({METADATA_KEY: encode_info(info)})


def _binary(frames: Sequence[np.ndarray]) -> pa.Array:
    """One binary value per video from its (frames, dim) uint8 array, copied once into one Arrow buffer
    (the arrays may be strided views of the records they were parsed from)."""
    sizes = np.fromiter((f.size for f in frames), dtype=np.int64, count=len(frames))
    offsets = np.zeros(len(frames) + 1, dtype=np.int32)
    np.cumsum(sizes, out=offsets[1:])
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    for start, f in zip(offsets[:-1].tolist(), frames):
        data[start : start + f.size].reshape(f.shape)[...] = f
    return pa.Array.from_buffers(pa.binary(), len(frames), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def check_video(video: Video, num_classes: int, where: str) -> None:
    if not video.id:
        raise DataError(f"{where}: field 'id' is empty")
    if video.rgb.ndim != 2 or video.rgb.shape[1] != RGB_DIM:
        raise DataError(f"{where}: field 'rgb' must be (frames, {RGB_DIM}) bytes, got {video.rgb.shape}")
    if video.audio.ndim != 2 or video.audio.shape[1] != AUDIO_DIM:
        raise DataError(f"{where}: field 'audio' must be (frames, {AUDIO_DIM}) bytes, got {video.audio.shape}")
    if video.audio.shape[0] != video.rgb.shape[0]:
        raise DataError(
            f"{where}: {video.rgb.shape[0]} 'rgb' frames but {video.audio.shape[0]} 'audio' frames"
        )
    labels = np.asarray(video.labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(labels[(labels < 0) | (labels >= num_classes)][0])
        raise DataError(f"{where}: field 'labels' holds {bad}, outside [0, {num_classes})")


def encode_info(info: ShardInfo) -> bytes:
    return json.dumps(
        {"format_version": FORMAT_VERSION, "num_classes": info.num_classes, "source": info.source, **info.details},
        sort_keys=True,
    ).encode()


def write_shard(location: str, info: ShardInfo, videos: Iterable[Video]) -> int:
    """Stream `videos` into a shard, a row group at a time, atomically: readers see the whole file under
    its name or nothing (a failure, even a DataError half-way through the input, leaves no shard).
    Returns the number of videos written."""
    schema = SCHEMA.with_metadata({METADATA_KEY: encode_info(info)})
    written = 0

    def write(fs, path):
        nonlocal written
        with pq.ParquetWriter(
            path,
            schema,
            filesystem=fs,
            use_dictionary=False,
            compression={"id": "zstd", "labels": "zstd", "num_frames": "zstd", "rgb": "none", "audio": "none"},
            write_statistics=["id", "num_frames"],
        ) as writer:
            for group in _batched(videos, ROWS_PER_GROUP):
                writer.write_table(videos_to_table(group, info))
                written += len(group)
            if written == 0:
                writer.write_table(videos_to_table([], info))

    write_atomically(location, write)
    return written


def _batched(items: Iterable[Video], size: int) -> Iterator[list[Video]]:
    group: list[Video] = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def read_metadata(location: str) -> pq.FileMetaData:
    """A shard's Parquet footer; a file that has none (cut short, or no Parquet) is a DataError naming it."""
    fs, path = resolve(location)
    try:
        return pq.read_metadata(path, filesystem=fs)
    except (OSError, pa.ArrowInvalid) as error:
        raise DataError(f"{location}: not a readable Parquet file: {error}") from None


def read_info(location: str, metadata: pq.FileMetaData | None = None) -> ShardInfo:
    """The shard's data-set information, checking that it is a shard of this format."""
    if metadata is None:
        metadata = read_metadata(location)
    schema = metadata.schema.to_arrow_schema()
    for field in SCHEMA:
        if field.name not in schema.names or not schema.field(field.name).type.equals(field.type):
            found = schema.field(field.name).type if field.name in schema.names else "missing"
            raise DataError(f"{location}: column {field.name!r} must be {field.type}, found {found}")
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise DataError(f"{location}: no {METADATA_KEY.decode()!r} metadata; not a video shard")
    try:
        details = json.loads(raw)
        version = details.pop("format_version")
        num_classes = int(details.pop("num_classes"))
        source = str(details.pop("source"))
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"{location}: malformed {METADATA_KEY.decode()!r} metadata: {error}") from None
    if version != FORMAT_VERSION:
        raise DataError(f"{location}: shard format version {version}, this code reads {FORMAT_VERSION}")
    return ShardInfo(num_classes=num_classes, source=source, details=details)
