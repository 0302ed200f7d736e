"""Table 1 at a glance: per family and k, Uniform-k, the best serial student (chosen on validation) with
its edge over Uniform-k and that edge's 95% interval, and the skyline; test GAP, means over seeds.

It heads a grid's parent run's description. MLflow 3.17 shows a description 150 pixels high until "Show
more" is clicked: the whole Table 1 (a row per baseline and student) does not fit, a row per k does (the
paper's H-RNN grid has five), so what a researcher opens the run for is on its page without a click, and
the whole Table 1 follows it.
"""

from __future__ import annotations

from orchestrator.experiment.outcome import CellOutcome
from orchestrator.report.evidence import Evidence
from orchestrator.report.findings import Means
from orchestrator.report.tables import FAMILY_NAMES
from workloads.variants import REGISTRY


def glance(families: dict[str, list[CellOutcome]], evidence: Evidence) -> str:
    """A Markdown table, a row per family and k with a Uniform-k and a serial student finished ('' when
    there is none)."""
    rows = []
    for family, cells in families.items():
        fraction = max((c.data_fraction for c in cells), default=1.0)
        for k in sorted({c.k for c in cells if c.k is not None and c.finished}):
            measure = Means(cells, k, evidence)
            uniform, serial = measure.baseline("uniform", fraction), measure.best_serial(fraction)
            if uniform is None or serial is None:
                continue
            edge = serial[1] - uniform
            interval = edge.interval()
            shown = f"{edge.estimate:+.3f}" if interval is None else str(interval)
            skyline = measure.skyline(fraction)
            rows.append(f"| {FAMILY_NAMES.get(family, family)} | {k} | {uniform.estimate:.3f} | "
                        f"{REGISTRY[serial[0]].label} {serial[1].estimate:.3f} | {shown} | "
                        f"{'–' if skyline is None else f'{skyline.estimate:.3f}'} |")
    if not rows:
        return ""
    return "\n".join(["**At a glance** (test GAP; the serial student best on validation, − Uniform [95%])", "",
                      "| family | k | Uniform | best serial | − Uniform | skyline |",
                      "|---|---|---|---|---|---|", *rows])
