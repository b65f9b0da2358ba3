"""Model files are verified on their first load in a process, even when a damaged file
keeps its size and mtime, and a file ONNX Runtime can't load is one ModelError."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY

from photon_index.embed import ImageEncoder, TextEncoder
from photon_index.errors import ChecksumError, ModelError
from photon_index.models import ModelFiles, read_model_dir
from photon_index.models.installed import (
    MANIFEST,
    sample_offsets,
    sampled_hash,
    sha256_file,
)


@pytest.fixture
def downloaded(tiny_model: ModelFiles, tmp_path: Path) -> Path:
    """A copy of the bundled model laid out as `photon models download` leaves one."""
    folder = tmp_path / "models" / TINY
    shutil.copytree(tiny_model.dir, folder)
    manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
    manifest.pop("verified", None)  # as written by a download: nothing checked yet
    (folder / MANIFEST).write_text(json.dumps(manifest), "utf-8")
    return folder


def flip_byte(path: Path, offset: int) -> None:
    """Change one byte in place and put the mtime back, as bit rot would leave it."""
    stat = path.stat()
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns


def load_in_a_new_process(folder: Path) -> subprocess.CompletedProcess[str]:
    """A fresh process: nothing of this one's verification cache carries over."""
    code = (
        "import sys; from pathlib import Path\n"
        "from photon_index.models import read_model_dir\n"
        "from photon_index.embed import ImageEncoder\n"
        "ImageEncoder(read_model_dir(Path(sys.argv[1])), device='cpu')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=300
    )


def test_first_check_records_stamp_and_sampled_hash(downloaded: Path) -> None:
    model = read_model_dir(downloaded)
    model.verified(model.vision_file)
    manifest = json.loads((downloaded / MANIFEST).read_text("utf-8"))
    assert len(manifest["verified"][model.vision_file]) == 3  # size, mtime, ctime
    assert manifest["samples"][model.vision_file] == sampled_hash(model.vision)


def test_a_flipped_byte_with_its_mtime_restored_is_refused(downloaded: Path) -> None:
    model = read_model_dir(downloaded)
    ImageEncoder(model, device="cpu")  # verified and remembered
    vision = downloaded / model.vision_file
    flip_byte(vision, vision.stat().st_size // 2)
    with pytest.raises(ChecksumError, match="corrupt"):
        read_model_dir(downloaded).verified(model.vision_file)  # this process: new stamp
    result = load_in_a_new_process(downloaded)
    assert result.returncode != 0 and "ChecksumError" in result.stderr


def test_damage_behind_the_file_systems_back_is_caught_by_the_sampled_hash(
    downloaded: Path,
) -> None:
    """Bit rot changes neither mtime nor ctime: stand in for it by flipping a byte and
    recording the new stamp as checked. The sampled hash still disagrees."""
    model = read_model_dir(downloaded)
    model.verified(model.text_file)
    text = downloaded / model.text_file
    flip_byte(text, text.stat().st_size - 1)  # the last byte: in the last sampled block
    manifest = json.loads((downloaded / MANIFEST).read_text("utf-8"))
    st = text.stat()
    manifest["verified"][model.text_file] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    (downloaded / MANIFEST).write_text(json.dumps(manifest), "utf-8")
    with pytest.raises(ChecksumError, match="corrupt"):
        read_model_dir(downloaded).verified(model.text_file)


def test_an_unchanged_model_is_not_hashed_again(downloaded: Path, monkeypatch) -> None:
    model = read_model_dir(downloaded)
    model.verified(model.vision_file)
    import photon_index.models.installed as installed

    installed._CHECKED.clear()  # a new process: the manifest's stamp and sample hold
    monkeypatch.setattr(installed, "sha256_file", lambda path: pytest.fail("hashed"))
    assert read_model_dir(downloaded).verified(model.vision_file) == model.vision


def test_sampled_hash_covers_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(5 * 2**20))
    before = sampled_hash(path)
    offsets = sample_offsets(path.stat().st_size)
    assert len(offsets) == 16 and offsets[-1] + 2**16 == path.stat().st_size
    for offset in (0, offsets[7] + 12_345, path.stat().st_size - 1):
        flip_byte(path, offset)
        assert sampled_hash(path) != before
        flip_byte(path, offset)
    assert sampled_hash(path) == before
    small = tmp_path / "small.bin"
    small.write_bytes(b"abc")
    assert sampled_hash(small) != sampled_hash(path)


def test_a_model_file_onnx_runtime_cannot_load_is_a_model_error(downloaded: Path) -> None:
    """A damaged file recorded as it was (an air-gapped install copies files as they
    are) passes its checksum; loading it is still one ModelError, not a traceback."""
    model = read_model_dir(downloaded)
    for relative, encoder in ((model.vision_file, ImageEncoder), (model.text_file, TextEncoder)):
        path = downloaded / relative
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
        manifest = json.loads((downloaded / MANIFEST).read_text("utf-8"))
        manifest["files"][relative] = sha256_file(path)
        (downloaded / MANIFEST).write_text(json.dumps(manifest), "utf-8")
        with pytest.raises(ModelError, match=f"photon models download {TINY}") as caught:
            encoder(read_model_dir(downloaded), device="cpu")
        assert "\n" not in str(caught.value) and "cannot load" in str(caught.value)


def test_the_bundled_manifest_is_never_written(tiny_model: ModelFiles) -> None:
    manifest = tiny_model.dir / MANIFEST
    before = manifest.read_bytes()
    import photon_index.models.installed as installed

    installed._CHECKED.clear()
    for relative in tiny_model.checksums:
        tiny_model.verified(relative)
    assert manifest.read_bytes() == before
