"""The real downloader against a small Hugging Face-like server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from photon_index.errors import ChecksumError, DownloadError
from photon_index.models.download import download_model, file_url, resolve_endpoint
from photon_index.models.installed import read_model_dir
from photon_index.models.registry import ModelSpec

REPO = "acme/tiny-siglip"
REVISION = "0123abc"
PAYLOADS = {
    "onnx/vision_model.onnx": os.urandom(1 << 20),
    "onnx/text_model.onnx": os.urandom(300_000),
    "tokenizer.json": b'{"model": "tiny"}',
    "preprocessor_config.json": b'{"size": 224}',
    "config.json": b'{"projection_dim": 64}',
}


@dataclass
class Hub:
    """What the server serves and what it saw."""

    url: str
    files: dict[str, bytes] = field(default_factory=dict)  # url path -> body
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)
    cut_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent, once
    honour_range: bool = True

    def serve(self, payloads: dict[str, bytes]) -> None:
        for file, body in payloads.items():
            self.files[self.path(file)] = body

    def path(self, file: str) -> str:
        return f"/{REPO}/resolve/{REVISION}/{file}"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        hub: Hub = self.server.hub  # type: ignore[attr-defined]
        wanted = self.headers.get("Range")
        hub.requests.append((self.path, wanted))
        body = hub.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if wanted and hub.honour_range:
            start = int(wanted.removeprefix("bytes=").removesuffix("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        # Sending less than Content-Length, then closing (HTTP/1.0), is a dropped link.
        self.wfile.write(body[start : hub.cut_after.pop(self.path, len(body))])

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HF_ENDPOINT", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")  # a proxy from the environment must not see 127.0.0.1
    monkeypatch.setenv("PHOTON_HOME", str(tmp_path / "home"))


@pytest.fixture
def hub() -> Iterator[Hub]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.hub = Hub(f"http://127.0.0.1:{server.server_port}")  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server.hub  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    thread.join()


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def make_spec(files: dict[str, str]) -> ModelSpec:
    return ModelSpec(
        name="tiny",
        description="a test model",
        files=files,
        vision="onnx/vision_model.onnx",
        text="onnx/text_model.onnx",
        logit_scale=10.0,
        logit_bias=-5.0,
        repo=REPO,
        revision=REVISION,
    )


def published_spec() -> ModelSpec:
    return make_spec({file: sha(body) for file, body in PAYLOADS.items()})


def test_endpoint_and_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_endpoint("https://huggingface.co/") == "https://huggingface.co"
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.com/")
    assert resolve_endpoint("https://huggingface.co") == "https://hf-mirror.com"
    assert (
        file_url("https://h", "a/b", "main", "onnx/m.onnx")
        == "https://h/a/b/resolve/main/onnx/m.onnx"
    )


def test_downloads_a_whole_model(hub: Hub, tmp_path: Path) -> None:
    hub.serve(PAYLOADS)
    folder = tmp_path / "models" / "tiny"
    download_model(published_spec(), folder, endpoint=hub.url + "/", progress=True)

    for file, body in PAYLOADS.items():
        assert (folder / file).read_bytes() == body
    manifest = json.loads((folder / "photon.json").read_text("utf-8"))
    assert manifest["files"] == {file: sha(body) for file, body in PAYLOADS.items()}
    model = read_model_dir(folder)
    for file in PAYLOADS:
        model.verified(file)
    assert model.vision == folder / "onnx/vision_model.onnx"
    assert not list(folder.rglob("*.part"))


def test_resumes_an_interrupted_download(hub: Hub, tmp_path: Path) -> None:
    hub.serve(PAYLOADS)
    big = "onnx/vision_model.onnx"
    hub.cut_after[hub.path(big)] = 400_000
    folder = tmp_path / "tiny"
    spec = published_spec()

    with pytest.raises(DownloadError, match="run the command again to resume"):
        download_model(spec, folder, endpoint=hub.url, progress=False)
    assert (folder / f"{big}.part").stat().st_size == 400_000
    assert not (folder / big).exists()

    download_model(spec, folder, endpoint=hub.url, progress=True)
    assert (hub.path(big), "bytes=400000-") in hub.requests
    assert sha((folder / big).read_bytes()) == sha(PAYLOADS[big])
    assert not (folder / f"{big}.part").exists()


def test_server_ignoring_range_restarts_from_zero(hub: Hub, tmp_path: Path) -> None:
    hub.serve(PAYLOADS)
    hub.honour_range = False
    folder = tmp_path / "tiny"
    (folder / "onnx").mkdir(parents=True)
    (folder / "onnx/text_model.onnx.part").write_bytes(b"stale bytes from elsewhere")

    download_model(published_spec(), folder, endpoint=hub.url, progress=False)
    assert (folder / "onnx/text_model.onnx").read_bytes() == PAYLOADS["onnx/text_model.onnx"]


@pytest.mark.parametrize("complete", [True, False])
def test_part_reaching_the_end_is_verified_or_refetched(
    hub: Hub, tmp_path: Path, complete: bool
) -> None:
    file = "onnx/text_model.onnx"
    hub.serve({file: PAYLOADS[file]})
    folder = tmp_path / "tiny"
    (folder / "onnx").mkdir(parents=True)
    left = PAYLOADS[file] if complete else os.urandom(len(PAYLOADS[file]))
    (folder / f"{file}.part").write_bytes(left)

    download_model(make_spec({file: sha(PAYLOADS[file])}), folder, endpoint=hub.url, progress=False)
    assert (folder / file).read_bytes() == PAYLOADS[file]
    assert hub.requests[0] == (hub.path(file), f"bytes={len(left)}-")
    assert len(hub.requests) == (1 if complete else 2)


def test_corrupt_download_is_rejected(hub: Hub, tmp_path: Path) -> None:
    file = "tokenizer.json"
    hub.serve({file: b'{"model": "evil"}'})
    folder = tmp_path / "tiny"

    with pytest.raises(ChecksumError, match="does not match its checksum"):
        download_model(
            make_spec({file: sha(PAYLOADS[file])}), folder, endpoint=hub.url, progress=False
        )
    assert not (folder / file).exists()
    assert not (folder / f"{file}.part").exists()


def test_missing_file_is_reported(hub: Hub, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"not found at .*/tokenizer\.json"):
        download_model(
            make_spec({"tokenizer.json": ""}), tmp_path / "tiny", endpoint=hub.url, progress=False
        )


def test_present_valid_files_are_not_fetched(hub: Hub, tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    for file, body in PAYLOADS.items():
        (folder / file).parent.mkdir(parents=True, exist_ok=True)
        (folder / file).write_bytes(body)

    download_model(published_spec(), folder, endpoint=hub.url, progress=False)
    assert hub.requests == []
    assert read_model_dir(folder).checksums == published_spec().files


def test_mismatched_present_file_is_replaced(hub: Hub, tmp_path: Path) -> None:
    hub.serve(PAYLOADS)
    folder = tmp_path / "tiny"
    download_model(published_spec(), folder, endpoint=hub.url, progress=False)
    (folder / "config.json").write_bytes(b"{}")

    download_model(published_spec(), folder, endpoint=hub.url, progress=False)
    assert (folder / "config.json").read_bytes() == PAYLOADS["config.json"]
    assert hub.requests[len(PAYLOADS) :] == [(hub.path("config.json"), None)]


def test_unpublished_checksum_is_recorded_then_enforced(hub: Hub, tmp_path: Path) -> None:
    hub.serve(PAYLOADS)
    folder = tmp_path / "tiny"
    spec = make_spec(dict.fromkeys(PAYLOADS, ""))
    download_model(spec, folder, endpoint=hub.url, progress=False)

    model = read_model_dir(folder)
    assert model.checksums["config.json"] == sha(PAYLOADS["config.json"])
    path = model.verified("config.json")  # remembers size and mtime as checked
    path.write_bytes(b'{"projection_dim": 99}')  # same size, so only the mtime differs
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(ChecksumError):
        read_model_dir(folder).verified("config.json")

    # A later download compares against the recorded checksum and fetches a good copy.
    download_model(spec, folder, endpoint=hub.url, progress=False)
    assert path.read_bytes() == PAYLOADS["config.json"]


def test_air_gapped_install_records_copied_files(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "tiny"
    for file, body in PAYLOADS.items():
        (folder / file).parent.mkdir(parents=True, exist_ok=True)
        (folder / file).write_bytes(body)

    download_model(make_spec(dict.fromkeys(PAYLOADS, "")), folder, endpoint=hub.url, progress=False)
    assert read_model_dir(folder).checksums == published_spec().files
    assert hub.requests == []


def test_hf_endpoint_overrides_the_configured_one(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.serve(PAYLOADS)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    download_model(published_spec(), tmp_path / "tiny", endpoint=closed_url(), progress=False)
    assert len(hub.requests) == len(PAYLOADS)


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_offline_refuses_to_fetch(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    hub.serve(PAYLOADS)
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE=1 is set"):
        download_model(published_spec(), tmp_path / "tiny", endpoint=hub.url, progress=False)
    assert hub.requests == []


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    endpoint = closed_url()
    with pytest.raises(DownloadError) as caught:
        download_model(published_spec(), tmp_path / "tiny", endpoint=endpoint, progress=False)
    message = str(caught.value)
    assert message.startswith(f"cannot reach {endpoint} (")
    assert "HF_ENDPOINT" in message
    assert "\n" not in message


def closed_url() -> str:
    """An address nothing listens on: the port was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_new_revision_is_downloaded_again(hub: Hub, tmp_path: Path) -> None:
    """Checksums recorded for one revision are not trusted for the next."""
    from dataclasses import replace

    from photon_index.models import is_installed

    old = make_spec(dict.fromkeys(PAYLOADS, ""))
    hub.serve(PAYLOADS)
    folder = tmp_path / "tiny"
    download_model(old, folder, endpoint=hub.url, progress=False)
    assert is_installed(old, folder)

    new = replace(old, revision="4567def")
    changed = {**PAYLOADS, "tokenizer.json": b'{"model": "tiny", "v": 2}'}
    for file, body in changed.items():
        hub.files[f"/{REPO}/resolve/4567def/{file}"] = body
    assert not is_installed(new, folder)
    download_model(new, folder, endpoint=hub.url, progress=False)
    assert is_installed(new, folder)
    assert (folder / "tokenizer.json").read_bytes() == changed["tokenizer.json"]
    assert read_model_dir(folder).checksums["tokenizer.json"] == sha(changed["tokenizer.json"])
