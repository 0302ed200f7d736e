"""The report from MLflow alone: cells logged by the real Tracker into a real SQLite tracking store, then
`python -m orchestrator.report` and its pieces."""

import contextlib
import csv
import dataclasses
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from commands import in_process
from orchestrator.experiment.presets import load_preset
from orchestrator.experiment.matrix import expand
from orchestrator.report.build import folder_name, write_report
from orchestrator.tracking import schema
from orchestrator.experiment.results import CellResult
from orchestrator.tracking.tracker import Tracker
from workloads.progress import EpochMetrics

REPO = Path(__file__).resolve().parents[1]


def result(gap: float, macs: int, epochs: int = 2) -> CellResult:
    history = tuple(EpochMetrics(epoch=e, stage="train", loss=1.0 / e, losses={}, val_gap=gap - 0.01 * (epochs - e),
                                 val_map=gap / 2, seconds=1.0,
                                 teacher_val_gap=gap + 0.01) for e in range(1, epochs + 1))
    return CellResult(gap=gap, map=gap / 2, val_gap=gap, val_map=gap / 2, best_epoch=epochs, train_seconds=1.0,
                      inference_seconds=0.1, macs=macs, frame_macs=int(macs * 0.9), params=10, history=history,
                      wall_seconds=1.0, device="cpu", validation_split="v", test_split="t")


def score(cell) -> float:
    """A made-up but distinct test GAP per cell, differing by seed so that means and deviations show."""
    base = {"skyline": 0.80, "baseline": 0.60, "serial": 0.70, "parallel": 0.65}[cell.mode]
    return round(base + 0.01 * cell.seed + (0.001 * (cell.k or 0)), 6)


@pytest.fixture
def logged(tmp_path):
    """The tiny preset at two seeds and two data shares, every cell logged but one (`missing`)."""
    preset = dataclasses.replace(load_preset("tiny"), seeds=[0, 1], data_fractions=[0.5, 1.0])
    _, cells = expand(preset, "syn-test")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, "exp", str(tmp_path / "artifacts"))
    tracker.start_parent("p", {}, {schema.PRESET_TAG: "tiny"})
    missing = next(c for c in cells if c.mode == "serial" and c.seed == 1 and c.data_fraction == 1.0
                   and c.variant == "rep+pred+ce")
    for cell in cells:
        if cell is not missing:
            macs = 1_000_000_000 if cell.k is None else 100_000_000
            tracker.cells.finish(cell, result(score(cell), macs), {}, {})
    tracker.log_on_parent(metrics={schema.timing_metric("hrnn", "all"): 10.0, schema.timing_metric("hrnn", "k10"): 2.5},
                          tags={schema.TIMING_DEVICE_TAG: "cpu"})
    tracker.end_parent("FINISHED")
    return MlflowClient(uri), uri, cells, missing


def test_the_report_shows_means_over_seeds_names_missing_cells_and_sets_the_paper_beside(logged, tmp_path):
    client, _, cells, missing = logged
    written = write_report(client, "exp", str(tmp_path / "out"))
    text = (tmp_path / "out" / schema.REPORT_MD).read_text()
    # Table 1 at all of the data: seeds 0 and 1 averaged (0.80 and 0.81 for the skyline).
    table1 = text[text.index("**Table 1"):text.index("*Published: Table 1")]
    assert "| Teacher-Skyline (all frames) | 0.805 ± 0.007 |" in table1
    assert "| Uniform-k | 0.615 ± 0.007 |" in table1
    # The missing seed is not invented: the row is seed 0 alone, and Table 2 at 100% says so too.
    assert "| Serial Lrep + Lpred + LCE | 0.710 |" in table1
    assert "Not comparable with the paper: it ran on synthetic data" in text
    assert "| Serial Lrep + Lpred + LCE | 0.731 | 0.297 |" in text  # the paper's k=6 column, beside
    table2 = text[text.index("**Table 2"):text.index("*Published: Table 2")]
    assert ("| model | 50% GAP | 50% mAP | 50% GAP − Uniform [95%] | 100% GAP | 100% mAP | 100% GAP − Uniform [95%] |"
            in table2)
    # Cells logged without their test predictions: differences from Uniform-k, but no interval to show.
    assert "| Serial Lrep + Lpred + LCE | 0.710 | 0.355 | +0.095 |" in table1  # 0.710 - 0.615
    # Table 3: multiply-adds from the cells, time only from the timing job.
    table3 = text[text.index("**Table 3"):text.index("*Published: Table 3")]
    assert "| Teacher-Skyline (all frames) | 0.900 | 1.000 | 1.000 | 10.00 | 1.000 |" in table3
    assert "| k=10 | 0.090 | 0.100 | 0.100 | 2.50 | 0.250 |" in table3
    assert "Table 4: H-RNN, final against intermediate representation matching, k=10" in text
    for name in ("figure2_hrnn.png", "gap_vs_cost.png"):
        assert (tmp_path / "out" / name).stat().st_size > 10_000 and f"]({name})" in text
    # One self-contained page: every image inline, nothing fetched from elsewhere.
    page = (tmp_path / "out" / schema.REPORT_HTML).read_text()
    assert page.count("<img") == 2 and not re.search(r'src="(?!data:image/png;base64,)', page)
    assert "Table 1: H-RNN" in written.headline and "Table 2" not in written.headline
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no scratch left


def test_a_missing_combination_is_named_under_its_table(tmp_path):
    preset = load_preset("tiny")
    _, cells = expand(preset, "syn-test")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, "exp", str(tmp_path / "artifacts"))
    tracker.start_parent("p", {}, {schema.PRESET_TAG: "tiny"})
    for cell in cells:
        if not (cell.mode == "baseline" and cell.selection == "first"):
            tracker.cells.finish(cell, result(score(cell), 10**8), {}, {})
    first = next(c for c in cells if c.mode == "baseline" and c.selection == "first")
    tracker.cells.fail(first, "it broke")  # a FAILED run is not a result
    tracker.end_parent("FAILED")
    text = Path(write_report(MlflowClient(uri), "exp", str(tmp_path / "out")).files[1]).read_text()
    assert "| First-k | – | – |" in text and "missing (its run failed): First-k at k=10" in text
    assert "Time per video: not measured" in text
    assert "Figure 3 (hrnn): the grid has not the cells it needs." in text  # no representation samples logged


def report(*args):
    return subprocess.run([sys.executable, "-m", "orchestrator.report", *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO)


def report_here(*args):
    """The command in this process."""
    return in_process("orchestrator.report.__main__", *args)


def test_a_report_folder_is_named_for_its_experiment_and_stays_in_reports():
    from orchestrator.report.__main__ import default_folder

    assert [folder_name(name) for name in ("fewer-frames-tiny", "../../etc", "a/b", "..", "my exp")] == \
        ["fewer-frames-tiny", "_.._etc", "a_b", "_", "my_exp"]
    # where the grid writes it (its store's root holds the SQLite file), unless on a server
    assert default_folder("sqlite:///runs/mlflow.db", "fewer-frames-smoke") == "runs/reports/fewer-frames-smoke"
    assert default_folder("sqlite:////s/mlflow.db", "a/b") == "/s/reports/a_b"
    assert default_folder("http://127.0.0.1:5000", "x") == "reports/x"


def test_the_command_says_in_one_line_when_there_is_nothing_to_report(logged, tmp_path):
    _, uri, _, _ = logged
    # The command as a user runs it once (its one line is all it prints), then in this process.
    for run, args, message in (
            (report, ["--experiment", "nope", "--tracking-uri", uri], "MLflow experiment 'nope' does not exist"),
            (report_here, ["--experiment", "exp", "--tracking-uri", f"sqlite:///{tmp_path}/absent.db"],
             "no MLflow database"),
    ):
        done = run(*args, "--out", str(tmp_path / "r"))
        assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
        assert message in done.stderr and not (tmp_path / "r").exists()
    client = MlflowClient(uri)
    client.create_experiment("empty")
    done = report_here("--experiment", "empty", "--tracking-uri", uri, "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "has no finished cells" in done.stderr, done.stderr
    done = report_here("--experiment", "exp", "--tracking-uri", uri, "--out", str(tmp_path / "r"))
    assert done.returncode == 0 and (tmp_path / "r" / schema.REPORT_HTML).exists(), done.stderr
    (tmp_path / "a-file").write_text("kept")
    for out, where in ((tmp_path / "a-file", ""), (tmp_path / "a-file" / "r", f" ({tmp_path / 'a-file'} is a file)")):
        done = report_here("--experiment", "exp", "--tracking-uri", uri, "--out", str(out))
        assert done.returncode == 2, done.stderr
        assert done.stderr == f"error: --out {out}: not a folder{where}; give a folder for the report\n"
    assert (tmp_path / "a-file").read_text() == "kept"


def test_a_finished_run_that_lost_its_metrics_is_named_and_left_out(logged, tmp_path):
    """Its metrics deleted from the tracking store: the report is made without it and says so (it crashed
    with a KeyError, leaving an empty folder)."""
    client, uri, cells, _ = logged
    run = next(r for r in client.search_runs(["1"], schema.kind_filter(schema.RunKind.CELL))
               if r.info.run_name == "hrnn/baseline/uniform/k10/s0")
    with contextlib.closing(sqlite3.connect(uri.removeprefix("sqlite:///"))) as db, db:
        for table in ("metrics", "latest_metrics"):
            db.execute(f"DELETE FROM {table} WHERE run_uuid = ? AND key = 'gap'", (run.info.run_id,))
    done = report_here("--experiment", "exp", "--tracking-uri", uri, "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    assert (f"note  {run.info.run_name}: MLflow run {run.info.run_id} is FINISHED without its metric(s) gap: "
            "left out of the numbers") in done.stdout
    text = (tmp_path / "r" / schema.REPORT_MD).read_text()
    assert "| Uniform-k | 0.620 |" in text  # seed 1's alone (with seed 0's: 0.615 ± 0.007)


def test_the_comparability_line_names_every_way_a_grid_differs_from_the_papers_setting():
    from orchestrator.experiment.outcome import CellOutcome
    from orchestrator.report.tables import comparability
    preset = load_preset("paper")
    _, cells = expand(preset, "yt8m-2017")
    paper_like = [dataclasses.replace(CellOutcome.of(c, result(0.8, 10**9)), classes=4716) for c in cells[:20]]
    line = comparability(paper_like)
    assert line.startswith("Comparable with the paper's setting") and "Table 3's time" in line
    release_2018 = [dataclasses.replace(c, classes=3862) for c in paper_like]
    assert "its data has 3862 classes, not the 4,716 of YouTube-8M's 2017 release" in comparability(release_2018)
    tuned = load_preset("paper", {"loss_weights": {"rep": 0.01}, "student_train": {"regularization_penalty": 0.0}})
    _, cells = expand(tuned, "yt8m-2017")
    changed = comparability([dataclasses.replace(CellOutcome.of(c, result(0.8, 10**9)), classes=4716) for c in cells])
    assert changed.startswith("Not comparable with the paper: its L2 on the output layer is 0 x ||W||^2 / 2")
    assert "its loss weights (rep=0.01) are not the paper's (1 each)" in changed
    assert "Table 3's time excludes reading the data" in changed


def test_the_tables_come_out_as_csv_and_latex_alone_when_asked(logged, tmp_path):
    client, uri, _, _ = logged
    written = write_report(client, "exp", str(tmp_path / "t"), formats=("csv", "tex"))
    names = sorted(os.path.basename(path) for path in written.files)
    assert names == sorted(os.listdir(tmp_path / "t")) and "table1_hrnn.csv" in names and "table2_hrnn.tex" in names
    assert not [n for n in names if n.endswith((".html", ".md", ".png"))]  # only what was asked
    with open(tmp_path / "t" / "table1_hrnn.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:3] == ["model", "k=10 GAP", "k=10 mAP"] and ["Uniform-k", "0.615 ± 0.007"] == rows[1][:2]
    tex = (tmp_path / "t" / "table1_hrnn.tex").read_text()
    assert "\\label{tab:table1_hrnn}" in tex and "\\toprule" in tex and "\\bottomrule" in tex
    assert "GAP $-$ Uniform [95\\%]" in tex and "0.615 $\\pm$ 0.007" in tex  # escaped, not raw
    assert (tmp_path / "t" / "table1_hrnn_published.csv").read_text().startswith("model,")
    done = report_here("--experiment", "exp", "--tracking-uri", uri, "--out", str(tmp_path / "u"), "--format", "csv")
    assert done.returncode == 0 and sorted(os.listdir(tmp_path / "u")) == sorted(n for n in names if n.endswith(".csv"))
