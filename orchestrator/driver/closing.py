"""What a grid does once its cells are done, each step on the grid's open parent run: the summary (the
report's Table 1 and the findings), the timing job (Table 3's time column), the report, and the models
registered. None of them can fail the grid: the cells are recorded whatever happens after.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from typing import Any, Iterator

from orchestrator.errors import note, one_line
from orchestrator.experiment.presets import Preset
from orchestrator.experiment.rows import timed
from orchestrator.jobs.data_sets import DataSet
from orchestrator.jobs.timing import content_timed, time_models, timing_job
from orchestrator.report.build import Written, folder_name, write_report
from orchestrator.store.layout import Store
from orchestrator.tracking import schema
from orchestrator.tracking.tracker import Tracker


def timing_metrics(preset: Preset) -> list[str]:
    """The parent-run metrics a timing of `preset`'s models logs."""
    whats = timed(tuple(preset.ks), content_timed(preset))
    return [schema.timing_metric(family, what) for family in preset.families for what in whats]


def time_on_parent(ray: Any, preset: Preset, data: DataSet, tracker: Tracker, trained: bool,
                   adaptive: dict[tuple[str, int], str] | None = None) -> bool:
    """Run the timing job on a cell's resources and log it on the tracker's open parent run; skipped when
    this invocation `trained` nothing and an earlier one timed these models (its figures stand: the report
    reads the newest). `adaptive`: the kept weights of each best adaptive reading (`timing_job`). Whether it
    was logged: a failure is a note, not a failed grid (the report then says the time was not measured)."""
    if not trained and tracker.parent_with_metrics(timing_metrics(preset)):
        return False
    cell = preset.resources.cell
    task = ray.remote(time_models).options(num_cpus=cell.cpus, num_gpus=cell.gpus, resources=cell.custom or None)
    try:
        where, found = ray.get(task.remote(timing_job(preset, data, adaptive)))
        tracker.log_on_parent(metrics={schema.timing_metric(*key): ms for key, ms in found.items()},
                              tags={schema.TIMING_DEVICE_TAG: where})
    except Exception as error:  # noqa: BLE001 - see the docstring
        note("timing", f"inference time not measured ({type(error).__name__}: {one_line(error)})")
        return False
    return True


def report_on_parent(tracker: Tracker, folder: str) -> Written | None:
    """The experiment's report made into `folder` and logged on the open parent run, its Table 1 as the
    run's description. None, with a note, when it cannot be made: the cells are recorded whatever happens
    to their report, and `python -m orchestrator.report` makes it again from MLflow."""
    try:
        written = write_report(tracker.client, tracker.experiment, folder)
        tracker.log_on_parent(files=written.files, tags={
            schema.NOTE_TAG: written.headline + f"\n\nThe whole report: the `{schema.REPORT_HTML}` artifact."})
    except Exception as error:  # noqa: BLE001 - see the docstring
        note("report", f"not made ({type(error).__name__}: {one_line(error)}); the cells are recorded, and "
                       f"`python -m orchestrator.report --experiment {tracker.experiment}` makes it from MLflow")
        return None
    return written


@contextmanager
def report_folder(store: Store, experiment: str) -> Iterator[str]:
    """Where a grid's closing report is written: in a local store (`reports/<experiment>`); elsewhere a
    scratch folder, removed once the report is logged as the parent run's artifacts."""
    if store.is_local:
        yield store.path(f"reports/{folder_name(experiment)}")
    else:
        with tempfile.TemporaryDirectory(prefix="fewer-frames-report-") as folder:
            yield folder
