"""What every table of the report is made of: a `Table` (title, header, rows, notes, the published table
beside it), the rows' keys and labels (the keys of `orchestrator.report.published`), means ± standard
deviations over seeds, and whether a grid's setting is comparable with the paper's."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Callable, Iterable

from orchestrator.experiment.modes import Mode
from orchestrator.experiment.outcome import CellOutcome
from orchestrator.experiment.rows import (SKYLINE, content_rule, parts, row_key,  # noqa: F401  (the report's names)
                                         row_label)
from orchestrator.report.evidence import Evidence, scores_alone
from workloads.frames import SELECTORS
from workloads.variants import VARIANTS

FAMILY_NAMES = {"hrnn": "H-RNN", "netvlad": "NetVLAD", "nextvlad": "NeXtVLAD"}
MISSING = "–"
UNIFORM = "baseline:uniform"  # the row every other is compared with
REFERENCE = "(reference)"
_ROW_ORDER = (Mode.SKYLINE, Mode.BASELINE, Mode.PARALLEL, Mode.SERIAL)  # as Table 1 lists them


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    published: Table | None = None  # the paper's, rows and columns the grid also has


def _order(key: str) -> tuple:
    """Baselines in the paper's order, then parallel, then serial students, as Table 1 lists them."""
    if key == SKYLINE:
        return (0, 0, key)
    mode, what, _, _ = parts(key)
    place = list(SELECTORS) if mode.named_by_selection else list(VARIANTS[mode.training])
    return (_ROW_ORDER.index(mode), place.index(what) if what in place else len(place), key)


def mean_std(values: Iterable[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return MISSING
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


PAPER_CLASSES = 4716  # YouTube-8M's 2017 release, the paper's (2018's has 3,862)
PAPER_L2 = 2 * 1e-8  # regularization_penalty x the MoE's l2_penalty, the authors' code


def comparability(cells: list[CellOutcome]) -> str:
    """Whether the grid's setting is the paper's (YouTube-8M 2017 shards, paper-size models, its L2 and loss
    weights), and if not each way it is not. Table 3's time is never the paper's: its hours read the data."""
    reasons = []
    if any(c.data.startswith("syn-") for c in cells):
        reasons.append("it ran on synthetic data")
    elif any(not c.data for c in cells):
        reasons.append("its runs do not say which data they ran on")
    classes = sorted({c.classes for c in cells if c.classes is not None and c.classes != PAPER_CLASSES})
    if classes:
        reasons.append(f"its data has {', '.join(map(str, classes))} classes, not the {PAPER_CLASSES:,} of "
                       "YouTube-8M's 2017 release the paper used")
    sizes = sorted({c.size for c in cells if c.size != "paper"})
    if sizes:
        reasons.append(f"its models are of size {', '.join(sizes)}, not the paper's")
    l2 = sorted({c.l2 for c in cells if c.l2 is not None and not math.isclose(c.l2, PAPER_L2)})
    if l2:
        reasons.append(f"its L2 on the output layer is {', '.join(f'{v:g}' for v in l2)} x ||W||^2 / 2, not the "
                       f"paper's {PAPER_L2:g}")
    weights = sorted({f"{name}={value:g}" for c in cells for name, value in c.loss_weights if value != 1})
    if weights:
        reasons.append(f"its loss weights ({', '.join(weights)}) are not the paper's (1 each)")
    if not reasons:
        return ("Comparable with the paper's setting (data, model size, L2, loss weights), but for Table 3's time: "
                "the paper's hours include reading the data, ours do not.")
    return ("Not comparable with the paper: " + "; ".join(reasons) + ". The published numbers (YouTube-8M, "
            "paper-size models) are shown for their shape only; Table 3's time excludes reading the data, "
            "the paper's hours include it.")


class Scores:
    """The finished cells of one family at one data fraction, looked up by row and k; differences of rows
    with their intervals from `evidence`."""

    def __init__(self, cells: list[CellOutcome], evidence: Evidence | None = None):
        self.cells, self.evidence = cells, evidence or scores_alone()

    def of(self, key: str, k: int | None) -> list[CellOutcome]:
        """The finished cells of a row at k."""
        return [c for c in self.cells if c.finished and row_key(c) == key and (key == SKYLINE or c.k == k)]

    def failed(self, key: str, k: int | None) -> bool:
        return any(not c.finished and row_key(c) == key and (key == SKYLINE or c.k == k) for c in self.cells)

    def pair(self, key: str, k: int | None) -> list[str]:
        found = self.of(key, k)
        return [mean_std(c.gap for c in found), mean_std(c.map for c in found)]

    def versus(self, key: str, k: int | None, other: str = UNIFORM) -> str:
        """The row's mean test GAP minus `other`'s at k, with its 95% interval from a paired bootstrap over
        test videos: "+0.011 [+0.004, +0.018]"; MISSING when a side has no finished cell, REFERENCE for the
        row itself."""
        if key == other:
            return REFERENCE
        return _difference(self.evidence.gap(self.of(key, k)), self.evidence.gap(self.of(other, k)))

    def read_adaptively(self, key: str, k: int | None) -> list[CellOutcome]:
        """The finished cells of a row at k that were also read adaptively (`workloads.adaptive`)."""
        return [c for c in self.of(key, k) if c.adaptive_gap is not None]

    def adaptive_pair(self, key: str, k: int | None) -> list[str]:
        found = self.read_adaptively(key, k)
        return [mean_std(c.adaptive_gap for c in found), mean_std(c.adaptive_map for c in found)]

    def adaptive_versus(self, key: str, k: int | None, other: str = UNIFORM) -> str:
        """`versus` for the row read adaptively: its test GAP at each video's stop minus `other`'s."""
        return _difference(self.evidence.adaptive_gap(self.read_adaptively(key, k)),
                           self.evidence.gap(self.of(other, k)))

    def entry(self, table: Table, key: str, k: int | None, label: str, column: str) -> list[str]:
        """The row's (GAP, mAP) at k for `table`; a combination with no finished cell is shown as MISSING
        and named in the table's notes (its run failed, or it has not run)."""
        found = self.pair(key, k)
        # A content student runs at the ks its preset names, not at every k: only a failed one is missing
        if found[0] == MISSING and (content_rule(key) is None or self.failed(key, k)):
            why = "its run failed" if self.failed(key, k) else "no finished run"
            table.notes.append(f"missing ({why}): {label} at {column}")
        return found

    def keys(self, keep: Callable[[str], bool]) -> list[str]:
        """The rows (finished or failed) `keep` keeps, in the paper's order."""
        return sorted({row_key(c) for c in self.cells if keep(row_key(c))}, key=_order)


def _difference(ours, theirs) -> str:
    """One `Resampled` minus another, with its interval where both have draws; MISSING without a side."""
    if ours is None or theirs is None:
        return MISSING
    interval = (ours - theirs).interval()
    return f"{ours.estimate - theirs.estimate:+.3f}" if interval is None else str(interval)


def published_pair(score: tuple[float, float] | None) -> list[str]:
    """A published (GAP, mAP), formatted; MISSING where the paper has none."""
    return [MISSING, MISSING] if score is None else [f"{score[0]:.3f}", f"{score[1]:.3f}"]


def state(table: Table, unlike_paper: str | None, has_published: bool) -> None:
    """Say beside the table why the published numbers do not compare, or that there are none."""
    if not has_published:
        table.notes.append("The paper publishes no numbers for this table.")
    elif unlike_paper:
        table.notes.append(unlike_paper)
