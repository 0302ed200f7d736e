"""The report's tables to take away: each as CSV (one header row, the cells as the report shows them) and
as LaTeX (a `table` float with a booktabs `tabular`, caption and label, ready for `\\input`), the
published table beside it as its own pair of files. Named after the table: `table1_hrnn.csv`,
`table1_hrnn_published.tex`."""

from __future__ import annotations

import csv
import os
import re

from orchestrator.report.render import Report
from orchestrator.report.tables import Table

FORMATS = ("md", "html", "csv", "tex")  # what a report can be written as
_LATEX = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
          "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
          "−": "$-$", "±": r"$\pm$", "–": "--", "×": r"$\times$", "≥": r"$\geq$", "≤": r"$\leq$"}


def table_name(table: Table) -> str:
    """`Table 1: H-RNN, test GAP ...` -> `table1_hrnn` (the number and the family, lower case)."""
    head = table.title.split(",")[0].removeprefix("Published: ")
    return re.sub(r"[^a-z0-9]+", "_", head.lower().replace("table ", "table").replace("-", "")).strip("_")


def write_tables(report: Report, folder: str, formats: tuple[str, ...]) -> list[str]:
    """Every table of `report` (and the published one beside it) in `formats` ("csv", "tex") into
    `folder`; the files' names, in the report's order."""
    written: list[str] = []
    for section in report.sections:
        for table in section.tables:
            name = _unique(table_name(table), written)
            pairs = [(name, table)] + ([(name + "_published", table.published)]
                                       if table.published is not None and table.published.rows else [])
            for base, which in pairs:
                for kind in (f for f in ("csv", "tex") if f in formats):
                    path = os.path.join(folder, f"{base}.{kind}")
                    with open(path, "w", encoding="utf-8", newline="") as file:
                        (_csv if kind == "csv" else _tex)(which, base, file)
                    written.append(os.path.basename(path))
    return written


def _unique(name: str, written: list[str]) -> str:
    taken = {os.path.splitext(n)[0] for n in written}
    return name if name not in taken else next(f"{name}_{i}" for i in range(2, 1000) if f"{name}_{i}" not in taken)


def _csv(table: Table, _: str, file) -> None:
    rows = csv.writer(file, lineterminator="\n")
    rows.writerow(table.header)
    rows.writerows(table.rows)


def latex(text: str) -> str:
    return "".join(_LATEX.get(char, char) for char in text)


def _tex(table: Table, name: str, file) -> None:
    columns = "l" + "r" * (len(table.header) - 1)
    lines = [r"% made by python -m orchestrator.report; needs \usepackage{booktabs}",
             r"\begin{table}[t]", r"\centering", rf"\caption{{{latex(table.title)}}}", rf"\label{{tab:{name}}}",
             rf"\begin{{tabular}}{{{columns}}}", r"\toprule", " & ".join(latex(h) for h in table.header) + r" \\",
             r"\midrule"]
    lines += [" & ".join(latex(value) for value in row) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    file.write("\n".join(lines) + "\n")
