"""A Table-1-style summary of a finished grid: GAP / mAP by k, averaged over seeds, with the skyline and
the multiply-adds of each column, as Markdown."""

from __future__ import annotations

import statistics
from collections import defaultdict

from orchestrator.matrix import Cell
from orchestrator.results import CellResult


def _row_label(cell: Cell) -> str:
    if cell.mode == "baseline":
        return f"{cell.selection.replace('_', '-').title()}-k"
    suffix = " (intermediate)" if cell.intermediate else ""
    return f"{cell.mode.title()} {cell.variant}{suffix}"


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    return f"{mean:.3f}" if len(values) == 1 else f"{mean:.3f}±{statistics.pstdev(values):.3f}"


def ordering_check(cells: list[Cell], results: dict[str, CellResult]) -> str | None:
    """Whether the paper's ordering holds at the largest k, averaged over seeds:
    skyline > best serial student > Uniform-k > each of First-k, Middle-k, Last-k."""
    ks = [c.k for c in cells if c.k is not None]
    if not ks:
        return None
    k = max(ks)

    def mean_gap(match) -> float | None:
        values = [results[c.id].gap for c in cells if match(c) and c.id in results]
        return statistics.fmean(values) if values else None

    skyline = mean_gap(lambda c: c.mode == "skyline")
    serial = {c.variant: mean_gap(lambda x, c=c: x.mode == "serial" and not x.intermediate and x.variant == c.variant
                                  and x.k == k)
              for c in cells if c.mode == "serial" and not c.intermediate}
    serial = {name: gap for name, gap in serial.items() if gap is not None}
    uniform = mean_gap(lambda c: c.mode == "baseline" and c.selection == "uniform" and c.k == k)
    contiguous = {name: mean_gap(lambda c, n=name: c.mode == "baseline" and c.selection == n and c.k == k)
                  for name in ("first", "middle", "last")}
    if skyline is None or not serial or uniform is None or any(v is None for v in contiguous.values()):
        return None
    best_name, best = max(serial.items(), key=lambda item: item[1])
    holds = skyline > best > uniform > max(contiguous.values())
    parts = ", ".join(f"{name.title()} {gap:.3f}" for name, gap in contiguous.items())
    return (f"Paper's ordering at k={k}, mean GAP over seeds: skyline {skyline:.3f} > serial {best_name} {best:.3f} "
            f"> Uniform {uniform:.3f} > {parts}: {'holds' if holds else 'DOES NOT HOLD'}")


def summarize(cells: list[Cell], results: dict[str, CellResult]) -> str:
    """Markdown tables, one per family and data fraction; `results` maps cell id to its metrics."""
    groups: dict[tuple[str, float], list[Cell]] = defaultdict(list)
    for cell in cells:
        groups[(cell.family, cell.data_fraction)].append(cell)
    out = []
    for (family, fraction), members in groups.items():
        ks = sorted({c.k for c in members if c.k is not None})
        rows: dict[str, dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
        order: list[str] = []
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
            label = _row_label(cell)
            if label not in order:
                order.append(label)
            rows[label][cell.k].append((result.gap, result.map))
            if cell.mode in ("baseline", "serial"):
                macs[cell.k].append(result.macs)
        title = f"### {family}" + (f", {fraction:.0%} of the training data" if fraction < 1 else "")
        header = "| model | " + " | ".join(f"k={k} GAP | k={k} mAP" for k in ks) + " |"
        rule = "|---|" + "---|---|" * len(ks)
        lines = [title, "", header, rule]
        for label in order:
            cols = []
            for k in ks:
                pairs = rows[label].get(k, [])
                cols += [_fmt([p[0] for p in pairs]), _fmt([p[1] for p in pairs])]
            lines.append(f"| {label} | " + " | ".join(cols) + " |")
        if skyline:
            gap, mean_ap = _fmt([p[0] for p in skyline]), _fmt([p[1] for p in skyline])
            lines.append("| Teacher-Skyline (all frames) | " + " | ".join([gap, mean_ap] * len(ks)) + " |")
        flops = []
        for k in ks:
            flops += [f"{statistics.fmean(macs[k]) / 1e9:.3f} G" if macs.get(k) else "-", ""]
        lines.append("| multiply-adds per video (k frames) | " + " | ".join(flops) + " |")
        if macs.get("all"):
            lines.append(f"\nTeacher-Skyline: {statistics.fmean(macs['all']) / 1e9:.3f} G multiply-adds per video.")
        check = ordering_check(members, results)
        if check:
            lines.append("\n" + check)
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"
