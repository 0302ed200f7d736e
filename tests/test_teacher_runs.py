"""A teacher's Ray Train run folder reopened safely: snapshots Ray cannot read, checkpoints it never recorded
(on a local folder and on the test S3 server)."""

import io
import json

import pyarrow.fs as pafs
import pytest
import ray
import ray.train
import torch

from orchestrator.jobs.teacher_runs import PROGRESS, SNAPSHOT, prune, reopen, resume_point
from workloads.data.fs import join, resolve, write_bytes
from workloads.progress import Progress

OLD, MID, NEW = "checkpoint_2026-12-02_03-55-06.543016", "checkpoint_2026-12-02_03-55-08.419418", "checkpoint_2026-12-02_03-55-10.000001"


@pytest.fixture(params=["local", "s3"])
def run(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "ray" / "t-1234")
    return f"s3://{request.getfixturevalue('s3_bucket')}/ray/t-1234"


def snapshot(*recorded: str, latest: str | None = None, version: str = ray.__version__) -> bytes:
    entry = lambda name: {"version": 0, "checkpoint_dir_name": name, "metrics": {"epoch": 1}}  # noqa: E731
    latest = latest or (recorded[-1] if recorded else None)
    return json.dumps({"ray_version": version, "checkpoint_results": [entry(n) for n in recorded],
                       "checkpoint_report_indices": list(range(len(recorded))),
                       "latest_checkpoint_result": entry(latest) if latest else None,
                       "pending_training_results": [], "pending_validation_specs": [], "current_report_index": 1,
                       "validated_checkpoint_dir_names": [], "timed_out_validation_checkpoint_dir_names": [],
                       "failed_validation_checkpoint_dir_names": []}).encode()


def make(run: str, folders: list[str], snapshot_bytes: bytes | None) -> None:
    for name in folders:
        checkpoint_at(run, name, b"weights")
    if snapshot_bytes is not None:
        write_bytes(join(run, SNAPSHOT), snapshot_bytes)


def names(run: str) -> list[str]:
    fs, path = resolve(run)
    return sorted(entry.base_name for entry in fs.get_file_info(pafs.FileSelector(path)))


def read(location: str) -> bytes:
    fs, path = resolve(location)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def test_a_new_run_has_nothing_to_reopen(run):
    assert reopen(run).unrecorded == [] and reopen(run).note is None
    assert prune(run) == []


def test_a_readable_snapshot_is_left_to_ray_and_newer_unrecorded_checkpoints_are_candidates(run):
    make(run, [OLD, MID, NEW], snapshot(MID))
    reopened = reopen(run)
    # OLD is older than the recorded one: never a candidate, whatever it holds.
    assert reopened.unrecorded == [join(run, NEW)] and reopened.note is None
    assert names(run) == [OLD, MID, NEW, SNAPSHOT]


@pytest.mark.parametrize("content, problem", [
    (snapshot(OLD, MID)[:150], "cannot be read (150 bytes, cut short?): JSONDecodeError"),
    (b'{"ray_version": "2.60.0"}', "cannot be read (25 bytes, cut short?): KeyError: 'checkpoint_results'"),
    (snapshot(OLD, MID, version="2.49.0"), "was written by Ray 2.49.0, and this is Ray " + ray.__version__),
    (snapshot(OLD, "checkpoint_2026-12-01_00-00-00.000000"), "names checkpoint checkpoint_2026-12-01_00-00-00.000000, which is gone"),
])
def test_a_snapshot_ray_would_die_on_is_set_aside_whole_and_every_checkpoint_is_a_candidate(run, content, problem):
    make(run, [OLD, MID], content)
    reopened = reopen(run)
    assert reopened.unrecorded == [join(run, MID), join(run, OLD)]  # newest first
    aside = [n for n in names(run) if n.startswith(f"{SNAPSHOT}.unreadable-")]
    assert len(aside) == 1
    assert reopened.note.startswith(f"{join(run, SNAPSHOT)} {problem}")
    assert reopened.note.endswith(f"; set aside as {aside[0]}, and the teacher resumes from its newest complete "
                                  "checkpoint (2 found)")
    assert read(join(run, aside[0])) == content  # kept byte for byte, for whoever wants to look
    assert SNAPSHOT not in names(run) and reopen(run).note is None  # Ray now starts the run afresh


def test_prune_deletes_only_what_the_snapshot_does_not_name(run):
    make(run, [OLD, MID, NEW], snapshot(MID))
    assert prune(run) == [OLD, NEW]
    assert names(run) == [MID, SNAPSHOT]
    assert read(join(run, MID, PROGRESS)) == b"weights"


@pytest.mark.parametrize("content", [None, snapshot()[:40]])
def test_prune_deletes_nothing_without_a_readable_snapshot_naming_a_checkpoint(run, content):
    make(run, [OLD, MID], content)
    assert prune(run) == []
    assert [n for n in names(run) if n.startswith("checkpoint_2")] == [OLD, MID]


def progress_bytes(epoch: int) -> bytes:
    buffer = io.BytesIO()
    torch.save(Progress(epoch, {"w": torch.full((1000,), float(epoch))}, {}, {}, {}, None, None, torch.zeros(4)), buffer)
    return buffer.getvalue()


def checkpoint_at(run: str, name: str, content: bytes) -> str:
    write_bytes(join(run, name, PROGRESS), content)
    return join(run, name)


def handed_over(location: str) -> ray.train.Checkpoint:
    fs, path = resolve(location)
    return ray.train.Checkpoint(path, filesystem=fs)


def test_the_loop_resumes_from_the_newest_complete_checkpoint(run):
    recorded = handed_over(checkpoint_at(run, OLD, progress_bytes(2)))
    cut = checkpoint_at(run, NEW, progress_bytes(4)[:3000])  # uploaded halfway
    complete = checkpoint_at(run, MID, progress_bytes(3))
    assert resume_point(recorded, [cut, complete]).epoch == 3
    assert resume_point(None, [cut, complete]).epoch == 3
    assert resume_point(recorded, [cut]).epoch == 2
    assert resume_point(None, [cut]) is None and resume_point(None, []) is None
    # A worker group retried within a fit is handed a checkpoint newer than any found before the fit.
    retried = handed_over(checkpoint_at(run, "checkpoint_2026-12-02_04-00-00.000000", progress_bytes(5)))
    assert resume_point(retried, [complete]).epoch == 5
    assert torch.equal(resume_point(None, [complete]).model["w"], torch.full((1000,), 3.0))
