"""The store and the tracking store, checked before a grid or a search starts (before Ray: seconds, one
line, nothing left behind): `store_of` without writing, then `open_store` writes and deletes a probe.

On S3 (or any S3-compatible server), locations are `s3://bucket/prefix` URIs opened through PyArrow's S3 filesystem, which follows the standard
AWS configuration: environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
`AWS_ENDPOINT_URL` for MinIO, SeaweedFS, Ceph...), shared config files and profiles (`AWS_PROFILE`).
`check_store` asks the bucket once, with boto3's bounded retries and exponential backoff, so that an
unreachable endpoint, a missing bucket or wrong credentials become one clear line within a minute,
before anything is written or any MLflow run is opened (the tracking store is checked by
`orchestrator.tracking.uri`). `store_lost` asks again after an operation on the
store failed mid-grid, to tell a store that went away (stop the grid) from one job's own failure.
"""

from __future__ import annotations

import os
import tempfile
import uuid

from orchestrator.errors import OrchestratorError, masked
from orchestrator.store.layout import Store
from workloads.data.fs import resolve, write_bytes

# boto3's own retry loop: at most 4 tries, exponential backoff; short timeouts keep the worst case under
# a minute for an endpoint that accepts no connections.
RETRIES = {"max_attempts": 4, "mode": "standard"}
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 10


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


def store_lost(location: str) -> OrchestratorError | None:
    """After an operation on the store failed: the error to stop on when the store itself cannot be used
    any more (gone, or credentials revoked), None when it still answers."""
    try:
        check_store(location)
    except OrchestratorError as lost:
        return OrchestratorError(f"{lost}: lost it mid-grid; finished cells are kept, run the same command "
                                 "again once the store is back")
    return None


def store_of(root: str) -> Store:
    """The store, checked without writing anything: no credentials in its URI, reachable (a bucket), not a
    file (a folder)."""
    if masked(root) != root:  # every path into the store is a run's tag or param: the secret would be in each
        raise OrchestratorError(f"--store {masked(root)}: credentials in the store's URI would be written into "
                                "every MLflow run; give them as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                                "(or a profile) instead")
    store = Store(root)
    check_store(store.root)
    if "://" not in store.root and os.path.exists(store.root) and not os.path.isdir(store.root):
        raise OrchestratorError(f"--store {store.root}: is a file; the store is a folder")
    return store


def open_store(store: Store) -> None:
    """Make the store ready for writing: a local folder created; a file written and deleted in it."""
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
