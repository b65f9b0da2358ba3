"""Every bad input a user can cause, through the real CLI: each gets a documented exit
code and one line on stderr, never a traceback, and leaves the index and the pictures as
they were. Some inputs are not errors at all and must simply work (`--after 0001-01-01`).

One library is indexed per module; every case runs on its own copy of the database."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lance
import pytest
from conftest import TINY, run_photon

from photon_index.ingest.progress import PROGRESS_FILE
from photon_index.synthetic import write_pictures

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Library:
    pictures: Path  # indexed: a/ and b/, with two exact copies in b/copies
    extra: Path  # pictures not indexed yet: indexing them writes
    db: Path
    file: Path  # a plain file, where a folder is expected


@dataclass(frozen=True)
class Run:
    """What one case runs against: its own copy of the database."""

    lib: Library
    db: Path
    home: Path


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    root = tmp_path_factory.mktemp("bad-inputs")
    pictures = root / "pictures"
    written = write_pictures(pictures / "a", 20, seed=1)
    written += write_pictures(pictures / "b", 18, seed=2)
    (pictures / "b" / "copies").mkdir()
    for path, _ in written[:2]:
        shutil.copy(path, pictures / "b" / "copies" / path.name)
    write_pictures(root / "extra", 4, seed=3)
    (root / "notes.txt").write_text("not a folder\n")
    lib = Library(pictures, root / "extra", root / "db", root / "notes.txt")
    env = {"PHOTON_HOME": str(root / "home"), "HF_HUB_OFFLINE": "1"}
    run_photon("index", pictures, "--db", lib.db, "--model", TINY, env=env)
    return lib


# --- what "unchanged" means ---------------------------------------------------------


def table_state(db: Path) -> tuple[int, str, int] | None:
    """Rows, a digest of (path, content_hash) and the version; None when unreadable."""
    try:
        dataset = lance.dataset(str(db / "images.lance"))
        data = dataset.to_table(columns=["path", "content_hash"]).to_pydict()
    except (OSError, ValueError, RuntimeError):
        return None
    pairs = sorted(zip(data["path"], data["content_hash"], strict=True))
    return len(pairs), hashlib.sha256(repr(pairs).encode()).hexdigest(), dataset.version


def tree(folder: Path) -> dict[str, str]:
    """Every file under folder (or folder itself) -> sha256 of its bytes."""
    if folder.is_file():
        return {"": hashlib.sha256(folder.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --- ways to spoil a database copy -----------------------------------------------------


def _table(run: Run) -> Path:
    return run.db / "images.lance"


def truncate_manifests(run: Run) -> None:
    for manifest in (_table(run) / "_versions").glob("*.manifest"):
        with manifest.open("r+b") as f:
            f.truncate(10)


def delete_versions(run: Run) -> None:
    shutil.rmtree(_table(run) / "_versions")


def delete_data_file(run: Run) -> None:
    next((_table(run) / "data").glob("*.lance")).unlink()


def garbage_data_files(run: Run) -> None:
    for data in (_table(run) / "data").glob("*.lance"):
        data.write_bytes(os.urandom(3000))


def empty_table_folder(run: Run) -> None:
    shutil.rmtree(_table(run))
    _table(run).mkdir()


def bad_config_file(run: Run) -> None:
    (run.home / "config.toml").write_text("[index\nworkers = = 2\n")


DAMAGE = {
    "truncated-manifest": truncate_manifests,
    "no-versions": delete_versions,
    "deleted-data-file": delete_data_file,
    "garbage-data-file": garbage_data_files,
    "empty-table-folder": empty_table_folder,
}
OPENERS = {
    "info": ("info", "--db", "{db}"),
    "search": ("search", "a red star", "--db", "{db}"),
    "dedupe": ("dedupe", "--db", "{db}"),
    "index": ("index", "{pictures}", "--db", "{db}", "--model", TINY),
    "optimize": ("optimize", "--db", "{db}"),
}


# --- the table ----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    code: int | tuple[int, ...]  # exit codes allowed: 0, or documented error codes
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[Run], None] | None = None
    check: Callable[[subprocess.CompletedProcess[str], Run], None] | None = None
    owner: str | None = None  # set while the row still fails: xfail(strict) for its owner


def case(*args: str, code: int | tuple[int, ...], **kw: object) -> Case:
    return Case(args, code, **kw)  # type: ignore[arg-type]


def stays_in_a(result: subprocess.CompletedProcess[str], run: Run) -> None:
    """Accepted, a --where that closes the filter's parenthesis still keeps --in."""
    if result.returncode == 0:
        paths = [Path(hit["path"]) for hit in json.loads(result.stdout)["hits"]]
        assert paths and all(p.is_relative_to(run.lib.pictures / "a") for p in paths), paths


SEARCH = ("search", "--db", "{db}")
LONG_ENGLISH = ("a red star on a blue background seen from far away " * 6)[:300]
LONG_JAPANESE = "青い背景に赤い星" * 12  # 96 characters, 288 bytes

CASES: dict[str, Case] = {
    # bad paths
    "index-missing-folder": case("index", "/nope", "--db", "{db}", "--model", TINY, code=2),
    "search-image-missing": case(*SEARCH, "--image", "/nope.jpg", code=2),
    "search-in-missing": case(*SEARCH, "--in", "/nope", "x", code=2),
    "dedupe-move-to-file": case("dedupe", "--db", "{db}", "--move-to", "{file}", code=2),
    "demo-dir-file": case("demo", "--dir", "{file}", code=2),
    # long texts: not errors
    "search-300-bytes": case(*SEARCH, LONG_ENGLISH, code=0),
    "search-96-japanese": case(*SEARCH, LONG_JAPANESE, code=0),
    # text from a terminal that is not UTF-8 (Latin-1 "café")
    "search-latin-1": case(*SEARCH, os.fsdecode(b"caf\xe9"), code=2),
    "search-add-latin-1": case(*SEARCH, "x", "--add", os.fsdecode(b"caf\xe9"), code=2),
    "watch-latin-1-folder": case(
        "watch", "{pictures}/" + os.fsdecode(b"caf\xe9"), "--db", "{db}", code=2
    ),
    # extreme dates
    "after-year-1": case(*SEARCH, "x", "--after", "0001-01-01", code=0),
    "before-year-9999": case(*SEARCH, "x", "--before", "9999-12-31", code=0),
    "after-month-13": case(*SEARCH, "x", "--after", "2020-13-45", code=2),
    "after-not-before-before": case(
        *SEARCH, "x", "--after", "2024-01-01", "--before", "2023-01-01", code=2
    ),
    "weight-without-term": case(*SEARCH, "x", "--add", "2:", code=2),
    "info-db-is-a-file": case("info", "--db", "{file}", code=5),
    "dedupe-move-to-empty": case("dedupe", "--db", "{db}", "--move-to", "", code=2),
    # extreme numbers
    "k-0": case(*SEARCH, "x", "-k", "0", code=2),
    "k-huge": case(*SEARCH, "x", "-k", "99999999999999999999999", code=2),
    "distance-64": case("dedupe", "--db", "{db}", "--distance", "64", code=2),
    "distance-negative": case("dedupe", "--db", "{db}", "--distance", "-1", code=2),
    "cosine-2": case("dedupe", "--db", "{db}", "--similar", "--cosine", "2", code=2),
    # bad settings
    "env-workers-negative": case(
        "index", "{pictures}", "--db", "{db}", code=2, env={"PHOTON_INDEX_WORKERS": "-1"}
    ),
    "env-search-limit-0": case(*SEARCH, "x", code=2, env={"PHOTON_SEARCH_LIMIT": "0"}),
    "env-nprobes-0": case(*SEARCH, "x", code=2, env={"PHOTON_SEARCH_NPROBES": "0"}),
    "env-batch-size-abc": case(
        "index", "{pictures}", "--db", "{db}", code=2, env={"PHOTON_INDEX_BATCH_SIZE": "abc"}
    ),
    "bad-config-file": case(*SEARCH, "x", code=2, prepare=bad_config_file),
    # hostile --where (the --in one is checked again below)
    "where-unbalanced-with-in": case(
        *SEARCH,
        "x",
        "--json",
        "--in",
        "{pictures}/a",
        "--where",
        "1=1) OR (1=1",
        code=(0, 2),
        check=stays_in_a,
    ),
    **{
        f"where-closes-paren-{i}": case(
            *SEARCH,
            "x",
            "--json",
            "--in",
            "{pictures}/a",
            "--where",
            where,
            code=(0, 2),
            check=stays_in_a,
        )
        for i, where in enumerate(("1=1)) OR ((1=1", "true) OR (true"))
    },
    "where-drop-table": case(*SEARCH, "x", "--where", "; DROP TABLE images", code=2),
    "where-comment": case(*SEARCH, "x", "--where", "path = 'x' OR 1=1 --", code=2),
    # models and devices
    "index-unknown-model": case("index", "{pictures}", "--db", "{db}", "--model", "nope", code=3),
    "index-device-tpu": case("index", "{pictures}", "--db", "{db}", "--device", "tpu", code=2),
    "search-device-tpu": case(*SEARCH, "x", "--device", "tpu", code=2),
    # a damaged index, opened by every command that opens one
    **{
        f"{damage}-{command}": Case(args, 5, prepare=spoil)
        for damage, spoil in DAMAGE.items()
        for command, args in OPENERS.items()
    },
}


def expand(args: tuple[str, ...], run: Run) -> list[str]:
    names = {"db": run.db, "pictures": run.lib.pictures, "file": run.lib.file}
    return [arg.format(**names) for arg in args]


def _param(name: str, c: Case) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=f"owner: {c.owner}")] if c.owner else []
    return pytest.param(c, id=name, marks=marks)


@pytest.mark.parametrize("c", [_param(name, c) for name, c in CASES.items()])
def test_bad_input(c: Case, library: Library, tmp_path: Path, isolated: Path) -> None:
    run = Run(library, tmp_path / "db", isolated)
    shutil.copytree(library.db, run.db)
    if c.prepare:
        c.prepare(run)
    before = table_state(run.db), index_files(run.db), tree(library.pictures), tree(library.file)

    result = run_photon(*expand(c.args, run), check=False, env=c.env)

    assert "Traceback" not in result.stderr, result.stderr
    codes = c.code if isinstance(c.code, tuple) else (c.code,)
    assert result.returncode in codes, result.stderr
    lines = result.stderr.strip().splitlines()
    if result.returncode:
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    else:
        assert len(lines) <= 1, result.stderr  # e.g. "no matches"
    if c.check:
        c.check(result, run)
    after = table_state(run.db), index_files(run.db), tree(library.pictures), tree(library.file)
    assert after == before


def index_files(db: Path) -> dict[str, str]:
    """tree(db) but for progress.json, where an index run that failed says so."""
    return {name: digest for name, digest in tree(db).items() if name != PROGRESS_FILE}


# --- writes the disk refuses ----------------------------------------------------------


def _read_only(folder: Path) -> Callable[[], None] | None:
    """Make the files of folder unwritable, even for root; the undo, or None if this
    machine can't (chattr needs root and a filesystem that supports it)."""
    dirs = [p for p in [folder, *folder.rglob("*")] if p.is_dir()]
    if os.geteuid() != 0:
        _chmod(dirs, 0o555)
        return lambda: _chmod(dirs, 0o755)
    if shutil.which("chattr") is None:
        return None
    done = subprocess.run(["chattr", "+i", *map(str, dirs)], capture_output=True)
    if done.returncode != 0:
        return None
    return lambda: subprocess.run(["chattr", "-i", *map(str, dirs)], check=True)


def _chmod(paths: list[Path], mode: int) -> None:
    for path in paths:
        path.chmod(mode)


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 1 MB tmpfs, where this machine lets a test mount one."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def _assert_refused_then_rerun(library: Library, db: Path, undo: Callable[[], None]) -> None:
    before = table_state(db)
    result = run_photon("index", library.extra, "--db", db, check=False)
    undo()
    assert result.returncode == 5 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot write to the index at {db}"), line
    assert table_state(db) == before  # the last committed version, still readable
    assert run_photon("info", "--db", db).returncode == 0
    run_photon("index", library.extra, "--db", db)  # the rerun completes
    assert table_state(db)[0] == before[0] + len(list(library.extra.iterdir()))


def test_read_only_index_is_one_line_and_a_rerun_completes(
    library: Library, tmp_path: Path
) -> None:
    db = tmp_path / "db"
    shutil.copytree(library.db, db)
    undo = _read_only(db / "images.lance")
    if undo is None:
        pytest.skip("cannot make files read-only for this user here")
    _assert_refused_then_rerun(library, db, undo)


def test_full_disk_is_one_line_and_a_rerun_completes(library: Library, full_disk: Path) -> None:
    db = full_disk / "db"
    shutil.copytree(library.db, db)
    filler = full_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill what is left
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    _assert_refused_then_rerun(library, db, filler.unlink)
