import json
import pickle

import numpy as np
import pytest
import torch

from orchestrator.cache.reader import ParquetTeacherCache
from orchestrator.cache.files import (MANIFEST, ROWS_PER_GROUP, DamagedCache, MissingCache, read_manifest, set_aside,
                                      write_teacher_cache)
from orchestrator.errors import OrchestratorError
from workloads.data.reader import SHUFFLE_BLOCK
from workloads.teacher_outputs import TeacherRecord


def records(prefix, count, dim=6, classes=4, steps=None, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(count):
        yield TeacherRecord(
            id=f"{prefix}{i:05d}",
            representation=rng.random(dim, dtype=np.float32),
            probabilities=rng.random(classes, dtype=np.float32),
            intermediates=None if steps is None else rng.random((steps, dim), dtype=np.float32),
            positions=None if steps is None else np.arange(steps) * 10,
        )


def test_roundtrip_across_parts_and_row_groups(tmp_path):
    parts = [list(records("a", 300)), list(records("b", 5, seed=1)), []]
    manifest = write_teacher_cache(str(tmp_path), parts, {"w": torch.arange(3.0)}, {"teacher_id": "t"})
    assert manifest.videos == 305 and len(manifest.parts) == 3 and manifest.teacher_id == "t"
    cache = ParquetTeacherCache(str(tmp_path), cache_bytes=1)  # keeps only the last batch's row groups
    everything = {r.id: r for part in parts for r in part}
    wanted = ["a00299", "b00004", "a00000", "a00150", "b00000", "a00129"]
    targets = cache.targets(wanted, torch.device("cpu"))
    for row, video in enumerate(wanted):
        assert np.array_equal(targets.representation[row].numpy(), everything[video].representation)
        assert np.array_equal(targets.probabilities[row].numpy(), everything[video].probabilities)
    assert targets.intermediates is None
    cache.targets(["b00001"], torch.device("cpu"))
    assert list(cache.groups) == [(1, 0)] and cache.cached_bytes == cache.parts.group_bytes[1][0]
    assert torch.equal(cache.classifier_state()["w"], torch.arange(3.0))
    with pytest.raises(OrchestratorError, match="has no video 'zzz'"):
        cache.targets(["zzz"], torch.device("cpu"))


def test_intermediates_roundtrip(tmp_path):
    parts = [list(records("v", 10, steps=3))]
    write_teacher_cache(str(tmp_path), parts, {}, {})
    targets = ParquetTeacherCache(str(tmp_path)).targets(["v00007", "v00002"], torch.device("cpu"))
    assert targets.intermediates.shape == (2, 3, 6)
    assert np.array_equal(targets.intermediates[0].numpy(), parts[0][7].intermediates)


def test_a_cache_without_its_manifest_is_absent(tmp_path):
    def dying_writer():
        yield from records("a", ROWS_PER_GROUP + 3)
        raise KeyboardInterrupt  # the writer killed half-way through a part

    with pytest.raises(KeyboardInterrupt):
        write_teacher_cache(str(tmp_path), [list(records("z", 4)), dying_writer()], {}, {})
    assert read_manifest(str(tmp_path)) is None
    assert not (tmp_path / MANIFEST).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.parquet"]  # nothing half-written
    with pytest.raises(MissingCache, match="no complete teacher cache") as absent:
        ParquetTeacherCache(str(tmp_path))
    crossed = pickle.loads(pickle.dumps(absent.value))  # as it reaches the driver from a Ray task
    assert crossed.location == str(tmp_path) and str(crossed) == str(absent.value)
    # Rebuilt, it is complete; a lost part makes it damaged.
    write_teacher_cache(str(tmp_path), [list(records("a", 4))], {}, {})
    assert read_manifest(str(tmp_path)).videos == 4
    (tmp_path / "part-00000.parquet").unlink()
    with pytest.raises(DamagedCache, match="part-00000.parquet is missing"):
        read_manifest(str(tmp_path))


def test_manifest_is_plain_json(tmp_path):
    write_teacher_cache(str(tmp_path), [list(records("a", 2))], {}, {"teacher_id": "t-1"})
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["representation_dim"] == 6 and manifest["num_classes"] == 4


def test_row_groups_are_read_a_shuffling_block_at_a_time(tmp_path):
    parts = [list(records("a", (SHUFFLE_BLOCK + 2) * ROWS_PER_GROUP)), list(records("b", ROWS_PER_GROUP, seed=1))]
    write_teacher_cache(str(tmp_path), parts, {}, {})
    cache = ParquetTeacherCache(str(tmp_path))
    cache.prefetch(["a00000", "b00003"])
    # The first block of part 0 (SHUFFLE_BLOCK row groups) in one request, part 1's only group in another.
    assert sorted(cache.groups) == [(0, g) for g in range(SHUFFLE_BLOCK)] + [(1, 0)]
    assert len({id(cache.groups[(0, g)].run) for g in range(SHUFFLE_BLOCK)}) == 1
    assert cache.groups[(1, 0)].run is not cache.groups[(0, 0)].run
    last_block = [f"a{(SHUFFLE_BLOCK + 1) * ROWS_PER_GROUP + 5:05d}", "a00001"]
    targets = cache.targets(last_block, torch.device("cpu"))  # the second (short) block read; the first kept
    assert sorted(k for k in cache.groups if k[0] == 0) == [(0, g) for g in range(SHUFFLE_BLOCK + 2)]
    expected = np.stack([parts[0][(SHUFFLE_BLOCK + 1) * ROWS_PER_GROUP + 5].representation, parts[0][1].representation])
    assert np.array_equal(targets.representation.numpy(), expected)
    with pytest.raises(OrchestratorError, match="has no video 'nope'"):
        cache.prefetch(["nope"])


def test_a_failed_read_is_read_again_when_asked_again(tmp_path):
    write_teacher_cache(str(tmp_path), [list(records("a", 10))], {"w": torch.zeros(1)}, {})
    cache = ParquetTeacherCache(str(tmp_path))
    part = tmp_path / "part-00000.parquet"
    part.rename(tmp_path / "away")  # the store loses the object after the cache opened it
    with pytest.raises(OSError):
        cache.targets(["a00003"], torch.device("cpu"))
    assert not cache.groups and cache.cached_bytes == 0
    (tmp_path / "away").rename(part)
    targets = cache.targets(["a00003"], torch.device("cpu"))
    assert np.array_equal(targets.representation[0].numpy(), list(records("a", 10))[3].representation)


def cache_of(tmp_path, teacher="t-1", videos=300):
    parts = [list(records("a", videos)), list(records("b", 5, seed=1))]
    write_teacher_cache(str(tmp_path), parts, {"w": torch.ones(2)}, {"teacher_id": teacher})
    return {r.id: r for part in parts for r in part}


def test_a_part_cut_short_is_damage_the_manifest_names(tmp_path):
    cache_of(tmp_path)
    part = tmp_path / "part-00000.parquet"
    size = part.stat().st_size
    part.write_bytes(part.read_bytes()[: size // 2])
    with pytest.raises(DamagedCache, match=f"part-00000.parquet holds {size // 2} bytes, the manifest says {size}"):
        ParquetTeacherCache(str(tmp_path))
    assert set_aside(str(tmp_path)).startswith(f"{MANIFEST}.damaged-")
    assert read_manifest(str(tmp_path)) is None  # absent now: the next fit writes it again


def test_a_part_altered_in_place_fails_its_page_checksum_when_read(tmp_path):
    everything = cache_of(tmp_path)
    part = tmp_path / "part-00000.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 3] ^= 0xFF  # same size: only the page checksum can tell
    part.write_bytes(bytes(data))
    cache = ParquetTeacherCache(str(tmp_path))
    assert np.array_equal(cache.targets(["b00001"], torch.device("cpu")).representation[0].numpy(),
                          everything["b00001"].representation)  # the intact part still serves
    with pytest.raises(DamagedCache, match="part-00000.parquet, row groups 0-2: .*checksum"):
        cache.targets([f"a{i:05d}" for i in range(0, 300, 7)], torch.device("cpu"))


def test_a_part_from_another_teacher_is_damage(tmp_path):
    cache_of(tmp_path / "mine", teacher="t-mine1")
    cache_of(tmp_path / "theirs", teacher="t-other")
    theirs = (tmp_path / "theirs" / "part-00001.parquet").read_bytes()
    (tmp_path / "mine" / "part-00001.parquet").write_bytes(theirs)  # the same size: same videos, same shapes
    with pytest.raises(DamagedCache, match="part-00001.parquet holds the outputs of teacher 't-other', not of 't-mine1'"):
        ParquetTeacherCache(str(tmp_path / "mine"))


def test_an_unreadable_manifest_or_classifier_is_damage(tmp_path):
    cache_of(tmp_path)
    classifier = tmp_path / "_classifier.pt"
    classifier.write_bytes(b"\0" * classifier.stat().st_size)
    with pytest.raises(DamagedCache, match="_classifier.pt cannot be loaded"):
        ParquetTeacherCache(str(tmp_path))
    (tmp_path / MANIFEST).write_text('{"format": 3, "parts": ["part-0')
    with pytest.raises(DamagedCache, match=f"{MANIFEST} cannot be read"):
        read_manifest(str(tmp_path))


def test_the_cache_folder_opens_as_a_parquet_data_set(tmp_path):
    """What `cache_uri` on a teacher's MLflow run names opens with pyarrow.dataset (DuckDB, Polars, pandas)."""
    import pyarrow.dataset as ds

    everything = cache_of(tmp_path)
    table = ds.dataset(str(tmp_path), format="parquet").to_table()
    assert table.num_rows == len(everything) and set(table.column("id").to_pylist()) == set(everything)


def test_a_cache_written_before_format_3_still_reads(tmp_path):
    """Format 2: no part sizes, no teacher in the parts, the classifier as classifier.pt."""
    everything = cache_of(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    for key in ("part_bytes", "part_videos", "classifier"):
        del manifest[key]
    (tmp_path / MANIFEST).write_text(json.dumps({**manifest, "format": 2}))
    (tmp_path / "_classifier.pt").rename(tmp_path / "classifier.pt")
    cache = ParquetTeacherCache(str(tmp_path))
    assert np.array_equal(cache.targets(["a00007"], torch.device("cpu")).probabilities[0].numpy(),
                          everything["a00007"].probabilities)
    assert torch.equal(cache.classifier_state()["w"], torch.ones(2))
