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
- beyond the paper: whether a serial student on frames chosen by content (`workloads.saliency`), or one read
  adaptively (`workloads.adaptive`), reaches the best serial student's GAP at the largest k with at most
  half its frames;
- with several data fractions, whether distillation's edge over Uniform-k grows as data shrinks (Table 2:
  +0.056 at 10% of YouTube-8M, +0.032 at 25%, +0.020 at 50%, +0.011 with all of it);
- which cells picked their last epoch as their best: still improving when training stopped, so their scores
  are those of models not trained out;
- whether every baseline and student trained as many epochs, or which rows trained how many.

Each line says what was measured and whether the finding holds; none is printed without its cells. Every
difference comes with its 95% interval from a paired bootstrap over test videos (`Evidence`: both sides
scored on the same resampled videos, every seed's model of a row on each, averaged as the row's means
are). A finding "holds" only when the intervals of all its differences lie above 0; it is "reversed" when
one lies below, and "not shown" when one reaches across 0 (or a side's predictions were not kept).
"""

from __future__ import annotations

import statistics
from typing import Callable

from orchestrator.experiment.modes import Mode
from orchestrator.experiment.outcome import CellOutcome
from orchestrator.report.evidence import Evidence, scores_alone
from orchestrator.report.tables import row_key, row_label
from workloads.bootstrap import Interval, Resampled
from workloads.variants import learns_representation

CONTIGUOUS = ("first", "middle", "last")
PAPER_GAP_CLOSED = 0.69  # H-RNN, k=30, all of YouTube-8M


def findings(cells: list[CellOutcome], evidence: Evidence | None = None) -> list[str]:
    """One line per finding the grid has the cells for, for one family's cells (what did not finish
    counts as missing)."""
    ks = [c.k for c in cells if c.k is not None]
    if not ks:
        return []
    measure = Means(cells, max(ks), evidence or scores_alone())
    lines = []
    for fraction in sorted({c.data_fraction for c in cells}, reverse=True):
        lines += [line for line in (_ordering(measure, fraction), _gap_closed(measure, fraction),
                                    _against_strongest(measure, fraction)) if line]
    most = max(c.data_fraction for c in cells)
    lines += _by_content(cells, measure, most)
    lines += [line for line in (_adaptive(measure, most), _closer(measure, most), _intermediate(measure, most),
                                _scarce_data(measure), _still_improving(cells), _compute(cells)) if line]
    return lines


Match = Callable[[CellOutcome], bool]


class Means:
    """Means over seeds of one family's cells at k (and at a data fraction): validation GAP as a number,
    test GAP and representation cosine as `Resampled` scores."""

    def __init__(self, cells: list[CellOutcome], k: int, evidence: Evidence):
        self.cells, self.k, self.evidence = cells, k, evidence

    def _cells(self, match: Match, fraction: float | None) -> list[CellOutcome]:
        return [c for c in self.cells if c.finished and match(c) and (fraction is None or c.data_fraction == fraction)
                and (c.mode is Mode.SKYLINE or c.k == self.k)]

    def validation(self, match: Match, fraction: float) -> float | None:
        values = [c.val_gap for c in self._cells(match, fraction) if c.val_gap is not None]
        return statistics.fmean(values) if values else None

    def gap(self, match: Match, fraction: float) -> Resampled | None:
        return self.evidence.gap([c for c in self._cells(match, fraction) if c.gap is not None])

    def cosine(self, match: Match, fraction: float) -> Resampled | None:
        return self.evidence.cosine(self._cells(match, fraction), self.cells)

    def skyline(self, fraction: float) -> Resampled | None:
        return self.gap(lambda c: c.mode is Mode.SKYLINE, fraction)

    def baseline(self, selection: str, fraction: float) -> Resampled | None:
        return self.gap(_baseline(selection), fraction)

    def strongest_baseline(self, fraction: float) -> tuple[str, Resampled] | None:
        """(the baseline selection of the highest mean validation GAP, its test GAP)."""
        selections = sorted({c.selection for c in self.cells if c.mode is Mode.BASELINE})
        return self._chosen_on_validation({name: _baseline(name) for name in selections}, fraction)

    def best_serial(self, fraction: float) -> tuple[str, Resampled] | None:
        """(the serial variant of the highest mean validation GAP, its test GAP)."""
        variants = sorted({c.variant for c in self.cells if c.on_uniform_serial})
        return self._chosen_on_validation(
            {name: lambda c, v=name: c.on_uniform_serial and c.variant == v for name in variants}, fraction)

    def _chosen_on_validation(self, rows: dict[str, Match], fraction: float) -> tuple[str, Resampled] | None:
        """(the row of the highest mean validation GAP, its test GAP); on a tie, the first of `rows`."""
        scores = {name: (self.validation(match, fraction), self.gap(match, fraction)) for name, match in rows.items()}
        scores = {name: pair for name, pair in scores.items() if None not in pair}
        if not scores:
            return None
        best = max(scores, key=lambda name: scores[name][0])
        return best, scores[best][1]


def _baseline(selection: str) -> Match:
    return lambda c: c.mode is Mode.BASELINE and c.selection == selection


def _ordering(measure: Means, fraction: float) -> str | None:
    skyline, serial, uniform = measure.skyline(fraction), measure.best_serial(fraction), measure.baseline("uniform", fraction)
    contiguous = {name: measure.baseline(name, fraction) for name in CONTIGUOUS}
    if skyline is None or serial is None or uniform is None or None in contiguous.values():
        return None
    strongest = max(contiguous, key=lambda name: contiguous[name].estimate)
    steps = [skyline - serial[1], serial[1] - uniform, uniform - contiguous[strongest]]
    parts = ", ".join(f"{name.title()} {gap.estimate:.3f}" for name, gap in contiguous.items())
    return (f"Paper's ordering at k={measure.k}{_of(fraction)}, mean test GAP over seeds: skyline {skyline.estimate:.3f} "
            f"> serial {serial[0]} {serial[1].estimate:.3f} (the best on validation) > Uniform {uniform.estimate:.3f} > "
            f"{parts}: {_verdict(steps)} (each step's difference, 95% interval: "
            f"{'; '.join(_shown(step) for step in steps)})")


def _gap_closed(measure: Means, fraction: float) -> str | None:
    skyline, serial, uniform = measure.skyline(fraction), measure.best_serial(fraction), measure.baseline("uniform", fraction)
    if skyline is None or serial is None or uniform is None or skyline.estimate <= uniform.estimate:
        return None
    edge = serial[1] - uniform
    share = edge / (skyline - uniform)
    interval = share.interval()
    within = "" if interval is None else f" [95% interval {interval.low:.0%} to {interval.high:.0%}]"
    return (f"The best serial student on validation closes {share.estimate:.0%}{within} of the "
            f"Uniform-{measure.k} to skyline gap{_of(fraction)} ({uniform.estimate:.3f} -> {serial[1].estimate:.3f} of "
            f"{skyline.estimate:.3f}; the paper, H-RNN k=30: {PAPER_GAP_CLOSED:.0%}); over Uniform-{measure.k}: "
            f"{_shown(edge)}, {_verdict([edge])}")


def _against_strongest(measure: Means, fraction: float) -> str | None:
    skyline, serial = measure.skyline(fraction), measure.best_serial(fraction)
    strongest = measure.strongest_baseline(fraction)
    if skyline is None or serial is None or strongest is None or strongest[0] == "uniform":
        return None  # Uniform-k's comparison is the lines above
    name, gap = row_label(f"{Mode.BASELINE}:{strongest[0]}").removesuffix("-k"), strongest[1]
    edge = serial[1] - gap
    closed = (f", {(edge / (skyline - gap)).estimate:.0%} of its gap to the skyline"
              if skyline.estimate > gap.estimate else "")
    return (f"The strongest baseline on validation is {name}-{measure.k}, not Uniform{_of(fraction)}: test GAP "
            f"{gap.estimate:.3f}; the best serial student on validation {serial[1].estimate:.3f}, {_shown(edge)}"
            f"{closed}; ahead of it: {_verdict([edge])}")


def _adaptive(measure: Means, fraction: float) -> str | None:
    """The best serial student on validation read adaptively (`workloads.adaptive`) against its own reading
    of all k frames, on the same test videos: does it keep that GAP with at most k/2 frames on average?"""
    serial = measure.best_serial(fraction)
    if serial is None:
        return None
    cells = measure._cells(lambda c: c.on_uniform_serial and c.variant == serial[0], fraction)
    adaptive = measure.evidence.adaptive_gap(cells)
    if adaptive is None:
        return None
    k, frames = measure.k, statistics.fmean(c.adaptive_frames for c in cells)
    share = statistics.fmean(c.adaptive_macs for c in cells) / statistics.fmean(c.macs for c in cells)
    edge = adaptive - serial[1]
    return (f"Adaptive reading at k={k}{_of(fraction)} (frames coarse to fine, each video stopping once its "
            f"prediction settles, the threshold calibrated on validation): the best serial student on validation "
            f"({serial[0]}) reads {frames:.1f} of {k} frames on average, {share:.0%} of its k-frame "
            f"multiply-adds, at test GAP {adaptive.estimate:.3f} against {serial[1].estimate:.3f} reading all "
            f"{k}: {_shown(edge)}; reaching its {k}-frame GAP with at most {k // 2} frames: "
            f"{_reaching(edge, frames, k)}")


def _by_content(cells: list[CellOutcome], measure: Means, fraction: float) -> list[str]:
    """Each serial student on frames chosen by content (`workloads.saliency`) against the best serial
    student on validation at the largest k on uniform frames (does it reach that GAP with at most k/2
    frames?), and against its control: the same variant on k uniform frames."""
    serial = measure.best_serial(fraction)
    rows = sorted({(c.k, c.selection, c.variant) for c in cells if c.chooses_by_content and c.finished})
    if serial is None or not rows:
        return []
    top = measure.k
    best = measure._cells(lambda c: c.on_uniform_serial and c.variant == serial[0], fraction)
    top_macs = statistics.fmean(c.macs for c in best)
    lines = []
    for k, rule, variant in rows:
        at = Means(cells, k, measure.evidence)
        mine = at._cells(lambda c: c.selection == rule and c.variant == variant and c.mode is Mode.SERIAL, fraction)
        gap = measure.evidence.gap(mine) if mine else None
        if gap is None:
            continue
        control = at.gap(lambda c: c.on_uniform_serial and c.variant == variant, fraction)
        edge = gap - serial[1]
        share = statistics.fmean(c.macs for c in mine) / top_macs
        against = "" if control is None else (f"; against the same student on {k} uniform frames "
                                              f"({control.estimate:.3f}): {_shown(gap - control)}")
        lines.append(f"Frames chosen by content ({rule}, a frame scorer trained from the teacher cache)"
                     f"{_of(fraction)}: serial {variant} on {k} of them reaches test GAP {gap.estimate:.3f} "
                     f"against {serial[1].estimate:.3f} of the best serial student on validation ({serial[0]}) on "
                     f"{top} uniform frames: {_shown(edge)}, at {share:.0%} of its multiply-adds (the scorer reading "
                     f"every frame counted){against}; reaching its {top}-frame GAP with at most {top // 2} frames: "
                     f"{_reaching(edge, k, top)}")
    return lines


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


def _compute(cells: list[CellOutcome]) -> str | None:
    """Whether every baseline and student trained as many epochs (what a comparison of two rows assumes)."""
    rows: dict[int, set[str]] = {}
    for cell in cells:
        if cell.finished and cell.epochs is not None and cell.mode is not Mode.SKYLINE:
            rows.setdefault(cell.epochs, set()).add(row_label(row_key(cell)))
    if not rows:
        return None
    if len(rows) == 1:
        return (f"Matched training: every baseline and student trained {next(iter(rows))} epochs (a serial variant "
                "of several stages shares them out; a parallel pair trains on its teacher's schedule)")
    shown = "; ".join(f"{epochs} epochs: {', '.join(sorted(names))}" for epochs, names in sorted(rows.items()))
    return f"Unmatched training, so rows of different epochs do not compare like for like: {shown}"


def _closer(measure: Means, fraction: float) -> str | None:
    students = measure.cosine(lambda c: c.on_uniform_serial and learns_representation(c.variant), fraction)
    uniform = measure.cosine(_baseline("uniform"), fraction)
    if students is None or uniform is None:
        return None
    return (f"Students that learn the representation (Lrep) lie closer to the teacher than Uniform-{measure.k}: "
            f"mean cosine of their test representations {students.estimate:.3f} vs {uniform.estimate:.3f}, "
            f"{_shown(students - uniform)}: {_verdict([students - uniform])}")


def _intermediate(measure: Means, fraction: float) -> str | None:
    changes = []
    for mode, variant in sorted({(c.mode, c.variant) for c in measure.cells if c.intermediate}):
        matched = measure.gap(lambda c: (c.mode, c.variant, c.intermediate) == (mode, variant, True), fraction)
        plain = measure.gap(lambda c: (c.mode, c.variant, c.intermediate) == (mode, variant, False), fraction)
        if matched is not None and plain is not None:
            changes.append(f"{_shown(matched - plain)} ({mode} {variant}: a gain {_verdict([matched - plain])})")
    if not changes:
        return None
    return (f"Matching intermediate states as well changes test GAP at k={measure.k} by {', '.join(changes)} "
            "(the paper, Table 4: no gain)")


def _scarce_data(measure: Means) -> str | None:
    edges: dict[float, Resampled] = {}
    for fraction in sorted({c.data_fraction for c in measure.cells}):
        serial, uniform = measure.best_serial(fraction), measure.baseline("uniform", fraction)
        if serial is not None and uniform is not None:
            edges[fraction] = serial[1] - uniform
    if len(edges) < 2:
        return None
    ordered = list(edges.values())  # from the least data to the most
    shown = ", ".join(f"{_shown(edge)} at {fraction:.0%}" for fraction, edge in edges.items())
    return (f"Distillation's edge over Uniform-{measure.k} (best serial minus Uniform GAP) as data shrinks: {shown}; "
            f"larger with less data: {_verdict([less - more for less, more in zip(ordered, ordered[1:])])} "
            "(the paper, Table 2: +0.056 at 10% ... +0.011 at 100%)")


def _of(fraction: float) -> str:
    return "" if fraction == 1 else f" on {fraction:.0%} of the training data"


def _reaching(edge: Resampled, frames: float, k: int) -> str:
    """Whether reading `frames` frames on average reaches the GAP of reading k (`edge`: the difference from
    it) with at most k/2: "reaches" is not shown worse, the interval reaching 0 or lying above it."""
    interval = edge.interval()
    if interval is None:
        return "not shown (no interval: test predictions not kept)"
    reaches = interval.high >= 0
    if reaches and frames <= k / 2:
        return ("holds (and better: its interval lies above 0)" if interval.low > 0
                else "holds (not shown worse: its interval reaches 0)")
    return "DOES NOT HOLD (" + ("more than half the frames" if reaches else "its interval lies below 0") + ")"


def _shown(difference: Resampled) -> str:
    """A difference with its 95% interval, or its estimate alone when it has none."""
    interval = difference.interval()
    return f"{difference.estimate:+.3f} (no interval)" if interval is None else str(interval)


def _verdict(differences: list[Resampled]) -> str:
    """"holds" when every difference's interval lies above 0; "DOES NOT HOLD" when one lies below;
    "not shown" otherwise, with why."""
    intervals: list[Interval | None] = [d.interval() for d in differences]
    if None in intervals:
        return "not shown (no interval: test predictions not kept)"
    verdicts = {i.verdict for i in intervals}
    if verdicts == {"holds"}:
        return "holds"
    if "reversed" in verdicts:
        return "DOES NOT HOLD (an interval lies below 0)"
    return "not shown (a 95% interval includes 0)"
