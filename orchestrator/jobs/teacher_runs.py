"""A teacher's Ray Train run folder (`<store>/ray/<teacher id>/`): what Ray Train's own reopening misses.

Ray Train V2 reopens a run by its name from `checkpoint_manager_snapshot.json`, the list of checkpoints its
controller recorded, and hands the latest of them to the training loop. A worker uploads a checkpoint's
folder first and the controller records it later (about 1.6 s later on a 2-core machine), and the snapshot
is rewritten in place. A driver or node stopped at the wrong moment therefore leaves:

- a checkpoint folder that no snapshot names, which may be complete and newer than the recorded one, and
  which Ray never deletes (about 2 GB for a paper-size teacher);
- a snapshot Ray cannot read (cut short on a local disk). One written by another Ray version, or naming a
  checkpoint that was deleted, is refused the same way. Ray's controller then dies in its constructor on
  every later fit of that teacher, so the teacher could never be trained again.

`reopen` makes both safe before a fit, `resume_point` picks what the training loop resumes from, and
`prune` removes unrecorded folders once a fit has succeeded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
from datetime import datetime, timezone

import pyarrow.fs as pafs

from workloads.data.fs import join, resolve
from workloads.progress import Progress, load_progress

SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train V2's name for it (ray.train.v2._internal.constants)
CHECKPOINT_PREFIX = "checkpoint_"  # Ray names checkpoint folders checkpoint_<UTC time>: names sort by time
PROGRESS = "progress.pt"  # in each of a teacher's checkpoints: the loop's `workloads.progress.Progress`


@dataclasses.dataclass(frozen=True)
class Reopened:
    unrecorded: list[str]  # checkpoint folders newer than every recorded one, newest first: resume candidates
    note: str | None = None  # what was set aside and why, for the teacher's run


def reopen(run: str) -> Reopened:
    """Before a fit: set an unreadable snapshot aside (renamed, never deleted), so that Ray starts the run
    afresh, and list the checkpoint folders the loop may resume from beyond the one Ray hands it."""
    fs, path = resolve(run)
    folders = _checkpoint_folders(fs, path)
    recorded, problem = _read_snapshot(fs, path, folders)
    note = None
    if problem:
        aside = f"{SNAPSHOT}.unreadable-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}"
        fs.move(posixpath.join(path, SNAPSHOT), posixpath.join(path, aside))
        note = (f"{join(run, SNAPSHOT)} {problem}; set aside as {aside}, and the teacher resumes from its "
                f"newest complete checkpoint ({len(folders)} found)")
        recorded = set()
    newest = max(recorded, default="")
    return Reopened([join(run, name) for name in reversed(folders) if name > newest], note)


def resume_point(recorded, unrecorded: list[str]) -> Progress | None:
    """Where the loop resumes: the newer of the checkpoint Ray Train hands over (`recorded`: after a failed
    worker group, or from the run's snapshot) and the newest complete checkpoint among `unrecorded` (from
    `reopen`, newest first); None to start afresh."""
    import ray.train

    progress = _progress(recorded)
    for location in unrecorded:
        fs, path = resolve(location)
        try:
            found = _progress(ray.train.Checkpoint(path, filesystem=fs))
        except Exception:  # an upload cut short: torch.load fails as RuntimeError, EOFError or UnpicklingError
            # (as it does on a file holding anything but a Progress, which is therefore never resumed from)
            continue
        if found is not None:
            return found if progress is None or found.epoch > progress.epoch else progress
    return progress


def _progress(checkpoint) -> Progress | None:
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        path = os.path.join(folder, PROGRESS)
        return load_progress(path) if os.path.exists(path) else None


def prune(run: str) -> list[str]:
    """After a successful fit: delete the checkpoint folders the run's snapshot does not name; returns
    their names. Nothing is deleted when there is no readable snapshot to tell which ones are recorded."""
    fs, path = resolve(run)
    folders = _checkpoint_folders(fs, path)
    recorded, problem = _read_snapshot(fs, path, folders)
    if problem or not recorded:
        return []
    stale = [name for name in folders if name not in recorded]
    for name in stale:
        fs.delete_dir(posixpath.join(path, name))
    return stale


def _checkpoint_folders(fs: pafs.FileSystem, path: str) -> list[str]:
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    return sorted(entry.base_name for entry in fs.get_file_info(pafs.FileSelector(path))
                  if entry.type == pafs.FileType.Directory and entry.base_name.startswith(CHECKPOINT_PREFIX))


def _read_snapshot(fs: pafs.FileSystem, path: str, folders: list[str]) -> tuple[set[str], str | None]:
    """(the checkpoint folders the snapshot names, why Ray Train could not reopen the run from it or None).
    No snapshot names nothing and is no problem: Ray then starts the run afresh."""
    import ray

    location = posixpath.join(path, SNAPSHOT)  # PyArrow's paths are "/"-separated on every filesystem
    if fs.get_file_info(location).type != pafs.FileType.File:
        return set(), None
    with fs.open_input_stream(location) as stream:
        text = stream.read()
    try:
        state = json.loads(text)
        written_by = state.get("ray_version")
        entries = [*state["checkpoint_results"], *state["pending_training_results"], state["latest_checkpoint_result"]]
        recorded = {entry["checkpoint_dir_name"] for entry in entries if entry is not None}
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # json.JSONDecodeError is a ValueError
        return set(), f"cannot be read ({len(text)} bytes, cut short?): {type(error).__name__}: {error}"
    if written_by != ray.__version__:
        return recorded, f"was written by Ray {written_by}, and this is Ray {ray.__version__}"
    gone = sorted(recorded - set(folders))
    if gone:
        return recorded, f"names checkpoint {gone[0]}, which is gone"
    return recorded, None
