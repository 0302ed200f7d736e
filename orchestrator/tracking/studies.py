"""A search's runs: the study's parent run (reopened when an interrupted study resumes, so its trials stay
together) and a child run per trial, logged once: FINISHED, KILLED for a trial ASHA stopped (tagged with the
epoch and validation GAP it stopped at), FAILED with its error. A trial's outcome tag, set last, marks a run
logged whole; one cut short is deleted and logged again.
"""

from __future__ import annotations

from typing import Any

from mlflow.entities import RunStatus

from orchestrator.experiment.matrix import Cell
from orchestrator.experiment.results import Trial
from orchestrator.tracking import schema
from orchestrator.tracking.schema import RunKind
from orchestrator.tracking.tracker import Tracker


def open_study(tracker: Tracker, name: str, params: dict[str, Any]) -> str:
    """The study's parent run: the one an earlier, interrupted invocation opened, else a new one."""
    found = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=schema.both(schema.kind_filter(RunKind.STUDY),
                                                           schema.tag_filter(schema.STUDY_TAG, name)),
        order_by=["attributes.start_time DESC"], max_results=1)
    if found:
        return tracker.reopen_parent(found[0])
    return tracker.start_parent(name, params, {schema.STUDY_TAG: name}, kind=RunKind.STUDY)


def log_trial(tracker: Tracker, template: Cell, trial: Trial) -> str | None:
    """One trial as a child run of the open study, once: None when a run of it was logged whole before."""
    client = tracker.client
    logged = client.search_runs([tracker.experiment_id], max_results=100, filter_string=schema.both(
        schema.tag_filter(schema.PARENT_TAG, tracker.parent_id or ""), schema.tag_filter(schema.TRIAL_ID_TAG,
                                                                                         trial.trial_id)))
    # Whole: its outcome tag is set (runs of studies logged before there were outcomes: FINISHED).
    if any(run.info.status != "RUNNING" and schema.TRIAL_OUTCOME_TAG in run.data.tags
           or run.info.status == "FINISHED" for run in logged):
        return None
    for run in logged:  # its logging cut short (an interrupted driver, or MLflow failing): logged again whole
        client.delete_run(run.info.run_id)
    tags = {schema.PARENT_TAG: tracker.parent_id or "", schema.KIND_TAG: RunKind.TRIAL,
            schema.TRIAL_ID_TAG: trial.trial_id}
    run_id = client.create_run(tracker.experiment_id, run_name=f"trial {trial.trial_id}", tags=tags).info.run_id
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        # What the cell ran (a sampled stride j gives k, and k the stride the cell reads), and beside it a
        # sampled value that is not what ran
        sampled = {schema.SAMPLED_PREFIX + name: value for name, value in trial.config.items() if trial.settings.get(name) != value}
        values = {schema.FAMILY: template.family, schema.STUDY_VARIANT: template.variant, **trial.settings, **sampled}
        client.log_batch(run_id, metrics=schema.trial_metrics(trial), params=schema.params(values))
        if trial.error:
            client.set_tag(run_id, schema.ERROR_TAG, trial.error[:5000])
        client.set_tag(run_id, schema.TRIAL_OUTCOME_TAG, schema.trial_outcome(trial))
        status = {"finished": "FINISHED", "stopped": "KILLED"}.get(trial.outcome, "FAILED")
    finally:
        client.set_terminated(run_id, status=status)
    return run_id
