"""python -m orchestrator.report --experiment NAME [--experiment NAME ...] [--tracking-uri URI] [--out DIR]
                                 [--format md,html,csv,tex]

Writes the report of a grid's MLflow experiment (report.html, self-contained; report.md; the PNGs; each
table as CSV and LaTeX) from MLflow alone, so it works against a remote tracking server and its artifact
store as against the default SQLite file. Given several experiments, it compares the grids side by side
instead: Table 1's rows, a column group per grid, each grid's test GAP minus the first's with its 95%
interval. Exit status 0, or 2 with one line when an experiment does not exist or has no finished cell.
"""

from __future__ import annotations

import argparse
import os
import sys

from orchestrator.errors import OrchestratorError
from orchestrator.report.exports import FORMATS
from orchestrator.tracking.uri import DEFAULT_TRACKING, check_existing_tracking


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.report", description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", required=True, action="append",
                        help="the grid's MLflow experiment, e.g. fewer-frames-smoke; given again (and again), the "
                             "grids compared side by side, the first the reference")
    parser.add_argument("--tracking-uri", default=DEFAULT_TRACKING,
                        help=f"MLflow tracking URI (default: {DEFAULT_TRACKING}, the default grid's)")
    parser.add_argument("--out", help="folder to write into (default: reports/<experiment> beside a SQLite "
                                      "tracking file, as the grid writes it: runs/reports/<experiment>; "
                                      "reports/<A>_vs_<B> for a comparison)")
    parser.add_argument("--format", default=",".join(FORMATS),
                        help=f"what to write, comma-separated, of {', '.join(FORMATS)} (default: all: the page, "
                             "the Markdown with its figures, and each table as CSV and LaTeX)")
    args = parser.parse_args(argv)
    if len(args.experiment) > 10:
        parser.error(f"--experiment: {len(args.experiment)} given; a comparison takes at most 10 grids (A to J)")
    if len(set(args.experiment)) != len(args.experiment):
        parser.error(f"--experiment: {', '.join(sorted({e for e in args.experiment if args.experiment.count(e) > 1}))} "
                     "given more than once; compare different grids")
    args.formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    unknown = [f for f in args.formats if f not in FORMATS]
    if unknown or not args.formats:
        parser.error(f"--format: {', '.join(unknown) or 'nothing'} is not one of {', '.join(FORMATS)}")
    return args


def default_folder(tracking_uri: str, experiment: str) -> str:
    """Where the grid writes its report: `reports/<experiment>` beside a SQLite tracking file (in a local
    store, its root: `runs/reports/...` for the default grid); else `reports/<experiment>` here."""
    from orchestrator.report.build import folder_name

    database = tracking_uri.split(":///", 1)[1] if tracking_uri.startswith("sqlite:///") else None
    return os.path.join(os.path.dirname(database) if database else "", "reports", folder_name(experiment))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_existing_tracking(args.tracking_uri)
        from mlflow.tracking import MlflowClient

        from orchestrator.report.build import write_comparison, write_report

        named = "_vs_".join(args.experiment)
        out = args.out or default_folder(args.tracking_uri, named)
        client = MlflowClient(args.tracking_uri)
        if len(args.experiment) == 1:
            written = write_report(client, args.experiment[0], out, args.formats)
        else:
            written = write_comparison(client, args.experiment, out, args.formats)
    except OrchestratorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    what = "report of" if len(args.experiment) == 1 else "comparison of"
    print(f"{what} {' and '.join(map(repr, args.experiment))}: {written.files[0]} (and {', '.join(written.files[1:])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
