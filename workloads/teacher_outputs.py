"""A trained teacher's outputs per video, what a serial student learns from without running the teacher.

- `export_teacher` runs a teacher over all-frames data and yields a `TeacherRecord` per video: E_T, P_T and,
  for intermediate matching, I_T at the positions a student will ask for
  (`student_intermediate_positions`).
- `TeacherSource` is what a serial student reads: `targets(ids)` and the teacher's classifier.
  `InMemoryTeacherCache` holds records in memory; the orchestrator's Parquet cache holds them in the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np
import torch

from workloads.data.batch import FrameSelection, VideoBatch
from workloads.errors import WorkloadError
from workloads.losses import TeacherTargets
from workloads.models import VideoModel


class TeacherSource(Protocol):
    """A trained teacher's outputs, looked up by video id (the teacher cache implements this)."""

    def targets(self, ids: list[str], device: torch.device) -> TeacherTargets: ...

    # Optionally also `prefetch(ids) -> None`: a hint that `targets(ids)` comes soon (the serial loop
    # announces its next batches through it).

    def classifier_state(self) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class TeacherRecord:
    """One video's teacher outputs: E_T (d,), P_T (classes,), and I_T (steps, d) at `positions`."""

    id: str
    representation: np.ndarray
    probabilities: np.ndarray
    intermediates: np.ndarray | None = None
    positions: np.ndarray | None = None


class InMemoryTeacherCache:
    """A `TeacherSource` over exported records held in memory."""

    def __init__(self, records: Iterable[TeacherRecord], classifier_state: dict[str, torch.Tensor]):
        self.records = {r.id: r for r in records}
        self._classifier = {k: v.detach().cpu().clone() for k, v in classifier_state.items()}

    def classifier_state(self) -> dict[str, torch.Tensor]:
        return self._classifier

    def targets(self, ids: list[str], device: torch.device) -> TeacherTargets:
        return stack_targets([self._record(i) for i in ids], device)

    def _record(self, video_id: str) -> TeacherRecord:
        try:
            return self.records[video_id]
        except KeyError:
            raise WorkloadError(f"the teacher cache has no video {video_id!r}") from None


def stack_targets(records: list[TeacherRecord], device: torch.device) -> TeacherTargets:
    representation = torch.from_numpy(np.stack([r.representation for r in records])).float()
    probabilities = torch.from_numpy(np.stack([r.probabilities for r in records])).float()
    intermediates = pad_intermediates([r.intermediates for r in records], device)
    return TeacherTargets(representation.to(device), probabilities.to(device), intermediates)


def pad_intermediates(values: list[np.ndarray | None], device: torch.device) -> torch.Tensor | None:
    """Videos' I_T, (steps_i, d) each, as one (videos, max steps, d) tensor zero-padded; None without."""
    if not values or values[0] is None:
        return None
    steps = max(v.shape[0] for v in values)
    padded = np.zeros((len(values), steps, values[0].shape[1]), np.float32)
    for row, value in enumerate(values):
        padded[row, : value.shape[0]] = value
    return torch.from_numpy(padded).to(device)


def student_intermediate_positions(student: VideoModel, selection: FrameSelection) -> Callable[[int], np.ndarray]:
    """num_frames -> the frame positions at which `student`, reading `selection`, has intermediates:
    the positions a teacher export must answer for intermediate matching."""
    if selection.name == "random":
        raise WorkloadError("intermediate matching needs a deterministic frame selection, not 'random'")

    def positions(num_frames: int) -> np.ndarray:
        return student.intermediate_positions(selection.indices(num_frames))

    return positions


@torch.no_grad()
def export_teacher(
    teacher: VideoModel,
    data: Iterable[VideoBatch],
    device: torch.device | str = "cpu",
    intermediate_positions: Callable[[int], np.ndarray] | None = None,
) -> Iterator[TeacherRecord]:
    """Run a trained teacher over all-frames `data` and yield each video's E_T and P_T and, when
    `intermediate_positions(num_frames)` is given, I_T at those positions (what a student will ask for)."""
    device = torch.device(device)
    teacher.eval()
    teacher.to(device)
    if intermediate_positions is not None and not teacher.supports_intermediates:
        raise WorkloadError(f"{type(teacher).__name__} has no intermediate states to export")
    for batch in data:
        batch = batch.to(device)
        out = teacher(batch.frames, batch.mask, batch.positions)
        representation = out.representation.float().cpu().numpy()
        probabilities = torch.sigmoid(out.logits.float()).cpu().numpy()
        intermediates = query = None
        if intermediate_positions is not None:
            query = _queries([intermediate_positions(int(n)) for n in batch.num_frames])
            intermediates = teacher.states_at(
                batch.frames, batch.mask, batch.positions, torch.from_numpy(query).to(device)
            ).float().cpu().numpy()
        for row, video_id in enumerate(batch.ids):
            steps = int((query[row] >= 0).sum()) if query is not None else 0
            yield TeacherRecord(
                id=video_id,
                representation=representation[row],
                probabilities=probabilities[row],
                intermediates=intermediates[row, :steps] if intermediates is not None else None,
                positions=query[row, :steps] if query is not None else None,
            )


def _queries(wanted: list[np.ndarray]) -> np.ndarray:
    """Each video's wanted positions as a row of one (videos, most wanted) int64 array, -1 past its end."""
    wanted = [np.asarray(w, dtype=np.int64) for w in wanted]
    query = np.full((len(wanted), max((w.size for w in wanted), default=0) or 1), -1, np.int64)
    for row, w in enumerate(wanted):
        query[row, : w.size] = w
    return query
