"""A Table-1-style summary of a finished grid: test GAP / mAP by k, averaged over seeds, with the skyline
and the multiply-adds of each column, and under each family the paper's findings as measured
(`orchestrator.report.findings`), as Markdown."""

from __future__ import annotations

import statistics
from collections import defaultdict

from orchestrator.report.findings import findings
from orchestrator.experiment.matrix import Cell
from orchestrator.report.tables import mean_std
from orchestrator.experiment.results import CellResult


def _row_label(cell: Cell) -> str:
    if cell.mode == "baseline":
        return f"{cell.selection.replace('_', '-').title()}-k"
    suffix = " (intermediate)" if cell.intermediate else ""
    return f"{cell.mode.title()} {cell.variant}{suffix}"


def summarize(cells: list[Cell], results: dict[str, CellResult]) -> str:
    """Markdown: where the scores come from, a table per family and data fraction, and under each family's
    tables the paper's findings as measured; `results` maps cell id to its result."""
    groups: dict[tuple[str, float], list[Cell]] = defaultdict(list)
    for cell in cells:
        groups[(cell.family, cell.data_fraction)].append(cell)
    out = [_roles(results)] if results else []
    for (family, fraction), members in groups.items():
        out.append(_table(family, fraction, members, results))
        if fraction == min(f for fam, f in groups if fam == family):  # the family's last table
            lines = findings([c for c in cells if c.family == family], results)
            out += ["\n".join(f"- {line}" for line in lines)] if lines else []
    return "\n\n".join(out) + "\n"


def _roles(results: dict[str, CellResult]) -> str:
    any_result = next(iter(results.values()))
    return (f"GAP and mAP on the test split ({any_result.test_split or 'unnamed'}); each model's best epoch "
            f"picked on the validation split ({any_result.validation_split or 'unnamed'}).")


def _table(family: str, fraction: float, members: list[Cell], results: dict[str, CellResult]) -> str:
    ks = sorted({c.k for c in members if c.k is not None})
    rows: dict[str, dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    skyline: list[tuple[float, float]] = []
    macs: dict[object, list[float]] = defaultdict(list)
    for cell in members:
        result = results.get(cell.id)
        if result is None:
            continue
        if cell.mode == "skyline":
            skyline.append((result.gap, result.map))
            macs["all"].append(result.macs)
            continue
        rows[_row_label(cell)][cell.k].append((result.gap, result.map))
        if cell.mode in ("baseline", "serial"):
            macs[cell.k].append(result.macs)
    title = f"### {family}" + (f", {fraction:.0%} of the training data" if fraction < 1 else "")
    lines = [title, "", "| model | " + " | ".join(f"k={k} GAP | k={k} mAP" for k in ks) + " |",
             "|---|" + "---|---|" * len(ks)]
    for label, by_k in rows.items():
        cols = [mean_std([pair[i] for pair in by_k.get(k, [])]) for k in ks for i in (0, 1)]
        lines.append(f"| {label} | " + " | ".join(cols) + " |")
    if skyline:
        gap, mean_ap = mean_std([p[0] for p in skyline]), mean_std([p[1] for p in skyline])
        lines.append("| Teacher-Skyline (all frames) | " + " | ".join([gap, mean_ap] * len(ks)) + " |")
    flops = [text for k in ks for text in (f"{statistics.fmean(macs[k]) / 1e9:.3f} G" if macs.get(k) else "-", "")]
    lines.append("| multiply-adds per video (k frames) | " + " | ".join(flops) + " |")
    if macs.get("all"):
        lines.append(f"\nTeacher-Skyline: {statistics.fmean(macs['all']) / 1e9:.3f} G multiply-adds per video.")
    return "\n".join(lines)
