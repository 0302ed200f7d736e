"""Writes YouTube-8M frame-level TFRecords byte for byte as TensorFlow does, for the converter's tests.

The protobuf wire format is encoded here by hand (not with the converter's own message classes), so a
wrong field number or wire type on either side shows up as a failing test.
"""

from __future__ import annotations

import struct

import google_crc32c
import numpy as np


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # negative int64 values are encoded as 10-byte two's complement
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def bytes_feature(*values: bytes) -> bytes:
    # Feature.bytes_list = 1 -> BytesList.value = 1 (repeated bytes)
    return _field(1, b"".join(_field(1, v) for v in values))


def int64_feature(*values: int) -> bytes:
    # Feature.int64_list = 3 -> Int64List.value = 1, packed as TensorFlow writes it
    packed = b"".join(_varint(v) for v in values)
    return _field(3, _field(1, packed))


def _map_entry(key: str, value: bytes) -> bytes:
    return _field(1, key.encode()) + _field(2, value)


def sequence_example(context: dict[str, bytes], feature_lists: dict[str, list[bytes]]) -> bytes:
    """context: name -> encoded Feature; feature_lists: name -> encoded Features of each step."""
    features = b"".join(_field(1, _map_entry(k, v)) for k, v in context.items())  # Features.feature = 1
    lists = b"".join(
        _field(1, _map_entry(k, b"".join(_field(1, step) for step in steps)))  # FeatureLists.feature_list = 1
        for k, steps in feature_lists.items()
    )
    return _field(1, features) + _field(2, lists)  # SequenceExample.context = 1, feature_lists = 2


def video_record(video_id: str, labels, rgb: np.ndarray, audio: np.ndarray, id_key: str = "id") -> bytes:
    return sequence_example(
        {id_key: bytes_feature(video_id.encode()), "labels": int64_feature(*[int(x) for x in labels])},
        {
            "rgb": [bytes_feature(frame.tobytes()) for frame in rgb],
            "audio": [bytes_feature(frame.tobytes()) for frame in audio],
        },
    )


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(payloads: list[bytes]) -> bytes:
    out = bytearray()
    for payload in payloads:
        length = struct.pack("<Q", len(payload))
        out += length + struct.pack("<I", _masked_crc(length)) + payload + struct.pack("<I", _masked_crc(payload))
    return bytes(out)


def random_videos(count: int, seed: int = 0, num_classes: int = 3862, prefix: str = "v"):
    """(id, labels, rgb uint8 (n, 1024), audio uint8 (n, 128)) tuples with varied lengths."""
    rng = np.random.default_rng(seed)
    videos = []
    for i in range(count):
        n = int(rng.integers(1, 40))
        labels = sorted(rng.choice(num_classes, size=int(rng.integers(0, 5)), replace=False).tolist())
        videos.append(
            (
                f"{prefix}{i:03d}",
                labels,
                rng.integers(0, 256, size=(n, 1024), dtype=np.uint8),
                rng.integers(0, 256, size=(n, 128), dtype=np.uint8),
            )
        )
    return videos


def write_tfrecord(path, videos, id_key: str = "id") -> bytes:
    data = tfrecord([video_record(v, labels, rgb, audio, id_key) for v, labels, rgb, audio in videos])
    with open(path, "wb") as handle:
        handle.write(data)
    return data
