"""Pareto fronts of GAP (up) against multiply-adds (down): of a study's trials, of a grid's cells, of the
models a practitioner may register (`orchestrator.tracking.front_registry`)."""

from __future__ import annotations

from typing import Protocol, TypeVar


class _HasScore(Protocol):
    gap: float
    macs: float


Scored = TypeVar("Scored", bound=_HasScore)


def pareto_front(trials: list[Scored]) -> list[Scored]:
    """The trials (or cells) no other beats on both objectives (GAP higher or equal and multiply-adds lower
    or equal, one of them strictly), by multiply-adds ascending."""
    front = [t for t in trials
             if not any(o.gap >= t.gap and o.macs <= t.macs and (o.gap > t.gap or o.macs < t.macs) for o in trials)]
    return sorted(front, key=lambda t: (t.macs, -t.gap))
