"""A grid's report, made from its MLflow experiment alone: the paper's tables and figures beside the
published ones, written as `report.md`, `report.html` and the PNGs into a folder (all at once: every file
is made in a scratch folder first, so a failure leaves none behind). Its `headline` (Table 1 at a glance, then Table 1) is what a
grid's parent run shows as its description (`orchestrator.driver.closing`)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone

from mlflow.tracking import MlflowClient

from orchestrator.errors import OrchestratorError, masked
from orchestrator.experiment.outcome import CellOutcome
from orchestrator.report import figures
from orchestrator.report.accuracy import by_fraction, by_k, intermediate
from orchestrator.report.cost import cost
from orchestrator.report.compare import comparison
from orchestrator.report.evidence import Evidence
from orchestrator.report.exports import FORMATS, write_tables
from orchestrator.report.findings import findings
from orchestrator.report.glance import glance
from orchestrator.report.render import Report, Section, markdown, page, table_markdown
from orchestrator.report.tables import FAMILY_NAMES, comparability
from orchestrator.tracking import schema
from orchestrator.tracking.runs import Experiment, read_experiment


@dataclass(frozen=True)
class Written:
    folder: str
    files: list[str]  # paths, report.html and report.md first
    headline: str  # Table 1 at a glance, then Table 1 (of each family), as Markdown: the parent run's description


def _sections(client: MlflowClient, experiment: Experiment, scratch: str) -> tuple[list[Section], str]:
    """The report's sections, and Table 1 at a glance (`glance`)."""
    families = sorted({c.family for c in experiment.cells})
    unlike = comparability(experiment.cells)
    evidence = Evidence.in_mlflow(client)
    of = {family: [c for c in experiment.cells if c.family == family] for family in families}
    accuracy = Section("Accuracy by k (Tables 1, 5, 6)", [by_k(f, of[f], unlike, evidence) for f in families])
    measured = Section("The paper's findings, as measured",
                       items=[f"{FAMILY_NAMES.get(f, f)}: {line}" for f in families
                              for line in findings(of[f], evidence)])
    if not measured.items:
        measured.text.append("The grid has not the cells any finding needs.")
    fractions = Section("Less training data (Table 2)", [by_fraction(f, of[f], unlike, evidence) for f in families])
    costs = Section("Cost (Table 3)", [cost(f, of[f], experiment.timing, unlike) for f in families])
    matching = Section("Intermediate states (Table 4)",
                       [t for t in (intermediate(f, of[f], unlike, evidence) for f in families) if t is not None])
    if not matching.tables:
        matching.text.append("The grid has no student that matched intermediate states (the preset's "
                             "`intermediate` and `parallel_intermediate`).")
    return [accuracy, measured, fractions, costs, matching, _figures(client, experiment, of, scratch)], glance(of, evidence)


def _figures(client: MlflowClient, experiment: Experiment, of: dict[str, list[CellOutcome]], scratch: str) -> Section:
    pictures = Section("Figures")
    for family, cells in of.items():
        finished = [c for c in cells if c.finished]
        for caption, draw, name in (
                ("Figure 2: validation GAP after each epoch, serial vs parallel", figures.serial_parallel, "figure2"),
                ("Figure 3: t-SNE of teacher and student representations of the same test videos",
                 figures.embedding, "figure3")):
            path = draw(client, family, finished, os.path.join(scratch, f"{name}_{family}.png"))
            if path is None:
                pictures.text.append(f"{caption.split(':')[0]} ({family}): the grid has not the cells it needs.")
            else:
                pictures.figures.append((f"{caption} ({family})", path))
    finished = [c for c in experiment.cells if c.finished]
    pareto = figures.gap_against_cost(finished, os.path.join(scratch, "gap_vs_cost.png"), client)
    if pareto is not None:
        pictures.figures.append(("Test GAP against multiply-adds per video, every cell (and serial students read "
                                 "adaptively), with the Pareto front",
                                 pareto))
    return pictures


def _preamble(client: MlflowClient, experiment: Experiment) -> list[str]:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    presets = ", ".join(dict.fromkeys(experiment.presets)) or "unknown"
    where = masked(client.tracking_uri)
    return [f"MLflow experiment {experiment.name!r} (id {experiment.experiment_id}) at {where}: "
            f"{sum(c.finished for c in experiment.cells)} finished cells, preset {presets}; made {stamp}.",
            "Scores are each cell's test split (GAP over each video's top 20, mAP over classes); validation only "
            "chose the best epoch. a ± b is the mean and sample standard deviation over seeds; – is a cell "
            "the grid has not finished (named under its table). A difference d [lo, hi] is a row's mean test GAP "
            "minus another's with its 95% interval from a paired bootstrap over test videos (1,000 resamples, "
            "every model scored on the same ones); a finding holds only where its intervals exclude 0.",
            comparability(experiment.cells)]


def folder_name(experiment: str) -> str:
    """The experiment's name as one folder's name (`reports/<it>`): an MLflow experiment may be called
    anything, `../x` or `a/b` included, and its report stays in `reports/` all the same."""
    return re.sub(r"[^\w.-]+", "_", experiment).strip(".") or "_"


def check_folder(path: str, option: str) -> None:
    """`path` is a folder, or can be made one: no file stands at it or above it."""
    ancestor = os.path.abspath(path)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        where = "" if ancestor == os.path.abspath(path) else f" ({ancestor} is a file)"
        raise OrchestratorError(f"{option} {path}: not a folder{where}; give a folder for the report")


def write_report(client: MlflowClient, experiment_name: str, out: str, formats: tuple[str, ...] = FORMATS) -> Written:
    """Make the report of `experiment_name` into folder `out` (created once the report is made, so a failure
    leaves nothing; files of the same names replaced): `report.html`, `report.md` (with the PNGs) and each
    table as CSV and LaTeX, as many of them as `formats` names."""
    check_folder(out, "--out")
    experiment = read_experiment(client, experiment_name)
    with tempfile.TemporaryDirectory(prefix="fewer-frames-report-") as scratch:
        sections, at_a_glance = _sections(client, experiment, scratch)
        report = Report(f"Fewer Frames: {experiment.name}", _preamble(client, experiment), sections)
        names = _written(report, scratch, out, formats)
    headline = "\n\n".join(part for part in [at_a_glance, *(table_markdown(table) for table in report.sections[0].tables)] if part)
    return Written(out, [os.path.join(out, name) for name in names], headline)


def write_comparison(client: MlflowClient, experiments: list[str], out: str, formats: tuple[str, ...] = FORMATS) -> Written:
    """The grids `experiments` side by side (`orchestrator.report.compare`), written as `write_report` writes."""
    check_folder(out, "--out")
    report = comparison(client, experiments)
    with tempfile.TemporaryDirectory(prefix="fewer-frames-report-") as scratch:
        names = _written(report, scratch, out, formats)
    return Written(out, [os.path.join(out, name) for name in names], "")


def _written(report: Report, scratch: str, out: str, formats: tuple[str, ...]) -> list[str]:
    """The report's files made in `scratch` (which holds its figures), then moved into `out`: their names."""
    pages = [(name, render) for kind, name, render in (("html", schema.REPORT_HTML, page),
                                                       ("md", schema.REPORT_MD, markdown)) if kind in formats]
    for name, render in pages:
        with open(os.path.join(scratch, name), "w", encoding="utf-8") as file:
            file.write(render(report))
    figures = sorted(n for n in os.listdir(scratch) if n.endswith(".png")) if pages else []
    names = [name for name, _ in pages] + figures + write_tables(report, scratch, formats)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        raise OrchestratorError(f"--out {out}: cannot be made a folder: {error.strerror}") from None
    for name in names:
        shutil.move(os.path.join(scratch, name), os.path.join(out, name))
    return names
