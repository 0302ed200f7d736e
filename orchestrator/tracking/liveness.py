"""Whether the driver that opened an MLflow parent run is still running.

A grid or search tags its parent run with its identity (host, pid and the process's start time) and a
heartbeat it refreshes every HEARTBEAT_SECONDS (`Heartbeat`). On the driver's own host the answer is exact: is that
process (same pid and start time, so a reused pid does not count) running and not a zombie? Elsewhere the
heartbeat decides: a run silent for SILENT_SECONDS belongs to a driver that died.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Callable

HEARTBEAT_SECONDS = 60
SILENT_SECONDS = 5 * HEARTBEAT_SECONDS


def identity() -> str:
    """host:pid:start time of this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid()) or ''}"


def alive(owner: str, heartbeat: float | None, now: float) -> bool:
    """Whether the driver `owner` (an `identity()`) that last beat at `heartbeat` still runs."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3:
        return False
    host, pid, start = parts
    if host == socket.gethostname() and pid.isdigit():
        return _running(int(pid), start)
    return heartbeat is not None and now - heartbeat < SILENT_SECONDS


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces), None without one."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields else None  # field 22, starttime in clock ticks since boot


def _running(pid: int, start: str) -> bool:
    fields = _stat(pid)
    if fields is None:
        if os.path.isdir("/proc"):
            return False  # Linux without that pid: gone
        try:  # no /proc (macOS): the pid alone
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # A zombie has exited (PID 1 in a container may never reap it); another start time is another process.
    return fields[0] not in ("Z", "X") and (not start or fields[19] == start)


class Heartbeat:
    """Refreshes a run's heartbeat tag every HEARTBEAT_SECONDS on a thread of its own until stopped; a
    missed beat only makes the run look idle sooner, so failures to write it are ignored."""

    def __init__(self, beat: Callable[[], None]):
        self.stopped = threading.Event()

        def loop():
            while not self.stopped.wait(HEARTBEAT_SECONDS):
                try:
                    beat()
                except Exception:  # noqa: BLE001 - see the docstring
                    pass

        self.thread = threading.Thread(target=loop, name="mlflow-heartbeat", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()
