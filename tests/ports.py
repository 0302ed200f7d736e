"""Servers the tests start on 127.0.0.1: a free port for one, waiting until it answers, and whether a
server's process group still runs, or stopping it."""

import os
import signal
import socket
import subprocess
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_answering(url: str, server: subprocess.Popen, what: str, timeout: float = 180) -> None:
    """Return once `url` answers; fail naming `what` when the server exits or `timeout` passes first."""
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                raise AssertionError(f"{what} did not come up at {url}")
            time.sleep(0.5)


def group_alive(group: int) -> bool:
    """Whether a process of the group still runs (an exited one waiting for a reaper does not count: a
    container's PID 1 may not be one)."""
    states = subprocess.run(["ps", "-eo", "pgid=,stat="], capture_output=True, text=True).stdout.splitlines()
    return any(int(line.split()[0]) == group and not line.split()[1].startswith("Z") for line in states if line.split())


def stop_group(group: int) -> None:
    """Stop a process group: asked first, then killed (Ray's GCS and raylet may ignore SIGTERM)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and group_alive(group):
            time.sleep(0.2)
