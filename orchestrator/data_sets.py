"""The data set a grid or a study runs on: converted shards at a URI, or synthetic shards generated into
the store the first time (a Ray task: generating takes the driver's node no CPU)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from orchestrator.config import DataConfig
from orchestrator.errors import OrchestratorError
from orchestrator.matrix import stable_id
from orchestrator.store import Store
from workloads.data.format import SHARD_SUFFIX, read_info
from workloads.data.fs import join, list_files
from workloads.data.synth import generate
from workloads.errors import DataError

SPLITS = ("train", "validate", "test")


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


def data_id(config: DataConfig) -> str:
    if config.synthetic is not None:
        return "syn-" + stable_id(config.synthetic.identity())
    return "uri-" + stable_id(config.uri)


def prepare_data(config: DataConfig, store_root: str, uri_override: str | None = None) -> DataSet:
    """Locate the data set, generating synthetic shards into the store the first time."""
    if uri_override or config.synthetic is None:
        return _converted(uri_override or config.uri)
    synthetic = config.synthetic
    store = Store(store_root)
    identity = data_id(config)
    root = store.data(identity)
    marker = join(root, "_complete.json")
    if store.read_json(marker) is None:
        sizes = {"train": synthetic.train_videos, "validate": synthetic.validate_videos, "test": synthetic.validate_videos}
        for split, videos in sizes.items():
            generate(join(root, split), videos, seed=synthetic.seed, split=split, config=synthetic.generator,
                     workers=max(1, min(4, os.cpu_count() or 1)))
        store.write_json(marker, {"synthetic": synthetic.identity()})
    return DataSet(identity, join(root, "train"), join(root, "validate"), join(root, "test"),
                   synthetic.generator.num_classes)


def _converted(root: str) -> DataSet:
    splits = {split: join(root, split) for split in SPLITS}
    for split in ("train", "validate"):
        if not list_files(splits[split], SHARD_SUFFIX):
            raise OrchestratorError(f"{splits[split]}: no shards; --data needs train/ and validate/ folders")
    try:
        has_test = bool(list_files(splits["test"], SHARD_SUFFIX))
    except DataError:  # no test/ folder: report on validation
        has_test = False
    num_classes = read_info(list_files(splits["train"], SHARD_SUFFIX)[0]).num_classes
    return DataSet("uri-" + stable_id(root), splits["train"], splits["validate"],
                   splits["test"] if has_test else None, num_classes)
