"""The MLflow tracking store a command writes to or reads from, checked within seconds before anything
starts: an MLflow server that answers, or the folder a SQLite (or file) store lies in.
"""

from __future__ import annotations

import base64
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from orchestrator.errors import OrchestratorError, masked
from orchestrator.store.layout import Store

TRACKING_TIMEOUT_S = 5  # an MLflow server's answer; MLflow's own retries would take minutes
DATABASE = "mlflow.db"  # the SQLite tracking store in a local store's root, when no tracking URI is given


def in_store(store: Store) -> str:
    """The default tracking URI of a (local) store: SQLite in its root."""
    return f"sqlite:///{store.path(DATABASE)}"


# The tracking store a grid run with its defaults writes: where the commands that read a grid look first.
DEFAULT_TRACKING = f"sqlite:///runs/{DATABASE}"


def check_existing_tracking(uri: str) -> None:
    """`check_tracking` for a command that reads what a grid wrote: a SQLite URI must name an existing
    database, as MLflow would create an empty one."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if not os.path.isfile(path):
            raise OrchestratorError(f"--tracking-uri {uri}: no MLflow database at {path}")
    check_tracking(uri)


def _health_request(uri: str) -> urllib.request.Request:
    """A request for the server's /health, the URI's user and password (which urllib does not take from a
    URL, where MLflow's client does) sent as HTTP basic authentication."""
    parts = urllib.parse.urlsplit(uri.rstrip("/") + "/health")
    headers = {}
    if "@" in parts.netloc:
        userinfo, host = parts.netloc.rsplit("@", 1)
        token = base64.b64encode(urllib.parse.unquote(userinfo).encode()).decode()
        headers["Authorization"] = f"Basic {token}"
        parts = parts._replace(netloc=host)
    return urllib.request.Request(urllib.parse.urlunsplit(parts), headers=headers)


def check_tracking(uri: str) -> None:
    """Whether the MLflow tracking store answers, within seconds: an MLflow server (any HTTP answer will
    do; its own retries would take minutes), or the folder a SQLite or file store would be written in."""
    scheme = uri.split(":", 1)[0] if ":" in uri else "file"
    if scheme in ("http", "https"):
        try:
            urllib.request.urlopen(_health_request(uri), timeout=TRACKING_TIMEOUT_S).close()
        except urllib.error.HTTPError:  # it answered
            pass
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = str(getattr(error, "reason", None) or error).replace(uri, masked(uri))
            raise OrchestratorError(f"--tracking-uri {masked(uri)}: no MLflow server answers there "
                                    f"({reason})") from None
    elif scheme in ("sqlite", "file"):
        if scheme == "sqlite":  # sqlite:///relative.db or sqlite:////absolute.db
            folder = os.path.dirname(uri.split(":///", 1)[1]) if ":///" in uri else ""
        else:
            folder = urllib.parse.urlparse(uri).path if "://" in uri else uri
        if folder and not os.path.isdir(folder):
            raise OrchestratorError(f"--tracking-uri {uri}: the folder {folder} does not exist")
        try:
            tempfile.TemporaryFile(dir=folder or ".").close()
        except OSError as error:
            raise OrchestratorError(f"--tracking-uri {uri}: cannot write in {folder}: {error.strerror}") from None
