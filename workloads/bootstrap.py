"""Paired bootstrap over test videos: how far a difference of scores between models could move had the test
split held other videos like these.

Every model scored on the same videos is resampled with the same draws (`Resamples`, made from the sorted
video ids and a seed), so a difference of two models' GAPs is taken resample by resample: that pairing is
what makes the interval of a difference much narrower than the two scores' own intervals. A resample is a
count per video (how often it was drawn, a multinomial of n draws over n videos), so a model's GAP on every
resample comes from one ranking of its triplets (`resampled_gap`), never re-sorted.

Test splits larger than `MAX_VIDEOS` are resampled within a fixed random subset of that many videos (the
same for every model of the split), and each draw's distance from the subset's own GAP is shrunk by
sqrt(subset / videos) around the whole split's GAP: the m-out-of-n bootstrap's rescaling, as GAP's spread
falls with the square root of the videos scored. YouTube-8M's 700,000 test videos then cost a few seconds
per model, not minutes.

`Resampled` is a score with its draws; arithmetic on two of them works draw by draw, so a difference, a
mean over seeds or a share of a gap has its draws too, and `interval()` its percentile interval.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from workloads.errors import WorkloadError
from workloads.metrics import TopKPredictions

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
MAX_VIDEOS = 20_000
_CHUNK_ELEMENTS = 4_000_000  # resamples x triplets held at once


@dataclass(frozen=True)
class Resamples:
    """The draws shared by every model scored on one set of videos."""

    ids: tuple[str, ...]  # the videos, sorted
    kept: np.ndarray  # positions (in `ids`) of the videos resampled: all, or a MAX_VIDEOS subset
    counts: np.ndarray  # (resamples, kept) how often each kept video was drawn

    @classmethod
    def of(cls, ids: list[str] | tuple[str, ...], resamples: int = RESAMPLES, seed: int = SEED,
           max_videos: int = MAX_VIDEOS) -> Resamples:
        ids = tuple(sorted(ids))
        if len(set(ids)) != len(ids):
            raise WorkloadError("the videos resampled must have distinct ids")
        if not ids:
            raise WorkloadError("there are no videos to resample")
        rng = np.random.default_rng(seed)
        n = len(ids)
        kept = np.arange(n) if n <= max_videos else np.sort(rng.choice(n, max_videos, replace=False))
        m = kept.size
        counts = rng.multinomial(m, np.full(m, 1.0 / m), size=resamples).astype(np.int32)
        return cls(ids, kept, counts)

    @cached_property
    def basis(self) -> str:
        """What identifies these draws: scores resampled on other videos (or by other draws) never pair."""
        digest = hashlib.sha1("\n".join(self.ids).encode())
        digest.update(self.kept.tobytes())
        digest.update(self.counts.tobytes())
        return digest.hexdigest()[:16]

    @property
    def shrink(self) -> float:
        """How much a draw's distance from the subset's score is shrunk: 1 when every video is kept."""
        return float(np.sqrt(self.kept.size / len(self.ids)))


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """"holds" when the whole interval lies above 0, "reversed" below it, "not shown" across it."""
        return "holds" if self.low > 0 else "reversed" if self.high < 0 else "not shown"

    def __str__(self) -> str:
        return f"{self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


@dataclass(frozen=True)
class Resampled:
    """A score (`estimate`, on all the videos) and its value on each resample (`draws`; None when it could not
    be resampled, e.g. a model whose predictions were not kept: then arithmetic keeps the estimate only),
    and the `basis` of those draws (`Resamples.basis`): two scores pair only on the same one."""

    estimate: float
    draws: np.ndarray | None = None
    basis: str = ""

    def _combine(self, other: Resampled | float, op) -> Resampled:
        if not isinstance(other, Resampled):
            other = Resampled(float(other), None if self.draws is None else np.full_like(self.draws, float(other)),
                              self.basis)
        paired = self.draws is not None and other.draws is not None and self.basis == other.basis
        return Resampled(float(op(self.estimate, other.estimate)),
                         op(self.draws, other.draws) if paired else None, self.basis if paired else "")

    def __sub__(self, other: Resampled | float) -> Resampled:
        return self._combine(other, np.subtract)

    def __truediv__(self, other: Resampled | float) -> Resampled:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._combine(other, np.divide)

    def interval(self, level: float = LEVEL) -> Interval | None:
        """The percentile interval of the draws; None without draws."""
        if self.draws is None:
            return None
        finite = self.draws[np.isfinite(self.draws)]
        if finite.size < self.draws.size:  # a share of a gap that vanished in some resample: no interval
            return None
        tail = (1 - level) / 2 * 100
        low, high = np.percentile(finite, [tail, 100 - tail])
        return Interval(self.estimate, float(low), float(high))


def mean(values: list[Resampled]) -> Resampled:
    """The mean of several scores (one row's seeds), draw by draw."""
    if not values:
        raise WorkloadError("the mean of no scores")
    estimate = float(np.mean([v.estimate for v in values]))
    if any(v.draws is None for v in values) or len({v.basis for v in values}) > 1:
        return Resampled(estimate)
    return Resampled(estimate, np.mean([v.draws for v in values], axis=0), values[0].basis)


def resampled_gap(predictions: TopKPredictions, resamples: Resamples, estimate: float) -> Resampled:
    """A model's GAP on every resample of its test videos; `estimate` is its GAP on all of them (the
    starter code's, ties broken its way)."""
    rows = _positions(list(predictions.ids), resamples)[resamples.kept]  # the resampled videos, in draw order
    videos = np.repeat(np.arange(rows.size), predictions.scores.shape[1])
    scores, hits = predictions.scores[rows].ravel(), predictions.hits[rows].ravel()
    rank = np.argsort(-scores, kind="stable")
    videos, hits = videos[rank], hits[rank]
    labels = predictions.label_counts[rows]
    draws = np.concatenate([_gaps(videos, hits, labels, counts)
                            for counts in _chunks(resamples.counts, videos.size)])
    if resamples.kept.size < len(resamples.ids):  # a subset: its own GAP is what the draws spread around
        subset = _gaps(videos, hits, labels, np.ones((1, rows.size), np.int32))[0]
        draws = _rescaled(draws, resamples, estimate, subset)
    return Resampled(estimate, draws, resamples.basis)


def resampled_mean(ids: list[str], values: np.ndarray, resamples: Resamples) -> Resampled:
    """The mean of a per-video value (a representation's cosine to its teacher's) on every resample."""
    values = np.asarray(values, dtype=np.float64)[_positions(ids, resamples)]
    kept = values[resamples.kept]
    draws = resamples.counts @ kept / resamples.counts.sum(axis=1)
    estimate = float(values.mean())
    if resamples.kept.size < len(resamples.ids):
        draws = _rescaled(draws, resamples, estimate, float(kept.mean()))
    return Resampled(estimate, draws, resamples.basis)


def _positions(ids: list[str], resamples: Resamples) -> np.ndarray:
    """Where each of `resamples.ids` sits in `ids`: the same videos, or an error naming the difference."""
    if len(ids) != len(resamples.ids) or set(ids) != set(resamples.ids):
        raise WorkloadError(f"the predictions hold {len(ids)} videos, the resamples {len(resamples.ids)} others: "
                            "models compared must be scored on the same test videos")
    where = {video: row for row, video in enumerate(ids)}
    return np.fromiter((where[video] for video in resamples.ids), dtype=np.int64, count=len(ids))


def _chunks(counts: np.ndarray, triplets: int):
    step = max(1, _CHUNK_ELEMENTS // max(triplets, 1))
    for start in range(0, counts.shape[0], step):
        yield counts[start:start + step]


def _gaps(videos: np.ndarray, hits: np.ndarray, label_counts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """GAP of each resample (a row of `counts`), from triplets ranked by score (`videos`, `hits`). A video
    drawn w times puts w copies of each of its triplets at consecutive ranks, so a hit's copies add
    sum over c = 1..w of (hits before + c) / (triplets before + c)."""
    weights = counts[:, videos]  # copies of each triplet; integers: exact running sums, faster than floats
    at_hits = np.flatnonzero(hits)
    copies = weights[:, at_hits]
    before = (np.cumsum(weights, axis=1, dtype=np.int64)[:, at_hits] - copies).astype(np.float64)
    hits_before = (np.cumsum(copies, axis=1, dtype=np.int64) - copies).astype(np.float64)
    total = np.zeros(counts.shape[0])
    for copy in range(1, int(copies.max(initial=0)) + 1):
        total += np.where(copies >= copy, (hits_before + copy) / (before + copy), 0.0).sum(axis=1)
    positives = counts @ label_counts.astype(np.float64)
    return np.divide(total, positives, out=np.zeros_like(total), where=positives > 0)


def _rescaled(draws: np.ndarray, resamples: Resamples, estimate: float, subset_estimate: float) -> np.ndarray:
    """Draws of a subset moved to the whole split (see the module's docstring)."""
    return estimate + resamples.shrink * (draws - subset_estimate)
