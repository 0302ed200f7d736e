import json

import numpy as np
import pytest
import torch

from orchestrator.cache import MANIFEST, ROWS_PER_GROUP, ParquetTeacherCache, read_manifest, write_teacher_cache
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
    assert manifest["videos"] == 305 and len(manifest["parts"]) == 3 and manifest["teacher_id"] == "t"
    cache = ParquetTeacherCache(str(tmp_path), cache_bytes=1)  # keeps only the last batch's row groups
    everything = {r.id: r for part in parts for r in part}
    wanted = ["a00299", "b00004", "a00000", "a00150", "b00000", "a00129"]
    targets = cache.targets(wanted, torch.device("cpu"))
    for row, video in enumerate(wanted):
        assert np.array_equal(targets.representation[row].numpy(), everything[video].representation)
        assert np.array_equal(targets.probabilities[row].numpy(), everything[video].probabilities)
    assert targets.intermediates is None
    cache.targets(["b00001"], torch.device("cpu"))
    assert list(cache.groups) == [(1, 0)] and cache.cached_bytes == cache.group_bytes[1][0]
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
    with pytest.raises(OrchestratorError, match="no complete teacher cache"):
        ParquetTeacherCache(str(tmp_path))
    # Rebuilt, it is complete; a lost part makes it absent again.
    write_teacher_cache(str(tmp_path), [list(records("a", 4))], {}, {})
    assert read_manifest(str(tmp_path))["videos"] == 4
    (tmp_path / "part-00000.parquet").unlink()
    assert read_manifest(str(tmp_path)) is None


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
