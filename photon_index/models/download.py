"""Fetching model files over HTTP: resumable after a dropped connection, verified against
their sha256 before they appear, and usable behind a mirror or with no network at all."""

from __future__ import annotations

import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.client import HTTPException
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from photon_index.errors import ChecksumError, DownloadError
from photon_index.models.installed import (
    installed_revision,
    recorded_checksums,
    sha256_file,
    write_manifest,
)
from photon_index.models.registry import ModelSpec

TIMEOUT_S = 30
CHUNK = 1 << 20
# What a failing network raises; any other OSError is about the local disk.
NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError, HTTPException, ssl.SSLError)


class _Unreachable(DownloadError):
    """No answer from the endpoint at all; download_model says what to do instead."""


def resolve_endpoint(configured: str) -> str:
    return (os.environ.get("HF_ENDPOINT") or configured).rstrip("/")


def file_url(endpoint: str, repo: str, revision: str, file: str) -> str:
    return f"{endpoint}/{repo}/resolve/{revision}/{file}"


def download_model(spec: ModelSpec, folder: Path, *, endpoint: str, progress: bool) -> None:
    """Put every file of spec into folder and record their checksums in its manifest.

    Files already there are checked instead of fetched, which is also how an air-gapped
    machine installs a model: copy the files in and run `photon models download NAME`."""
    if spec.bundled:
        return
    assert spec.repo and spec.revision  # every downloadable registry entry has both
    endpoint = resolve_endpoint(endpoint)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
    folder.mkdir(parents=True, exist_ok=True)
    recorded = recorded_checksums(folder, spec.revision)
    # Files left by a download of another revision are stale; files with no manifest
    # at all were copied in by hand, and are recorded as they are.
    stale = installed_revision(folder) not in (None, spec.revision)
    checksums = {}
    for file, published in spec.files.items():
        path = folder / file
        expected = published or recorded.get(file) or None
        if path.is_file():
            actual = sha256_file(path)
            if expected == actual or (expected is None and not stale):
                checksums[file] = actual
                continue
        if offline:
            raise DownloadError(
                f"model {spec.name} is not installed ({file} is missing or corrupt) and "
                f"HF_HUB_OFFLINE=1 is set: unset it or copy the files into {folder}"
            )
        # A mismatched file is from another revision or damaged; without it the model
        # reads as not installed until the download completes.
        path.unlink(missing_ok=True)
        url = file_url(endpoint, spec.repo, spec.revision, file)
        try:
            checksums[file] = fetch(url, path, expected, progress=progress, label=file)
        except _Unreachable as e:
            raise DownloadError(
                f"{e}: check your connection, set HF_ENDPOINT to a mirror, or copy the "
                f"files of {spec.name} from another machine into {folder} and run "
                f"`photon models download {spec.name}`"
            ) from e
    write_manifest(folder, spec, checksums)


def fetch(url: str, dest: Path, sha256: str | None, *, progress: bool, label: str) -> str:
    """Download url to dest, resuming what an earlier attempt left, and return its sha256.

    The bytes collect in a .part file that becomes dest only once verified, so an
    interrupted download never looks installed and the next run picks up where it left."""
    part = dest.with_name(dest.name + ".part")
    with _reported(url, label, part):
        dest.parent.mkdir(parents=True, exist_ok=True)
        whole = _receive(url, part, progress=progress, label=label)
        actual = sha256_file(part)
        if not whole and actual != sha256:
            # The server would not resume because the part is as long as the file,
            # yet it is not the file.
            part.unlink()
            _receive(url, part, progress=progress, label=label)
            actual = sha256_file(part)
    if sha256 and actual != sha256:
        part.unlink()
        raise ChecksumError(
            f"downloaded {label} does not match its checksum (got {actual[:12]}…, "
            f"expected {sha256[:12]}…): the mirror may be serving a different revision; "
            "run the command again"
        )
    os.replace(part, dest)
    return actual


def _receive(url: str, part: Path, *, progress: bool, label: str) -> bool:
    """Append the rest of the file to part; False when the server answers that part
    already reaches the end of the file (HTTP 416)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S
        )
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            return False
        raise
    with response:
        if response.status != 206:
            offset = 0  # the server ignored Range and sends the whole file
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length else None
        with (
            part.open("ab" if offset else "wb") as out,
            tqdm(
                total=total,
                initial=offset,
                desc=label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:
        # http.client returns a short body without complaint when the peer hangs up
        raise ConnectionError(f"closed after {size} of {total} bytes")
    return True


@contextmanager
def _reported(url: str, label: str, part: Path) -> Iterator[None]:
    """Turn what urllib, the socket and the disk raise into one line saying what to do."""
    host = urlsplit(url).netloc
    try:
        yield
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise DownloadError(
                f"not found at {url}: check HF_ENDPOINT / the model revision"
            ) from e
        raise DownloadError(
            f"{host} answered HTTP {e.code} {e.reason} for {label}: try again later, "
            "or set HF_ENDPOINT to a mirror"
        ) from e
    except urllib.error.URLError as e:
        endpoint = f"{urlsplit(url).scheme}://{host}"
        raise _Unreachable(f"cannot reach {endpoint} ({_reason(e.reason)})") from e
    except NETWORK_ERRORS as e:
        raise DownloadError(
            f"lost the connection to {host} while fetching {label} ({_reason(e)}): "
            "run the command again to resume"
        ) from e
    except OSError as e:
        raise DownloadError(
            f"cannot save {label} to {part.parent} ({_reason(e)}): free some disk space "
            "or fix the folder's permissions"
        ) from e


def _reason(error: object) -> str:
    # strerror drops the "[Errno 111]" prefix the user has no use for
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
