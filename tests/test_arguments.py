"""Bad command lines and bad data fail before Ray starts: one line on stderr, exit 2, nothing written."""

import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from commands import in_process
from orchestrator.errors import OrchestratorError
from orchestrator.experiment.presets import load_preset
from orchestrator.experiment.settings import DataConfig
from orchestrator.jobs.data_sets import locate
from orchestrator.store.layout import Store
from workloads.data.format import ShardInfo, write_shard
from workloads.data.synth import SynthConfig, generate

REPO = Path(__file__).resolve().parents[1]


def as_a_user(module: str, *args: str) -> subprocess.CompletedProcess:
    """The command in a process of its own, as a user runs it: all it prints, Ray's lines included."""
    return subprocess.run([sys.executable, "-m", f"orchestrator.{module}", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def driver(module: str, *args: str) -> subprocess.CompletedProcess:
    """The command in this process: its status and what it printed, and that it never started Ray."""
    import ray

    done = in_process(f"orchestrator.{module}", *args)
    assert not ray.is_initialized(), "Ray started before the input was checked"
    return done


def refused(result: subprocess.CompletedProcess, message: str) -> None:
    """Exit 2 with one line, `message` in it, before Ray started (Ray prints as it starts)."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert message in result.stderr, result.stderr


def test_a_store_that_is_a_file_or_under_one(tmp_path):
    (tmp_path / "file").write_text("")
    refused(as_a_user("grid", "--preset", "tiny", "--store", str(tmp_path / "file")), "is a file; the store is a folder")
    refused(as_a_user("tune", "--space", str(REPO / "search_spaces" / "stride_vs_cost.yaml"), "--preset", "tiny",
                   "--store", str(tmp_path / "file")), "is a file; the store is a folder")
    refused(driver("grid", "--preset", "tiny", "--store", str(tmp_path / "file" / "store")),
            "cannot write there: Not a directory")


def unwritable_folder(tmp_path: Path) -> Path | None:
    """An existing folder this process cannot write in: a read-only one of its own, or (as root, whom a
    folder's mode does not stop) one of sysfs, where nobody may create files."""
    for folder in (tmp_path / "locked", Path("/sys/kernel")):
        if folder.parent == tmp_path:
            folder.mkdir(mode=0o555)
        try:
            tempfile.TemporaryFile(dir=folder).close()
        except OSError:
            return folder
    return None


def test_a_store_that_cannot_be_written(tmp_path):
    locked = unwritable_folder(tmp_path)
    if locked is None:
        pytest.skip("no folder here refuses this process's writes")
    before = sorted(locked.iterdir())
    refused(driver("grid", "--preset", "tiny", "--store", str(locked)), f"--store {locked}: cannot write there: ")
    assert sorted(locked.iterdir()) == before


def test_an_unreachable_tracking_server(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = driver("grid", "--preset", "tiny", "--store", str(tmp_path / "store"), "--tracking-uri",
                    f"http://127.0.0.1:{port}")
    refused(result, f"--tracking-uri http://127.0.0.1:{port}: no MLflow server answers there")
    assert not (tmp_path / "store").exists()
    refused(driver("grid", "--preset", "tiny", "--store", str(tmp_path / "store"), "--tracking-uri",
                   f"sqlite:///{tmp_path}/nowhere/mlflow.db"), f"the folder {tmp_path}/nowhere does not exist")
    # A password in a URI is never printed: the tracking server's shown masked, a store's refused.
    result = driver("grid", "--preset", "tiny", "--store", str(tmp_path / "store"), "--tracking-uri",
                    f"http://fewer:s3cret@127.0.0.1:{port}")
    refused(result, f"--tracking-uri http://fewer:***@127.0.0.1:{port}: no MLflow server answers there")
    assert "s3cret" not in result.stderr
    result = driver("grid", "--preset", "tiny", "--store", "s3://AKIA:s3cret@bucket/store", "--tracking-uri",
                    f"http://127.0.0.1:{port}")
    refused(result, "--store s3://AKIA:***@bucket/store: credentials in the store's URI would be written")
    assert "s3cret" not in result.stderr


def shards(root: Path, split: str, videos: int = 8, classes: int = 5, seed: int = 0) -> Path:
    generate(str(root / split), videos, seed=seed, split=split, config=SynthConfig(num_classes=classes, min_frames=4,
                                                                                   max_frames=8))
    return next((root / split).glob("*.parquet"))


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "validate", "test"):
        shards(root, split)
    return root


def grid_on(data: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    result = driver("grid", "--preset", "tiny", "--store", str(tmp_path / "store"), "--data", str(data))
    assert not (tmp_path / "store").exists()  # nothing written
    return result


def test_data_that_is_missing_empty_or_no_shards(data, tmp_path):
    refused(grid_on(tmp_path / "missing", tmp_path), f"{tmp_path}/missing/train: no .parquet shards")
    (tmp_path / "empty").mkdir()
    refused(grid_on(tmp_path / "empty", tmp_path), f"{tmp_path}/empty/train: no .parquet shards")
    (tmp_path / "other" / "train").mkdir(parents=True)
    (tmp_path / "other" / "train" / "notes.txt").write_text("not a shard")
    refused(grid_on(tmp_path / "other", tmp_path), "needs train/ and validate/ folders of video shards")
    pq.write_table(pa.table({"a": [1]}), data / "validate" / "extra.parquet")
    refused(grid_on(data, tmp_path), f"{data}/validate/extra.parquet: column 'id' must be string, found missing")


def test_a_shard_cut_short_is_named_once_up_front(data, tmp_path):
    shard = next((data / "validate").glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-100])
    refused(grid_on(data, tmp_path), f"{shard}: not a readable Parquet file (cut short?)")


def test_shards_of_another_class_count_or_a_split_without_videos(data, tmp_path):
    other = shards(tmp_path / "more", "test", classes=7)
    for shard in (data / "test").glob("*"):
        shard.unlink()
    other.rename(data / "test" / other.name)
    refused(grid_on(data, tmp_path), f"{data / 'test' / other.name}: 7 classes, the data set's first training shard has 5")
    for shard in (data / "test").glob("*"):
        shard.unlink()
    write_shard(str(data / "test" / "test-00000.parquet"), ShardInfo(num_classes=5, source="test", details={}), [])
    refused(grid_on(data, tmp_path), f"{data / 'test'}: no videos in its 1 shard(s)")


@pytest.mark.parametrize("synthetic, message", [
    ({"train_videos": 0}, "data.synthetic.train_videos: must be >= 1, got 0"),
    ({"classes": 0}, "data.synthetic: num_classes must be >= 2, got 0"),
])
def test_impossible_synthetic_settings(tmp_path, synthetic, message):
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"data": {"synthetic": synthetic}}))
    result = driver("grid", "--preset", "tiny", "--store", str(tmp_path / "store"), "--override", str(override))
    refused(result, f"{override} (merged into preset tiny")
    assert message in result.stderr and not (tmp_path / "store").exists()


@pytest.mark.parametrize("override, message", [
    ({"ks": [10, 10, 10]}, "ks: 10 given more than once; each value once"),
    ({"seeds": [0, 1, 0]}, "seeds: 0 given more than once"),
    ({"parts": [{"name": "a", "ks": [10, 10]}]}, "parts[0].ks: 10 given more than once"),
    ({"data": {"synthetic": {"classes": 1_000_000_000}}},
     "data.synthetic.classes: 1,000,000,000, over the bound of 50,000"),
    ({"data": {"synthetic": {"train_videos": 10_000_000}}}, "data.synthetic.train_videos: 643.7 GiB of frames "
     "(10,000,096 videos of up to 60 frames), over the bound of 16.0 GiB"),
    ({"data": {"max_frames": 1_000_000_000}, "ks": [100_000_000]},
     "data.max_frames: must be in [1, 10,000], got 1,000,000,000"),
    ({"teacher_train": {"batch_size": 100_000}}, "teacher_train.batch_size: 25.7 GiB per batch (hrnn: 100,000 "
     "videos of 60 float32 frames), over the bound of 4.0 GiB"),
])
def test_repeated_values_and_sizes_past_the_bounds_are_refused(override, message):
    """A repeated k named the same cells twice (the grid crashed on every run); sizes past a bound took a
    machine's memory for minutes."""
    with pytest.raises(OrchestratorError) as refusal:
        load_preset("tiny", override, "override.yaml")
    assert str(refusal.value).startswith("override.yaml (merged into preset tiny") and message in str(refusal.value)


def test_a_model_past_the_parameter_bound_is_refused_before_ray(tmp_path):
    """Counted on PyTorch's meta device for the data's classes, before anything is written."""
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump({"data": {"synthetic": {"classes": 40_000}}, "size": "paper", "intermediate": [],
                                    "families": ["netvlad"], "model_overrides": {"netvlad": {"hidden": 4096}}}))
    refused(driver("grid", "--preset", "tiny", "--store", str(tmp_path / "store"), "--override", str(path)),
            "1,977,602,112 parameters (netvlad at size paper for 40,000 classes), over the bound of 1,000,000,000")
    assert not (tmp_path / "store").exists()


def test_an_override_error_names_the_override_and_a_preset_error_the_preset(tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text("ks: [7]\nstudent_train: {epochs: 0}\n")
    refused(driver("grid", "--preset", "tiny", "--store", str(tmp_path / "s"), "--override", str(override)),
            f"error: {override} (merged into preset tiny")
    preset = tmp_path / "mine.yaml"
    preset.write_text(yaml.safe_dump({**yaml.safe_load((REPO / "orchestrator/presets/tiny.yaml").read_text()),
                                      "ks": [0]}))
    override.write_text("seeds: [1]\n")
    refused(driver("grid", "--preset", str(preset), "--store", str(tmp_path / "s"), "--override", str(override)),
            f"error: {preset}: ks: frame selection k must be >= 1, got 0")


def test_a_search_over_frames_the_presets_videos_do_not_have(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"name": "s", "family": "hrnn", "variant": "rep+pred+ce",
                                     "search": {"k": {"int": [50, 500]}}}))
    refused(driver("tune", "--space", str(space), "--preset", "tiny", "--store", str(tmp_path / "store")),
            f"{space}: search.k.int: k=500 is outside [1, 60], the frames of preset tiny's videos")
    space.write_text(yaml.safe_dump({"name": "s", "family": "hrnn", "variant": "rep+pred+ce", "fixed": {"j": 61},
                                     "search": {"w_rep": {"uniform": [0, 1]}}}))
    refused(driver("tune", "--space", str(space), "--preset", "tiny", "--store", str(tmp_path / "store")),
            "fixed.j: j=61 is outside [1, 60]")
    assert not (tmp_path / "store").exists()


def test_a_shard_without_videos_among_others_is_read_as_nothing(data, tmp_path):
    write_shard(str(data / "train" / "train-empty.parquet"), ShardInfo(num_classes=5, source="test", details={}), [])
    found = locate(DataConfig(uri=str(data)), Store(str(tmp_path / "store")))
    assert found.num_classes == 5 and found.test == str(data / "test")
    assert sum(len(batch.ids) for batch in found.training(4)) == 8


def on_data(tmp_path: Path, data: Path, holdout=None) -> Path:
    """A preset: the tiny one on converted data at `data`, with `holdout`."""
    preset = yaml.safe_load((REPO / "orchestrator/presets/tiny.yaml").read_text())
    preset["data"] = {"uri": str(data), "max_frames": 60, **({"holdout": holdout} if holdout is not None else {})}
    path = tmp_path / f"preset-{holdout}.yaml"
    path.write_text(yaml.safe_dump(preset))
    return path


def test_validation_and_test_are_never_the_same_videos(data, tmp_path):
    store = str(tmp_path / "store")
    for shard in (data / "test").glob("*"):
        shard.unlink()
    refused(driver("grid", "--preset", str(on_data(tmp_path, data)), "--store", store),
            f"{data}: no test/ shards, so validate/ would pick the best epoch and be reported on too: give data.holdout")
    held = locate(DataConfig(uri=str(data), holdout=0.5), Store(store))  # validate/ tests; train/ validates too
    assert (held.validate, held.test, held.holdout) == (str(data / "train"), str(data / "validate"), 0.5)
    training = {i for b in held.training(4) for i in b.ids}
    validation = {i for b in held.validation(4) for i in b.ids}
    assert training and validation and training.isdisjoint(validation) and len(training | validation) == 8
    assert {k: v for k, v in held.roles().items() if k != "classes"} == {"validation_split": f"{data / 'train'} (held out: 50.00% of its videos, by id hash)",
                            "test_split": str(data / "validate")}
    assert locate(DataConfig(uri=str(data), holdout=2), Store(store)).holdout == 0.25  # 2 of 8 videos
    refused(driver("grid", "--preset", str(on_data(tmp_path, data, 8)), "--store", store),
            "data.holdout 8: leaves no video to train or to validate on")
    shards(data, "test")
    refused(driver("grid", "--preset", str(on_data(tmp_path, data, 0.2)), "--store", store),
            "with data.holdout validate/ is the test split; a test/ folder too would be a fourth role")


def test_a_video_in_two_splits_is_refused(data, tmp_path):
    copy = next((data / "train").glob("*.parquet"))
    (data / "test" / "leaked.parquet").write_bytes(copy.read_bytes())
    result = driver("grid", "--preset", "tiny", "--store", str(tmp_path / "store"), "--data", str(data))
    refused(result, "the splits must not share videos")
    assert f"{data / 'test' / 'leaked.parquet'}: video " in result.stderr and f"is also in {copy}" in result.stderr
