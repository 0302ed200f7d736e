"""Servers the tests start on 127.0.0.1: a free port for one, and waiting until it answers."""

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
