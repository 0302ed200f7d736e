import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from workloads.data.convert import convert_file
from workloads.data.convert import main as convert_main
from workloads.data.format import read_info
from workloads.data.tfrecord import RecordError, iter_records, masked_crc32c
from youtube8m_records import random_videos, video_record, write_tfrecord

HERE = os.path.dirname(__file__)


def run_convert(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), HERE]))
    return subprocess.run(
        [sys.executable, "-m", "workloads.data.convert", *args], capture_output=True, text=True, env=env, timeout=120
    )


def read_shard(path):
    return pq.read_table(path).to_pylist()


def test_masked_crc_matches_tensorflow_known_value():
    # TensorFlow's crc32c_test: Mask/Unmask are inverse and masking changes the value; known CRC-32C of
    # 32 zero bytes is 0x8a9136aa (RFC 3720 test vector).
    import google_crc32c

    assert google_crc32c.value(bytes(32)) == 0x8A9136AA
    crc = 0x8A9136AA
    assert masked_crc32c(bytes(32)) == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_the_strided_frame_path_writes_the_same_shard_as_the_per_frame_path(tmp_path, monkeypatch):
    """Frames are read as one checked strided view of each record; the per-frame protobuf walk, which names
    any bad frame, stays as the fallback. Both give the same shard, byte for byte, as the values'
    Arrow arrays built from Python bytes would."""
    from workloads.data import format as shard_format
    from workloads.data import tfrecord

    videos = random_videos(140, seed=5)  # more than one row group
    src = tmp_path / "train0002.tfrecord"
    write_tfrecord(src, videos)
    strided = tfrecord._fixed_width_frames
    read_strided = []
    monkeypatch.setattr(tfrecord, "_fixed_width_frames",
                        lambda *args: read_strided.append(strided(*args)) or read_strided[-1])
    convert_file(str(src), str(tmp_path / "fast" / "train0002.parquet"), 3862)  # in this process: patched
    assert len(read_strided) == 280 and all(frames is not None for frames in read_strided)  # rgb and audio of each
    monkeypatch.setattr(tfrecord, "_fixed_width_frames", lambda *args: None)
    convert_file(str(src), str(tmp_path / "slow" / "train0002.parquet"), 3862)
    fast, slow = (tmp_path / name / "train0002.parquet" for name in ("fast", "slow"))
    assert fast.read_bytes() == slow.read_bytes()
    frames = [v[2] for v in videos[:5]]
    assert shard_format._binary(frames).equals(pa.array([f.tobytes() for f in frames], pa.binary()))


def _field(number: int, body: bytes) -> bytes:
    """A length-delimited protobuf field."""
    from workloads.data.tfrecord import _encode_varint

    return _encode_varint(number << 3 | 2) + _encode_varint(len(body)) + body


def _with_lists(record: bytes, *entries: bytes, before: bytes = b"", tail: bytes = b"") -> bytes:
    """`record` (a SequenceExample) with more FeatureLists map entries after its own (and `before` them),
    then `tail`."""
    from workloads.data.tfrecord import _length_delimited

    fields = {number: record[start:end] for number, start, end in _length_delimited(record, 0, len(record))}
    return _field(1, fields[1]) + _field(2, before + fields[2] + b"".join(entries)) + tail


@pytest.mark.parametrize("case", ["third list corrupt", "third list fine", "replaced rgb corrupt",
                                  "keyless value corrupt", "unknown field cut short", "unknown varint field"])
def test_the_strided_path_accepts_exactly_what_protobuf_accepts(case):
    """The strided path reads the frames without protobuf; whatever else the record holds protobuf must
    parse as it would parse the whole record (a third feature list of corrupt bytes converted with exit 0)."""
    from workloads.data.tfrecord import SequenceExample, parse_video

    video_id, labels, rgb, audio = random_videos(1, seed=3)[0]
    record = video_record(video_id, labels, rgb, audio)
    corrupt = b"\x0a\xff\x01"  # a field whose length runs past the message
    fine = _field(1, _field(1, _field(1, b"x")))  # FeatureList.feature -> Feature.bytes_list -> value "x"
    payload = {
        "third list corrupt": _with_lists(record, _field(1, _field(1, b"extra") + _field(2, corrupt))),
        "third list fine": _with_lists(record, _field(1, _field(1, b"extra") + _field(2, fine))),
        # an 'rgb' entry the record's own replaces, as protobuf's map parsing does: parsed all the same
        "replaced rgb corrupt": _with_lists(record, before=_field(1, _field(1, b"rgb") + _field(2, corrupt))),
        "keyless value corrupt": _with_lists(record, _field(1, _field(2, corrupt))),
        "unknown field cut short": _with_lists(record, tail=b"\x19\x00\x01"),  # field 3, fixed64, 2 of 8 bytes
        "unknown varint field": _with_lists(record, tail=b"\x18\x96\x01"),  # field 3, varint 150: fine
    }[case]
    try:
        SequenceExample().ParseFromString(payload)
        protobuf_accepts = True
    except Exception:
        protobuf_accepts = False
    if protobuf_accepts:
        assert parse_video(payload, "f.tfrecord", 0, 0, 3862).id == video_id
    else:
        with pytest.raises(RecordError, match="f.tfrecord: record 0 at byte 0: not a tf.train.SequenceExample"):
            parse_video(payload, "f.tfrecord", 0, 0, 3862)
    assert protobuf_accepts == (case in ("third list fine", "unknown varint field"))


@pytest.mark.parametrize("id_key", ["id", "video_id"])
def test_converts_both_id_keys_exactly(tmp_path, id_key):
    videos = random_videos(9, seed=1)
    src = tmp_path / "train0001.tfrecord"
    write_tfrecord(src, videos, id_key=id_key)
    assert convert_main(["--out", str(tmp_path / "out"), str(src), "--workers", "1"]) == 0
    shard = tmp_path / "out" / "train0001.parquet"
    rows = read_shard(shard)
    assert [r["id"] for r in rows] == [v[0] for v in videos]
    for row, (vid, labels, rgb, audio) in zip(rows, videos):
        assert row["labels"] == labels
        assert row["num_frames"] == rgb.shape[0]
        assert np.array_equal(np.frombuffer(row["rgb"], np.uint8).reshape(-1, 1024), rgb)
        assert np.array_equal(np.frombuffer(row["audio"], np.uint8).reshape(-1, 128), audio)
    info = read_info(str(shard))
    assert info.num_classes == 3862 and info.source == "youtube8m-tfrecord"
    # Frame columns are raw bytes without dictionary encoding or compression: np.frombuffer speed.
    column_meta = pq.ParquetFile(shard).metadata.row_group(0)
    for i in range(column_meta.num_columns):
        column = column_meta.column(i)
        if column.path_in_schema in ("rgb", "audio"):
            assert column.compression == "UNCOMPRESSED"
            assert "RLE_DICTIONARY" not in column.encodings and "PLAIN_DICTIONARY" not in column.encodings


def test_converts_many_files_in_parallel_and_folders(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    expected = {}
    for f in range(3):
        videos = random_videos(5, seed=10 + f, prefix=f"f{f}-")
        write_tfrecord(src / f"validate{f:04d}.tfrecord", videos)
        expected[f"validate{f:04d}.parquet"] = [v[0] for v in videos]
    (src / "README.txt").write_text("not a record file")
    result = run_convert("--out", str(tmp_path / "out"), str(src), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "converted 3 of 3 files" in result.stdout and "15 videos" in result.stdout and "MB/s" in result.stdout
    assert sorted(os.listdir(tmp_path / "out")) == sorted(expected)
    for name, ids in expected.items():
        assert [r["id"] for r in read_shard(tmp_path / "out" / name)] == ids


def _corrupt(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1 :]


def _record_offsets(data: bytes) -> list[int]:
    import io

    return [offset for _, offset, _ in iter_records(io.BytesIO(data), "x")]


@pytest.mark.parametrize(
    "damage, problem",
    [
        ("payload", "payload checksum mismatch"),
        ("length", "length checksum mismatch"),
        ("truncate-payload", "truncated payload"),
        ("truncate-header", "truncated header"),
    ],
)
def test_corrupt_or_truncated_file_fails_cleanly(tmp_path, damage, problem):
    good = random_videos(4, seed=2, prefix="good")
    write_tfrecord(tmp_path / "good.tfrecord", good)
    data = write_tfrecord(tmp_path / "bad.tfrecord", random_videos(5, seed=3))
    offsets = _record_offsets(data)
    third = offsets[2]
    if damage == "payload":
        data = _corrupt(data, third + 12 + 50)
    elif damage == "length":
        data = _corrupt(data, third + 1)
    elif damage == "truncate-payload":
        data = data[: third + 12 + 100]
    else:
        data = data[: third + 5]
    (tmp_path / "bad.tfrecord").write_bytes(data)
    out = tmp_path / "out"
    result = run_convert("--out", str(out), str(tmp_path / "good.tfrecord"), str(tmp_path / "bad.tfrecord"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:") and "bad.tfrecord" in line]
    assert len(error_lines) == 1, result.stderr
    assert f"record 2 at byte {third}" in error_lines[0] and problem in error_lines[0]
    # The good file converted; nothing at all is left of the bad one, not even a temporary file.
    assert os.listdir(out) == ["good.parquet"]
    assert [r["id"] for r in read_shard(out / "good.parquet")] == [v[0] for v in good]


def test_bad_content_names_record_and_field(tmp_path):
    vid, labels, rgb, audio = random_videos(1, seed=4)[0]
    short_frame = video_record(vid, labels, rgb, audio)
    bad_rgb = video_record("short", [1], np.zeros((3, 1000), np.uint8), np.zeros((3, 128), np.uint8))
    from youtube8m_records import tfrecord

    (tmp_path / "a.tfrecord").write_bytes(tfrecord([short_frame, bad_rgb]))
    result = run_convert("--out", str(tmp_path / "out"), str(tmp_path / "a.tfrecord"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "record 1 at byte" in result.stderr and "'rgb' frame 0 must be 1024 bytes" in result.stderr
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_labels_outside_vocabulary_are_rejected(tmp_path):
    write_tfrecord(tmp_path / "a.tfrecord", [("x", [4000], np.zeros((2, 1024), np.uint8), np.zeros((2, 128), np.uint8))])
    result = run_convert("--out", str(tmp_path / "out"), str(tmp_path / "a.tfrecord"))
    assert result.returncode == 1 and "record 0 at byte 0: video 'x': field 'labels' holds 4000, outside [0, 3862)" in result.stderr
    result = run_convert("--out", str(tmp_path / "out"), "--num-classes", "4716", str(tmp_path / "a.tfrecord"))
    assert result.returncode == 0, result.stderr


def test_missing_source_is_a_usage_error(tmp_path):
    result = run_convert("--out", str(tmp_path / "out"), str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "no such file or folder" in result.stderr and "Traceback" not in result.stderr


def test_an_empty_file_fails_and_a_file_named_twice_converts_once(tmp_path):
    videos = random_videos(3, seed=5)
    write_tfrecord(tmp_path / "train0000.tfrecord", videos)
    (tmp_path / "train0001.tfrecord").write_bytes(b"")  # a download that failed
    out = tmp_path / "out"
    relative = os.path.relpath(tmp_path / "train0000.tfrecord")  # the same file again, by another path
    result = run_convert("--out", str(out), str(tmp_path), str(tmp_path / "train0000.tfrecord"), relative)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "train0001.tfrecord: empty file: no records" in result.stderr
    assert "converted 1 of 2 files" in result.stdout  # the folder and the file overlap: converted once
    assert os.listdir(out) == ["train0000.parquet"]


def test_an_out_that_is_a_file_is_refused_before_anything_starts(tmp_path):
    write_tfrecord(tmp_path / "train0000.tfrecord", random_videos(2, seed=1))
    (tmp_path / "out").write_text("kept")
    on_ray = subprocess.run([sys.executable, "-m", "orchestrator.convert", str(tmp_path / "train0000.tfrecord"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                            cwd=os.path.dirname(HERE))  # before Ray starts (it printed as it started)
    for result in (run_convert("--out", str(tmp_path / "out"), str(tmp_path / "train0000.tfrecord")), on_ray):
        assert result.returncode == 2
        assert result.stderr == f"error: --out {tmp_path / 'out'}: a file, not a folder for the shards\n"
    assert (tmp_path / "out").read_text() == "kept"


FILES = 40


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_a_stopped_conversion_stops_its_workers_and_leaves_no_half_written_shard(tmp_path, stop):
    """Ctrl-C (SIGINT to the whole process group) or SIGTERM (to the converter alone, as a batch scheduler
    sends it): exit 130 in one line, the workers gone with it, the files left unconverted, nothing hidden."""
    src = tmp_path / "src"
    src.mkdir()
    for f in range(FILES):
        write_tfrecord(src / f"train{f:04d}.tfrecord", random_videos(30, seed=f, prefix=f"f{f}-"))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), HERE]))
    # As a shell's foreground job: Ctrl-C not ignored. A child inherits an ignored SIGINT (POSIX), and a test
    # run whose process ignored it (CI's fresh clones on 2026-12-07) left the converter deaf to it: exit 0.
    converting = subprocess.Popen([sys.executable, "-m", "workloads.data.convert", "--out", str(out), str(src),
                                   "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env, start_new_session=True,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and any(not p.startswith(".") for p in os.listdir(out))):
        time.sleep(0.02)
    if stop == "ctrl-c":
        os.killpg(converting.pid, signal.SIGINT)
    else:
        converting.send_signal(signal.SIGTERM)
    _, err = converting.communicate(timeout=60)
    assert converting.returncode == 130, err
    assert err.startswith("interrupted: ") and "Traceback" not in err and "no shard was written for the others" in err
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _group_alive(converting.pid):
        time.sleep(0.05)
    assert not _group_alive(converting.pid)  # no worker converts on
    shards = os.listdir(out)
    assert 1 <= len(shards) < FILES and not [name for name in shards if name.startswith(".")], shards
    for name in shards:
        assert read_info(str(out / name)).num_classes == 3862  # each one whole


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False
