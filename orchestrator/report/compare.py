"""Grids side by side: `python -m orchestrator.report --experiment A --experiment B [...]`.

For each family, Table 1's rows (the rows any of the grids has, in the paper's order) at every k any of
them ran, on each grid's largest share of the training data: a column group per grid (test GAP, mAP:
mean ± standard deviation over seeds), then each later grid's GAP minus the first's with its 95% interval.
The interval is a paired bootstrap over test videos (`orchestrator.report.evidence`) and so needs both
grids to have scored the same test videos (the same data set); where they did not, the difference is
shown alone and the table says why.
"""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from orchestrator.experiment.outcome import CellOutcome
from orchestrator.report.evidence import Evidence
from orchestrator.report.render import Report, Section
from orchestrator.report.tables import FAMILY_NAMES, MISSING, SKYLINE, Scores, Table, comparability, row_label
from orchestrator.tracking.runs import Experiment, read_experiment

LETTERS = "ABCDEFGHIJ"


def _at_full_data(cells: list[CellOutcome]) -> list[CellOutcome]:
    fraction = max((c.data_fraction for c in cells), default=1.0)
    return [c for c in cells if c.data_fraction == fraction]


def _difference(scores: list[Scores], index: int, key: str, k: int | None, unpaired: set[str]) -> str:
    ours, theirs = (scores[i].evidence.gap(scores[i].of(key, k)) for i in (index, 0))
    if ours is None or theirs is None:
        return MISSING
    interval = (ours - theirs).interval()
    if interval is None:
        unpaired.add(key)
        return f"{ours.estimate - theirs.estimate:+.3f}"
    return str(interval)


def compared_table(family: str, experiments: list[Experiment], evidence: Evidence) -> Table:
    """Table 1 of one family, a column group per grid and the differences from the first."""
    scores = [Scores(_at_full_data([c for c in e.cells if c.family == family]), evidence) for e in experiments]
    ks = sorted({c.k for s in scores for c in s.cells if c.k is not None})
    everyone = Scores([c for s in scores for c in s.cells])  # the rows any grid has, in the paper's order
    keys = everyone.keys(lambda key: key != SKYLINE and not key.endswith("+intermediate"))
    keys += [SKYLINE] if everyone.of(SKYLINE, None) or everyone.failed(SKYLINE, None) else []  # last, as in Table 1
    letters = LETTERS[:len(experiments)]
    header = ["model"]
    for k in ks or [None]:
        at = "all frames" if k is None else f"k={k}"
        header += [f"{at} {letter} {m}" for letter in letters for m in ("GAP", "mAP")]
        header += [f"{at} {letter} − A [95%]" for letter in letters[1:]]
    table = Table(f"Table 1 compared: {FAMILY_NAMES.get(family, family)}, test GAP and mAP by k, "
                  f"{' vs '.join(letters)}", header, [])
    unpaired: set[str] = set()
    for key in keys:
        row = [row_label(key)]
        for k in ([None] if key == SKYLINE else ks) or [None]:
            row += [text for s in scores for text in s.pair(key, k)]
            row += [_difference(scores, i, key, k, unpaired) for i in range(1, len(scores))]
        if key == SKYLINE and len(ks) > 1:  # the skyline sees every frame: the same at every k
            row += row[1:] * (len(ks) - 1)
        table.rows.append(row)
    if unpaired:
        table.notes.append("no interval where the grids scored different test videos (another data set), or "
                           "a side's test predictions were not kept: the difference is shown alone")
    return table


def comparison(client: MlflowClient, names: list[str]) -> Report:
    """The comparison of the grids named (two or more, the first the reference) as a report."""
    experiments = [read_experiment(client, name) for name in names]
    evidence = Evidence.in_mlflow(client)
    families = sorted({c.family for e in experiments for c in e.cells})
    preamble = [f"{letter} = MLflow experiment {e.name!r} (id {e.experiment_id}): {sum(c.finished for c in e.cells)} "
                f"finished cells, preset {', '.join(dict.fromkeys(e.presets)) or 'unknown'}. {comparability(e.cells)}"
                for letter, e in zip(LETTERS, experiments)]
    preamble.append("Scores are each cell's test split; a ± b is the mean and sample standard deviation over seeds; "
                    "– is a row the grid has not finished. X − A [95%] is grid X's mean test GAP minus grid A's, "
                    "with its 95% interval from a paired bootstrap over the test videos both scored.")
    tables = [compared_table(family, experiments, evidence) for family in families]
    return Report(f"Fewer Frames: {' vs '.join(names)}", preamble, [Section("Accuracy by k, grid against grid", tables)])
