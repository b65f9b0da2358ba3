"""`photon watch` on real filesystem events: files created, modified, renamed, moved
across folders and deleted, a burst of 1,000, a subfolder and a whole root removed and
put back, the writer lock taken by another process, Ctrl-C, and `photon serve --watch`.
Every step waits (boundedly) for the table to converge to what is on disk."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY
from PIL import Image

from photon_index import Index
from photon_index.config import Settings
from photon_index.errors import UsageError
from photon_index.hashing import file_hash
from photon_index.ingest import IndexReport, Interrupted
from photon_index.store.lock import write_lock
from photon_index.synthetic import write_pictures
from photon_index.watch import Watcher, WatchEvent, watching

pytestmark = pytest.mark.slow

# Upper bounds on 2 shared cores, far above the usual few seconds: a step that has not
# converged by then is a bug, not a slow machine.
CONVERGE = 120.0
BURST = 1_000


def fast_settings() -> Settings:
    """One worker; short quiet and poll periods so the steps run quickly."""
    settings = Settings.load().with_overrides("index", workers=1)
    return settings.with_overrides("watch", quiet=0.1, poll=0.3)


def wait_for(what: str, check: Callable[[], bool], timeout: float = CONVERGE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)


def rows(index: Index) -> dict[str, str]:
    """path -> content hash, failing if a path has two rows."""
    table = index.table()
    if table is None:
        return {}
    data = table.columns(["path", "content_hash"]).to_pydict()
    assert len(data["path"]) == len(set(data["path"])), "a path was stored twice"
    return dict(zip(data["path"], data["content_hash"], strict=True))


def on_disk(*roots: Path) -> dict[str, str]:
    return {str(p): file_hash(p) for root in roots for p in sorted(root.rglob("*.jpg"))}


def converge(index: Index, *roots: Path, keep: dict[str, str] | None = None) -> None:
    """Wait until the table holds exactly the pictures under roots, with their current
    bytes (and keep: rows expected besides them)."""
    wanted = {**on_disk(*roots), **(keep or {})}
    wait_for(f"the table to hold the {len(wanted)} pictures", lambda: rows(index) == wanted)


class Events:
    def __init__(self) -> None:
        self.all: list[WatchEvent] = []

    def __call__(self, event: WatchEvent) -> None:
        self.all.append(event)

    def mark(self) -> int:
        return len(self.all)

    def since(self, mark: int, kind: str | None = None) -> list[WatchEvent]:
        return [e for e in self.all[mark:] if kind is None or e.kind == kind]

    def total(self, mark: int, field: str) -> int:
        return sum(getattr(e.report, field) for e in self.since(mark, "indexed"))

    def reach(self, mark: int, field: str, count: int) -> None:
        """Wait for the batches since mark to add up to count (a batch's rows are
        committed a moment before it is reported)."""
        wait_for(f"{count} {field}", lambda: self.total(mark, field) >= count)
        assert self.total(mark, field) == count

    def wait(self, kind: str, mark: int) -> None:
        wait_for(f"a {kind!r} event", lambda: bool(self.since(mark, kind)))


@contextmanager
def watched(tmp_path: Path, *roots: Path) -> Iterator[tuple[Index, Events]]:
    """A watcher in a thread (as `photon serve --watch` runs it), caught up."""
    index = Index(tmp_path / "db", settings=fast_settings())
    events = Events()
    with watching(index, list(roots), events, model=TINY):
        events.wait("indexed", 0)
        yield index, events


def noise_jpeg(path: Path, seed: int) -> None:
    """A small picture of its own (distinct bytes, so no two are copies)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=80)


def test_create_modify_rename_move_delete(tmp_path: Path):
    lib = tmp_path / "lib"
    write_pictures(lib / "a", 6, seed=1)
    with watched(tmp_path, lib) as (index, events):
        converge(index, lib)

        mark = events.mark()  # create: a folder of new pictures
        write_pictures(lib / "b", 3, seed=2)
        converge(index, lib)
        events.reach(mark, "indexed", 3)

        mark = events.mark()  # modify: other bytes under the same name
        target = lib / "a" / "picture-00000.jpg"
        noise_jpeg(target, seed=7)
        converge(index, lib)
        events.reach(mark, "indexed", 1)
        assert rows(index)[str(target)] == file_hash(target)

        mark = events.mark()  # rename in place, and a folder renamed: reuses, no model
        os.rename(lib / "a" / "picture-00001.jpg", lib / "a" / "renamed.jpg")
        os.rename(lib / "b", lib / "b2")
        converge(index, lib)
        events.reach(mark, "reused", 4)
        assert events.total(mark, "indexed") == 0

        mark = events.mark()  # move across folders
        (lib / "c" / "deep").mkdir(parents=True)
        os.rename(lib / "a" / "picture-00002.jpg", lib / "c" / "deep" / "moved.jpg")
        os.rename(lib / "b2" / "picture-00000.jpg", lib / "c" / "moved-too.jpg")
        converge(index, lib)
        events.reach(mark, "reused", 2)
        assert events.total(mark, "indexed") == 0

        mark = events.mark()  # delete a file and a folder
        (lib / "a" / "picture-00003.jpg").unlink()
        shutil.rmtree(lib / "b2")
        converge(index, lib)
        events.reach(mark, "removed", 3)

        mark = events.mark()  # a file that is not a picture, and a hidden one: ignored
        (lib / "notes.txt").write_text("not a picture")
        noise_jpeg(lib / ".cache" / "hidden.jpg", seed=8)
        noise_jpeg(lib / "a" / "seen.jpg", seed=9)  # so the batch is known to be done
        wait_for("the visible picture", lambda: str(lib / "a" / "seen.jpg") in rows(index))
        assert str(lib / ".cache" / "hidden.jpg") not in rows(index)


def test_burst_of_a_thousand(tmp_path: Path):
    lib = tmp_path / "lib"
    write_pictures(lib / "a", 2, seed=1)
    with watched(tmp_path, lib) as (index, events):
        mark = events.mark()
        for i in range(BURST):
            noise_jpeg(lib / "burst" / f"{i // 100:02d}" / f"n{i:04d}.jpg", seed=100 + i)
        converge(index, lib)
        events.reach(mark, "indexed", BURST)
        assert events.total(mark, "failed") == 0
        assert len(index.search("a red star", limit=5).hits) == 5  # searchable


def test_folder_removed_and_put_back(tmp_path: Path):
    # x is a drive that is unmounted (renamed away: gone at once) and mounted again
    # with a picture added meanwhile; y is a plain folder that stays.
    x, y, away = tmp_path / "x", tmp_path / "y", tmp_path / "away"
    write_pictures(x / "trip", 4, seed=1)
    write_pictures(y, 2, seed=2)
    with watched(tmp_path, x, y) as (index, events):
        converge(index, x, y)
        before = rows(index)
        kept = {p: h for p, h in before.items() if p.startswith(str(x))}

        mark = events.mark()
        os.rename(x, away)
        events.wait("paused", mark)
        noise_jpeg(away / "trip" / "added-while-away.jpg", seed=3)
        os.remove(away / "trip" / "picture-00000.jpg")
        noise_jpeg(y / "meanwhile.jpg", seed=4)  # the watch goes on elsewhere
        converge(index, y, keep=kept)  # nothing under the missing root was pruned
        events.reach(mark, "indexed", 1)
        assert events.total(mark, "removed") == 0

        mark = events.mark()
        os.rename(away, x)
        events.wait("resumed", mark)
        converge(index, x, y)  # caught up: the addition and the deletion
        events.reach(mark, "indexed", 1)

        # A subfolder removed for real goes from the index, and comes back with it.
        saved = tmp_path / "saved"
        shutil.copytree(x / "trip", saved)
        shutil.rmtree(x / "trip")
        converge(index, x, y)
        assert not any(p.startswith(str(x / "trip")) for p in rows(index))
        shutil.copytree(saved, x / "trip")
        converge(index, x, y)


def test_waits_for_another_writer_and_lets_index_run(tmp_path: Path):
    lib = tmp_path / "lib"
    write_pictures(lib, 3, seed=1)
    with watched(tmp_path, lib) as (index, events):
        converge(index, lib)
        mark = events.mark()
        with write_lock(index.db_path):  # as a `photon index` or `dedupe` would
            noise_jpeg(lib / "new.jpg", seed=5)
            events.wait("waiting", mark)
            assert str(lib / "new.jpg") not in rows(index)
        converge(index, lib)
        events.reach(mark, "indexed", 1)

        # Between batches the lock is free: a manual run goes through.
        other = tmp_path / "other"
        write_pictures(other, 2, seed=9)
        report = Index(index.db_path, settings=fast_settings()).update([other])
        assert report.indexed == 2
        converge(index, lib, other)  # the watcher left the other root's rows alone


def test_a_root_never_indexed_that_does_not_exist_is_refused(tmp_path: Path):
    index = Index(tmp_path / "db", settings=fast_settings())
    with pytest.raises(UsageError, match="no such file or folder"):
        Watcher(index, [tmp_path / "typo"], model=TINY).prepare()
    with pytest.raises(UsageError, match="local folders only"):
        Watcher(index, ["s3://bucket/photos"], model=TINY)


def test_a_batch_cut_by_ctrl_c_counts_what_it_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    lib = tmp_path / "lib"
    write_pictures(lib, 1, seed=2)
    watcher = Watcher(Index(tmp_path / "db", settings=fast_settings()), [lib], model=TINY)

    def cut_short(roots: list[Path], paths: list[Path]) -> IndexReport:
        raise Interrupted("interrupted", IndexReport(indexed=3, reused=1))

    monkeypatch.setattr(watcher, "_write", cut_short)
    watcher._pending.roots.add(lib)
    with pytest.raises(Interrupted):
        watcher._flush()
    assert (watcher.report.indexed, watcher.report.reused) == (3, 1)


class Lines:
    """A child process's stdout, line by line, read in a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        stream = process.stdout
        threading.Thread(
            target=lambda: [self.queue.put(line) for line in stream], daemon=True
        ).start()

    def wait(self, check: Callable[[str], bool], timeout: float = CONVERGE) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if check(line):
                return line
        raise AssertionError(f"no such line within {timeout:.0f} s; seen: {self.seen}")


def start(*args: str | Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PHOTON_INDEX_WORKERS": "1", "PHOTON_WATCH_QUIET": "0.1"}
    return subprocess.Popen(
        [sys.executable, "-m", "photon_index", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_cli_watch_until_ctrl_c(tmp_path: Path):
    lib, db = tmp_path / "lib", tmp_path / "db"
    write_pictures(lib, 2, seed=1)
    process = start("watch", lib, "--db", db, "--model", TINY)
    try:
        out = Lines(process)
        out.wait(lambda line: line.startswith("watching"))
        out.wait(lambda line: " 2 indexed," in line)
        noise_jpeg(lib / "new.jpg", seed=5)
        out.wait(lambda line: " 1 indexed," in line)
        process.send_signal(signal.SIGINT)  # SIGTERM does the same (benchmarks/watch.py)
        assert process.wait(timeout=60) == 0
        out.wait(lambda line: line.startswith("stopped: 2 batches, 3 indexed"))
    finally:
        process.kill()
        process.wait()
    assert process.stderr is not None and "Traceback" not in process.stderr.read()
    assert rows(Index(db)) == on_disk(lib)


def test_serve_watch_shows_new_pictures(tmp_path: Path):
    lib, db = tmp_path / "lib", tmp_path / "db"
    write_pictures(lib, 2, seed=1)
    Index(db).update([lib], model=TINY)  # records lib as one of the index's folders
    process = start("serve", "--watch", "--db", db, "--port", "0")
    try:
        out = Lines(process)
        url = out.wait(lambda line: line.startswith("photon serves")).split(" at ")[1].strip()

        def health_rows() -> int:
            with urllib.request.urlopen(url + "api/health", timeout=10) as response:
                return json.load(response)["rows"]

        out.wait(lambda line: "0 indexed" in line)  # caught up with the folder
        assert health_rows() == 2
        noise_jpeg(lib / "new.jpg", seed=5)
        wait_for("the server to count the new picture", lambda: health_rows() == 3)
        process.send_signal(signal.SIGINT)
        # uvicorn raises the signal again once it has shut down: `photon serve` itself
        # then exits 130, as any command Ctrl-C stops.
        assert process.wait(timeout=60) in (0, 130)
    finally:
        process.kill()
        process.wait()
    assert process.stderr is not None and "Traceback" not in process.stderr.read()
