"""The store and the tracking store, checked before a grid or a search starts (before Ray: seconds, one
line, nothing left behind): `store_of` without writing, then `open_store` writes and deletes a probe.

On S3 (or any S3-compatible server), locations are `s3://bucket/prefix` URIs opened through PyArrow's S3 filesystem, which follows the standard
AWS configuration: environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
`AWS_ENDPOINT_URL` for MinIO, SeaweedFS, Ceph...), shared config files and profiles (`AWS_PROFILE`).
`check_store` asks the bucket once, with boto3's bounded retries and exponential backoff, so that an
unreachable endpoint, a missing bucket or wrong credentials become one clear line within a minute,
before anything is written or any MLflow run is opened. `store_lost` asks again after an operation on the
store failed mid-grid, to tell a store that went away (stop the grid) from one job's own failure.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid

from orchestrator.errors import OrchestratorError
from orchestrator.store.layout import Store
from workloads.data.fs import resolve, write_bytes

# boto3's own retry loop: at most 4 tries, exponential backoff; short timeouts keep the worst case under
# a minute for an endpoint that accepts no connections.
RETRIES = {"max_attempts": 4, "mode": "standard"}
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 10
TRACKING_TIMEOUT_S = 5  # an MLflow server's answer; MLflow's own retries would take minutes


def is_s3(location: str) -> bool:
    return location.startswith("s3://")


def bucket_of(location: str) -> str:
    return location[len("s3://"):].split("/", 1)[0]


def check_store(location: str) -> None:
    """Raise OrchestratorError (one line) unless the store can be used."""
    if not is_s3(location):
        return
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

    bucket = bucket_of(location)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
    if not bucket:
        raise OrchestratorError(f"{location}: no bucket in the store URI (s3://bucket/prefix)")
    # A new session each time: boto3's default session keeps the credentials it first found.
    client = boto3.session.Session().client("s3", config=Config(retries=RETRIES, connect_timeout=CONNECT_TIMEOUT_S,
                                                                read_timeout=READ_TIMEOUT_S))
    try:
        client.head_bucket(Bucket=bucket)
    except NoCredentialsError:
        raise OrchestratorError(f"{location}: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                                "or AWS_PROFILE)") from None
    except EndpointConnectionError as error:
        raise OrchestratorError(f"{location}: cannot reach the S3 endpoint {endpoint} ({error})") from None
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise OrchestratorError(f"{location}: bucket {bucket!r} does not exist at {endpoint}") from None
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"):
            raise OrchestratorError(f"{location}: access to bucket {bucket!r} at {endpoint} denied: check the "
                                    "credentials and that they may list, read and write the bucket") from None
        raise OrchestratorError(f"{location}: S3 error {code} from {endpoint}: {error}") from None
    except BotoCoreError as error:
        raise OrchestratorError(f"{location}: cannot use the S3 endpoint {endpoint}: {error}") from None


def is_storage_failure(error: BaseException) -> bool:
    """Whether an error may come from the store rather than the job: an I/O error (PyArrow's S3 errors are
    OSErrors, and so are Ray's task errors that wrap them), or one from boto3 or MLflow's artifact upload."""
    from botocore.exceptions import BotoCoreError, ClientError
    from mlflow.exceptions import MlflowException

    cause = getattr(error, "cause", None)  # a Ray task error carries the task's own exception
    return isinstance(error, (OSError, BotoCoreError, ClientError, MlflowException)) or (
        cause is not None and cause is not error and is_storage_failure(cause))


def store_lost(location: str) -> OrchestratorError | None:
    """After an operation on the store failed: the error to stop on when the store itself cannot be used
    any more (gone, or credentials revoked), None when it still answers."""
    try:
        check_store(location)
    except OrchestratorError as lost:
        return OrchestratorError(f"{lost}: lost it mid-grid; finished cells are kept, run the same command "
                                 "again once the store is back")
    return None


def store_of(root: str, tracking_uri: str | None) -> Store:
    """The store, checked without writing anything: reachable (a bucket), not a file (a folder), and with a
    tracking store that answers when one is given (a store on object storage needs a tracking server)."""
    store = Store(root)
    check_store(store.root)
    if "://" not in store.root and os.path.exists(store.root) and not os.path.isdir(store.root):
        raise OrchestratorError(f"--store {store.root}: is a file; the store is a folder")
    if tracking_uri is None and not store.is_local:
        raise OrchestratorError("a store on object storage needs --tracking-uri (an MLflow server)")
    if tracking_uri is not None:
        check_tracking(tracking_uri)
    return store


def open_store(store: Store, tracking_uri: str | None) -> str:
    """Make the store ready for writing (a local folder created; a file written and deleted in it) and
    return the MLflow tracking URI: the one given, else SQLite in the (local) store."""
    where = f"--store {store.root}"
    if "://" not in store.root:
        try:
            os.makedirs(store.root, exist_ok=True)
            tempfile.TemporaryFile(dir=store.root).close()
        except OSError as error:
            raise OrchestratorError(f"{where}: cannot write there: {error.strerror or error}") from None
    else:
        probe = store.path(f".write-check-{uuid.uuid4().hex[:12]}")
        try:
            write_bytes(probe, b"")
            fs, path = resolve(probe)
            fs.delete_file(path)
        except OSError as error:
            raise OrchestratorError(f"{where}: cannot write there: {error}") from None
    if tracking_uri is None:
        tracking_uri = f"sqlite:///{store.path('mlflow.db')}"
        check_tracking(tracking_uri)
    return tracking_uri


# The tracking store a grid run with its defaults writes: where the commands that read a grid look first.
DEFAULT_TRACKING = "sqlite:///runs/mlflow.db"


def check_existing_tracking(uri: str) -> None:
    """`check_tracking` for a command that reads what a grid wrote: a SQLite URI must name an existing
    database, as MLflow would create an empty one."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if not os.path.isfile(path):
            raise OrchestratorError(f"--tracking-uri {uri}: no MLflow database at {path}")
    check_tracking(uri)


def check_tracking(uri: str) -> None:
    """Whether the MLflow tracking store answers, within seconds: an MLflow server (any HTTP answer will
    do; its own retries would take minutes), or the folder a SQLite or file store would be written in."""
    scheme = uri.split(":", 1)[0] if ":" in uri else "file"
    if scheme in ("http", "https"):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=TRACKING_TIMEOUT_S).close()
        except urllib.error.HTTPError:  # it answered
            pass
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", None) or error
            raise OrchestratorError(f"--tracking-uri {uri}: no MLflow server answers there ({reason})") from None
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
