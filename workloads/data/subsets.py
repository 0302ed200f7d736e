"""Which videos of a set of shards a reader reads, chosen by a hash of each video's id, so the choice is
the same whatever the sharding, the workers or the order:

- `in_fraction`: the first `fraction` of the videos, nested (the 10% subset lies inside the 25% one): the
  paper's Table 2 trains on 10, 25, 50% of the training data;
- `in_holdout`: a share of the training shards' videos held out as the validation split (the paper held
  out 48,163 training videos and reported on the official validation split). Its hash is salted, so it
  is independent of the fraction's: a fraction is taken of what the holdout leaves;
- `in_sample`: a share of a split's videos that every model of a grid describes the same way (the
  representation sample: how close a student's representations are to its teacher's, Figure 3).
"""

from __future__ import annotations

import zlib

import numpy as np

HOLDOUT_SALT = b"holdout:"
SAMPLE_SALT = b"sample:"


def in_fraction(ids: list[str], fraction: float) -> np.ndarray:
    """Which videos belong to the first `fraction` of the data set."""
    return _hashes(ids, b"") < np.uint64(int(fraction * 2**32))


def in_holdout(ids: list[str], share: float) -> np.ndarray:
    """Which videos are held out (a `share` of them, by a salted hash of the id)."""
    return _hashes(ids, HOLDOUT_SALT) < np.uint64(int(share * 2**32))


def in_sample(ids: list[str], share: float) -> np.ndarray:
    """Which videos are in the representation sample (a `share` of them, by another salted hash)."""
    return _hashes(ids, SAMPLE_SALT) < np.uint64(int(share * 2**32))


def _hashes(ids: list[str], salt: bytes) -> np.ndarray:
    return np.array([zlib.crc32(salt + i.encode()) for i in ids], dtype=np.uint64)
