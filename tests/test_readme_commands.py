"""The README's commands stay true to the code: every `python -m MODULE` and `python benchmarks/X.py` line
of its shell blocks names a module that exists, and every option it shows is one that command's `--help`
lists (a renamed or removed option fails here, not in a user's shell). The commands that do work end to
end as printed are run by the tests of their own (the main command by `tiny_grid`, the printed predict,
serve and `mlflow ui` commands pasted into a shell by test_publish and test_browser)."""

import importlib.util
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMAND = re.compile(r"python (-m [\w.]+|benchmarks/\w+\.py)")


def readme_commands() -> dict[str, set[str]]:
    """Each command of the README's ```bash blocks (continuation lines joined) -> the options shown with it."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    found: dict[str, set[str]] = {}
    for block in blocks:
        # a line ending in a backslash, or a usage line's options wrapped onto an indented next line
        joined = re.sub(r"\\\n|\n\s+(?=\[|--)", " ", block)
        for line in joined.splitlines():
            line = line.split("#", 1)[0]  # a comment after the command
            for match in COMMAND.finditer(line):
                rest = COMMAND.split(line[match.end():])[0]
                found.setdefault(match.group(1), set()).update(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest))
    return found


COMMANDS = readme_commands()


def test_the_readme_shows_the_products_commands():
    assert {"-m orchestrator.grid", "-m orchestrator.report", "-m orchestrator.publish", "-m orchestrator.predict",
            "-m orchestrator.tune", "-m orchestrator.convert"} <= set(COMMANDS)


def _help(command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *command.split(), "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def helps():
    """The --help of each command shown with options (each is a Python start and its imports: 2 cores, two
    at a time)."""
    with_options = [command for command, options in COMMANDS.items() if options]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(with_options, pool.map(_help, with_options)))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_readme_command_exists_and_takes_the_options_it_is_shown_with(command, helps):
    if not COMMANDS[command]:  # shown bare: it exists
        module = command.removeprefix("-m ")
        assert (REPO / command).is_file() if command.endswith(".py") else importlib.util.find_spec(module), command
        return
    shown = helps[command]
    assert shown.returncode == 0, f"python {command} --help: {shown.stderr[-2000:]}"
    unknown = sorted(option for option in COMMANDS[command] if option not in shown.stdout)
    assert not unknown, f"README shows python {command} with {unknown}, which its --help does not list"
