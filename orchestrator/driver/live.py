"""Each epoch's metrics, from the jobs that train to the driver as the epochs end: a cell's MLflow run then
fills while it trains, and the driver remains the only process that writes to MLflow (a SQLite tracking
store exists only where the driver opened it). A job says first that it has started, so that its run
begins when it does, not when it was queued. The channel is a Ray queue (an actor of no CPU); a job holds
an `EpochSender` naming its cell, the driver drains the queue between jobs' ends."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from workloads.progress import EpochMetrics


@dataclass(frozen=True)
class EpochSender:
    """An `on_epoch` callback for a job: sends (cell id, the epoch's metrics, when it ended) to the driver."""

    queue: Any  # ray.util.queue.Queue
    cell_id: str

    def __call__(self, metrics: EpochMetrics | None) -> None:
        try:
            self.queue.put((self.cell_id, metrics, time.time()), timeout=10)
        except Exception:  # noqa: BLE001 - a lost update only delays the curve: the result carries the history
            pass

    def started(self) -> None:
        """The job has started on its worker (not only been queued): its run begins now (metrics None)."""
        self(None)


class EpochChannel:
    """The queue, started with the first job that sends on it (a grid with nothing to run starts no actor)."""

    def __init__(self):
        self.queue = None

    def sender(self, cell_id: str) -> EpochSender:
        if self.queue is None:
            from ray.util.queue import Queue

            self.queue = Queue(actor_options={"num_cpus": 0})
        return EpochSender(self.queue, cell_id)

    def receive(self) -> list[tuple[str, EpochMetrics | None, float]]:
        """Every (cell id, epoch metrics, unix time it ended) sent since the last call, in the order sent; a
        job's start comes first, as (cell id, None, unix time it started)."""
        waiting = 0 if self.queue is None else self.queue.qsize()
        return self.queue.get_nowait_batch(waiting) if waiting else []

    def close(self) -> None:
        if self.queue is None:
            return
        try:
            self.queue.shutdown(force=True)
        except Exception:  # noqa: BLE001 - Ray is going down anyway
            pass
