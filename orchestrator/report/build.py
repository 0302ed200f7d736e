"""A grid's report, made from its MLflow experiment alone: the paper's tables and figures beside the
published ones, written as `report.md`, `report.html` and the PNGs into a folder (all at once: every file
is made in a scratch folder first, so a failure leaves none behind), and optionally logged on a parent
run with Table 1 as the run's description (MLflow's note)."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

from mlflow.tracking import MlflowClient

from orchestrator.errors import note, one_line
from orchestrator.report import figures
from orchestrator.report.accuracy import by_fraction, by_k, intermediate
from orchestrator.report.cost import cost
from orchestrator.report.render import Report, Section, markdown, page, table_markdown
from orchestrator.tracking.runs import Experiment, read_experiment
from orchestrator.report.tables import comparability

NOTE_TAG = "mlflow.note.content"  # what MLflow's UI shows as a run's description


@dataclass(frozen=True)
class Written:
    folder: str
    files: list[str]  # paths, report.html and report.md first
    headline: str  # Table 1 (of each family) as Markdown: the parent run's description


def _sections(client: MlflowClient, experiment: Experiment, scratch: str) -> list[Section]:
    families = sorted({c.family for c in experiment.cells})
    unlike = comparability(experiment.cells)
    of = {family: [c for c in experiment.cells if c.family == family] for family in families}
    accuracy = Section("Accuracy by k (Tables 1, 5, 6)", [by_k(f, of[f], unlike) for f in families])
    fractions = Section("Less training data (Table 2)", [by_fraction(f, of[f], unlike) for f in families])
    costs = Section("Cost (Table 3)", [cost(f, of[f], experiment.timing, unlike) for f in families])
    matching = Section("Intermediate states (Table 4)",
                       [t for t in (intermediate(f, of[f], unlike) for f in families) if t is not None])
    if not matching.tables:
        matching.text.append("The grid has no student that matched intermediate states (the preset's "
                             "`intermediate` and `parallel_intermediate`).")
    pictures = Section("Figures")
    for family in families:
        for caption, draw, name in (
                ("Figure 2: validation GAP after each epoch, serial vs parallel", figures.serial_parallel, "figure2"),
                ("Figure 3: t-SNE of teacher and student representations of the same test videos",
                 figures.embedding, "figure3")):
            finished = [c for c in of[family] if c.finished]
            path = draw(client, family, finished, os.path.join(scratch, f"{name}_{family}.png"))
            if path is None:
                pictures.text.append(f"{caption.split(':')[0]} ({family}): the grid has not the cells it needs.")
            else:
                pictures.figures.append((f"{caption} ({family})", path))
    finished = [c for c in experiment.cells if c.finished]
    pareto = figures.gap_against_cost(finished, os.path.join(scratch, "gap_vs_cost.png"))
    if pareto is not None:
        pictures.figures.append(("Test GAP against multiply-adds per video, every cell, with the Pareto front",
                                 pareto))
    return [accuracy, fractions, costs, matching, pictures]


def _preamble(client: MlflowClient, experiment: Experiment) -> list[str]:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    presets = ", ".join(dict.fromkeys(experiment.presets)) or "unknown"
    return [f"MLflow experiment {experiment.name!r} (id {experiment.experiment_id}) at {client.tracking_uri}: "
            f"{sum(c.finished for c in experiment.cells)} finished cells, preset {presets}; made {stamp}.",
            "Scores are each cell's test split (GAP over each video's top 20, mAP over classes); validation only "
            "chose the best epoch. a ± b is the mean and sample standard deviation over seeds; – is a cell "
            "the grid has not finished (named under its table).",
            comparability(experiment.cells) or "Comparable with the paper: YouTube-8M shards, paper-size models."]


def write_report(client: MlflowClient, experiment_name: str, out: str) -> Written:
    """Make the report of `experiment_name` into folder `out` (created; files of the same names replaced)."""
    experiment = read_experiment(client, experiment_name)
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".report-") as scratch:
        report = Report(f"Fewer Frames: {experiment.name}", _preamble(client, experiment),
                        _sections(client, experiment, scratch))
        for name, text in (("report.md", markdown(report)), ("report.html", page(report))):
            with open(os.path.join(scratch, name), "w", encoding="utf-8") as file:
                file.write(text)
        names = ["report.html", "report.md"] + sorted(n for n in os.listdir(scratch) if n.endswith(".png"))
        for name in names:
            shutil.move(os.path.join(scratch, name), os.path.join(out, name))
    headline = "\n".join(table_markdown(table) for table in report.sections[0].tables)
    return Written(out, [os.path.join(out, name) for name in names], headline)


def log_report(client: MlflowClient, run_id: str, written: Written) -> None:
    """Attach a written report to a run, with its Table 1 as the run's description."""
    for path in written.files:
        client.log_artifact(run_id, path)
    client.set_tag(run_id, NOTE_TAG, written.headline + "\n\nThe whole report: the `report.html` artifact.")


def report_on_parent(tracker, folder: str) -> Written | None:
    """A grid's closing step: its experiment's report made into `folder` and logged on its open parent run.
    None, with a note, when it cannot be made: the cells are recorded whatever happens to their report,
    and `python -m orchestrator.report` makes it again from MLflow."""
    try:
        written = write_report(tracker.client, tracker.experiment, folder)
        log_report(tracker.client, tracker.parent_id, written)
    except Exception as error:  # noqa: BLE001 - see the docstring
        note("report", f"not made ({type(error).__name__}: {one_line(error)}); the cells are recorded, and "
                       f"`python -m orchestrator.report --experiment {tracker.experiment}` makes it from MLflow")
        return None
    return written


@contextmanager
def report_folder(store, experiment: str) -> Iterator[str]:
    """Where a grid's closing report is written: in a local store (`reports/<experiment>`); elsewhere a
    scratch folder, removed once the report is logged as the parent run's artifacts."""
    if store.is_local:
        yield store.path(f"reports/{experiment}")
    else:
        with tempfile.TemporaryDirectory(prefix="fewer-frames-report-") as folder:
            yield folder
