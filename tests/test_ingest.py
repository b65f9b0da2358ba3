"""Indexing runs at the size of a real library: more pictures than a batch, a commit
interval and a worker's queue; copies far apart; a failing commit; Ctrl-C; a root whose
drive is not mounted."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import TINY, run_photon

from photon_index import Index
from photon_index.config import Settings
from photon_index.errors import DatabaseError
from photon_index.hashing import content_hash, file_hash
from photon_index.ingest.writer import Writer
from photon_index.store.table import ImageTable
from photon_index.synthetic import write_pictures

pytestmark = pytest.mark.slow


def small_commits(**index: object) -> Settings:
    """Commits after every result, batches of 4: a 300-picture library spans dozens."""
    return Settings.load().with_overrides(
        "index", **{"commit_interval": 0.0, "batch_size": 4, **index}
    )


def stored(db: Path) -> dict[str, str]:
    """path -> content hash, failing if a path has two rows."""
    table = Index(db).table()
    data = table.columns(["path", "content_hash"]).to_pydict()
    assert len(data["path"]) == len(set(data["path"])), "a path was stored twice"
    return dict(zip(data["path"], data["content_hash"], strict=True))


def assert_true_to_disk(db: Path, files: list[Path]) -> None:
    rows = stored(db)
    assert set(rows) == {str(f) for f in files}
    for f in files:
        assert rows[str(f)] == file_hash(f)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 pictures in a/, made once; tests copy it."""
    folder = tmp_path_factory.mktemp("library") / "a"
    write_pictures(folder, 300, seed=3)
    return folder


@pytest.fixture
def lib(tmp_path: Path, library: Path) -> Path:
    root = tmp_path / "lib"
    shutil.copytree(library, root / "a")
    return root


def pictures(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.jpg"))


@pytest.mark.parametrize("interval", [0.0, 2.0])
def test_copies_far_apart_across_many_commits(tmp_path: Path, lib: Path, interval: float):
    # Copies of the first, middle and last picture 300 files later, in another folder:
    # each original's row may then be committed, waiting in the writer, or still with
    # the model. At 2 s (the default) the last one's row is made but not committed.
    (lib / "z").mkdir()
    originals = pictures(lib / "a")
    for i in (0, 150, 299):
        shutil.copy(originals[i], lib / "z" / f"copy-{i}.jpg")
    db = tmp_path / "db"
    settings = small_commits(commit_interval=interval)
    report = Index(db, settings=settings).update([lib], model=TINY)
    assert (report.indexed, report.reused, report.failed) == (300, 3, 0)
    assert_true_to_disk(db, pictures(lib))


def test_copy_of_a_row_replaced_in_the_same_run_is_embedded(tmp_path: Path, lib: Path):
    db = tmp_path / "db"
    Index(db, settings=small_commits()).update([lib], model=TINY)
    # a/ first file is edited in place (its old bytes leave the table when its row is
    # replaced), and a copy of those old bytes turns up later in z/.
    victim = pictures(lib / "a")[0]
    (lib / "z").mkdir()
    shutil.copy(victim, lib / "z" / "old-bytes.jpg")
    [(other, _)] = write_pictures(tmp_path / "other", 1, seed=99)
    shutil.copy(other, victim)
    report = Index(db, settings=small_commits()).update([lib], model=TINY)
    assert report.failed == 0
    assert report.indexed + report.reused == 2
    assert_true_to_disk(db, pictures(lib))


def test_a_failing_commit_writes_nothing_twice_and_stops_the_workers(
    tmp_path: Path, lib: Path, monkeypatch: pytest.MonkeyPatch
):
    db = tmp_path / "db"
    Index(db, settings=small_commits()).update([lib / "a"], model=TINY)
    # Renamed files reuse their rows under new paths (appended); edited ones go to the
    # model and replace their rows (upserted), while the workers are busy.
    edits = write_pictures(tmp_path / "edits", 60, seed=41)
    for i, path in enumerate(pictures(lib / "a")[:120]):
        if i % 2:
            path.rename(path.with_name(f"{path.stem}b.jpg"))  # next in walk order
        else:
            shutil.copy(edits[i // 2][0], path)
    real_add, real_upsert, appended = ImageTable.add, ImageTable.upsert, []

    def add(self: ImageTable, rows: list) -> None:
        appended.append(len(rows))
        real_add(self, rows)

    def upsert_after_append_fails(self: ImageTable, rows: list) -> None:
        if rows and any(appended):  # an append of this run has gone through
            raise DatabaseError("disk full (a test)")
        real_upsert(self, rows)

    monkeypatch.setattr(ImageTable, "add", add)
    monkeypatch.setattr(ImageTable, "upsert", upsert_after_append_fails)
    with pytest.raises(DatabaseError, match="disk full"):
        Index(db, settings=small_commits()).update([lib], model=TINY)
    stored(db)  # no path twice
    assert multiprocessing.active_children() == [], "workers outlived the run"

    monkeypatch.setattr(ImageTable, "upsert", real_upsert)
    monkeypatch.setattr(ImageTable, "add", real_add)
    Index(db, settings=small_commits()).update([lib], model=TINY)
    assert_true_to_disk(db, pictures(lib))


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_ctrl_c_prints_one_line_exits_130_and_keeps_commits(tmp_path: Path, lib: Path, stop: str):
    db = tmp_path / "db"
    command = [sys.executable, "-m", "photon_index", "index", str(lib), "--db", str(db)]
    command += ["--model", TINY, "--batch-size", "4"]
    env = {**os.environ, "PHOTON_INDEX_COMMIT_INTERVAL": "0.1"}
    # Its own process group, with the workers in it, as a terminal's Ctrl-C signals.
    child = subprocess.Popen(
        command, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not (db.exists() and (Index(db).table() or None) and Index(db).table().count() >= 20):
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    if stop == "ctrl-c":
        os.killpg(child.pid, signal.SIGINT)
    else:  # `kill PID`, `docker stop`: the main process alone
        child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    kept = len(stored(db))
    assert f"keeps {kept} pictures" in lines[0] and "again" in lines[0], err
    assert kept >= 20
    report = Index(db).update([lib], model=TINY)
    assert report.skipped == kept
    assert_true_to_disk(db, pictures(lib))


def test_an_empty_or_missing_root_with_indexed_pictures_is_not_pruned(tmp_path: Path):
    drive = tmp_path / "mnt" / "photos"
    files = [p for p, _ in write_pictures(drive, 20, seed=5)]
    db = tmp_path / "db"
    run_photon("index", drive, "--db", db, "--model", TINY)
    hidden = tmp_path / "unmounted"
    drive.rename(hidden)
    drive.mkdir()  # an unmounted drive's empty mountpoint

    result = run_photon("index", drive, "--db", db, "--model", TINY)
    assert "warning:" in result.stderr and "20 indexed pictures are kept" in result.stderr
    assert "0 removed" in result.stdout
    assert len(stored(db)) == 20

    drive.rmdir()  # the mountpoint is gone too
    result = run_photon("index", drive, "--db", db, "--model", TINY)
    assert "is missing" in result.stderr and len(stored(db)) == 20

    typo = run_photon("index", tmp_path / "nope", "--db", db, "--model", TINY, check=False)
    assert typo.returncode == 2 and "no such file or folder" in typo.stderr

    hidden.rename(drive)  # mounted again: nothing to re-embed
    result = run_photon("index", drive, "--db", db, "--model", TINY, "--json")
    assert '"skipped": 20' in result.stdout
    assert_true_to_disk(db, files)

    drive.rename(hidden)
    drive.mkdir()
    run_photon("index", drive, "--db", db, "--model", TINY, "--forget-missing")
    assert Index(db).table().count() == 0


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Mounts a tmpfs on a folder (as root, where the system allows it); all are
    unmounted at the end."""
    mounted: list[Path] = []

    def on(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "photon-test", str(folder)], check=False)
        if done.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (not root?)")
        mounted.append(folder)

    yield on
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def umount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], check=True)


def test_a_share_mounted_inside_the_library_keeps_its_rows_when_unmounted(
    tmp_path: Path, mount: Callable[[Path], None]
):
    lib = tmp_path / "lib"
    home = [p for p, _ in write_pictures(lib / "home", 12, seed=7)]
    mount(lib / "nas")
    nas = [p for p, _ in write_pictures(lib / "nas" / "2020", 15, seed=8)]
    saved = tmp_path / "saved"
    shutil.copytree(lib / "nas", saved)  # the share's content, to mount again
    db = tmp_path / "db"
    run_photon("index", lib, "--db", db, "--model", TINY, "--batch-size", "4")
    umount(lib / "nas")
    # The bare mount point is not empty: a marker, and what a backup script wrote.
    (lib / "nas" / ".not-mounted").touch()
    stray = [p for p, _ in write_pictures(lib / "nas", 1, seed=9)]

    result = run_photon("index", lib, "--db", db, "--model", TINY)
    assert f"{lib / 'nas'} is not mounted: its 15 indexed pictures are kept" in result.stderr
    assert "0 removed" in result.stdout
    assert set(stored(db)) == {str(p) for p in home + nas + stray}

    for path in stray:
        path.unlink()
    mount(lib / "nas")
    shutil.copytree(saved, lib / "nas", dirs_exist_ok=True, copy_function=shutil.copy2)
    result = run_photon("index", lib, "--db", db, "--model", TINY, "--json")
    report = json.loads(result.stdout)
    assert report["indexed"] == 0 and report["skipped"] == 27 and not report["warnings"]
    assert_true_to_disk(db, home + nas)

    umount(lib / "nas")
    run_photon("index", lib, "--db", db, "--model", TINY, "--forget-missing")
    assert_true_to_disk(db, home)
    assert json.loads((db / "mounts.json").read_text())["mounts"] == []


def test_a_drive_as_the_root_keeps_its_rows_when_a_file_lands_on_its_mount_point(
    tmp_path: Path, mount: Callable[[Path], None]
):
    drive = tmp_path / "drive"
    mount(drive)
    files = [p for p, _ in write_pictures(drive / "2021", 20, seed=10)]
    db = tmp_path / "db"
    run_photon("index", drive, "--db", db, "--model", TINY)
    umount(drive)
    stray = [p for p, _ in write_pictures(drive, 1, seed=11)]

    result = run_photon("index", drive, "--db", db, "--model", TINY)
    assert f"{drive} is not mounted: its 20 indexed pictures are kept" in result.stderr
    assert "0 removed" in result.stdout
    assert set(stored(db)) == {str(p) for p in files + stray}


def test_pictures_deleted_from_a_folder_leave_the_index_even_if_it_is_empty(tmp_path: Path):
    lib = tmp_path / "lib"
    home = [p for p, _ in write_pictures(lib / "home", 6, seed=12)]
    inbox = [p for p, _ in write_pictures(lib / "inbox", 6, seed=13)]
    db = tmp_path / "db"
    run_photon("index", lib, "--db", db, "--model", TINY)
    for path in inbox:
        path.unlink()
    result = run_photon("index", lib, "--db", db, "--model", TINY)
    assert "6 removed" in result.stdout and "warning" not in result.stderr
    assert_true_to_disk(db, home)


def test_a_file_above_the_size_limit_is_one_failure(tmp_path: Path):
    folder = tmp_path / "photos"
    files = [p for p, _ in write_pictures(folder, 5, seed=6)]
    big = folder / "huge.jpg"
    with open(big, "wb") as f:  # sparse: large on paper, nothing on disk
        f.truncate(3_000_000_000)
    db = tmp_path / "db"
    result = run_photon("index", folder, "--db", db, "--model", TINY)
    assert "huge.jpg" in result.stderr and "index.max_file_size" in result.stderr
    assert "1 failed" in result.stdout
    assert_true_to_disk(db, files)


def test_file_hash_streams_the_same_hash(tmp_path: Path):
    data = os.urandom(3 * (1 << 20) + 17)
    (tmp_path / "f").write_bytes(data)
    assert file_hash(tmp_path / "f") == content_hash(data)


def test_a_bad_device_or_model_leaves_no_index_folder(tmp_path: Path, lib: Path):
    db = tmp_path / "db"
    result = run_photon("index", lib, "--db", db, "--model", TINY, "--device", "tpu", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not db.exists()
    model = tmp_path / "model"
    from photon_index.models.registry import BUNDLED_DIR

    shutil.copytree(BUNDLED_DIR / TINY, model)
    vision = model / "onnx" / "vision_model.onnx"
    vision.write_bytes(vision.read_bytes()[:-10] + b"0123456789")
    result = run_photon("index", lib, "--db", db, "--model", model, check=False)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert not db.exists()


def test_a_commit_that_fails_after_its_append_is_not_appended_again():
    appended: list[str] = []

    class Table:
        def add(self, rows: list) -> None:
            appended.extend(r.path for r in rows)

        def upsert(self, rows: list) -> None:
            if rows:
                raise DatabaseError("disk full (a test)")

    class Row:
        def __init__(self, path: str) -> None:
            self.path = path

    writer = Writer(Table(), indexed={"old"}, interval=0.0)  # type: ignore[arg-type]
    writer.add([Row("new"), Row("old")])  # type: ignore[list-item]
    with pytest.raises(DatabaseError):
        writer.commit()
    writer.commit()
    assert appended == ["new"]


def test_files_deleted_during_a_run_leave_the_index(
    tmp_path: Path, lib: Path, monkeypatch: pytest.MonkeyPatch
):
    db = tmp_path / "db"
    Index(db, settings=small_commits()).update([lib], model=TINY)
    write_pictures(lib / "z_new", 20, seed=8)
    real_commit = Writer.commit

    def commit(writer: Writer) -> list:
        shutil.rmtree(lib / "a", ignore_errors=True)  # walked already, unchanged
        return real_commit(writer)

    monkeypatch.setattr(Writer, "commit", commit)
    report = Index(db, settings=small_commits()).update([lib], model=TINY)
    assert report.removed == 300
    assert_true_to_disk(db, pictures(lib))


def test_a_changed_file_that_fails_loses_its_old_row(tmp_path: Path, lib: Path):
    db = tmp_path / "db"
    Index(db, settings=small_commits()).update([lib], model=TINY)
    broken, emptied = pictures(lib / "a")[:2]
    broken.write_bytes(broken.read_bytes()[:1000])
    emptied.write_bytes(b"")
    report = Index(db, settings=small_commits()).update([lib], model=TINY)
    assert report.failed == 2
    assert set(stored(db)) == {str(p) for p in pictures(lib)} - {str(broken), str(emptied)}


def test_one_library_under_two_spellings_is_indexed_once(tmp_path: Path):
    real = tmp_path / "var" / "home" / "Pictures"
    files = [p for p, _ in write_pictures(real / "2023", 12, seed=14)]
    (tmp_path / "home").symlink_to(tmp_path / "var" / "home")  # Fedora Atomic's /home
    db = tmp_path / "db"
    run_photon("index", real, "--db", db, "--model", TINY)
    for spelling in (tmp_path / "home" / "Pictures", tmp_path / "home" / "Pictures" / "2023"):
        result = run_photon("index", spelling, "--db", db, "--model", TINY, "--json")
        assert json.loads(result.stdout)["skipped"] == 12
    assert_true_to_disk(db, files)
    under = tmp_path / "home" / "Pictures" / "2023"
    hits = run_photon("search", "a circle", "--in", under, "--db", db, "--json").stdout
    assert {h["path"] for h in json.loads(hits)["hits"]} <= {str(p) for p in files}
    assert json.loads(hits)["hits"]


@pytest.mark.parametrize("reached", ["root-is-a-link", "link-inside-the-root", "indexed-inside"])
def test_a_share_reached_another_way_keeps_its_rows_when_unmounted(
    tmp_path: Path, mount: Callable[[Path], None], reached: str
):
    real = tmp_path / "real"
    home = [p for p, _ in write_pictures(real / "home", 5, seed=15)]
    share = tmp_path / "mnt" / "nas" if reached == "link-inside-the-root" else real / "nas"
    mount(share)
    nas = [p for p, _ in write_pictures(share / "2024", 6, seed=16)]
    lib = real
    if reached == "root-is-a-link":
        lib = tmp_path / "lib"
        lib.symlink_to(real)
    elif reached == "link-inside-the-root":
        (real / "nas").symlink_to(share)
    db = tmp_path / "db"
    first = share / "2024" if reached == "indexed-inside" else lib
    run_photon("index", first, "--db", db, "--model", TINY)
    run_photon("index", lib, "--db", db, "--model", TINY)
    rows = stored(db)
    assert len(rows) == len(home) + len(nas)
    umount(share)
    result = run_photon("index", lib, "--db", db, "--model", TINY)
    assert f"{share} is not mounted: its 6 indexed pictures are kept" in result.stderr
    assert "0 removed" in result.stdout and stored(db) == rows


def test_undo_waits_for_the_share_the_copies_came_from(
    tmp_path: Path, mount: Callable[[Path], None]
):
    lib = tmp_path / "lib"
    mount(lib / "nas")
    files = [p for p, _ in write_pictures(lib / "nas", 4, seed=17)]
    for path in files:  # each picture twice on the share
        shutil.copy2(path, path.with_name("copy-" + path.name))
    db = tmp_path / "db"
    run_photon("index", lib, "--db", db, "--model", TINY)
    run_photon("dedupe", "--db", db, "--move-to", tmp_path / "dupes")
    saved = tmp_path / "saved"
    shutil.copytree(lib / "nas", saved, copy_function=shutil.copy2)
    umount(lib / "nas")

    result = run_photon("dedupe", "--db", db, "--undo", check=False)
    assert result.returncode == 1 and "not mounted" in result.stderr
    assert "0 put back, 4 not" in result.stdout and not any((lib / "nas").iterdir())

    mount(lib / "nas")
    shutil.copytree(saved, lib / "nas", dirs_exist_ok=True, copy_function=shutil.copy2)
    result = run_photon("dedupe", "--db", db, "--undo")
    assert "4 put back, 0 not" in result.stdout
    assert len(list((lib / "nas").iterdir())) == 8 and len(stored(db)) == 8


def test_a_kept_folder_is_named_on_one_line():
    from photon_index.ingest.run import _kept

    warning = _kept(Path("/mnt/a\nwarning: forged\u202e"), 3, "is not mounted")
    assert "\n" not in warning and "\\n" in warning and "\\u202e" in warning


def test_a_moved_library_says_how_to_forget_its_old_paths(tmp_path: Path):
    old, new = tmp_path / "my photos", tmp_path / "moved"
    files = [p for p, _ in write_pictures(old / "2023", 6, seed=18)]
    elsewhere = [p for p, _ in write_pictures(tmp_path / "other", 3, seed=19)]
    db = tmp_path / "db"
    run_photon("index", old, "--db", db, "--model", TINY)
    run_photon("index", tmp_path / "other", "--db", db, "--model", TINY)
    old.rename(new)
    result = run_photon("index", new, "--db", db, "--model", TINY)
    assert f"{old} is gone and its pictures are indexed elsewhere now" in result.stderr
    assert f"`photon index '{old}' --forget-missing`" in result.stderr
    assert "other" not in result.stderr
    run_photon("index", old, "--db", db, "--model", TINY, "--forget-missing")
    assert_true_to_disk(db, [new / "2023" / p.name for p in files] + elsewhere)
