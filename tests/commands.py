"""The project's commands run in the test's own process (a new one spends seconds importing torch and
MLflow): `python -m module args` as its `main` sees it, with its exit status and what it printed."""

import contextlib
import importlib
import io
import subprocess


def in_process(module: str, *args: str) -> subprocess.CompletedProcess:
    main = importlib.import_module(module).main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(args))
        except SystemExit as stopped:  # argparse's way out
            status = stopped.code
    return subprocess.CompletedProcess([module, *args], status, out.getvalue(), err.getvalue())
