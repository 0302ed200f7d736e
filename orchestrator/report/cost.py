"""Table 3: what a video costs each family's teacher and its students at each k. Multiply-adds come from
the cells (counted on the model itself, `workloads.flops`): the per-frame work, which is the paper's
convention (its 5.058 G for the H-RNN teacher is ~16.9 M a frame), and the whole pass. Time per video
comes only from the timing job (`orchestrator.jobs.timing`), which runs a family's models side by side in one
task on one device: times of cells that trained on different nodes do not compare.
"""

from __future__ import annotations

import statistics

from orchestrator.experiment.modes import Mode
from orchestrator.experiment.outcome import CellOutcome
from orchestrator.experiment.rows import timed_adaptive, timed_content
from orchestrator.report import published
from orchestrator.report.tables import FAMILY_NAMES, MISSING, Table, state
from orchestrator.tracking.runs import Timing

HEADER = ["model", "per-frame work (G)", "whole pass (G)", "whole pass vs teacher", "time per video (ms)",
          "time vs teacher"]


def _mean(cells: list[CellOutcome], metric: str) -> float | None:
    values = [getattr(c, metric) for c in cells if getattr(c, metric) is not None]
    return statistics.fmean(values) if values else None


def _giga(value: float | None) -> str:
    return MISSING if value is None else f"{value / 1e9:.3f}"


def _ratio(value: float | None, reference: float | None) -> str:
    return MISSING if value is None or not reference else f"{value / reference:.3f}"


def _best_read_adaptively(cells: list[CellOutcome]) -> dict[int, tuple[str, list[CellOutcome]]]:
    """k -> (variant, its cells) of the serial student best read adaptively at k, by its reading's mean
    validation GAP over seeds (the timing job times the best single cell's kept weights: with one seed,
    the same student)."""
    read = [c for c in cells if c.adaptive_val_gap is not None]
    best: dict[int, tuple[str, list[CellOutcome]]] = {}
    for k in sorted({c.k for c in read}):
        at_k = [c for c in read if c.k == k]
        by_variant = {v: [c for c in at_k if c.variant == v] for v in {c.variant for c in at_k}}
        variant = max(sorted(by_variant), key=lambda v: _mean(by_variant[v], "adaptive_val_gap"))
        best[k] = (variant, by_variant[variant])
    return best


def cost(family: str, cells: list[CellOutcome], timing: Timing | None, unlike_paper: str | None) -> Table:
    """Table 3 for one family: the teacher (all frames), then each k of its students (the k-frame model
    every student and baseline at that k shares), then each k and rule of its content students, then at
    each k the student best read adaptively (multiply-adds as its reading spent them on the test split)."""
    teacher = [c for c in cells if c.mode is Mode.SKYLINE]
    ks = sorted({c.k for c in cells if c.k is not None and not c.chooses_by_content})
    rows = [("all", "Teacher-Skyline (all frames)", teacher)]
    rows += [(f"k{k}", f"k={k}", [c for c in cells if c.k == k and c.mode is not Mode.PARALLEL
                                   and not c.chooses_by_content]) for k in ks]
    # A content student's pass holds its frame scorer over every frame: a row of its own
    chosen = sorted({(c.k, c.selection) for c in cells if c.chooses_by_content})
    rows += [(timed_content(k, rule), f"k={k}, frames by content ({rule})",
              [c for c in cells if c.k == k and c.selection == rule]) for k, rule in chosen]
    name = FAMILY_NAMES.get(family, family)
    table = Table(f"Table 3: {name}, multiply-adds and inference time per video", list(HEADER), [])
    whole = _mean(teacher, "macs")
    ms = {} if timing is None else {what: value for (fam, what), value in timing.milliseconds.items() if fam == family}
    for what, label, members in rows:
        macs = _mean(members, "macs")
        table.rows.append([label, _giga(_mean(members, "frame_macs")), _giga(macs), _ratio(macs, whole),
                           f"{ms[what]:.2f}" if what in ms else MISSING, _ratio(ms.get(what), ms.get("all"))])
    for k, (variant, read) in _best_read_adaptively(cells).items():
        macs = _mean(read, "adaptive_macs")  # each step runs the student again: no per-frame work of its own
        table.rows.append([f"k={k}, read adaptively ({variant}: {_mean(read, 'adaptive_frames'):.1f} frames on "
                           "average)", MISSING, _giga(macs), _ratio(macs, whole),
                           f"{ms[timed_adaptive(k)]:.2f}" if timed_adaptive(k) in ms else MISSING,
                           _ratio(ms.get(timed_adaptive(k)), ms.get("all"))])
    if timing is None:
        table.notes.append("Time per video: not measured; the timing job, which a grid runs once its cells "
                           "are done, has not logged this experiment.")
    elif not ms:
        table.notes.append(f"Time per video: the timing job (run {timing.run_id}) did not time {name}.")
    else:
        table.notes.append(f"Time per video: measured side by side on one {timing.device} in one task "
                           f"(timing job on parent run {timing.run_id}), batches of test videos, reading excluded.")
    paper = published.COST.get(family)
    if paper is not None:
        teacher_flops, teacher_hours = paper["all"]
        rows = [["Teacher-Skyline (all frames)" if what == "all" else f"k={what}", f"{flops:.3f}",
                 f"{flops / teacher_flops:.3f}", MISSING if hours is None else f"{hours:.2f}",
                 MISSING if hours is None or teacher_hours is None else f"{hours / teacher_hours:.3f}"]
                for what, (flops, hours) in paper.items()]
        table.published = Table("Published: Table 3 (H-RNN) / Table 6 (NeXtVLAD)",
                                ["model", "FLOPs (G, per-frame work)", "vs teacher",
                                 "hours over the validation split (Tesla K80)", "time vs teacher"], rows)
    state(table, unlike_paper, paper is not None)
    return table
