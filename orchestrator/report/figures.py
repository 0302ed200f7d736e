"""The report's figures, drawn from MLflow alone (per-epoch metrics and logged artifacts) into PNG files:

    Figure 2   validation GAP after each epoch: the serial teacher (the skyline, a constant line at its best
               epoch, as the paper draws it), a serial student, a parallel pair's teacher and student; one
               panel per loss the two paradigms share
    Figure 3   a t-SNE embedding (scikit-learn) of the teacher's and a student's representations of the same
               test videos of the five most frequent classes: dark the teacher, light the student
    cost       test GAP against multiply-adds per video for every cell, with the Pareto front

Each function returns the file it wrote, or None when the grid has not the cells the figure needs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from orchestrator.experiment.modes import Mode
from orchestrator.experiment.outcome import CellOutcome
from orchestrator.report.evidence import run_artifact
from orchestrator.experiment.fronts import pareto_front
from orchestrator.report.tables import FAMILY_NAMES, row_label
from orchestrator.store.samples import read_sample
from orchestrator.tracking import schema
from workloads.variants import REGISTRY, learns_representation

# Figure 2's panels: the paper's (a) Lrep, (b) Lrep + LCE, (c) Lrep + Lpred + LCE, serial and parallel.
PANELS = (("rep_then_ce", "rep"), ("rep+ce", "rep+ce"), ("rep+pred+ce", "rep+pred+ce"))
TSNE_VIDEOS = 300  # per model: enough to see the classes, small enough for t-SNE in seconds on a CPU


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display where reports are made
    import matplotlib.pyplot as plt

    return plt


def _history(client, run_id: str, metric: str) -> tuple[list[int], list[float]]:
    points = sorted((m.step, m.value) for m in client.get_metric_history(run_id, metric))
    return [p[0] for p in points], [p[1] for p in points]


def _first(cells: list[CellOutcome]) -> CellOutcome | None:
    """The cell of the lowest seed, at all (or the largest share of) the data."""
    if not cells:
        return None
    fraction = max(c.data_fraction for c in cells)
    return min((c for c in cells if c.data_fraction == fraction), key=lambda c: c.seed)


def serial_parallel(client, family: str, cells: list[CellOutcome], path: str) -> str | None:
    """Figure 2 for one family at its largest k with both serial and parallel students."""
    def student(mode: Mode, variant: str, k: int) -> CellOutcome | None:
        return _first([c for c in cells if c.mode == mode and c.variant == variant and c.k == k
                       and not c.intermediate and c.parallel_classifier == "shared" and not c.chooses_by_content])

    ks = sorted({c.k for c in cells if c.mode is Mode.PARALLEL} & {c.k for c in cells if c.mode is Mode.SERIAL})
    skyline = _first([c for c in cells if c.mode is Mode.SKYLINE])
    if not ks or skyline is None:
        return None
    k = ks[-1]
    panels = [(s, p) for s, p in ((student(Mode.SERIAL, sv, k), student(Mode.PARALLEL, pv, k)) for sv, pv in PANELS)
              if s is not None or p is not None]
    if not panels:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), dpi=110, squeeze=False)
    for axis, (serial, parallel) in zip(axes[0], panels):
        axis.axhline(skyline.val_gap, color="tab:blue", label="Serial Teacher")
        if serial is not None:
            axis.plot(*_history(client, serial.run_id, schema.VAL_GAP), "o-", color="tab:orange",
                      label="Serial Student")
        if parallel is not None:
            axis.plot(*_history(client, parallel.run_id, schema.TEACHER_VAL_GAP), "s--", color="tab:green",
                      label="Parallel Teacher")
            axis.plot(*_history(client, parallel.run_id, schema.VAL_GAP), "o-", color="tab:red",
                      label="Parallel Student")
        axis.set_title(REGISTRY[(parallel or serial).variant].label, fontsize=10)
        axis.set_xlabel("epoch")
        axis.set_ylabel("validation GAP")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(f"Figure 2: {FAMILY_NAMES.get(family, family)}, serial vs parallel, k={k}", fontsize=11)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _sample(client, run_id: str):
    found = run_artifact(client, run_id, schema.REPRESENTATIONS, read_sample)
    return None if found is None else found[0]


def _embedding_inputs(teacher, student) -> tuple[np.ndarray, np.ndarray, list[int]] | None:
    """(teacher rows, student rows, class of each) for the shared videos of exactly one top-5 class."""
    at = {video: i for i, video in enumerate(student.ids)}
    shared = [i for i, video in enumerate(teacher.ids) if video in at]
    counts = Counter(label for i in shared for label in teacher.labels[i])
    top = [label for label, _ in counts.most_common(5)]
    chosen = [(i, at[teacher.ids[i]], next(iter(set(teacher.labels[i]) & set(top))))
              for i in shared if len(set(teacher.labels[i]) & set(top)) == 1][:TSNE_VIDEOS]
    if len(chosen) < 10:
        return None
    rows_t, rows_s, classes = zip(*chosen)
    return teacher.values[list(rows_t)], student.values[list(rows_s)], [top.index(c) for c in classes]


def embedded_pair(cells: list[CellOutcome]) -> tuple[CellOutcome, CellOutcome] | None:
    """Figure 3's teacher (skyline) and student: the serial student that learns the representation with the
    highest validation GAP at the largest k (the test split never picks), of the skyline's seed and data share."""
    skyline = _first([c for c in cells if c.mode is Mode.SKYLINE])
    students = [c for c in cells if c.on_uniform_serial and learns_representation(c.variant)]
    if skyline is None or not students:
        return None
    k = max(c.k for c in students)
    student = max((c for c in students if c.k == k and c.seed == skyline.seed
                   and c.data_fraction == skyline.data_fraction), key=lambda c: c.val_gap or 0.0, default=None)
    return None if student is None else (skyline, student)


def embedding(client, family: str, cells: list[CellOutcome], path: str) -> str | None:
    """Figure 3 for one family: its teacher's and a student's representations (`embedded_pair`)."""
    from sklearn.manifold import TSNE

    pair = embedded_pair(cells)
    if pair is None:
        return None
    skyline, student = pair
    k = student.k
    samples = (_sample(client, skyline.run_id), _sample(client, student.run_id))
    if None in samples or samples[0].values.shape[1:] != samples[1].values.shape[1:]:
        return None
    found = _embedding_inputs(*samples)
    if found is None:
        return None
    teacher_rows, student_rows, classes = found
    points = np.concatenate([teacher_rows, student_rows]).astype(np.float64)
    flat = TSNE(n_components=2, perplexity=min(30.0, (len(points) - 1) / 3), init="pca",
                random_state=0).fit_transform(points)
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.6, 4.6), dpi=110)
    colours = plt.get_cmap("tab10")
    n = len(classes)
    for c in sorted(set(classes)):
        mine = [i for i in range(n) if classes[i] == c]
        axis.scatter(flat[mine, 0], flat[mine, 1], s=14, color=colours(c), label=f"class{c + 1}-t")
        axis.scatter(flat[[n + i for i in mine], 0], flat[[n + i for i in mine], 1], s=14, color=colours(c),
                     alpha=0.35, label=f"class{c + 1}-s")
    axis.legend(fontsize=7, ncol=2)
    axis.set_title(f"Figure 3: {FAMILY_NAMES.get(family, family)} teacher (t) and "
                   f"{row_label(f'serial:{student.variant}')} k={k} (s)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


@dataclass(frozen=True)
class _Reading:
    """A serial student read adaptively, as the front compares it."""

    gap: float
    macs: float


def _adaptive_curve(client, cells: list[CellOutcome]) -> tuple[str, list[float], list[float]] | None:
    """(whose, multiply-adds, GAP) of the test curve of the adaptive reading best on validation."""
    read = [c for c in cells if c.adaptive_val_gap is not None and c.run_id]
    if client is None or not read:
        return None
    best = max(read, key=lambda c: c.adaptive_val_gap)
    _, macs = _history(client, best.run_id, schema.ADAPTIVE_CURVE[2])
    _, gaps = _history(client, best.run_id, schema.ADAPTIVE_CURVE[0])
    return (best.name, macs, gaps) if macs and len(macs) == len(gaps) else None


def gap_against_cost(cells: list[CellOutcome], path: str, client=None) -> str | None:
    """Test GAP against multiply-adds per video of every cell (log scale), by mode; serial students read
    adaptively at their calibrated thresholds, and (with `client`) the whole test curve of the one best on
    validation; the Pareto front of all of them."""
    scored = [c for c in cells if c.macs is not None and np.isfinite(c.macs) and c.macs > 0]
    if not scored:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.8, 4.4), dpi=110)
    for mode, marker in ((Mode.SKYLINE, "*"), (Mode.BASELINE, "x"), (Mode.SERIAL, "o"), (Mode.PARALLEL, "s")):
        mine = [c for c in scored if c.mode == mode and not c.chooses_by_content]
        if mine:
            axis.scatter([c.macs / 1e9 for c in mine], [c.gap for c in mine], marker=marker, s=30, label=mode)
    by_content = [c for c in scored if c.chooses_by_content]
    if by_content:
        axis.scatter([c.macs / 1e9 for c in by_content], [c.gap for c in by_content], marker="D", s=30,
                     label="serial, frames by content")
    readings = [_Reading(c.adaptive_gap, c.adaptive_macs) for c in scored
                if c.adaptive_gap is not None and c.adaptive_macs]
    if readings:
        axis.scatter([r.macs / 1e9 for r in readings], [r.gap for r in readings], marker="^", s=30,
                     label="serial, adaptive")
    curve = _adaptive_curve(client, scored)
    if curve is not None:
        axis.plot([m / 1e9 for m in curve[1]], curve[2], ":", marker=".", color="tab:green", alpha=0.8,
                  label=f"adaptive, every threshold ({curve[0]})")
    front = pareto_front([*scored, *readings])
    axis.plot([c.macs / 1e9 for c in front], [c.gap for c in front], "-", color="tab:red", alpha=0.7,
              label="Pareto front")
    axis.set_xscale("log")
    axis.set_xlabel("multiply-adds per video (G, log scale)")
    axis.set_ylabel("test GAP")
    axis.set_title("GAP against cost, every cell")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
