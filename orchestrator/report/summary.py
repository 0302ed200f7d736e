"""The summary a grid prints when its cells are done (and keeps on its parent run as `summary.md`): where the
scores come from, then for each family the report's own Table 1 (Table 2 when the grid trained on several
shares of the data, Table 4 when students matched intermediate states) and the paper's findings as
measured, as Markdown. The same tables as the
report's, made from the same `CellOutcome`s, so the terminal and the report never disagree."""

from __future__ import annotations

from orchestrator.experiment.outcome import CellOutcome
from orchestrator.report.accuracy import by_fraction, by_k, intermediate
from orchestrator.report.evidence import Evidence, scores_alone
from orchestrator.report.findings import findings
from orchestrator.report.render import table_markdown
from orchestrator.report.tables import comparability


def summarize(cells: list[CellOutcome], evidence: Evidence | None = None) -> str:
    """Markdown: where the scores come from, each family's tables, and under them its findings, differences
    with intervals from `evidence`."""
    finished = [c for c in cells if c.finished]
    evidence = evidence or scores_alone()  # one for all the tables: each cell read and resampled once
    out = [_roles(finished[0])] if finished else []
    unlike = comparability(finished)
    for family in dict.fromkeys(c.family for c in cells):
        mine = [c for c in cells if c.family == family]
        tables = [by_k(family, mine, unlike, evidence)]
        if len({c.data_fraction for c in mine}) > 1:
            tables.append(by_fraction(family, mine, unlike, evidence))
        tables += [table for table in [intermediate(family, mine, unlike, evidence)] if table is not None]
        out += [table_markdown(table, published=False).rstrip() for table in tables]
        lines = findings(mine, evidence)
        out += ["\n".join(f"- {line}" for line in lines)] if lines else []
    return "\n\n".join(out) + "\n"


def _roles(cell: CellOutcome) -> str:
    return (f"GAP and mAP on the test split ({cell.test_split or 'unnamed'}); each model's best epoch "
            f"picked on the validation split ({cell.validation_split or 'unnamed'}).")
