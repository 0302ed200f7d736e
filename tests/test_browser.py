"""What a user sees, in a real browser: MLflow's own UI served on 127.0.0.1 over a finished tiny grid's
tracking store, opened in headless Chromium. Screenshots go to a temporary folder (printed; kept with the
test's other temporary files), never into the repository.

Chromium comes from Debian's `chromium` package; `.ci/run` installs it when it is missing. Elsewhere,
without it, these tests are skipped, unless FEWER_FRAMES_REQUIRE_BROWSER is set (as CI sets it)."""

import json
import os
import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from browser import Browser, find_chromium
from grids import tracking
from orchestrator.tracking import schema
from orchestrator.tracking.schema import RunKind

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium():
    found = find_chromium()
    if found is None:
        message = "no chromium on this machine (Debian: apt-get install chromium; .ci/run installs it)"
        if os.environ.get("FEWER_FRAMES_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def browser(chromium):
    opened = Browser(chromium)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    print(f"\nbrowser screenshots: {folder}")


def test_the_runs_view_the_grid_points_at_lists_every_cell_with_its_gap(tiny_grid, mlflow_ui, browser, screenshots):
    link = re.search(r"http://127\.0\.0\.1:5000(/#/experiments/\S+)", tiny_grid.printed).group(1)
    cells = [schema.outcome_of_run(run) for run in MlflowClient(tracking(tiny_grid.store)).search_runs(
        ["1"], schema.kind_filter(RunKind.CELL))]
    best = max(cells, key=lambda cell: cell.gap)
    browser.open(mlflow_ui + link, "document.body.innerText.includes('hrnn/skyline/all/s0')")
    # The grid's cells fill in after the run names: the values, not only the column's name.
    browser.wait_until(f"document.body.innerText.includes({json.dumps(str(best.gap)[:6])})")
    browser.screenshot(str(screenshots / "runs_view.png"))
    text = browser.text()
    assert len(cells) == 8 and all(cell.name in text for cell in cells)
    assert re.search(rf"\b{schema.GAP}\b", text) and f"Sort: {schema.GAP}" in text


def test_the_experiment_is_marked_model_training_and_its_page_opens_on_its_runs(tiny_grid, mlflow_ui, browser, screenshots):
    """The experiment carries MLflow's kind tag for model training. MLflow 3.17's UI takes its mode from the
    URL (or the user's GenAI / Model training switch) before the tag, and a fresh browser lands on the GenAI
    overview (traces, token usage); so every link the project prints carries the mode, and the experiment's
    own page, so linked, opens on its runs table."""
    client = MlflowClient(tracking(tiny_grid.store))
    experiment = client.get_experiment_by_name("fewer-frames-tiny")
    assert experiment.tags[schema.EXPERIMENT_KIND_TAG] == schema.MODEL_TRAINING
    assert "workflowType=machine_learning" in tiny_grid.printed
    browser.open(f"{mlflow_ui}/#/experiments/{experiment.experiment_id}?workflowType=machine_learning",
                 "document.body.innerText.includes('Run Name')")
    browser.screenshot(str(screenshots / "experiment_page.png"))
    text = browser.text()
    assert "/runs" in browser.evaluate("location.hash") and "Token Usage" not in text, text[:1000]


def test_the_parent_runs_report_renders_its_tables_and_figures_in_mlflow(tiny_grid, mlflow_ui, browser, screenshots):
    parent = MlflowClient(tracking(tiny_grid.store)).search_runs(["1"], schema.kind_filter(RunKind.PARENT))[0]
    browser.open(f"{mlflow_ui}/#/experiments/1/runs/{parent.info.run_id}/artifacts/{schema.REPORT_HTML}"
                 "?workflowType=machine_learning", "document.querySelector('iframe') !== null")
    frame = browser.frame("blob:")  # MLflow shows an HTML artifact in a sandboxed frame
    # Rendered: its tables there, and every image it has decoded.
    rendered = "(() => { const tables = document.querySelectorAll('table').length, images = document.images.length, " \
               "decoded = Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length; " \
               "return tables && decoded === images ? [tables, images, decoded] : null; })()"
    tables, images, decoded = found = browser.wait_until(rendered, session=frame)
    assert tables >= 8 and images == 3 and decoded == images, found
    assert "Table 1: H-RNN, test GAP and mAP by k" in browser.evaluate("document.body.innerText", frame)
    browser.screenshot(str(screenshots / "report_in_mlflow.png"))


def test_table_1_at_a_glance_shows_on_the_parent_runs_page_without_a_click(tiny_grid, mlflow_ui, browser, screenshots):
    """MLflow shows a run's description clipped to 150 pixels until "Show more" is clicked: the description
    opens with Table 1 at a glance, whose every row lies inside what is shown."""
    parent = MlflowClient(tracking(tiny_grid.store)).search_runs(["1"], schema.kind_filter(RunKind.PARENT))[0]
    browser.open(f"{mlflow_ui}/#/experiments/1/runs/{parent.info.run_id}?workflowType=machine_learning",
                 "document.body.innerText.includes('At a glance')")
    browser.screenshot(str(screenshots / "parent_run_page.png"))
    # Each row of the first table of the description, and the box that clips it (an ancestor that hides
    # its overflow): the rows' bottoms within the box's.
    shown = browser.evaluate("""(() => {
        const title = Array.from(document.querySelectorAll('strong')).find(e => e.innerText.includes('At a glance'));
        let box = title.parentElement;
        while (box && getComputedStyle(box).overflow !== 'hidden') box = box.parentElement;
        const table = title.closest('p').nextElementSibling.querySelector('table') || title.closest('p').nextElementSibling;
        const bottom = box.getBoundingClientRect().bottom;
        return Array.from(table.querySelectorAll('tr')).map(r => [r.innerText, r.getBoundingClientRect().bottom <= bottom]);
    })()""")
    assert len(shown) >= 2 and all(inside for _, inside in shown), shown
    assert shown[1][0].split("\t")[:2] == ["H-RNN", "10"] and "Lrep" in shown[1][0], shown  # the row of k=10


def test_the_report_opens_from_disk_with_nothing_fetched(tiny_grid, browser, screenshots):
    page = tiny_grid.store / "reports" / "fewer-frames-tiny" / schema.REPORT_HTML
    browser.open(page.as_uri(), "document.readyState === 'complete'")
    assert browser.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert browser.evaluate("performance.getEntriesByType('resource').length") == 0  # self-contained
    browser.screenshot(str(screenshots / "report_from_disk.png"))
