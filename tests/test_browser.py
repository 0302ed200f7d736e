"""What a user sees, in a real browser: MLflow's own UI served on 127.0.0.1 over a finished tiny grid's
tracking store, opened in headless Chromium. Screenshots go to a temporary folder (printed; kept with the
test's other temporary files), never into the repository.

Chromium comes from Debian's `chromium` package; `.ci/run` installs it when it is missing. Elsewhere,
without it, these tests are skipped, unless FEWER_FRAMES_REQUIRE_BROWSER is set (as CI sets it)."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from browser import Browser, find_chromium
from ports import free_port, wait_until_answering

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
def mlflow_ui(tiny_grid):
    """`mlflow server` over the grid's store, as the grid's closing line says to start it."""
    store, _ = tiny_grid
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                               f"sqlite:///{store}/mlflow.db", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until_answering(url + "/health", server, "mlflow server", timeout=120)
    yield url
    server.terminate()
    server.wait(timeout=30)


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
    store, printed = tiny_grid
    link = re.search(r"http://127\.0\.0\.1:5000(/#/experiments/\S+)", printed).group(1)
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    cells = client.search_runs(["1"], "tags.`fewer_frames.grid` = 'cell'")
    browser.open(mlflow_ui + link, "document.body.innerText.includes('hrnn/skyline/all/s0')")
    time.sleep(1)  # the grid's cells fill in after the run names
    browser.screenshot(str(screenshots / "runs_view.png"))
    text = browser.text()
    assert len(cells) == 7 and all(run.info.run_name in text for run in cells)
    assert re.search(r"\bgap\b", text) and "Sort: gap" in text
    best = max(cells, key=lambda run: run.data.metrics["gap"])
    assert str(best.data.metrics["gap"])[:6] in text  # the values, not only the column's name


def test_the_parent_runs_report_renders_its_tables_and_figures_in_mlflow(tiny_grid, mlflow_ui, browser, screenshots):
    store, _ = tiny_grid
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    parent = client.search_runs(["1"], "tags.`fewer_frames.grid` = 'parent'")[0]
    browser.open(f"{mlflow_ui}/#/experiments/1/runs/{parent.info.run_id}/artifacts/report.html"
                 "?workflowType=machine_learning", "document.querySelector('iframe') !== null")
    frame = browser.frame("blob:")  # MLflow shows an HTML artifact in a sandboxed frame
    rendered = "[document.querySelectorAll('table').length, document.images.length, " \
               "Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length]"
    deadline = time.time() + 30
    while (found := browser.evaluate(rendered, frame))[0] == 0 and time.time() < deadline:
        time.sleep(0.25)
    tables, images, decoded = found
    assert tables >= 8 and images == 3 and decoded == images, found
    assert "Table 1: H-RNN, test GAP and mAP by k" in browser.evaluate("document.body.innerText", frame)
    browser.screenshot(str(screenshots / "report_in_mlflow.png"))


def test_the_report_opens_from_disk_with_nothing_fetched(tiny_grid, browser, screenshots):
    store, _ = tiny_grid
    page = store / "reports" / "fewer-frames-tiny" / "report.html"
    browser.open(page.as_uri(), "document.readyState === 'complete'")
    assert browser.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert browser.evaluate("performance.getEntriesByType('resource').length") == 0  # self-contained
    browser.screenshot(str(screenshots / "report_from_disk.png"))
