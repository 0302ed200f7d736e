"""The store on S3 (or any S3-compatible server), checked before a grid starts.

Locations are `s3://bucket/prefix` URIs opened through PyArrow's S3 filesystem, which follows the standard
AWS configuration: environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
`AWS_ENDPOINT_URL` for MinIO, SeaweedFS, Ceph...), shared config files and profiles (`AWS_PROFILE`).
`check_store` asks the bucket once, with boto3's bounded retries and exponential backoff, so that an
unreachable endpoint, a missing bucket or wrong credentials become one clear line within a minute,
before anything is written or any MLflow run is opened. `store_lost` asks again after an operation on the
store failed mid-grid, to tell a store that went away (stop the grid) from one job's own failure.
"""

from __future__ import annotations

import os

from orchestrator.errors import OrchestratorError

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
