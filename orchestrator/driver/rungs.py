"""Early stopping on two objectives: asynchronous successive halving (ASHA, Li et al. 2020) whose rungs rank
trials by Pareto dominance on (validation GAP up, multiply-adds down), after MO-ASHA (Schmucker et al. 2021),
instead of by GAP alone. A cheap trial with a modest GAP is not dominated by a dear one with a better GAP,
so it survives the rung: plain ASHA stops it, and a cost study never sees the cheap end of its front.

Plain Python, no Ray: `orchestrator.driver.search_algorithms` hands it Tune's per-epoch reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

Score = tuple[float, float]  # (validation GAP, multiply-adds)


def dominates(a: Score, b: Score) -> bool:
    """a is at least as good as b on both objectives and better on one."""
    return a[0] >= b[0] and a[1] <= b[1] and a != b


def front_ranks(scores: dict[str, Score]) -> dict[str, int]:
    """Non-dominated sorting: 0 for the Pareto front, 1 for the front once it is removed, and so on."""
    ranks, left, rank = {}, dict(scores), 0
    while left:
        front = [name for name, score in left.items() if not any(dominates(o, score) for o in left.values())]
        for name in front:
            ranks[name] = rank
            del left[name]
        rank += 1
    return ranks


def survives(trial: str, scores: dict[str, Score], reduction_factor: int) -> bool:
    """Whether `trial` is among the best 1/reduction_factor of the rung's scores (itself included), whole
    fronts at a time: a front that crosses the cut is kept whole, so ties and trade-offs are not broken by
    chance."""
    ranks = front_ranks(scores)
    keep = math.ceil(len(scores) / reduction_factor)
    kept, rank = 0, 0
    while kept < keep:
        kept += sum(1 for r in ranks.values() if r == rank)
        rank += 1
    return ranks[trial] < rank


@dataclass
class ParetoRungs:
    """The rungs of one bracket: at epochs grace, grace * rf, grace * rf^2, ... below `max_epochs`, each
    holds the scores the trials had when they reached it. A trial reaching a rung continues when it
    survives among them; a rung's first trial always continues (there is nothing to compare it with)."""

    grace_period: int
    max_epochs: int
    reduction_factor: int
    recorded: dict[int, dict[str, Score]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        milestone = self.grace_period
        while milestone < self.max_epochs:
            self.recorded.setdefault(milestone, {})
            milestone *= self.reduction_factor

    def decide(self, trial: str, epoch: int, gap: float, macs: float) -> bool:
        """True: continue; False: stop the trial here. Each trial is judged once per rung, at the highest
        rung its epoch reaches that it has not passed yet."""
        for milestone in sorted(self.recorded, reverse=True):
            rung = self.recorded[milestone]
            if epoch < milestone or trial in rung:
                continue
            rung[trial] = (gap, macs)
            return survives(trial, rung, self.reduction_factor)
        return True
