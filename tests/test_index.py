"""`photon index` end to end: the real CLI on real files in temp dirs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY, run_photon
from corpus import make_bad_corpus

from photon_index import Index
from photon_index.discover import display
from photon_index.hashing import content_hash
from photon_index.models.registry import BUNDLED_DIR
from photon_index.store.lock import write_lock
from photon_index.synthetic import write_pictures

pytestmark = pytest.mark.slow


def index_json(*args: str | Path) -> dict:
    return json.loads(run_photon("index", *args, "--json").stdout)


def rows(db: Path) -> list[str]:
    table = Index(db).table()
    return [] if table is None else list(table.paths())


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    write_pictures(folder, 12, seed=7)
    return folder


@pytest.fixture
def private_model(tmp_path: Path) -> Path:
    """A copy of the tiny model whose files a test may delete."""
    folder = tmp_path / "model"
    shutil.copytree(BUNDLED_DIR / TINY, folder)
    return folder


def test_bad_files_become_failures_and_good_ones_are_indexed(tmp_path: Path, photos: Path):
    corpus = make_bad_corpus(photos)
    db = tmp_path / "db"
    report = index_json(photos, "--db", db, "--model", TINY)

    failed = {f["path"]: f["error"] for f in report["failures"]}
    assert len(failed) == len(report["failures"]), "a file failed twice"
    for name in corpus.failures:
        shown = display(corpus.paths[name])
        assert shown in failed, f"{name} was not reported"
        assert failed[shown] and "Traceback" not in failed[shown]
    assert report["failed"] == len(corpus.failures)
    assert report["indexed"] == 12 + len(corpus.decodable)
    stored = rows(db)
    assert len(stored) == len(set(stored)) == report["indexed"]
    for name in corpus.decodable:
        assert str(corpus.paths[name]) in stored


def test_rerun_skips_everything_without_the_model(tmp_path: Path, photos: Path, private_model):
    db = tmp_path / "db"
    first = index_json(photos, "--db", db, "--model", private_model)
    assert first["indexed"] == 12
    (private_model / "onnx" / "vision_model.onnx").unlink()  # any model call would now fail

    again = index_json(photos, "--db", db, "--model", private_model)
    assert (again["skipped"], again["indexed"], again["failed"]) == (12, 0, 0)


def test_moved_copied_and_deleted_files(tmp_path: Path, photos: Path, private_model):
    db = tmp_path / "db"
    index_json(photos, "--db", db, "--model", private_model)
    (private_model / "onnx" / "vision_model.onnx").unlink()  # reuse must not call the model
    files = sorted(photos.glob("*.jpg"))
    (photos / "album").mkdir()
    files[0].rename(photos / "album" / files[0].name)
    files[1].rename(photos / "renamed.jpg")
    shutil.copy(files[2], photos / "album" / "copy.jpg")
    files[3].unlink()

    report = index_json(photos, "--db", db, "--model", private_model)
    assert report["reused"] == 3
    assert report["removed"] == 3  # two old paths of moved files, one deleted file
    assert report["indexed"] == 0
    stored = set(rows(db))
    assert str(photos / "album" / files[0].name) in stored
    assert str(files[0]) not in stored and str(files[3]) not in stored
    assert len(stored) == 12


def test_edited_and_swapped_files_replace_their_rows(tmp_path: Path, photos: Path):
    db = tmp_path / "db"
    index_json(photos, "--db", db, "--model", TINY)
    files = sorted(photos.glob("*.jpg"))
    [(other, _)] = write_pictures(tmp_path / "other", 1, seed=99)
    shutil.copy(other, files[0])  # edited in place: new bytes under a known path
    files[1].rename(tmp_path / "swap.jpg")  # two known files trade places
    files[2].rename(files[1])
    (tmp_path / "swap.jpg").rename(files[2])
    for path in files[:3]:
        os.utime(path, ns=(time.time_ns(), time.time_ns()))

    report = index_json(photos, "--db", db, "--model", TINY)
    assert (report["indexed"], report["reused"], report["skipped"]) == (1, 2, 9)
    stored = Index(db).table().columns(["path", "content_hash"]).to_pydict()
    hashes = dict(zip(stored["path"], stored["content_hash"], strict=True))
    assert len(stored["path"]) == len(hashes) == 12
    for path in files[:3]:
        assert hashes[str(path)] == content_hash(path.read_bytes())


def test_a_second_writer_is_refused_while_one_runs(tmp_path: Path, photos: Path):
    db = tmp_path / "db"
    index_json(photos, "--db", db, "--model", TINY)
    write_pictures(photos / "new", 2, seed=8)
    with write_lock(db):  # as a running `photon index` holds it
        result = run_photon("index", photos, "--db", db, "--model", TINY, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: another photon process is writing to {db}; "
        "wait for it to finish, or use --db for another index"
    ]
    assert len(rows(db)) == 12
    assert index_json(photos, "--db", db, "--model", TINY)["indexed"] == 2


def test_no_prune_keeps_rows_of_deleted_files(tmp_path: Path, photos: Path):
    db = tmp_path / "db"
    index_json(photos, "--db", db, "--model", TINY)
    next(photos.glob("*.jpg")).unlink()
    report = index_json(photos, "--db", db, "--model", TINY, "--no-prune")
    assert report["removed"] == 0
    assert len(rows(db)) == 12


def test_a_different_model_is_refused(tmp_path: Path, photos: Path, private_model):
    db = tmp_path / "db"
    index_json(photos, "--db", db, "--model", TINY)
    manifest = private_model / "photon.json"
    manifest.write_text(manifest.read_text().replace(f'"{TINY}"', '"another-model"'))
    result = run_photon("index", photos, "--db", db, "--model", private_model, check=False)
    assert result.returncode != 0
    assert "built with model" in result.stderr and "Traceback" not in result.stderr
    assert len(rows(db)) == 12  # nothing lost


def count_rows(db: Path) -> int:
    table = Index(db).table()
    return 0 if table is None else table.count()


def wait_for_rows(db: Path, at_least: int, child: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while count_rows(db) < at_least:
        assert child.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no progress within 2 minutes"
        time.sleep(0.05)


def test_kill_9_then_rerun_converges(tmp_path: Path):
    photos = tmp_path / "photos"
    photos.mkdir()
    write_pictures(photos, 150, seed=11)
    db = tmp_path / "db"
    command = [sys.executable, "-m", "photon_index", "index", str(photos), "--db", str(db)]
    command += ["--model", TINY, "--batch-size", "4", "--workers", "1", "--json"]
    env = {**os.environ, "PHOTON_INDEX_COMMIT_INTERVAL": "0.1"}
    # Kill at start-up, then at several points mid-run while rows are being committed.
    for at_least in (0, 1, 40, 80):
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        if at_least:
            wait_for_rows(db, at_least, child)
        else:
            time.sleep(0.5)
        child.send_signal(signal.SIGKILL)
        child.wait()
        stored = rows(db)
        assert len(stored) == len(set(stored)), "a path was stored twice"
    report = index_json(photos, "--db", db, "--model", TINY)
    stored = rows(db)
    assert len(stored) == len(set(stored)) == 150
    assert report["skipped"] >= 80, "commits made before the kills were lost"
    assert report["skipped"] + report["indexed"] == 150
