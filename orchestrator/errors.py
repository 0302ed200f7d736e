"""What goes wrong, and what the person watching is told: the orchestrator's one exception type, an error's
telling line, the lines a driver prints (above the live progress line, while one is drawn), and a URI as
it may be shown (its secret masked)."""

from __future__ import annotations

import urllib.parse
from typing import Callable


class OrchestratorError(Exception):
    """A preset, store or run that cannot go ahead; the message names the file, key or cell."""


_writer: Callable[[str], None] | None = None  # prints above the live progress line, while one is drawn


def print_lines_with(writer: Callable[[str], None] | None) -> None:
    """Route `say` through `writer` (the console's live line sets it, and clears it with None)."""
    global _writer
    _writer = writer


def say(text: str) -> None:
    """Print a line of a driver's output, above the live line when there is one."""
    if _writer is not None:
        _writer(text)
    else:
        print(text, flush=True)


def note(name: str, text: str) -> None:
    """A problem found and dealt with (something damaged set aside, and done again), for the person
    watching: one line naming what it concerns."""
    say(f"  note  {name}: {text}")


def one_line(error: BaseException | str) -> str:
    """An error's last line (where Python and Ray put what went wrong)."""
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__


def masked(uri: str) -> str:
    """`uri` as it may be shown: the password of its user info (or a lone token) as ***. MLflow's client
    accepts `http://user:password@host:5000`; no line the project prints, logs or writes holds the secret."""
    parts = urllib.parse.urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, has_password, _ = userinfo.partition(":")
    shown = f"{user}:***" if has_password else "***"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{shown}@{host}"))
