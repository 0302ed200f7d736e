"""python -m orchestrator.predict --model models:/NAME@best --data DIR|URI --out FILE.csv [--top-k 20] [--labels]

Labels every video of a folder of video shards (local or S3) with a registered model and writes
YouTube-8M's submission format (`VideoId,LabelConfidencePairs`, the starter code's inference output)
under a temporary name, renamed when complete: a failure leaves no file. Each shard is read with the
model's own frame selection (only the frames it reads are gathered and dequantised), a batch at a time,
so memory stays constant however many videos there are. On a Ray cluster (`--address`, or `RAY_ADDRESS`
as `ray job submit` sets it) the shards are spread over the cluster's workers with Ray Data and the rows
stream back to this process; without one, they are read here. `--labels` also prints GAP@20 and mAP over
the videos that carry labels (the test split of a grid gives the cell's logged `gap`).

Exit status 0; 2 with one line for bad input: an unknown model, name or alias, shards of another class
count or schema, an output that cannot be written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import pyarrow.fs as pafs

from orchestrator.driver import session
from orchestrator.errors import OrchestratorError, masked, one_line
from orchestrator.tracking.uri import DEFAULT_TRACKING, check_existing_tracking
from workloads.data.format import SHARD_SUFFIX, read_info, read_metadata
from workloads.data.fs import list_files, resolve
from workloads.errors import WorkloadError
from workloads.inference import SUBMISSION_HEADER, Classifier, Predictions, Scores, submission_lines
from workloads.memory import keep_freed_memory

FOOTERS = 16  # shard footers read at once


@dataclass(frozen=True)
class Job:
    model: str
    data: str
    out: str
    top_k: int = 20
    batch_size: int = 128
    labels: bool = False
    address: str | None = None
    cpus: float = 1.0  # per Ray Data worker
    gpus: float = 0.0


def load_classifier(model_uri: str, tracking_uri: str) -> Classifier:
    """The registered model behind `models:/NAME@ALIAS` (or `/VERSION`), or any MLflow model URI."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    if model_uri.startswith("models:/"):
        _check_registered(mlflow.MlflowClient(tracking_uri), model_uri, tracking_uri)
    try:
        loaded = mlflow.pyfunc.load_model(model_uri)
    except (MlflowException, OSError) as error:
        raise OrchestratorError(f"--model {model_uri}: {one_line(error)}") from None
    labeller = loaded.unwrap_python_model()
    if not hasattr(labeller, "classifier"):
        raise OrchestratorError(f"--model {model_uri}: not a Fewer Frames model (no video classifier inside)")
    return labeller.classifier


def _check_registered(client, model_uri: str, tracking_uri: str) -> None:
    from mlflow.exceptions import MlflowException

    reference = model_uri[len("models:/"):]
    name, _, alias = reference.partition("@")
    name = name.split("/")[0]
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        known = ", ".join(sorted(m.name for m in client.search_registered_models())) or "none"
        raise OrchestratorError(f"--model {model_uri}: no registered model {name!r} at {masked(tracking_uri)} "
                                f"(registered: {known})") from None
    if alias and alias not in (model.aliases or {}):
        aliases = ", ".join(sorted(model.aliases or {})) or "none"
        raise OrchestratorError(f"--model {model_uri}: {name!r} has no alias {alias!r} (its aliases: {aliases})")


def check_shards(classifier: Classifier, data: str) -> tuple[list[str], int]:
    """The shards at `data` and their video count, every footer read first: a shard of another schema or
    class count stops the job before anything is written."""
    try:
        shards = list_files(data, SHARD_SUFFIX)
    except (OSError, WorkloadError) as error:
        raise OrchestratorError(f"--data {data}: {one_line(error)}") from None
    if not shards:
        raise OrchestratorError(f"--data {data}: no {SHARD_SUFFIX} shards there")

    def footer(shard: str) -> int:
        metadata = read_metadata(shard)
        classes = read_info(shard, metadata).num_classes
        if classes != classifier.card.num_classes:
            raise WorkloadError(f"{shard}: a shard of {classes} classes; the model predicts "
                                f"{classifier.card.num_classes}")
        return metadata.num_rows

    try:
        with ThreadPoolExecutor(FOOTERS) as pool:
            videos = sum(pool.map(footer, shards))
    except WorkloadError as error:
        raise OrchestratorError(str(error)) from None
    return shards, videos


def check_out(out: str) -> None:
    """`--out` names a CSV to write: not a folder, not a video shard (a shard of `--data` would be replaced
    by the CSV), and its folder exists."""
    try:
        fs, path = resolve(out)
        kind = fs.get_file_info(path).type
        parent = fs.get_file_info(os.path.dirname(path)).type if os.path.dirname(path) else pafs.FileType.Directory
    except (OSError, WorkloadError) as error:
        raise OrchestratorError(f"--out {out}: {one_line(error)}") from None
    if kind == pafs.FileType.Directory:
        raise OrchestratorError(f"--out {out}: a folder; give the CSV file's name "
                                f"(e.g. {out.rstrip('/')}/predictions.csv)")
    if out.endswith(SHARD_SUFFIX):
        raise OrchestratorError(f"--out {out}: a video shard's name ({SHARD_SUFFIX}); the predictions are a CSV "
                                "(name it .csv): nothing was written")
    if parent != pafs.FileType.Directory and "://" not in out:  # a bucket's folders need not exist
        raise OrchestratorError(f"--out {out}: its folder {os.path.dirname(path)} does not exist")


def predict_here(classifier: Classifier, shards: list[str], job: Job) -> Iterator[Predictions]:
    for shard in shards:
        yield from classifier.predict_shard(shard, job.batch_size, job.top_k)


def predict_on_cluster(classifier: Classifier, shards: list[str], job: Job) -> Iterator[Predictions]:
    """The shards spread over a Ray cluster with Ray Data: one shard per task, rows streamed back."""
    from orchestrator.serve.ray_predict import shard_predictions

    ray = session.start_ray(job.address)
    session.stop_on_sigterm()  # again, over the handler Ray's start put in place
    try:
        yield from shard_predictions(ray, classifier, shards, job)
    finally:
        ray.shutdown()


def write_predictions(batches: Iterator[Predictions], job: Job, total: int, scores: Scores | None) -> tuple[int, int]:
    """Stream the rows into a temporary file beside `job.out` and rename it when complete; returns the
    number of videos and of the frames the model read of them."""
    from tqdm import tqdm

    fs, path = resolve(job.out)
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".{name}.tmp-{os.getpid()}")
    try:
        stream = fs.open_output_stream(temporary)
    except OSError as error:
        raise OrchestratorError(f"--out {job.out}: cannot be written: {one_line(error)}") from None
    written = read = 0
    try:
        with stream, tqdm(total=total, unit="video", desc="predict", file=sys.stderr, mininterval=2) as bar:
            stream.write((SUBMISSION_HEADER + "\n").encode())
            for predictions in batches:
                stream.write("".join(line + "\n" for line in submission_lines(predictions, job.top_k)).encode())
                if scores is not None:
                    scores.add(predictions)
                written += len(predictions.ids)
                read += int(predictions.frames.sum()) if predictions.frames is not None else 0
                bar.update(len(predictions.ids))
        fs.move(temporary, path)
    except BaseException:
        _remove(fs, temporary)
        raise
    return written, read


def _remove(fs, path: str) -> None:
    try:
        fs.delete_file(path)
    except OSError:
        pass


def run(job: Job, tracking_uri: str) -> str:
    started = time.perf_counter()
    if job.top_k < 1:
        raise OrchestratorError(f"--top-k must be >= 1, got {job.top_k}")
    check_out(job.out)
    check_existing_tracking(tracking_uri)
    classifier = load_classifier(job.model, tracking_uri)
    shards, total = check_shards(classifier, job.data)
    scores = Scores(classifier.card.num_classes) if job.labels else None
    source = predict_on_cluster if job.address or os.environ.get("RAY_ADDRESS") else predict_here
    labelling = time.perf_counter()
    try:
        videos, read = write_predictions(source(classifier, shards, job), job, total, scores)
    except WorkloadError as error:
        raise OrchestratorError(str(error)) from None
    ended = time.perf_counter()
    # The rate is the labelling's, as the progress bar shows it; loading the model and reading the shards'
    # footers come before it, said apart.
    lines = [f"{videos} videos of {len(shards)} shard(s) labelled by {job.model} in {ended - labelling:.1f} s "
             f"({videos / max(ended - labelling, 1e-9):.0f} videos/s; {labelling - started:.1f} s before it to load "
             f"the model and read the shards' footers): {job.out}",
             f"the model read {read / max(videos, 1):.1f} frames per video on average ({classifier.card.reads})"]
    if scores is not None:
        lines.append(f"GAP {scores.gap():.4f}  mAP {scores.map():.4f}  over {scores.labelled} labelled videos"
                     if scores.labelled else "--labels: no video carries labels; no GAP or mAP")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.predict", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="models:/NAME@ALIAS, models:/NAME/VERSION, or a model URI")
    parser.add_argument("--data", required=True, help="a folder of video shards, local or s3://")
    parser.add_argument("--out", required=True, help="the submission CSV to write")
    parser.add_argument("--top-k", type=int, default=20, help="classes per video (default 20)")
    parser.add_argument("--labels", action="store_true", help="also print GAP and mAP over labelled videos")
    parser.add_argument("--batch-size", type=int, default=128,
                        help="videos per forward pass (default 128: the k=30 student's matrices are small below it)")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING),
                        help=f"default: MLFLOW_TRACKING_URI, else {DEFAULT_TRACKING}")
    parser.add_argument("--address", help="a Ray cluster to spread shards over (default: RAY_ADDRESS, else here)")
    parser.add_argument("--cpus", type=float, default=1.0, help="CPUs per Ray Data worker (default 1)")
    parser.add_argument("--gpus", type=float, default=0.0, help="GPUs per Ray Data worker (default 0)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keep_freed_memory()  # batches decoded here reuse the memory of the batches before them
    session.stop_on_sigterm()  # SIGTERM ends it as Ctrl-C does: the temporary file removed, exit 130
    job = Job(args.model, args.data, args.out, args.top_k, args.batch_size, args.labels, args.address,
              args.cpus, args.gpus)

    def work() -> int:
        print(run(job, args.tracking_uri))
        return 0
    return session.exit_status(work, f"{job.out} was not written")


if __name__ == "__main__":
    sys.exit(main())
