"""The paper's accuracy tables from a grid's finished cells, each with the published one beside it:

    Table 1 / 5 / 6   test GAP and mAP by k of every row, for H-RNN / NetVLAD / NeXtVLAD (another family:
                      a table of its own, with no published numbers); each serial student also read
                      adaptively has a row of that reading too
    Table 2           the same at the largest k, by share of the training data
    Table 4           matching intermediate states against matching the final representation

Each row's test GAP is compared with Uniform-k's at the same k (Table 4: with the same student matching the
final representation as well), the difference with its 95% interval from a paired bootstrap over test
videos (`orchestrator.report.evidence`).
"""

from __future__ import annotations

import statistics

from orchestrator.experiment.outcome import CellOutcome
from orchestrator.report import published
from orchestrator.report.evidence import Evidence
from orchestrator.report.tables import (FAMILY_NAMES, MISSING, SKYLINE, Scores, Table, published_pair, row_label,
                                        state)

GAP_MAP = ("GAP", "mAP")
ADAPTIVELY = "read adaptively"
VERSUS_UNIFORM = "GAP − Uniform [95%]"


def _full_data(cells: list[CellOutcome]) -> float:
    return max(c.data_fraction for c in cells)


def _name(family: str) -> str:
    return FAMILY_NAMES.get(family, family)


def by_k(family: str, cells: list[CellOutcome], unlike_paper: str | None, evidence: Evidence | None = None) -> Table:
    """Table 1 (5, 6): a family's rows at every k, on all (or the largest share of) the training data."""
    fraction = _full_data(cells)
    scores = Scores([c for c in cells if c.data_fraction == fraction], evidence)
    ks = sorted({c.k for c in scores.cells if c.k is not None})
    share = "" if fraction == 1 else f", {fraction:g} of the training data"
    table = Table(f"{published.TABLE_OF_FAMILY.get(family, 'Table')}: {_name(family)}, test GAP and mAP by k{share}",
                  ["model"] + [f"k={k} {m}" for k in ks for m in GAP_MAP + (VERSUS_UNIFORM,)], [])
    keys = scores.keys(lambda key: key != SKYLINE and not key.endswith("+intermediate"))
    for key in keys:
        row = [row_label(key)]
        for k in ks:
            row += scores.entry(table, key, k, row_label(key), f"k={k}") + [scores.versus(key, k)]
        table.rows.append(row)
    _adaptive_rows(table, scores, keys, ks)
    skyline = scores.entry(table, SKYLINE, None, row_label(SKYLINE), "all frames")
    table.rows.append([row_label(SKYLINE)] + [text for k in ks for text in skyline + [scores.versus(SKYLINE, k)]]
                      if ks else [row_label(SKYLINE)] + skyline + [MISSING])
    paper = published.BY_K.get(family)
    if paper is not None:
        paper_ks = sorted({k for row in paper.values() for k in row})
        rows = [[row_label(key)] + [text for k in paper_ks for text in published_pair(paper[key].get(k))]
                for key in keys if key in paper]
        rows.append([row_label(SKYLINE)] + published_pair(published.SKYLINE[family]) * len(paper_ks))
        table.published = Table(f"Published: {published.TABLE_OF_FAMILY[family]} (YouTube-8M)",
                                ["model"] + [f"k={k} {m}" for k in paper_ks for m in GAP_MAP], rows)
    state(table, unlike_paper, paper is not None)
    return table


def _adaptive_rows(table: Table, scores: Scores, keys: list[str], ks: list[int]) -> None:
    """A row for each student also read adaptively (as many of its k frames as each video needs), and a
    note with the frames and multiply-adds it read on average at each k."""
    for key in [key for key in keys if any(scores.read_adaptively(key, k) for k in ks)]:
        label = f"{row_label(key)}, {ADAPTIVELY}"
        table.rows.append([label] + [text for k in ks for text in scores.adaptive_pair(key, k)
                                     + [scores.adaptive_versus(key, k)]])
        read = [f"{statistics.fmean(c.adaptive_frames for c in found):.1f} of {k} frames "
                f"({statistics.fmean(c.adaptive_macs / c.macs for c in found):.0%} of its multiply-adds)"
                for k in ks for found in [scores.read_adaptively(key, k)] if found]
        table.notes.append(f"{label}: each video stops once its prediction settles (the threshold calibrated on "
                           f"validation), reading on average {', '.join(read)}")


def by_fraction(family: str, cells: list[CellOutcome], unlike_paper: str | None,
                evidence: Evidence | None = None) -> Table:
    """Table 2: Uniform-k, the serial students and the skyline at the largest k, by share of training data."""
    fractions = sorted({c.data_fraction for c in cells})
    k = max((c.k for c in cells if c.k is not None), default=None)
    table = Table(f"Table 2: {_name(family)}, test GAP and mAP at k={k} by share of the training data",
                  ["model"] + [f"{f:.0%} {m}" for f in fractions for m in GAP_MAP + (VERSUS_UNIFORM,)], [])
    if len(fractions) < 2:
        table.notes.append(f"The grid trained on one share of the data ({fractions[0]:.0%}); Table 2 needs several "
                           "(the preset's `data_fractions`, e.g. [0.1, 0.25, 0.5, 1.0]).")
    by_share = {f: Scores([c for c in cells if c.data_fraction == f], evidence) for f in fractions}
    keys = [key for key in Scores(cells).keys(lambda key: key == "baseline:uniform" or key.startswith("serial:"))
            if not key.endswith("+intermediate")]
    for key in keys + [SKYLINE]:
        row = [row_label(key)]
        for f in fractions:
            row += by_share[f].entry(table, key, k, row_label(key), f"{f:.0%} of the data") + [by_share[f].versus(key, k)]
        table.rows.append(row)
    if family == "hrnn":
        shares = sorted({f for row in published.BY_FRACTION.values() for f in row})
        rows = [[row_label(key)] + [t for f in shares for t in published_pair(score.get(f))]
                for key, score in published.BY_FRACTION.items()]
        table.published = Table(f"Published: Table 2 (YouTube-8M, k={published.FRACTION_K}; all of the data: "
                                "Table 1)", ["model"] + [f"{f:.0%} {m}" for f in shares for m in GAP_MAP], rows)
    state(table, unlike_paper, family == "hrnn")
    return table


def intermediate(family: str, cells: list[CellOutcome], unlike_paper: str | None,
                 evidence: Evidence | None = None) -> Table | None:
    """Table 4: each student that matched intermediate states beside the same student matching only the
    final representation, at the largest k; None when the family's grid has no intermediate cells."""
    fraction = _full_data(cells)
    scores = Scores([c for c in cells if c.data_fraction == fraction], evidence)
    with_states = scores.keys(lambda key: key.endswith("+intermediate"))
    if not with_states:
        return None
    k = max(c.k for c in scores.cells if c.intermediate)
    table = Table(f"Table 4: {_name(family)}, final against intermediate representation matching, k={k}",
                  ["model", "final GAP", "final mAP", "intermediate GAP", "intermediate mAP",
                   "intermediate − final GAP [95%]", f"intermediate {VERSUS_UNIFORM}"], [])
    paper_rows = []
    for key in with_states:
        final = key.replace("+intermediate", "")
        label = row_label(final)
        table.rows.append([label] + scores.entry(table, final, k, f"{label} (final)", f"k={k}")
                          + scores.entry(table, key, k, f"{label} (intermediate)", f"k={k}")
                          + [scores.versus(key, k, other=final), scores.versus(key, k)])
        paper = published.INTERMEDIATE.get(final) if family == "hrnn" else None
        if paper is not None:
            paper_rows.append([label] + published_pair(paper["final"]) + published_pair(paper["intermediate"]))
    if family == "hrnn":
        table.published = Table(f"Published: Table 4 (YouTube-8M, k={published.INTERMEDIATE_K})", table.header[:5],
                                paper_rows)
    state(table, unlike_paper, family == "hrnn")
    return table
