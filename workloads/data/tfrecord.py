"""YouTube-8M frame-level TFRecords without TensorFlow.

A TFRecord file is a sequence of records, each framed as

    uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes | payload | uint32 masked CRC-32C of payload

and every checksum is verified. Each payload is a `tf.train.SequenceExample`: context features `id` (bytes;
`video_id` in the 2017 release) and `labels` (int64 list), feature lists `rgb` and `audio` holding one byte
string of 1024 / 128 uint8 values per second of video. The message classes are built at import time from
TensorFlow's `example.proto` / `feature.proto` field numbers, and protobuf's C parser does the decoding.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Iterator

import google_crc32c
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from workloads.data.format import AUDIO_DIM, RGB_DIM, Video
from workloads.errors import DataError

ID_KEYS = ("id", "video_id")
HEADER = struct.Struct("<QI")
FOOTER = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


class RecordError(DataError):
    """A TFRecord that is truncated, fails its checksum or is not a YouTube-8M video."""

    def __init__(self, file: str, index: int, offset: int, problem: str):
        super().__init__(f"{file}: record {index} at byte {offset}: {problem}")
        self.file, self.index, self.offset, self.problem = file, index, offset, problem

    def __reduce__(self):
        # Converter processes send errors back pickled; rebuild from the fields, not the message.
        return RecordError, (self.file, self.index, self.offset, self.problem)


def iter_records(stream: BinaryIO, name: str) -> Iterator[tuple[int, int, bytes]]:
    """(index, byte offset, payload) of every record, checksums verified."""
    index, offset = 0, 0
    while True:
        header = stream.read(HEADER.size)
        if not header:
            return
        if len(header) < HEADER.size:
            raise RecordError(name, index, offset, f"truncated header ({len(header)} of {HEADER.size} bytes)")
        length, length_crc = HEADER.unpack(header)
        if masked_crc32c(header[:8]) != length_crc:
            raise RecordError(name, index, offset, "length checksum mismatch (corrupt record header)")
        payload = stream.read(length)
        if len(payload) < length:
            raise RecordError(name, index, offset, f"truncated payload ({len(payload)} of {length} bytes)")
        footer = stream.read(FOOTER.size)
        if len(footer) < FOOTER.size:
            raise RecordError(name, index, offset, "truncated payload checksum")
        if masked_crc32c(payload) != FOOTER.unpack(footer)[0]:
            raise RecordError(name, index, offset, "payload checksum mismatch (corrupt data)")
        yield index, offset, payload
        index += 1
        offset += HEADER.size + length + FOOTER.size


def frame_record(payload: bytes) -> bytes:
    """One TFRecord frame around `payload` (what TensorFlow's TFRecordWriter writes)."""
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked_crc32c(length)) + payload + struct.pack("<I", masked_crc32c(payload))


def _example_protos() -> tuple[type, type]:
    """tensorflow.SequenceExample and tensorflow.Example classes from the field numbers of TF's protos."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="fewer_frames_tf_example.proto", package="tensorflow")
    file.syntax = "proto3"

    def message(name, fields, nested=()):
        msg = file.message_type.add(name=name)
        for nested_name, key_type, value_type_name in nested:
            entry = msg.nested_type.add(name=nested_name)
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, type=key_type, label=F.LABEL_OPTIONAL)
            entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                            type_name=value_type_name)
        for field_name, number, field_type, label, type_name, oneof in fields:
            field = msg.field.add(name=field_name, number=number, type=field_type, label=label)
            if type_name:
                field.type_name = type_name
            if oneof is not None:
                field.oneof_index = oneof
        return msg

    message("BytesList", [("value", 1, F.TYPE_BYTES, F.LABEL_REPEATED, None, None)])
    message("FloatList", [("value", 1, F.TYPE_FLOAT, F.LABEL_REPEATED, None, None)])
    message("Int64List", [("value", 1, F.TYPE_INT64, F.LABEL_REPEATED, None, None)])
    feature = message(
        "Feature",
        [
            ("bytes_list", 1, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".tensorflow.BytesList", 0),
            ("float_list", 2, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".tensorflow.FloatList", 0),
            ("int64_list", 3, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".tensorflow.Int64List", 0),
        ],
    )
    feature.oneof_decl.add(name="kind")
    message(
        "Features",
        [("feature", 1, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".tensorflow.Features.FeatureEntry", None)],
        nested=[("FeatureEntry", F.TYPE_STRING, ".tensorflow.Feature")],
    )
    message("FeatureList", [("feature", 1, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".tensorflow.Feature", None)])
    message(
        "FeatureLists",
        [("feature_list", 1, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".tensorflow.FeatureLists.FeatureListEntry", None)],
        nested=[("FeatureListEntry", F.TYPE_STRING, ".tensorflow.FeatureList")],
    )
    message("Example", [("features", 1, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".tensorflow.Features", None)])
    message(
        "SequenceExample",
        [
            ("context", 1, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".tensorflow.Features", None),
            ("feature_lists", 2, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".tensorflow.FeatureLists", None),
        ],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.SequenceExample")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example")),
    )


SequenceExample, Example = _example_protos()
Features = message_factory.GetMessageClass(SequenceExample.DESCRIPTOR.fields_by_name["context"].message_type)
FeatureList = message_factory.GetMessageClass(SequenceExample.DESCRIPTOR.fields_by_name["feature_lists"].message_type
                                              .fields_by_name["feature_list"].message_type.fields_by_name["value"]
                                              .message_type)


def parse_video(payload: bytes, name: str, index: int, offset: int, num_classes: int) -> Video:
    """A YouTube-8M frame-level SequenceExample as a `Video`; errors name the record and the field."""

    def fail(problem: str) -> RecordError:
        return RecordError(name, index, offset, problem)

    strided = _strided(payload)
    if strided is not None:  # the frames read as views of the payload; protobuf parses the context only
        context, frames = strided
    else:
        example = SequenceExample()
        try:
            example.ParseFromString(payload)
        except Exception as error:  # protobuf's DecodeError, whichever backend raises it
            raise fail(f"not a tf.train.SequenceExample ({error})") from None
        context, frames = example.context, None
    context = context.feature
    id_key = next((key for key in ID_KEYS if key in context), None)
    if id_key is None:
        raise fail("context has no 'id' (or 'video_id') feature")
    ids = context[id_key].bytes_list.value
    if len(ids) != 1:
        raise fail(f"context feature {id_key!r} must hold one byte string, holds {len(ids)}")
    try:
        video_id = ids[0].decode("utf-8")
    except UnicodeDecodeError:
        raise fail(f"context feature {id_key!r} is not UTF-8") from None
    if "labels" not in context:
        raise fail(f"video {video_id!r}: context has no 'labels' feature")
    labels = np.fromiter(context["labels"].int64_list.value, dtype=np.int64)
    outside = labels[(labels < 0) | (labels >= num_classes)]
    if outside.size:
        raise fail(f"video {video_id!r}: field 'labels' holds {outside[0]}, outside [0, {num_classes})")
    if frames is None:
        frames = _walked_frames(example.feature_lists.feature_list, video_id, fail)
    if frames["rgb"].shape[0] != frames["audio"].shape[0]:
        raise fail(
            f"video {video_id!r}: {frames['rgb'].shape[0]} 'rgb' frames but {frames['audio'].shape[0]} 'audio' frames"
        )
    return Video(id=video_id, labels=labels.astype(np.int32), rgb=frames["rgb"], audio=frames["audio"])


def _walked_frames(lists, video_id: str, fail) -> dict[str, np.ndarray]:
    """Each modality's frames from the parsed feature lists, step by step: the path that names a bad frame."""
    frames = {}
    for key, width in (("rgb", RGB_DIM), ("audio", AUDIO_DIM)):
        if key not in lists:
            raise fail(f"video {video_id!r}: no {key!r} feature list")
        values = []
        for second, feature in enumerate(lists[key].feature):
            data = feature.bytes_list.value
            if len(data) != 1 or len(data[0]) != width:
                got = f"{len(data[0])} bytes" if len(data) == 1 else f"{len(data)} byte strings"
                raise fail(f"video {video_id!r}: {key!r} frame {second} must be {width} bytes, got {got}")
            values.append(data[0])
        frames[key] = np.frombuffer(b"".join(values), dtype=np.uint8).reshape(len(values), width)
    return frames


def _strided(payload: bytes):
    """(the context's Features, {"rgb", "audio": (frames, width) views of the payload}) when the record is
    laid out as protobuf writers lay out a YouTube-8M video, else None (then it is parsed whole)."""
    spans = _spans(payload)
    if spans is None or not {"rgb", "audio"} <= spans[1].keys():
        return None
    # every FeatureList but the frames': protobuf parses them when it parses the record, so they must parse
    others = [*spans[2], *(span for key, span in spans[1].items() if key not in ("rgb", "audio"))]
    frames = {key: _fixed_width_frames(payload, *spans[1][key], width)
              for key, width in (("rgb", RGB_DIM), ("audio", AUDIO_DIM))}
    if any(f is None for f in frames.values()):
        return None
    context = Features()
    try:
        if spans[0] is not None:
            context.ParseFromString(payload[spans[0][0]:spans[0][1]])
        for start, end in others:
            FeatureList().ParseFromString(payload[start:end])
    except Exception:  # protobuf's DecodeError: the whole parse names it
        return None
    return context, frames


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _length_delimited(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each length-delimited field of the message in data[start:end]; other
    wire types are skipped. Raises IndexError or ValueError on bytes that are not a message."""
    position = start
    while position < end:
        key, position = _varint(data, position)
        wire = key & 7
        if wire == 2:
            length, position = _varint(data, position)
            if position + length > end:
                raise ValueError("field runs past its message")
            yield key >> 3, position, position + length
            position += length
        elif wire == 0:
            _, position = _varint(data, position)
        elif wire in (1, 5):
            position += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire}")
    if position != end:  # a field that ran past its message's end
        raise ValueError("field runs past its message")


def _spans(payload: bytes) -> tuple[tuple[int, int] | None, dict[str, tuple[int, int]], list[tuple[int, int]]] | None:
    """Where the context (once at most) and each feature list's FeatureList message lie in the payload,
    read from the wire format, and the FeatureLists no key names any more (an entry without a key, or one a
    later entry of its key replaced: protobuf parses them all the same); None when the bytes do not walk
    as such a SequenceExample."""
    try:
        context, lists, replaced = None, {}, []
        for number, start, end in _length_delimited(payload, 0, len(payload)):
            if number == 1:  # SequenceExample.context: a second one would be merged into the first
                if context is not None:
                    return None
                context = (start, end)
            elif number == 2:  # SequenceExample.feature_lists
                for entry_number, entry_start, entry_end in _length_delimited(payload, start, end):
                    if entry_number != 1:  # FeatureLists.feature_list, a map entry
                        continue
                    key = value = None
                    for field, field_start, field_end in _length_delimited(payload, entry_start, entry_end):
                        if field == 1:
                            key = payload[field_start:field_end].decode("utf-8")
                        elif field == 2:
                            value = (field_start, field_end)
                    if value is not None and (key is None or key in lists):
                        replaced.append(value if key is None else lists[key])
                    if key is not None and value is not None:
                        lists[key] = value  # a later entry of the same key wins, as in protobuf's map parsing
        return context, lists, replaced
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _frame_prefix(width: int) -> bytes:
    """The bytes before each frame's values in a FeatureList of one `width`-byte string per frame, as
    every protobuf writer lays it out: FeatureList.feature (1) -> Feature.bytes_list (1) -> BytesList.value (1)."""
    values = b"\x0a" + _encode_varint(width)
    bytes_list = b"\x0a" + _encode_varint(len(values) + width)
    return b"\x0a" + _encode_varint(len(bytes_list) + len(values) + width) + bytes_list + values


def _fixed_width_frames(payload: bytes, start: int, end: int, width: int) -> np.ndarray | None:
    """The (frames, width) uint8 values of a FeatureList whose every step is one `width`-byte string, read
    as one strided view of the payload with every step's prefix checked at once; None when the list is laid
    out any other way (the per-frame path then reads it and names what is wrong)."""
    prefix = _frame_prefix(width)
    stride = len(prefix) + width
    if (end - start) % stride:
        return None
    steps = np.frombuffer(payload, dtype=np.uint8, count=end - start, offset=start).reshape(-1, stride)
    if not (steps[:, : len(prefix)] == np.frombuffer(prefix, dtype=np.uint8)).all():
        return None
    return steps[:, len(prefix):]


def read_videos(stream: BinaryIO, name: str, num_classes: int) -> Iterator[Video]:
    """Every video of a frame-level TFRecord stream, in file order, labels checked against the vocabulary."""
    for index, offset, payload in iter_records(stream, name):
        yield parse_video(payload, name, index, offset, num_classes)
