"""The data set a grid or a study runs on: converted shards at a URI, or synthetic shards generated into
the store the first time (a Ray task: generating takes the driver's node no CPU).

Every shard is checked once, up front, before any job reads it (`locate`, before Ray starts; after
generating, `check_shards`): its footer reads, its schema and metadata are a video shard's, its class
count is the data set's, and no split is without videos. A shard cut short is named once, not by every
cell that would read it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.config import DataConfig
from orchestrator.errors import OrchestratorError, note
from orchestrator.matrix import stable_id
from orchestrator.store import DamagedFile, Store
from workloads.data.format import SHARD_SUFFIX, read_info
from workloads.data.fs import join, list_files, resolve
from workloads.data.synth import generate
from workloads.errors import DataError

SPLITS = ("train", "validate", "test")
READERS = 16  # shard footers read at once (on an object store, one request each)


@dataclass(frozen=True)
class DataSet:
    id: str
    train: str
    validate: str
    test: str | None  # None: reported scores fall back to validation
    num_classes: int

    @property
    def reported(self) -> str:
        """The split every reported (test) score is measured on."""
        return self.test or self.validate

    def splits(self) -> dict[str, str]:
        return {"train": self.train, "validate": self.validate, **({"test": self.test} if self.test else {})}


def data_id(config: DataConfig) -> str:
    if config.synthetic is not None:
        return "syn-" + stable_id(config.synthetic.identity())
    return "uri-" + stable_id(config.uri)


def locate(config: DataConfig, store: Store, uri_override: str | None = None) -> DataSet | None:
    """The data set, its shards checked; None for synthetic shards not generated yet (`prepare_data`)."""
    if uri_override or config.synthetic is None:
        return _converted(uri_override or config.uri)
    marker = join(store.data(data_id(config)), "_complete.json")
    data = _synthetic(config, store)
    try:
        if store.read_json(marker) is None:
            return None
        check_shards(data)
    except (DamagedFile, DataError, OrchestratorError) as damage:
        # Generated again: a synthetic video is a function of its seed, split and index alone.
        aside = store.set_aside(marker)
        note(data.id, f"{damage}; {aside} set aside, the synthetic data set is generated again")
        return None
    return data


def prepare_data(config: DataConfig, store_root: str) -> DataSet:
    """Generate a synthetic data set into the store (the shards of every split, then `_complete.json`)."""
    synthetic, store = config.synthetic, Store(store_root)
    root = store.data(data_id(config))
    sizes = {"train": synthetic.train_videos, "validate": synthetic.validate_videos, "test": synthetic.validate_videos}
    for split, videos in sizes.items():
        generate(join(root, split), videos, seed=synthetic.seed, split=split, config=synthetic.generator,
                 workers=max(1, min(4, os.cpu_count() or 1)))
    store.write_json(join(root, "_complete.json"), {"synthetic": synthetic.identity()})
    return _synthetic(config, store)


def _synthetic(config: DataConfig, store: Store) -> DataSet:
    root = store.data(data_id(config))
    return DataSet(data_id(config), join(root, "train"), join(root, "validate"), join(root, "test"),
                   config.synthetic.generator.num_classes)


def _converted(root: str) -> DataSet:
    splits = {split: join(root, split) for split in SPLITS}
    found = {}
    for split in SPLITS:
        try:
            found[split] = list_files(splits[split], SHARD_SUFFIX)
        except DataError:  # no such folder
            found[split] = []
    for split in ("train", "validate"):
        if not found[split]:
            raise OrchestratorError(f"{splits[split]}: no {SHARD_SUFFIX} shards; the data ({root}) needs train/ and "
                                    "validate/ folders of video shards (python -m workloads.data.convert writes them)")
    num_classes = read_info(found["train"][0]).num_classes
    data = DataSet("uri-" + stable_id(root), splits["train"], splits["validate"],
                   splits["test"] if found["test"] else None, num_classes)
    check_shards(data, found)
    return data


def check_shards(data: DataSet, shards: dict[str, list[str]] | None = None) -> None:
    """Read every shard's footer (in parallel): a readable video shard of the data set's class count; a
    split with no video at all is refused. Errors name the shard."""
    shards = shards or {split: list_files(location, SHARD_SUFFIX) for split, location in data.splits().items()}
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        for split, location in data.splits().items():
            videos = sum(pool.map(lambda shard: _videos(shard, data.num_classes), shards[split]))
            if videos == 0:
                raise OrchestratorError(f"{location}: no videos in its {len(shards[split])} shard(s)")


def _videos(shard: str, num_classes: int) -> int:
    fs, path = resolve(shard)
    try:
        metadata = pq.read_metadata(path, filesystem=fs)
    except (OSError, pa.ArrowInvalid) as error:
        raise DataError(f"{shard}: not a readable Parquet file (cut short?): {error}") from None
    info = read_info(shard, metadata)
    if info.num_classes != num_classes:
        raise DataError(f"{shard}: {info.num_classes} classes, the data set's first training shard has {num_classes}")
    return metadata.num_rows
