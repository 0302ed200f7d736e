"""The paper's findings as a grid measured them, family by family, at the largest k, means over seeds, on
the test split. The best serial student is the variant with the highest mean validation GAP: the test
split reports a winner, it never picks one.

- the ordering: skyline > best serial student > Uniform-k > First-k, Middle-k, Last-k (Table 1);
- how much of the gap from Uniform-k to the skyline the best serial student closes (the paper, H-RNN k=30:
  (0.806 - 0.795) / (0.811 - 0.795) = 69%), and how it stands against the strongest baseline on validation,
  whichever that is (Uniform-k in the paper; not always here);
- whether students that learn the representation (Lrep) lie closer to the teacher than Uniform-k does,
  by the cosine of their representations of the same test videos (the paper's Figure 3);
- what matching intermediate states as well changes (Table 4: nothing, on YouTube-8M);
- with several data fractions, whether distillation's edge over Uniform-k grows as data shrinks (Table 2:
  +0.056 at 10% of YouTube-8M, +0.032 at 25%, +0.020 at 50%, +0.011 with all of it);
- which cells picked their last epoch as their best: still improving when training stopped, so their scores
  are those of models not trained out.

Each line says what was measured and whether the finding holds; none is printed without its cells.
"""

from __future__ import annotations

import statistics
from typing import Callable

from orchestrator.experiment.modes import Mode
from orchestrator.experiment.outcome import CellOutcome
from orchestrator.report.tables import row_key, row_label
from workloads.variants import learns_representation

CONTIGUOUS = ("first", "middle", "last")
PAPER_GAP_CLOSED = 0.69  # H-RNN, k=30, all of YouTube-8M


def findings(cells: list[CellOutcome]) -> list[str]:
    """One line per finding the grid has the cells for, for one family's cells (what did not finish
    counts as missing)."""
    ks = [c.k for c in cells if c.k is not None]
    if not ks:
        return []
    measure = _Means(cells, max(ks))
    lines = []
    for fraction in sorted({c.data_fraction for c in cells}, reverse=True):
        lines += [line for line in (_ordering(measure, fraction), _gap_closed(measure, fraction),
                                    _against_strongest(measure, fraction)) if line]
    most = max(c.data_fraction for c in cells)
    lines += [line for line in (_closer(measure, most), _intermediate(measure, most), _scarce_data(measure),
                                _still_improving(cells)) if line]
    return lines


class _Means:
    """Means over seeds of one family's cells at k (and at a data fraction)."""

    def __init__(self, cells: list[CellOutcome], k: int):
        self.cells, self.k = cells, k

    def of(self, match: Callable[[CellOutcome], bool], metric: str = "gap",
           fraction: float | None = 1.0) -> float | None:
        values = [getattr(c, metric) for c in self.cells if c.finished and match(c)
                  and (fraction is None or c.data_fraction == fraction) and (c.mode is Mode.SKYLINE or c.k == self.k)]
        values = [v for v in values if v is not None]
        return statistics.fmean(values) if values else None

    def skyline(self, fraction: float) -> float | None:
        return self.of(lambda c: c.mode is Mode.SKYLINE, fraction=fraction)

    def baseline(self, selection: str, fraction: float = 1.0, metric: str = "gap") -> float | None:
        return self.of(lambda c: c.mode is Mode.BASELINE and c.selection == selection, metric, fraction)

    def strongest_baseline(self, fraction: float) -> tuple[str, float] | None:
        """(the baseline selection of the highest mean validation GAP, its mean test GAP)."""
        selections = sorted({c.selection for c in self.cells if c.mode is Mode.BASELINE})
        return self._chosen_on_validation(
            {name: lambda c, n=name: c.mode is Mode.BASELINE and c.selection == n for name in selections}, fraction)

    def best_serial(self, fraction: float) -> tuple[str, float] | None:
        """(the serial variant of the highest mean validation GAP, its mean test GAP)."""
        variants = sorted({c.variant for c in self.cells if c.mode is Mode.SERIAL and not c.intermediate})
        return self._chosen_on_validation(
            {name: lambda c, v=name: c.mode is Mode.SERIAL and not c.intermediate and c.variant == v
             for name in variants}, fraction)

    def _chosen_on_validation(self, rows: dict[str, Callable[[CellOutcome], bool]],
                              fraction: float) -> tuple[str, float] | None:
        """(the row of the highest mean validation GAP, its mean test GAP); on a tie, the first of `rows`."""
        scores = {name: (self.of(match, "val_gap", fraction), self.of(match, "gap", fraction))
                  for name, match in rows.items()}
        scores = {name: pair for name, pair in scores.items() if None not in pair}
        if not scores:
            return None
        best = max(scores, key=lambda name: scores[name][0])
        return best, scores[best][1]


def _ordering(measure: _Means, fraction: float) -> str | None:
    skyline, serial, uniform = measure.skyline(fraction), measure.best_serial(fraction), measure.baseline("uniform", fraction)
    contiguous = {name: measure.baseline(name, fraction) for name in CONTIGUOUS}
    if skyline is None or serial is None or uniform is None or None in contiguous.values():
        return None
    holds = skyline > serial[1] > uniform > max(contiguous.values())
    parts = ", ".join(f"{name.title()} {gap:.3f}" for name, gap in contiguous.items())
    return (f"Paper's ordering at k={measure.k}{_of(fraction)}, mean test GAP over seeds: skyline {skyline:.3f} > "
            f"serial {serial[0]} {serial[1]:.3f} (the best on validation) > Uniform {uniform:.3f} > {parts}: "
            f"{_holds(holds)}")


def _gap_closed(measure: _Means, fraction: float) -> str | None:
    skyline, serial, uniform = measure.skyline(fraction), measure.best_serial(fraction), measure.baseline("uniform", fraction)
    if skyline is None or serial is None or uniform is None or skyline <= uniform:
        return None
    share = (serial[1] - uniform) / (skyline - uniform)
    return (f"The best serial student on validation closes {share:.0%} of the Uniform-{measure.k} to skyline gap"
            f"{_of(fraction)} "
            f"({uniform:.3f} -> {serial[1]:.3f} of {skyline:.3f}; the paper, H-RNN k=30: {PAPER_GAP_CLOSED:.0%})")


def _against_strongest(measure: _Means, fraction: float) -> str | None:
    skyline, serial = measure.skyline(fraction), measure.best_serial(fraction)
    strongest = measure.strongest_baseline(fraction)
    if skyline is None or serial is None or strongest is None or strongest[0] == "uniform":
        return None  # Uniform-k's comparison is the lines above
    name, gap = row_label(f"{Mode.BASELINE}:{strongest[0]}").removesuffix("-k"), strongest[1]
    closed = f", {(serial[1] - gap) / (skyline - gap):.0%} of its gap to the skyline" if skyline > gap else ""
    return (f"The strongest baseline on validation is {name}-{measure.k}, not Uniform{_of(fraction)}: test GAP "
            f"{gap:.3f}; the best serial student on validation {serial[1]:.3f}, {serial[1] - gap:+.3f}{closed}")


def _still_improving(cells: list[CellOutcome]) -> str | None:
    """The finished cells whose best epoch was their last, counted by table row and k."""
    rows: dict[str, list[int]] = {}
    for cell in cells:
        if cell.finished and cell.best_epoch is not None and cell.epochs is not None:
            where = row_label(row_key(cell)) + ("" if cell.k is None else f" k={cell.k}")
            rows.setdefault(where, [0, 0])[0] += cell.still_improving
            rows[where][1] += 1
    improving = {where: counts for where, counts in rows.items() if counts[0]}
    if not improving:
        return None
    shown = ", ".join(f"{where} ({mine} of {every})" for where, (mine, every) in improving.items())
    total = sum(mine for mine, _ in improving.values())
    return (f"Best epoch the last one trained, still improving when training stopped: {total} of "
            f"{sum(every for _, every in rows.values())} finished cells: {shown}")


def _closer(measure: _Means, fraction: float) -> str | None:
    learns = lambda c: c.mode is Mode.SERIAL and not c.intermediate and learns_representation(c.variant)
    students = measure.of(learns, "rep_cosine", fraction)
    uniform = measure.baseline("uniform", fraction, metric="rep_cosine")
    if students is None or uniform is None:
        return None
    return (f"Students that learn the representation (Lrep) lie closer to the teacher than Uniform-{measure.k}: "
            f"mean cosine of their test representations {students:.3f} vs {uniform:.3f}: {_holds(students > uniform)}")


def _intermediate(measure: _Means, fraction: float) -> str | None:
    changes = []
    for mode, variant in sorted({(c.mode, c.variant) for c in measure.cells if c.intermediate}):
        matched = measure.of(lambda c: (c.mode, c.variant, c.intermediate) == (mode, variant, True), fraction=fraction)
        plain = measure.of(lambda c: (c.mode, c.variant, c.intermediate) == (mode, variant, False), fraction=fraction)
        if matched is not None and plain is not None:
            changes.append(f"{matched - plain:+.3f} ({mode} {variant})")
    if not changes:
        return None
    return (f"Matching intermediate states as well changes test GAP at k={measure.k} by {', '.join(changes)} "
            "(the paper, Table 4: no gain)")


def _scarce_data(measure: _Means) -> str | None:
    edges = {}
    for fraction in sorted({c.data_fraction for c in measure.cells}):
        serial, uniform = measure.best_serial(fraction), measure.baseline("uniform", fraction)
        if serial is not None and uniform is not None:
            edges[fraction] = serial[1] - uniform
    if len(edges) < 2:
        return None
    ordered = list(edges.values())  # from the least data to the most
    grows = all(a >= b for a, b in zip(ordered, ordered[1:]))
    shown = ", ".join(f"{edge:+.3f} at {fraction:.0%}" for fraction, edge in edges.items())
    return (f"Distillation's edge over Uniform-{measure.k} (best serial minus Uniform GAP) as data shrinks: {shown}; "
            f"larger with less data: {_holds(grows)} (the paper, Table 2: +0.056 at 10% ... +0.011 at 100%)")


def _of(fraction: float) -> str:
    return "" if fraction == 1 else f" on {fraction:.0%} of the training data"


def _holds(holds: bool) -> str:
    return "holds" if holds else "DOES NOT HOLD"
