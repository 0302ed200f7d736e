import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from workloads.data.format import (
    DEQUANTIZE_BIAS,
    DEQUANTIZE_SCALE,
    SCHEMA,
    ShardInfo,
    Video,
    dequantize,
    quantize,
    videos_to_table,
    write_shard,
)
from workloads.data.batch import FrameSelection, dequantize_
from workloads.data.reader import SHUFFLE_BLOCK, Unit, VideoShards, epoch_order, shuffle_blocks, video_loader
from workloads.errors import DataError

NUM_CLASSES = 17


def make_videos(count, seed=0, lengths=(1, 80)):
    rng = np.random.default_rng(seed)
    videos = []
    for i in range(count):
        n = int(rng.integers(*lengths))
        labels = np.sort(rng.choice(NUM_CLASSES, size=int(rng.integers(0, 4)), replace=False)).astype(np.int32)
        videos.append(
            Video(
                id=f"vid{i:04d}",
                labels=labels,
                rgb=rng.integers(0, 256, (n, 1024), dtype=np.uint8),
                audio=rng.integers(0, 256, (n, 128), dtype=np.uint8),
            )
        )
    return videos


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    videos = make_videos(300)
    info = ShardInfo(num_classes=NUM_CLASSES, source="test", details={})
    write_shard(str(root / "a.parquet"), info, videos[:200])  # 2 row groups (128 + 72)
    write_shard(str(root / "b.parquet"), info, videos[200:])
    return str(root), {v.id: v for v in videos}


def expected_frames(video, picks):
    full = np.concatenate([video.rgb, video.audio], axis=1)[picks]
    return dequantize(full)


def test_quantisation_matches_youtube8m():
    assert DEQUANTIZE_SCALE == pytest.approx(4 / 255) and DEQUANTIZE_BIAS == pytest.approx(4 / 512 - 2)
    assert dequantize(np.array([0, 255], np.uint8)).tolist() == pytest.approx([4 / 512 - 2, 4 + 4 / 512 - 2])
    values = np.arange(256, dtype=np.uint8)
    assert np.array_equal(quantize(dequantize(values)), values)


@pytest.mark.parametrize(
    "selection",
    [None, FrameSelection("uniform", k=10), FrameSelection("uniform", j=7), FrameSelection("first", k=5),
     FrameSelection("middle", k=8), FrameSelection("last", k=3), FrameSelection("first_middle_last", k=9),
     FrameSelection("random", k=6)],
)
def test_batches_hold_exactly_the_selected_frames(shards, selection):
    root, videos = shards
    seen = []
    for batch in VideoShards(root, batch_size=32, selection=selection, seed=5):
        b, width, dim = batch.frames.shape
        assert dim == 1152 and batch.frames.dtype == torch.float32
        assert batch.mask.shape == (b, width) and batch.positions.shape == (b, width)
        assert batch.labels.shape == (b, NUM_CLASSES)
        if selection is not None and selection.k:
            assert width == selection.k
        for row, vid in enumerate(batch.ids):
            video = videos[vid]
            count = int(batch.mask[row].sum())
            picks = batch.positions[row, :count].numpy()
            assert bool(batch.mask[row, :count].all()) and not bool(batch.mask[row, count:].any())
            assert (batch.positions[row, count:] == -1).all()
            if selection is None:
                assert picks.tolist() == list(range(video.num_frames))
            elif selection.name != "random":
                assert np.array_equal(picks, selection.indices(video.num_frames))
            else:
                assert count == min(6, video.num_frames) and np.all(np.diff(picks) > 0)
            assert np.allclose(batch.frames[row, :count].numpy(), expected_frames(video, picks), atol=1e-6)
            assert (batch.frames[row, count:] == 0).all()
            hot = np.flatnonzero(batch.labels[row].numpy())
            assert hot.tolist() == video.labels.tolist()
            assert int(batch.num_frames[row]) == video.num_frames
        seen += batch.ids
    assert sorted(seen) == sorted(videos)


def test_batches_span_row_groups_and_drop_last(shards):
    root, videos = shards
    sizes = [len(b.ids) for b in VideoShards(root, batch_size=64)]
    assert sizes == [64, 64, 64, 64, 44]
    assert [len(b.ids) for b in VideoShards(root, batch_size=64, drop_last=True)] == [64] * 4


def test_pad_to_and_uint8_frames(shards):
    root, videos = shards
    batch = next(iter(VideoShards(root, batch_size=4, pad_to=300, dequantize=False)))
    assert batch.frames.shape == (4, 300, 1152) and batch.frames.dtype == torch.uint8
    video = videos[batch.ids[0]]
    assert np.array_equal(batch.frames[0, : video.num_frames, :1024].numpy(), video.rgb)
    floats = dequantize_(batch.frames, batch.mask)
    assert np.allclose(floats[0, : video.num_frames].numpy(), expected_frames(video, np.arange(video.num_frames)))
    assert (floats[0, video.num_frames :] == 0).all()


def test_shuffling_is_seeded_and_changes_with_the_epoch(shards):
    root, _ = shards
    order = lambda ds: [i for b in ds for i in b.ids]
    plain = order(VideoShards(root, batch_size=50))
    a = VideoShards(root, batch_size=50, shuffle=True, seed=1)
    first = order(a)
    assert first != plain and sorted(first) == sorted(plain)
    assert order(VideoShards(root, batch_size=50, shuffle=True, seed=1)) == first
    a.set_epoch(1)
    assert order(a) != first


def test_random_frames_are_reproducible_per_epoch(shards):
    root, _ = shards
    ds = VideoShards(root, batch_size=300, selection=FrameSelection("random", k=6), seed=2)
    first = next(iter(ds)).positions
    assert torch.equal(next(iter(ds)).positions, first)
    ds.set_epoch(1)
    assert not torch.equal(next(iter(ds)).positions, first)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ranks_and_workers_read_every_video_once(shards, world_size):
    root, videos = shards
    seen = []
    for rank in range(world_size):
        ds = VideoShards(root, batch_size=16, shuffle=True, seed=9, rank=rank, world_size=world_size)
        for batch in video_loader(ds, num_workers=2):
            seen += batch.ids
    assert sorted(seen) == sorted(videos)


def test_reads_a_file_uri_and_a_list(shards):
    root, videos = shards
    uri = "file://" + root
    assert sum(len(b.ids) for b in VideoShards(uri, batch_size=100)) == 300
    assert sum(len(b.ids) for b in VideoShards([root + "/b.parquet"], batch_size=100)) == 100


def test_videos_shorter_than_k_are_padded_and_masked(tmp_path):
    info = ShardInfo(num_classes=NUM_CLASSES, source="test", details={})
    videos = make_videos(5, seed=3, lengths=(1, 4))
    write_shard(str(tmp_path / "s.parquet"), info, videos)
    batch = next(iter(VideoShards(str(tmp_path), batch_size=5, selection=FrameSelection("uniform", k=30))))
    assert batch.frames.shape[1] == 30
    assert batch.mask.sum(1).tolist() == [v.num_frames for v in videos]


def test_a_failed_write_leaves_no_shard(tmp_path):
    info = ShardInfo(num_classes=NUM_CLASSES, source="test", details={})

    def videos():
        yield from make_videos(130)
        raise DataError("the source broke half way")

    with pytest.raises(DataError, match="half way"):
        write_shard(str(tmp_path / "s.parquet"), info, videos())
    assert list(tmp_path.iterdir()) == []


def test_bad_shards_are_named(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        VideoShards(str(tmp_path / "missing"), batch_size=4)
    with pytest.raises(DataError, match="no .parquet shards"):
        VideoShards(str(tmp_path), batch_size=4)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="junk.parquet: not a readable Parquet file"):
        VideoShards(str(tmp_path), batch_size=4)
    (tmp_path / "junk.parquet").unlink()
    pq.write_table(pa.table({"id": ["x"]}), tmp_path / "other.parquet")
    with pytest.raises(DataError, match="other.parquet: column 'labels' must be list"):
        VideoShards(str(tmp_path), batch_size=4)
    (tmp_path / "other.parquet").unlink()

    # A row whose frame bytes disagree with num_frames: the error names shard, row group, video and field.
    info = ShardInfo(num_classes=NUM_CLASSES, source="test", details={})
    table = videos_to_table(make_videos(3), info)
    frames = table.column("num_frames").to_pylist()
    frames[1] += 1
    broken = table.set_column(2, SCHEMA.field("num_frames"), pa.array(frames, pa.int32()))
    pq.write_table(broken, tmp_path / "broken.parquet")
    with pytest.raises(DataError, match=r"broken.parquet: row group 0, video 'vid0001': field 'rgb' holds"):
        list(VideoShards(str(tmp_path), batch_size=4))


def test_labels_beyond_the_vocabulary_are_named(tmp_path):
    info = ShardInfo(num_classes=NUM_CLASSES, source="test", details={})
    write_shard(str(tmp_path / "s.parquet"), info, make_videos(3, seed=1))
    with pytest.raises(DataError, match=r"s.parquet: row group 0, video 'vid000\d': field 'labels' holds \d+, outside \[0, 2\)"):
        list(VideoShards(str(tmp_path), batch_size=4, num_classes=2))


def test_bad_selection_is_rejected():
    with pytest.raises(DataError, match="unknown frame selector"):
        FrameSelection("sometimes", k=3)
    with pytest.raises(DataError, match="needs k or j"):
        FrameSelection("uniform")
    with pytest.raises(DataError, match="only with 'uniform'"):
        FrameSelection("first", j=3)


def test_fraction_keeps_a_fixed_nested_subset(shards):
    root, videos = shards
    ids = lambda fraction: {i for b in VideoShards(root, batch_size=64, fraction=fraction) for i in b.ids}
    quarter, half = ids(0.25), ids(0.5)
    assert quarter < half < set(videos)
    assert 0.15 < len(quarter) / len(videos) < 0.35 and 0.4 < len(half) / len(videos) < 0.6
    shuffled = {i for b in VideoShards(root, batch_size=7, fraction=0.25, shuffle=True, seed=4) for i in b.ids}
    assert shuffled == quarter
    with pytest.raises(DataError, match="fraction"):
        VideoShards(root, batch_size=4, fraction=0)


def test_a_holdout_splits_the_shards_into_training_and_validation_videos(shards):
    root, videos = shards
    ids = lambda **subset: [i for b in VideoShards(root, batch_size=64, **subset) for i in b.ids]
    held_out, kept = ids(holdout=0.2, held_out=True), ids(holdout=0.2)
    assert set(held_out).isdisjoint(kept) and sorted(held_out + kept) == sorted(videos)
    assert 40 <= len(held_out) <= 80  # a fifth of 300, by id hash
    # The same videos whatever the order or the sharing out among replicas.
    shared = ids(holdout=0.2, held_out=True, rank=0, world_size=2) + ids(holdout=0.2, held_out=True, rank=1, world_size=2)
    assert sorted(shared) == sorted(held_out) and set(ids(holdout=0.2, held_out=True, shuffle=True, seed=3)) == set(held_out)
    # A fraction is taken of what the holdout leaves; it never reaches into the held-out videos.
    quarter = ids(holdout=0.2, fraction=0.25)
    assert set(quarter) <= set(kept) and set(quarter) == set(kept) & set(ids(fraction=0.25))
    assert set(ids(holdout=0.2, held_out=True, fraction=0.25)) == set(held_out)
    with pytest.raises(DataError, match="holdout"):
        VideoShards(root, batch_size=4, holdout=1.0)
    with pytest.raises(DataError, match="holdout"):
        VideoShards(root, batch_size=4, held_out=True)


def test_shuffled_units_come_in_blocks_of_a_shard():
    # Three shards of 10, 6 and 1 row groups: blocks [0-3], [4-7], [8-9] / [0-3], [4-5] / [0].
    units = [Unit(f"s{shard}", g, 128) for shard, groups in enumerate((10, 6, 1)) for g in range(groups)]
    blocks = shuffle_blocks(units)
    assert [len(b) for b in blocks] == [SHUFFLE_BLOCK, SHUFFLE_BLOCK, 2, SHUFFLE_BLOCK, 2, 1]
    order = epoch_order(units, shuffle=True, seed=3, epoch=0)
    assert sorted(order) == list(range(len(units)))
    runs, at = [], 0
    while at < len(order):  # consecutive positions belong to one block until it is exhausted
        block = next(b for b in blocks if order[at] in b)
        assert sorted(order[at : at + len(block)]) == block
        runs.append(block)
        at += len(block)
    assert runs != blocks  # the blocks themselves are shuffled ...
    assert epoch_order(units, shuffle=True, seed=3, epoch=1) != order  # ... anew each epoch
    assert any(order[i] > order[i + 1] for i in range(len(order) - 1) if units[order[i]].shard == units[order[i + 1]].shard)
    # Whole blocks dealt to 2 slots; with more slots than half the blocks, single units instead.
    halves = [epoch_order(units, shuffle=True, seed=3, epoch=0, slot=s, slots=2) for s in range(2)]
    assert sorted(halves[0] + halves[1]) == list(range(len(units)))
    assert all(any(set(b) <= set(h) for h in halves) for b in blocks)
    many = [epoch_order(units, shuffle=True, seed=3, epoch=0, slot=s, slots=4) for s in range(4)]
    assert sorted(sum(many, [])) == list(range(len(units))) and max(map(len, many)) - min(map(len, many)) <= 1
    assert epoch_order(units, shuffle=False, seed=3, epoch=0, slot=1, slots=2) == list(range(1, len(units), 2))
