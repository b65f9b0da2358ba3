"""Shared fixtures. Every test runs with PHOTON_HOME in a temp dir, no photon
environment from the developer's shell, and model downloads switched off."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from photon_index.config import Settings
from photon_index.models import ModelFiles, load_model

# A shell starts a background job (`bash .ci/run &`) with SIGINT ignored, and every
# process it starts inherits that: the tests that send Ctrl-C to the CLI would see it do
# nothing. A handler of our own is reset to the default in each child, as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TINY = "siglip-tiny-shapes"


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith(("PHOTON_", "HF_")):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("photon-home")
    monkeypatch.setenv("PHOTON_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture(scope="session")
def tiny_model() -> ModelFiles:
    return load_model(TINY, Path("/nonexistent"), endpoint="http://127.0.0.1:9", download=False)


@pytest.fixture
def settings(isolated: Path) -> Settings:
    return Settings.load()


REAL_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def real_photo(name: str) -> Image.Image:
    """A real photograph shipped inside scikit-image (public domain or CC0)."""
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)())


def run_photon(
    *args: str | Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process, as a user would run it (env: extra variables)."""
    result = subprocess.run(
        [sys.executable, "-m", "photon_index", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env} if env else None,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"photon {args} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture
def trash_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A freedesktop trash in tmp_path, for this process and its children: nothing
    touches the user's trash."""
    import send2trash
    import send2trash.plat_other as freedesktop

    if send2trash.send2trash is not freedesktop.send2trash:
        pytest.skip("send2trash uses gio here, whose trash the test cannot redirect")
    data = tmp_path / "home" / ".local" / "share"
    data.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    # send2trash reads XDG_DATA_HOME once, at import.
    monkeypatch.setattr(freedesktop, "XDG_DATA_HOME", os.fsencode(data))
    monkeypatch.setattr(freedesktop, "HOMETRASH_B", os.fsencode(data / "Trash"))
    monkeypatch.setattr(freedesktop, "HOMETRASH", str(data / "Trash"))
    return data / "Trash"
