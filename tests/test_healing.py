"""A store that heals: a finished tiny grid's store damaged as a disk, a killed copy or a careless hand
would, then the same command run again. Each case ends with every cell once in MLflow, FINISHED, and a
store that works; a finished teacher is never trained again (its caches are written again from its
final checkpoint)."""

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from orchestrator.cache.reader import ParquetTeacherCache
from grids import copy_store, grid, of_kind, runs
from orchestrator.tracking import schema
from orchestrator.tracking.schema import RunKind

SERIAL = "hrnn/serial/rep+pred+ce/k10/s0"


@pytest.fixture
def store(tiny_grid, tmp_path):
    """A copy of the session's finished tiny grid (conftest), damaged by each test as it likes."""
    return copy_store(tiny_grid.store, tmp_path / "store")


def result_file(store: Path, name: str) -> Path:
    return next(p for p in (store / "results").glob("*.json") if json.loads(p.read_text())["cell"] == name)


def cells_once_and_finished(store: Path) -> dict:
    """The experiment's cell runs, by name, asserting each cell shows once and finished."""
    _, found = runs(store, "fewer-frames-tiny")
    cells = of_kind(found, RunKind.CELL)
    assert sorted(r.info.run_name for r in cells) == sorted({r.info.run_name for r in cells}) and len(cells) == 8
    assert {r.info.status for r in found} == {"FINISHED"}
    return {r.info.run_name: r for r in cells}


def base_cache(store: Path) -> Path:
    return next(store.glob("teachers/t-*/cache/base"))


@pytest.mark.slow
def test_a_result_file_cut_short_is_set_aside_and_its_cell_runs_again(store):
    path = result_file(store, SERIAL)
    path.write_bytes(path.read_bytes()[:300])
    again = grid("--preset", "tiny", "--store", str(store))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "7 already done, 1 jobs to run" in again.stdout
    assert f"note  {SERIAL}: {path}: cannot be read (300 bytes, cut short?)" in again.stdout
    assert len(list(path.parent.glob(f"{path.name}.unreadable-*"))) == 1
    assert json.loads(path.read_text())["cell"] == SERIAL
    cells_once_and_finished(store)


@pytest.mark.slow
def test_a_cache_part_cut_short_is_written_again_from_the_teachers_checkpoint(store):
    part = base_cache(store) / "part-00000.parquet"
    part.write_bytes(part.read_bytes()[:1000])
    again = grid("--preset", "tiny", "--store", str(store))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "note  hrnn/teacher/s0: cache base: part-00000.parquet holds 1000 bytes" in again.stdout
    assert "8 already done, 1 jobs to run" in again.stdout  # the teacher alone, to export again
    skyline = cells_once_and_finished(store)["hrnn/skyline/all/s0"]
    assert "part-00000.parquet holds 1000 bytes" in skyline.data.tags[schema.CACHE_REBUILT_TAG]
    kept = json.loads(result_file(store, "hrnn/skyline/all/s0").read_text())
    assert kept["resumed_at_epoch"] == 0  # the kept result is the teacher's training, not the export
    assert ParquetTeacherCache(skyline.data.tags[schema.CACHE_URI_TAG]).manifest.videos == 96
    assert ds.dataset(skyline.data.tags[schema.CACHE_URI_TAG], format="parquet").count_rows() == 96


@pytest.mark.slow
def test_a_removed_manifest_is_written_again_without_a_second_skyline_run(store):
    (base_cache(store) / "_manifest.json").unlink()
    result_file(store, SERIAL).unlink()  # a student that needs the cache
    again = grid("--preset", "tiny", "--store", str(store))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "7 already done, 2 jobs to run" in again.stdout
    cells = cells_once_and_finished(store)
    assert cells["hrnn/skyline/all/s0"].data.tags[schema.CACHE_REBUILT_TAG].endswith("its caches were missing")


@pytest.mark.slow
def test_a_cache_part_altered_in_place_is_found_by_the_students_and_written_again_once(store):
    part = base_cache(store) / "part-00000.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 3] ^= 0xFF  # the same size: only its page checksum tells
    part.write_bytes(bytes(data))
    for name in (SERIAL, "hrnn/serial/rep_then_ce/k10/s0"):
        result_file(store, name).unlink()
    again = grid("--preset", "tiny", "--store", str(store))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "checksum" in again.stdout and "the cache is written again from the teacher's checkpoint" in again.stdout
    assert "FAILED" not in again.stdout + again.stderr
    cells = cells_once_and_finished(store)
    assert "checksum" in cells["hrnn/skyline/all/s0"].data.tags[schema.CACHE_REBUILT_TAG]
    assert len(list(base_cache(store).glob("_manifest.json.damaged-*"))) == 1


@pytest.mark.slow
def test_a_synthetic_shard_cut_short_is_generated_again(store):
    shard = next(store.glob("data/syn-*/validate/*.parquet"))
    whole = shard.read_bytes()
    shard.write_bytes(whole[: len(whole) // 2])
    again = grid("--preset", "tiny", "--store", str(store))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{shard}: not a readable Parquet file (cut short?)" in again.stdout
    assert "the synthetic data set is generated again" in again.stdout and "8 already done, 0 jobs to run" in again.stdout
    assert shard.read_bytes() == whole  # the same videos: a function of the seed, split and index alone
