"""python -m orchestrator.grid : run a preset's whole experiment matrix on Ray and record it in MLflow.

With no arguments: preset `smoke`, local Ray, store `./runs`, MLflow at `sqlite:///runs/mlflow.db`,
synthetic data generated into the store on first use. Under `ray job submit` the same command runs on
the cluster (`RAY_ADDRESS` is set there). Re-running skips every finished cell; exit status 0 when every
cell finished, 1 when some failed (named at the end), 2 for a bad preset or arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone

from orchestrator.driver import session
from orchestrator.errors import masked
from orchestrator.driver.plan import show_plan
from orchestrator.experiment.presets import load_override, load_preset


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.grid", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smoke", help="a shipped preset (smoke, tiny, paper) or a YAML file")
    parser.add_argument("--override", help="a YAML file merged into the preset (e.g. the best configuration of a search)")
    parser.add_argument("--store", default="runs", help="folder or URI for data, checkpoints, caches and results")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<store>/mlflow.db)")
    parser.add_argument("--experiment", help="MLflow experiment (default: fewer-frames-<preset>)")
    parser.add_argument("--data", help="a folder or URI with train/ and validate/ shards (default: the preset's)")
    parser.add_argument("--plan", action="store_true",
                        help="print what the preset would run and what the store holds already; run nothing")
    parser.add_argument("--rates", help="with --plan: seconds per video from `benchmarks/paper_cost.py --save`, "
                                        "for the device-hours of the grid")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    preset = load_preset(args.preset, load_override(args.override), args.override)
    store, tracking_uri, data = session.before_ray(args.store, args.tracking_uri, preset, args.data)
    experiment = args.experiment or f"fewer-frames-{preset.name}"
    # MLflow (seconds to import) once the input is known good: a bad preset or store says so at once.
    from orchestrator.driver.closing import report_folder, report_on_parent, time_on_parent
    from orchestrator.driver.ledger import Ledger
    from orchestrator.driver.scheduler import Scheduler
    from orchestrator.experiment.outcome import CellOutcome
    from orchestrator.report.evidence import Evidence
    from orchestrator.report.summary import summarize
    from orchestrator.store.weights import best_adaptive
    from orchestrator.tracking import schema
    from orchestrator.tracking.registry import commands, publish_after_grid
    from orchestrator.tracking.tracker import Tracker

    ray = session.start_ray()
    session.refuse_local_store_on_a_cluster(ray, store, preset.resources)
    tracker = Tracker(tracking_uri, experiment, store.path("mlartifacts"))
    tracker.share_cells_view()
    stale = tracker.end_stale_runs()
    if stale:
        print(f"ended {stale} run(s) that an interrupted grid had left RUNNING")
    started = time.perf_counter()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    tracker.start_parent(f"{preset.name}-{stamp}", schema.grid_params(args.preset, store.root, args.data or "preset"),
                         {schema.PRESET_TAG: preset.name})
    session.stop_on_sigterm()
    with tracker.ending_parent() as parent, session.store_failures(store):
        grid = Scheduler(preset, Ledger(store, tracker.cells), data or session.generated_data(ray, preset, store), ray)
        grid.run()
        parent.summary = summarize([CellOutcome.of(c, grid.ledger.results.get(c.id)) for c in grid.cells],
                                   Evidence.in_store(store, grid.cells))
        parent.status = "FAILED" if grid.ledger.failed else "FINISHED"
        time_on_parent(ray, preset, grid.data, tracker, trained=grid.started > 0,
                       adaptive=best_adaptive(grid.cells, grid.ledger.results))
        with report_folder(store, experiment) as folder:
            report = report_on_parent(tracker, folder)
        published = publish_after_grid(tracker) if preset.publish else []
    print()
    print(parent.summary)
    print(f"grid {preset.name}: {len(grid.cells)} cells in {time.perf_counter() - started:.0f} s; MLflow experiment "
          f"{experiment!r} at {masked(tracking_uri)}")
    if report is not None:
        where = report.files[0] if store.is_local else f"the parent run's {schema.REPORT_HTML} artifact"
        print(f"report (the paper's tables and figures): {where}")
    print(tracker.how_to_open())
    for line in [entry.line() for entry in published] + commands(published, tracking_uri):
        print(line)
    if grid.ledger.failed:
        print(f"error: {len(grid.ledger.failed)} cell(s) failed: {', '.join(grid.ledger.failed)}", file=sys.stderr)
        return session.EXIT_FAILED
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rates and not args.plan:
        print("error: --rates goes with --plan", file=sys.stderr)
        return session.EXIT_BAD_INPUT
    if args.plan:
        return session.exit_status(lambda: show_plan(args.preset, args.override, args.store, args.tracking_uri,
                                                    args.data, args.rates), "nothing was started")
    return session.exit_status(lambda: run(args), "finished cells are kept; run the same command again to do the rest")


if __name__ == "__main__":
    sys.exit(main())
