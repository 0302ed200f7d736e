"""The data set a grid or a study runs on, in three roles never mixed: training, validation (the best
epoch, the search's objective) and test (every reported score).

Converted shards at a URI (`workloads.data.convert`): with `holdout`, validation is a share of `train/`'s
videos held out by id hash and `validate/` tests (the paper's way: YouTube-8M's test split has no
labels); without, `validate/` validates and `test/` tests. Synthetic shards are generated into the store
the first time (a Ray task), with a split for each role.

Every shard is checked once, up front, before any job reads it (`locate`, before Ray starts; after
generating, `check_shards`): its footer reads, its schema and metadata are a video shard's, its class
count is the data set's, no split is without videos, and no video is in two splits. A shard cut short is
named once, not by every cell that would read it. What was checked is remembered in the store
(`checked/<data id>.json`: every shard's name and size), so an unchanged data set is not read again.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from orchestrator.errors import OrchestratorError, note
from orchestrator.experiment.matrix import stable_id
from orchestrator.experiment.settings import DataConfig
from orchestrator.store.files import DamagedFile, read_json, set_aside, write_json
from orchestrator.store.layout import Store
from orchestrator.store.samples import sample_share
from workloads.data.batch import FrameSelection
from workloads.data.format import SHARD_SUFFIX, read_info
from workloads.data.fs import join, list_files, resolve
from workloads.data.reader import VideoShards
from workloads.data.synth import generate
from workloads.errors import DataError

READERS = 16  # shard footers read at once (on an object store, one request each)


@dataclass(frozen=True)
class DataSet:
    id: str
    train: str  # training shards (less the held-out videos, with `holdout`)
    validate: str  # validation shards: `train` itself with `holdout` (its held-out videos)
    test: str
    num_classes: int
    holdout: float = 0.0  # the share of `train`'s videos held out as the validation split
    test_videos: int = 0  # 0: not counted (the representation sample is then the whole test split)

    def training(self, batch: int, selection: FrameSelection | None = None, **options) -> VideoShards:
        return VideoShards(self.train, batch, selection, holdout=self.holdout, **options)

    def validation(self, batch: int, selection: FrameSelection | None = None, **options) -> VideoShards:
        return VideoShards(self.validate, batch, selection, holdout=self.holdout, held_out=self.holdout > 0, **options)

    def testing(self, batch: int, selection: FrameSelection | None = None, **options) -> VideoShards:
        return VideoShards(self.test, batch, selection, **options)

    def sampled(self, batch: int, selection: FrameSelection | None = None) -> VideoShards:
        """The test split's representation sample (`orchestrator.store.samples`), read with `selection`."""
        return self.testing(batch, selection, sample=sample_share(self.test_videos) if self.test_videos else 1.0)

    def roles(self) -> dict[str, Any]:
        """Where validation and test scores come from, and over how many classes, for the record (MLflow
        params): `CellResult` fields."""
        held = f"{self.train} (held out: {self.holdout:.2%} of its videos, by id hash)"
        return {"validation_split": held if self.holdout else self.validate, "test_split": self.test,
                "classes": self.num_classes}


def data_id(config: DataConfig, uri_override: str | None = None) -> str:
    """The data set's id (part of every cell's), known without reading it."""
    if config.synthetic is not None and uri_override is None:
        return "syn-" + stable_id(config.synthetic.identity())
    root = uri_override or config.uri
    return "uri-" + stable_id(root if config.holdout is None else [root, config.holdout])


def locate(config: DataConfig, store: Store, uri_override: str | None = None) -> DataSet | None:
    """The data set, its shards checked; None for synthetic shards not generated yet (`prepare_data`)."""
    if uri_override or config.synthetic is None:
        return _converted(config, uri_override or config.uri, store)
    marker = join(store.data(data_id(config)), "_complete.json")
    data = _synthetic(config, store)
    try:
        if read_json(marker) is None:
            return None
        check_shards(data, store)
    except (DamagedFile, DataError, OrchestratorError) as damage:
        # Generated again: a synthetic video is a function of its seed, split and index alone.
        aside = set_aside(marker)
        note(data.id, f"{damage}; {aside} set aside, the synthetic data set is generated again")
        return None
    return data


def prepare_data(config: DataConfig, store_root: str) -> DataSet:
    """Generate a synthetic data set into the store (the shards of every split, then `_complete.json`)."""
    synthetic, store = config.synthetic, Store(store_root)
    root = store.data(data_id(config))
    for split, videos in synthetic.split_videos.items():
        generate(join(root, split), videos, seed=synthetic.seed, split=split, config=synthetic.generator,
                 workers=max(1, min(4, os.cpu_count() or 1)))
    write_json(join(root, "_complete.json"), {"synthetic": synthetic.identity()})
    return _synthetic(config, store)


def _synthetic(config: DataConfig, store: Store) -> DataSet:
    root = store.data(data_id(config))
    return DataSet(data_id(config), join(root, "train"), join(root, "validate"), join(root, "test"),
                   config.synthetic.generator.num_classes, test_videos=config.synthetic.split_videos["test"])


def _converted(config: DataConfig, root: str, store: Store) -> DataSet:
    """Converted shards at `root`, in their roles: with a holdout, train/ and validate/; else train/,
    validate/ and test/."""
    needed = ("train", "validate") if config.holdout is not None else ("train", "validate", "test")
    folders = {split: join(root, split) for split in ("train", "validate", "test")}
    found = {split: _shards(location) for split, location in folders.items()}
    for split in needed:
        if not found[split]:
            raise OrchestratorError(_missing(root, split, config.holdout))
    if config.holdout is not None and found["test"]:
        raise OrchestratorError(f"{folders['test']}: with data.holdout validate/ is the test split; a test/ folder "
                                "too would be a fourth role: remove it, or give no holdout")
    held = config.holdout is not None
    num_classes = read_info(found["train"][0]).num_classes
    data = DataSet(data_id(config, root), folders["train"],
                   folders["train" if held else "validate"], folders["validate" if held else "test"], num_classes)
    videos = check_shards(data, store)
    data = dataclasses.replace(data, test_videos=videos["test"])
    if not held:
        return data
    share = config.holdout if config.holdout < 1 else config.holdout / videos["train"]
    if share >= 1 or share * videos["train"] < 1:
        raise OrchestratorError(f"data.holdout {config.holdout:g}: leaves no video to train or to validate on "
                                f"of {folders['train']}'s {videos['train']}")
    return dataclasses.replace(data, holdout=share)


def _missing(root: str, split: str, holdout: float | None) -> str:
    if split == "test":
        return (f"{root}: no test/ shards, so validate/ would pick the best epoch and be reported on too: give "
                "data.holdout (a share or a number of train/'s videos to validate on; validate/ then tests) or a "
                "test/ folder")
    return (f"{join(root, split)}: no {SHARD_SUFFIX} shards; the data ({root}) needs train/ and validate/ folders "
            "of video shards (python -m workloads.data.convert writes them)")


def _shards(location: str) -> list[str]:
    try:
        return list_files(location, SHARD_SUFFIX)
    except DataError:  # no such folder
        return []


def check_shards(data: DataSet, store: Store) -> dict[str, int]:
    """Read every shard's footer and ids (in parallel), unless the store remembers this very listing
    checked: a readable video shard of the data set's class count, no split without videos, no video in
    two splits. Returns each split's videos. Errors name the shard."""
    splits = {"train": data.train, "test": data.test, **({} if data.validate == data.train else {"validate": data.validate})}
    listing = {split: _sizes(location) for split, location in splits.items()}
    memo = store.path("checked", f"{data.id}.json")
    try:
        remembered = read_json(memo)
    except DamagedFile:
        remembered = None
    if remembered is not None and remembered.get("listing") == listing:
        return remembered["videos"]
    videos, hashes = {}, {}
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        for split, location in splits.items():
            found = list(pool.map(lambda shard: _read_footer(shard, data.num_classes), listing[split]))
            videos[split] = sum(ids.size for ids in found)
            if videos[split] == 0:
                raise OrchestratorError(f"{location}: no videos in its {len(found)} shard(s)")
            hashes[split] = np.concatenate(found)
    _no_video_twice(hashes, listing)
    try:
        write_json(memo, {"listing": listing, "videos": videos})
    except OSError:  # a store that cannot be written is named when it is opened
        pass
    return videos


def _no_video_twice(hashes: dict[str, np.ndarray], listing: dict[str, dict[str, int]]) -> None:
    """Refuse a video in two splits (its id's hash in both, then found by name)."""
    splits = list(hashes)
    for a, first in enumerate(splits):
        for second in splits[a + 1 :]:
            shared = np.intersect1d(hashes[first], hashes[second])
            if shared.size == 0:
                continue
            where = {split: _holding(set(shared.tolist()), listing[split]) for split in (first, second)}
            common = sorted(set(where[first]) & set(where[second]))
            if common:
                video = common[0]
                raise OrchestratorError(f"{where[second][video]}: video {video!r} is also in {where[first][video]}: "
                                        "the splits must not share videos")


def _holding(wanted: set[int], shards: dict[str, int]) -> dict[str, str]:
    """The videos among `shards` whose id hashes are `wanted`, each with its shard."""
    found = {}
    for shard in shards:
        fs, path = resolve(shard)
        for video in pq.read_table(path, columns=["id"], filesystem=fs).column("id").to_pylist():
            if hash(video) in wanted:
                found.setdefault(video, shard)
    return found


def _sizes(location: str) -> dict[str, int]:
    """Each shard at `location` (a file, or a folder searched recursively) with its size in bytes."""
    fs, path = resolve(location)
    shards = list_files(location, SHARD_SUFFIX)
    if fs.get_file_info(path).type == pafs.FileType.File:
        return {shard: fs.get_file_info(path).size for shard in shards}
    sizes = {entry.path: entry.size for entry in fs.get_file_info(pafs.FileSelector(path, recursive=True))}
    return {shard: sizes[resolve(shard)[1]] for shard in shards}


def _read_footer(shard: str, num_classes: int) -> np.ndarray:
    """The hashes of the ids of a shard whose footer, schema and class count are a video shard's (this
    process's `hash`: only compared within it)."""
    fs, path = resolve(shard)
    try:
        file = pq.ParquetFile(fs.open_input_file(path))
        info = read_info(shard, file.metadata)
        ids = file.read(columns=["id"]).column("id").to_pylist()
    except (OSError, pa.ArrowInvalid) as error:
        raise DataError(f"{shard}: not a readable Parquet file (cut short?): {error}") from None
    if info.num_classes != num_classes:
        raise DataError(f"{shard}: {info.num_classes} classes, the data set's first training shard has {num_classes}")
    return np.fromiter((hash(video) for video in ids), dtype=np.int64, count=len(ids))
