"""python -m orchestrator.grid --plan : what a preset would run, and what of it the store holds already,
without training, starting Ray or writing anything: teachers, cells by mode, family and k (done / all),
and the device-hours of the whole grid and of what is left: from seconds per video measured on the
cluster's device (`--rates`, from `benchmarks/paper_cost.py --save`), or else from a short calibration on
this machine (`orchestrator.driver.calibration`), with the wall time the grid would take here.
"""

from __future__ import annotations

from collections import Counter

from orchestrator.driver.calibration import BATCH, calibrate, cells_at_once, wall_hours
from orchestrator.driver.cost import YOUTUBE8M_TRAIN, YOUTUBE8M_VALIDATE, Rates, device_hours
from orchestrator.driver.session import check_stores
from orchestrator.experiment.matrix import Cell, TeacherSpec, expand
from orchestrator.experiment.modes import Mode
from orchestrator.experiment.presets import Preset, load_override, load_preset
from orchestrator.jobs.data_sets import data_id
from orchestrator.report.tables import row_key, row_label
from orchestrator.store.files import DamagedFile, read_result
from orchestrator.store.layout import Store


def finished(store: Store, cells: list[Cell]) -> set[str]:
    """The ids of the cells whose result the store holds (an unreadable one counts as not done)."""
    done = set()
    for cell in cells:
        try:
            if read_result(store, cell.id) is not None:
                done.add(cell.id)
        except DamagedFile:
            pass
    return done


def _matrix(cells: list[Cell], done: set[str]) -> list[str]:
    ks = sorted({c.k for c in cells if c.k is not None})
    columns = [f"k={k}" for k in ks] + ["all frames"]
    total = Counter((c.mode, c.family, c.k) for c in cells)
    finished_here = Counter((c.mode, c.family, c.k) for c in cells if c.id in done)
    lines = ["| mode | family | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for mode in Mode:
        for family in sorted({c.family for c in cells if c.mode == mode}):
            row = [f"{finished_here[(mode, family, k)]}/{total[(mode, family, k)]}" if total[(mode, family, k)]
                   else "" for k in (*ks, None)]
            lines.append(f"| {mode} | {family} | " + " | ".join(row) + " |")
    return lines


def _parts(preset: Preset, cells: list[Cell]) -> list[str]:
    """A preset of several cross-products (`parts`, the paper's tables): each one's rows, at which k."""
    if not preset.parts:
        return []
    lines = [f"the matrix is the union of {len(preset.parts)} parts ({len(cells)} distinct cells):"]
    data = cells[0].data if cells else ""
    for part, product in preset.part_products():
        if product is None:
            lines.append(f"- {part.name}: no cells (none of what it names is in the preset's lists)")
            continue
        _, its = expand(product, data)
        rows: dict[str, list[str]] = {}
        for cell in its:
            where = "all frames" if cell.k is None else f"k={cell.k}"
            share = "" if cell.data_fraction == 1 else f" ({cell.data_fraction:.0%} of the data)"
            rows.setdefault(row_label(row_key(cell)) + share, []).append(where)
        shown = "; ".join(row if at == ["all frames"] else f"{row} at {', '.join(dict.fromkeys(at))}"
                          for row, at in rows.items())
        lines.append(f"- {part.name}: {len(its)} cells: {shown}")
    return lines + [""]


def _videos(preset: Preset) -> tuple[int, int, str]:
    synthetic = preset.data.synthetic
    if synthetic is not None:
        return synthetic.split_videos["train"], synthetic.split_videos["validate"], "the synthetic data set"
    return YOUTUBE8M_TRAIN, YOUTUBE8M_VALIDATE, "YouTube-8M frame level"


def _hours(preset: Preset, teachers: list[TeacherSpec], cells: list[Cell], done: set[str], rates: Rates,
           here: bool = False) -> list[str]:
    """The device-hours of the grid and of what is left; `here` (rates measured on this machine): the wall
    time it would take on it too."""
    train, validate, what = _videos(preset)
    group = preset.resources.cell.parallel_group
    whole = device_hours(teachers, cells, rates, train, validate, group)
    skylines = {c.teacher.id: c.id for c in cells if c.mode is Mode.SKYLINE}
    todo = [t for t in teachers if skylines[t.id] not in done]
    left = device_hours(todo, [c for c in cells if c.id not in done], rates, train, validate, group)
    kinds = ", ".join(f"{kind} {hours:,.2f}" for kind, hours in sorted(whole.items()))
    lines = [f"device-hours on {rates.device} ({what}: {train:,} training and {validate:,} validation videos): "
             f"{kinds}; total {sum(whole.values()):,.2f}, of which left to run {sum(left.values()):,.2f}"]
    if here:
        slots = cells_at_once(preset)
        wall = wall_hours(left, len(todo), slots)
        lines.append(f"wall time here, {slots} cell(s) at once: about {_duration(wall)} of training and evaluation "
                     "left (reading the data, Ray and MLflow add to it)")
    return lines


def _duration(hours: float) -> str:
    minutes = round(hours * 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{max(minutes, 1)} min"


def describe(preset: Preset, teachers: list[TeacherSpec], cells: list[Cell], done: set[str], store: Store,
             rates: Rates | None) -> str:
    modes = Counter(c.mode for c in cells)
    skylines_done = sum(1 for c in cells if c.mode is Mode.SKYLINE and c.id in done)
    lines = [f"plan for preset {preset.name!r}, store {store.root}:",
             f"teachers: {len(teachers)} ({', '.join(t.name for t in teachers[:6])}"
             f"{', ...' if len(teachers) > 6 else ''}), {skylines_done} trained",
             f"cells: {len(cells)} ({', '.join(f'{n} {mode}' for mode, n in modes.items())}), {len(done)} done in "
             f"the store, {len(cells) - len(done)} to run", ""] + _matrix(cells, done) + [""] + _parts(preset, cells)
    if rates is None:
        rates, took = calibrate(preset)
        lines.append(f"calibrated on this machine in {took:.0f} s ({BATCH}-video batches of each model; for a "
                     "cluster, give --rates FILE from `python benchmarks/paper_cost.py --device cuda --save FILE` "
                     "run on its device):")
        lines += _hours(preset, teachers, cells, done, rates, here=True)
    elif rates.size != preset.size:
        lines.append(f"device-hours: the rates are of {rates.size}-size models, this preset's are {preset.size}; "
                     "no estimate")
    else:
        lines += _hours(preset, teachers, cells, done, rates)
    return "\n".join(lines)


def show_plan(preset_name: str, override: str | None, store_root: str, tracking_uri: str | None,
              data_uri: str | None, rates_path: str | None) -> int:
    """--plan: the preset's teachers and cells, those done in the store, the device-hours; nothing runs."""
    preset = load_preset(preset_name, load_override(override), override)
    rates = Rates.load(rates_path) if rates_path else None
    store = check_stores(store_root, tracking_uri)
    teachers, cells = expand(preset, data_id(preset.data, data_uri))
    print(describe(preset, teachers, cells, finished(store, cells), store, rates))
    return 0
