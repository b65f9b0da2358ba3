"""What `photon dedupe` does to files is safe by construction: aliases are never removed,
exact copies are re-hashed, --move-to is checked before anything moves, every action is
journaled, an interrupted batch is finished, trash and moves are undone exactly, and a
stateful randomized test plays a user's life against all of it."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import TINY, run_photon
from test_dedupe import ANY, BASE, away, put

from photon_index import Index
from photon_index.actions import Action, Journal, act, apply, finish_interrupted, undo, undo_last
from photon_index.actions.destination import target_for
from photon_index.config import Settings
from photon_index.errors import DatabaseError, UsageError
from photon_index.query.dedupe import DuplicateGroup, find_duplicates
from photon_index.store.lock import write_lock
from photon_index.store.roots import ROOTS_FILE, add_roots, read_roots
from photon_index.store.table import ImageTable

DIM = 4
DAY = 86_400 * 10**9


@pytest.fixture
def table(tmp_path: Path) -> ImageTable:
    return ImageTable.create(tmp_path / "db", dim=DIM, model="m", model_ref="m")


def exact_library(folder: Path, table: ImageTable, copies: int, pictures: int = 3) -> None:
    """pictures distinct files, each with copies exact copies in folders far apart."""
    rows = []
    for p in range(pictures):
        data = f"picture {p} ".encode() * 50
        rows.append(put(folder / "a", f"p{p}.jpg", data, DAY, bits=away(p * 20)))
        for c in range(copies):
            deep = f"z/{c % 7}/{c}/copy-{p}.jpg"
            rows.append(put(folder, deep, data, 2 * DAY, bits=away(p * 20)))
    table.upsert(rows)


def groups_of(table: ImageTable, cosine: float | None = None) -> list[DuplicateGroup]:
    return find_duplicates(
        table, phash_distance=6, dhash_distance=8, near_cosine=ANY, similar_cosine=cosine
    )


def run(table: ImageTable, kind: str, dest: Path | None = None, similar: bool = False):
    action = Action(kind, destination=dest, similar=similar)
    return act(groups_of(table), table, Journal(table.db_path), action)


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# Item 2: two paths of one file are one picture.


def test_an_alias_of_the_keeper_is_never_removed(tmp_path: Path, table: ImageTable):
    # A group handed in by hand (or from a stale table) that names the keeper under
    # another path: the check right before acting leaves it alone.
    real = put(tmp_path / "real", "a.jpg", b"a", DAY)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    hard = tmp_path / "far" / "hard.jpg"
    hard.parent.mkdir()
    os.link(real.path, hard)
    table.upsert([real])
    aliases = [str(tmp_path / "link" / "a.jpg"), str(hard)]
    table.upsert([replace(real, path=p) for p in aliases])
    group = DuplicateGroup("exact", real.path, "by hand", aliases, 0.0)
    report = act([group], table, Journal(table.db_path), Action("delete"))
    assert report.deleted == []
    assert {why for _, why in report.failed} == {
        f"it is the same file as its keeper {real.path} (another path to it)"
    }
    assert Path(real.path).read_bytes() == b"a" and hard.exists()


@pytest.mark.slow
def test_cli_dedupe_through_a_symlinked_folder_deletes_nothing(tmp_path: Path, monkeypatch):
    # Issue 9 item 2: index link/ (a symlink to real/), then real/; `--delete --yes`
    # deleted every file of real/. 20 pictures: more than one embedding batch.
    from photon_index.synthetic import write_pictures

    real = tmp_path / "real"
    write_pictures(real, 20, seed=3)
    (tmp_path / "link").symlink_to(real)
    far = tmp_path / "x" / "y" / "far"
    far.mkdir(parents=True)
    os.link(real / "picture-00000.jpg", far / "hard.jpg")
    before = files_under(real)
    db = tmp_path / "db"
    run_photon("index", tmp_path / "link", "--db", db, "--model", TINY)
    run_photon("index", real, far, "--db", db, "--model", TINY)
    report = json.loads(
        run_photon("dedupe", "--db", db, "--delete", "--permanent", "--yes", "--json").stdout
    )
    assert report["deleted"] == [] and all(not g["duplicates"] for g in report["groups"])
    assert files_under(real) == before and (far / "hard.jpg").exists()


# Item 6 lives in test_dedupe.py (finding); item 7: actions hold the writer lock.


@pytest.mark.parametrize("what", ["move", "trash", "delete", "undo"])
def test_actions_hold_the_writer_lock(tmp_path: Path, table: ImageTable, what: str):
    exact_library(tmp_path / "lib", table, copies=1)
    index = Index(table.db_path)
    before = files_under(tmp_path / "lib")
    with write_lock(table.db_path), pytest.raises(UsageError, match="another photon process"):
        groups = index.dedupe()
        if what == "move":
            index.move_duplicates(groups, tmp_path / "dest")
        elif what == "trash":
            index.trash_duplicates(groups)
        elif what == "delete":
            index.delete_duplicates(groups)
        else:
            index.undo()
    assert files_under(tmp_path / "lib") == before


# Item 8: --delete of the similar tier needs its own flag.


def test_similar_pictures_are_deleted_only_when_asked(
    tmp_path: Path, table: ImageTable, trash_home: Path
):
    keeper = put(tmp_path / "lib", "scene.jpg", b"scene", DAY, bits=BASE, width=900)
    other = put(tmp_path / "lib", "same-scene.jpg", b"other", DAY, bits=away(40))
    table.upsert([keeper, replace(other, embedding=keeper.embedding)])
    groups = groups_of(table, cosine=0.9)
    assert [g.tier for g in groups] == ["similar"]
    journal = Journal(table.db_path)
    report = act(groups, table, journal, Action("trash"))
    assert report.trashed == [] and "--delete-similar" in report.failed[0][1]
    assert Path(other.path).exists()
    report = act(groups, table, journal, Action("trash", similar=True))
    assert report.trashed == [other.path] and not Path(other.path).exists()


# Overlapping groups: a keeper is never removed, whichever group lists it.


def red_library(folder: Path, table: ImageTable) -> tuple[list[str], str]:
    """Three exact copies a/, b/, c/red.jpg and a near copy b/red-small.jpg."""
    red = [put(folder / d, "red.jpg", b"red " * 100, DAY * (i + 1)) for i, d in enumerate("abc")]
    small = put(folder / "b", "red-small.jpg", b"small red " * 10, DAY, bits=away(2))
    table.upsert([*red, small])
    return [r.path for r in red], small.path


@pytest.mark.parametrize("kind", ["move", "trash"])
def test_another_groups_keeper_picked_as_a_copy_is_kept(
    tmp_path: Path, table: ImageTable, trash_home: Path, kind: str
):
    # Security review item 1: the near group's keeper picked as its small copy trashed
    # every full-size copy, the exact group's keeper included.
    (a, b, c), small = red_library(tmp_path / "lib", table)
    exact = DuplicateGroup("exact", a, "oldest", [b, c], 0.0)
    near = DuplicateGroup("near", a, "largest", [small], 2.0).with_keeper(small)
    action = Action(kind, destination=tmp_path / "away" if kind == "move" else None)
    report = act([exact, near], table, Journal(table.db_path), action)
    removed = {p for p, _ in report.moved} | set(report.trashed)
    assert removed == {b, c}
    assert report.failed == [(a, "it is the keeper of another group in this batch: kept")]
    assert Path(a).read_bytes() == b"red " * 100 and Path(small).exists()
    assert sorted(table.paths()) == sorted([a, small])


def test_one_group_twice_with_two_keepers_keeps_both(
    tmp_path: Path, table: ImageTable, trash_home: Path
):
    # Security review item 2: each keeper went as the other's copy.
    (a, b, c), _ = red_library(tmp_path / "lib", table)
    group = DuplicateGroup("exact", a, "oldest", [b, c], 0.0)
    report = act([group, group.with_keeper(b)], table, Journal(table.db_path), Action("trash"))
    assert report.trashed == [c] and Path(a).exists() and Path(b).exists()


def test_a_keeper_gone_after_the_check_keeps_its_copy(tmp_path: Path, table: ImageTable):
    # The keeper is looked for again right before each file goes.
    (a, b, _), _ = red_library(tmp_path / "lib", table)
    group = DuplicateGroup("exact", a, "oldest", [b], 0.0)
    real_do = apply._do

    def keeper_vanishes(kind: str, entry):
        raise AssertionError("nothing may go once its keeper is gone")

    real_intend = apply.Batch.intend

    def intend(batch, entries):
        real_intend(batch, entries)
        Path(a).unlink()  # behind photon's back, between the check and the move

    apply._do, apply.Batch.intend = keeper_vanishes, intend  # type: ignore[method-assign]
    try:
        report = act([group], table, Journal(table.db_path), Action("delete"))
    finally:
        apply._do, apply.Batch.intend = real_do, real_intend  # type: ignore[method-assign]
    assert report.failed == [(b, f"its keeper {a} no longer exists")] and Path(b).exists()
    assert b in table.paths()


# Re-hashing exact copies before removing them.


def test_an_exact_copy_whose_bytes_changed_is_left_alone(tmp_path: Path, table: ImageTable):
    exact_library(tmp_path / "lib", table, copies=1, pictures=2)
    copy = tmp_path / "lib" / "z" / "0" / "0" / "copy-0.jpg"
    stat = copy.stat()
    copy.write_bytes(copy.read_bytes().replace(b"picture", b"PICTURE"))  # same size
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same mtime
    report = run(table, "delete")
    changed = "is not the picture indexed (its bytes changed): run `photon index` first"
    assert report.failed == [(str(copy), f"it {changed}")]
    assert copy.exists() and len(report.deleted) == 1


def test_a_keeper_rewritten_with_its_size_and_time_keeps_its_copies(
    tmp_path: Path, table: ImageTable
):
    # The near tier checked a keeper by size and time alone: a keeper replaced by
    # another picture of the same size, its time put back, let its copies go.
    exact_library(tmp_path / "lib", table, copies=1, pictures=2)
    keeper = tmp_path / "lib" / "a" / "p0.jpg"
    stat = keeper.stat()
    keeper.write_bytes(keeper.read_bytes().replace(b"picture", b"PICTURE"))
    os.utime(keeper, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    report = run(table, "delete")
    copy = tmp_path / "lib" / "z" / "0" / "0" / "copy-0.jpg"
    changed = "is not the picture indexed (its bytes changed): run `photon index` first"
    assert (str(copy), f"its keeper {keeper} {changed}") in report.failed
    assert copy.exists() and len(report.deleted) == 1


# Item 11 and 18: --move-to is checked before anything moves.


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("/", "is the root folder"),
        ("lib/a", "inside the indexed folder"),
        ("lib/a/new/deeper", "inside the indexed folder"),
        ("lib", "holds the indexed folder"),
        ("", "holds the indexed folder"),  # tmp_path itself
        ("lib/a/p0.jpg", "is not a folder"),
        ("db", "inside the index's database folder"),
        ("db/journal", "inside the index's database folder"),
        ("db/thumbnails/x", "inside the index's database folder"),
        ("x\0y", "NUL character"),
        ("\udc80", "not valid UTF-8"),
        ("~nosuchuser-photon/x", "no such user"),
    ],
)
def test_a_bad_move_to_moves_nothing(tmp_path: Path, table: ImageTable, where: str, message):
    exact_library(tmp_path / "lib", table, copies=40)
    before, rows = files_under(tmp_path / "lib"), sorted(table.paths())
    dest = where if where.startswith(("/", "~")) else f"{tmp_path}/{where}"
    with pytest.raises(UsageError, match=message):
        run(table, "move", dest)  # type: ignore[arg-type]
    assert files_under(tmp_path / "lib") == before and sorted(table.paths()) == rows
    assert not list(Journal(table.db_path).folder.glob("*"))  # not even an empty batch


def test_a_move_to_into_the_trash_is_refused(tmp_path: Path, table: ImageTable, trash_home: Path):
    exact_library(tmp_path / "lib", table, copies=1)
    with pytest.raises(UsageError, match="inside a trash folder"):
        run(table, "move", trash_home / "files" / "dupes")


def test_a_full_or_read_only_move_to_moves_nothing(
    tmp_path: Path, table: ImageTable, monkeypatch: pytest.MonkeyPatch
):
    from photon_index.actions import destination

    exact_library(tmp_path / "lib", table, copies=40)
    before = files_under(tmp_path / "lib")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(destination.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(UsageError, match="free"):
        run(table, "move", tmp_path / "full")
    monkeypatch.undo()

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(destination.tempfile, "TemporaryFile", read_only)
    with pytest.raises(UsageError, match="cannot write to --move-to"):
        run(table, "move", tmp_path / "ro")
    assert files_under(tmp_path / "lib") == before
    assert not list(tmp_path.rglob("*.partial"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(tmp_path: Path, table: ImageTable):
    exact_library(tmp_path / "lib", table, copies=2)
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(UsageError, match="cannot write"):
        run(table, "move", ro)


@pytest.mark.slow
def test_cli_move_to_root_or_a_file_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Issue 9 item 11: `--move-to /` deleted the copies and reported them as moved. And
    # `--move-to ""` (a variable unset) moved them into the current folder.
    from photon_index.synthetic import write_pictures

    lib = tmp_path / "lib"
    write_pictures(lib / "a", 3, seed=1)
    for i in range(70):  # more than one journal chunk of copies, far apart
        (lib / "z" / str(i)).mkdir(parents=True)
        shutil.copy(lib / "a" / "picture-00000.jpg", lib / "z" / str(i) / "copy.jpg")
    db = tmp_path / "db"
    run_photon("index", lib, "--db", db, "--model", TINY)
    before = files_under(lib)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    for dest in ["/", str(lib / "a" / "picture-00001.jpg"), str(lib), "", " "]:
        result = run_photon("dedupe", "--db", db, "--move-to", dest, check=False)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert files_under(lib) == before and not list(here.iterdir())
    assert not list(tmp_path.rglob("*.partial"))
    result = run_photon("dedupe", "--db", db, "--distance", "64", check=False)
    assert result.returncode == 2 and "63" in result.stderr


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_move_to_moves_nothing(
    tmp_path: Path, table: ImageTable, monkeypatch: pytest.MonkeyPatch, empty: str
):
    # `--move-to "$DIR"` with DIR unset moved the copies into the current folder: the
    # library refuses it, so API users are safe too.
    exact_library(tmp_path / "lib", table, copies=2)
    before = files_under(tmp_path / "lib")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    with pytest.raises(UsageError, match="--move-to is empty"):
        Index(table.db_path).move_duplicates(groups_of(table), empty)
    assert files_under(tmp_path / "lib") == before and not list(here.iterdir())
    assert not Journal(table.db_path).batches()


def test_a_move_to_inside_an_indexed_root_of_only_folders_is_refused(tmp_path: Path):
    # L holds only folders, so the folders holding indexed files did not show it:
    # `--move-to L/dupes` was accepted, the next `photon index L` indexed the moved
    # copies, and a later dedupe kept dupes/'s copy (first by path) and removed the
    # originals. `photon index` now records its roots, and dedupe checks them.
    from photon_index.synthetic import write_pictures

    lib = tmp_path / "L"
    ((picture, _),) = write_pictures(lib / "z_photos", 1, seed=4)
    (lib / "z_backup").mkdir()
    shutil.copy2(picture, lib / "z_backup" / picture.name)
    index = Index(tmp_path / "db", settings=Settings.load().with_overrides("index", workers=1))
    index.update([lib], model=TINY)
    assert read_roots(tmp_path / "db") == [lib]
    groups = index.dedupe()
    assert [g.duplicates for g in groups] == [[str(lib / "z_photos" / picture.name)]]
    before = files_under(lib)
    for dest, why in [(lib / "dupes", "inside"), (lib, "inside"), (tmp_path, "holds")]:
        with pytest.raises(UsageError, match=f"{why} the indexed folder {lib}"):
            index.move_duplicates(groups, dest)
    assert files_under(lib) == before and not (lib / "dupes").exists()


def test_roots_are_recorded_once_each_atomically(tmp_path: Path):
    db = tmp_path / "db"
    assert read_roots(db) == []  # a database from before roots were recorded
    add_roots(db, [Path("/a"), Path("/b"), Path("/a")])
    add_roots(db, [Path("/b"), Path("/c")])
    assert read_roots(db) == [Path("/a"), Path("/b"), Path("/c")]
    assert sorted(p.name for p in db.iterdir()) == [ROOTS_FILE]  # no temp file left
    (db / ROOTS_FILE).write_text("{not json")
    with pytest.raises(DatabaseError, match="move it away"):
        read_roots(db)


def test_a_real_file_is_never_removed_for_a_symlink_keeper(tmp_path: Path, table: ImageTable):
    # A group whose keeper is a link (picked by hand, or found by an older photon): the
    # real file is the picture, and the link keeps nothing once its target goes.
    real = put(tmp_path / "L" / "2023", "beach.jpg", b"beach", DAY)
    outside = put(tmp_path / "usb", "beach.jpg", b"beach", DAY)
    link = tmp_path / "L" / "2019" / "beach-link.jpg"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside.path)
    table.upsert([real, replace(real, path=str(link))])
    group = DuplicateGroup("exact", str(link), "chosen by you", [real.path], 0.0)
    report = act([group], table, Journal(table.db_path), Action("delete"))
    why = f"its keeper {link} is a symbolic link: keep a real file instead"
    assert (report.deleted, report.failed) == ([], [(real.path, why)])
    assert Path(real.path).read_bytes() == b"beach" and link.is_symlink()


@pytest.mark.parametrize("moved", ["link", "real"])
def test_moving_one_path_of_a_linked_file_keeps_the_rows_of_what_stays(
    tmp_path: Path, table: ImageTable, moved: str
):
    # a_links/link.jpg -> ../z/real.jpg, and m/keep.jpg has the same bytes. Moving the
    # link dropped the row of real.jpg too (resolving the link found "the same entry"),
    # though real.jpg stayed. Moving real.jpg leaves the link dangling: its row goes.
    s4 = tmp_path / "s4"
    real = put(s4 / "z", "real.jpg", b"same", 2 * DAY)
    keep = put(s4 / "m", "keep.jpg", b"same", DAY)
    link = s4 / "a_links" / "link.jpg"
    link.parent.mkdir()
    link.symlink_to(Path("..") / "z" / "real.jpg")
    table.upsert([real, keep, replace(real, path=str(link))])
    duplicate, alias = (str(link), real.path) if moved == "link" else (real.path, str(link))
    group = DuplicateGroup("exact", keep.path, "oldest", [duplicate], 0.0, aliases=[alias])
    report = act([group], table, Journal(table.db_path), Action("move", tmp_path / "dest"))
    assert [source for source, _ in report.moved] == [duplicate]
    stays = {keep.path, real.path} if moved == "link" else {keep.path}
    assert set(table.paths()) == stays and all(os.path.exists(p) for p in stays)
    undo_last(Journal(table.db_path), table)
    assert set(table.paths()) == {keep.path, real.path, str(link)}
    assert link.read_bytes() == b"same"


# The journal, kills and undo.


def test_move_is_journaled_and_undone_exactly(tmp_path: Path, table: ImageTable):
    exact_library(tmp_path / "lib", table, copies=50)  # 150 copies: three chunks
    before, rows = files_under(tmp_path / "lib"), table.columns(["path", "embedding"])
    report = run(table, "move", tmp_path / "dest")
    assert len(report.moved) == 150 and report.failed == []
    for source, target in report.moved:
        assert Path(target).read_bytes() == before[source] and not Path(source).exists()
    (batch,) = Journal(table.db_path).batches()
    assert batch.ended and [e.status for e in batch.entries] == ["done"] * 150
    assert all(os.path.exists(p) for p in table.paths())

    undone = undo_last(Journal(table.db_path), table)
    assert len(undone.restored) == 150 and undone.failed == []
    assert files_under(tmp_path / "lib") == before
    after = table.columns(["path", "embedding"])
    assert sorted(after.to_pylist(), key=str) == sorted(rows.to_pylist(), key=str)
    with pytest.raises(UsageError, match="nothing to undo"):
        undo_last(Journal(table.db_path), table)


def test_trash_is_the_default_and_undone(tmp_path: Path, table: ImageTable, trash_home: Path):
    exact_library(tmp_path / "lib", table, copies=30)
    before = files_under(tmp_path / "lib")
    report = run(table, "trash")
    assert len(report.trashed) == 90 and report.failed == []
    trashed = files_under(trash_home / "files")
    assert sorted(trashed.values()) == sorted(before[p] for p in report.trashed)
    undone = undo_last(Journal(table.db_path), table)
    assert len(undone.restored) == 90 and undone.failed == []
    assert files_under(tmp_path / "lib") == before
    assert files_under(trash_home / "files") == {} and files_under(trash_home / "info") == {}
    assert sorted(table.paths()) == sorted(before)


def test_an_undo_that_could_not_put_everything_back_can_be_run_again(
    tmp_path: Path, table: ImageTable, monkeypatch: pytest.MonkeyPatch
):
    exact_library(tmp_path / "lib", table, copies=20)  # 60 copies
    before, rows = files_under(tmp_path / "lib"), table.columns(["path", "embedding"])
    run(table, "move", tmp_path / "dest")
    (tmp_path / "dest").rename(tmp_path / "away")  # the destination's drive not mounted
    undone = undo_last(Journal(table.db_path), table)
    assert undone.restored == [] and len(undone.failed) == 60 and undone.retry
    assert "not mounted" in undone.failed[0][1]

    (tmp_path / "away").rename(tmp_path / "dest")
    real_move, calls = undo.move_file, []

    def disk_full_after_25(source: Path, target: Path) -> None:
        calls.append(source)
        if len(calls) > 25:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_move(source, target)

    monkeypatch.setattr(undo, "move_file", disk_full_after_25)
    undone = undo_last(Journal(table.db_path), table)
    assert len(undone.restored) == 25 and len(undone.failed) == 35 and undone.retry
    monkeypatch.setattr(undo, "move_file", real_move)
    undone = undo_last(Journal(table.db_path), table)  # only the 35 left
    assert len(undone.restored) == 35 and undone.failed == [] and not undone.retry
    assert files_under(tmp_path / "lib") == before
    after = table.columns(["path", "embedding"])
    assert sorted(after.to_pylist(), key=str) == sorted(rows.to_pylist(), key=str)
    with pytest.raises(UsageError, match="nothing to undo"):
        undo_last(Journal(table.db_path), table)


def test_an_undo_goes_past_a_copy_deleted_by_hand(tmp_path: Path, table: ImageTable):
    exact_library(tmp_path / "lib", table, copies=2, pictures=1)
    first = run(table, "move", tmp_path / "first").moved
    table.upsert(
        [put(tmp_path / "lib2", "x.jpg", b"x", DAY), put(tmp_path / "lib3", "x.jpg", b"x", DAY)]
    )
    ((_, target),) = run(table, "move", tmp_path / "second").moved
    os.unlink(target)  # the user emptied the folder of copies: that one is gone for good
    undone = undo_last(Journal(table.db_path), table)
    assert undone.restored == [] and "no longer at" in undone.failed[0][1] and not undone.retry
    assert len(undo_last(Journal(table.db_path), table).restored) == len(first) == 2


def test_a_permanent_delete_cannot_be_undone_and_undo_goes_on(tmp_path: Path, table: ImageTable):
    exact_library(tmp_path / "lib", table, copies=2, pictures=1)
    moved = run(table, "move", tmp_path / "dest").moved
    table.upsert(
        [put(tmp_path / "lib2", "x.jpg", b"x", DAY), put(tmp_path / "lib3", "x.jpg", b"x", DAY)]
    )
    assert len(run(table, "delete").deleted) == 1
    with pytest.raises(UsageError, match="cannot be restored"):
        undo_last(Journal(table.db_path), table)
    assert len(undo_last(Journal(table.db_path), table).restored) == len(moved) == 2


class Killed(BaseException):
    """A kill -9 in the middle of a batch: nothing after it runs."""


@pytest.mark.parametrize("linked", [False, True])
def test_a_killed_move_is_finished_by_the_next_action(
    tmp_path: Path, table: ImageTable, monkeypatch: pytest.MonkeyPatch, linked: bool
):
    exact_library(tmp_path / "lib", table, copies=50)
    before = files_under(tmp_path / "lib")
    real_do, count = apply._do, 0

    def killed_after_100(kind, entry):
        nonlocal count
        count += 1
        if count == 101:
            if linked:  # between the link and the unlink
                Path(entry.target).parent.mkdir(parents=True, exist_ok=True)
                os.link(entry.source, entry.target)
            raise Killed
        return real_do(kind, entry)

    monkeypatch.setattr(apply, "_do", killed_after_100)
    monkeypatch.setattr(apply, "finish", lambda batch, table: None)  # a kill runs nothing
    with pytest.raises(Killed):
        run(table, "move", tmp_path / "dest")
    monkeypatch.undo()

    # Item 13: the table never lists a file that is gone, even before recovery.
    assert all(os.path.exists(p) for p in table.paths())
    moved = files_under(tmp_path / "dest")
    assert len(moved) == 100 + linked
    (batch,) = Journal(table.db_path).unfinished()

    assert finish_interrupted(Journal(table.db_path), table) == [batch.name]
    moved = files_under(tmp_path / "dest")
    assert len(moved) == 100  # the half-made link is gone, its source is in place
    here = files_under(tmp_path / "lib")
    assert set(table.paths()) == set(here) and len(here) == len(before) - 100
    for path, data in before.items():
        assert here.get(path, moved.get(str(target_for(tmp_path / "dest", Path(path))))) == data

    undone = undo_last(Journal(table.db_path), table)
    assert len(undone.restored) == 100 and files_under(tmp_path / "lib") == before
    assert set(table.paths()) == set(before)


def far_copies(lib: Path, originals: int, copies: int) -> Path:
    """Pictures in a/ and copies of them, round robin, each in its own folder under z/."""
    from photon_index.synthetic import write_pictures

    files = [path for path, _ in write_pictures(lib / "a", originals, seed=originals)]
    for i in range(copies):
        (lib / "z" / str(i)).mkdir(parents=True)
        shutil.copy(files[i % originals], lib / "z" / str(i) / "copy.jpg")
    return lib


@pytest.mark.slow
@pytest.mark.parametrize("next_command", ["dedupe", "index"])
def test_cli_kill_9_during_move_to_keeps_the_table_in_step(tmp_path: Path, next_command: str):
    # Issue 9 item 13: the table kept the moved files' rows after a kill -9.
    lib = far_copies(tmp_path / "lib", originals=2, copies=200)
    db, dest = tmp_path / "db", tmp_path / "dest"
    run_photon("index", lib, "--db", db, "--model", TINY)
    before = files_under(lib)
    slow = (
        "import time, sys; from photon_index.actions import apply; real = apply.move_file; "
        "apply.move_file = lambda s, t: (real(s, t), time.sleep(0.01)); "
        "from photon_index.cli import main; sys.argv[0] = 'photon'; main()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", slow, "dedupe", "--db", str(db), "--move-to", str(dest)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while len(files_under(dest) if dest.exists() else {}) < 90 and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert 90 <= len(files_under(dest)) < 200

    assert all(os.path.exists(p) for p in Index(db).table().paths())
    if next_command == "dedupe":  # either finishes the batch first
        report = json.loads(run_photon("dedupe", "--db", db, "--json").stdout)
        assert report["groups"]
    else:
        run_photon("index", lib, "--db", db, "--model", TINY)
    assert Journal(db).unfinished() == []
    here, moved = files_under(lib), files_under(dest)
    assert set(Index(db).table().paths()) == set(here)
    assert len(here) + len(moved) == len(before)
    assert not list(tmp_path.rglob("*.partial"))
    undone = json.loads(run_photon("dedupe", "--db", db, "--undo", "--json").stdout)
    assert undone["failed"] == [] and files_under(lib) == before
    assert set(Index(db).table().paths()) == set(before)


@pytest.mark.slow
def test_cli_delete_trashes_and_undo_puts_back(tmp_path: Path, trash_home: Path):
    lib = far_copies(tmp_path / "lib", originals=3, copies=3)
    db = tmp_path / "db"
    run_photon("index", lib, "--db", db, "--model", TINY)
    before = files_under(lib)
    report = json.loads(run_photon("dedupe", "--db", db, "--delete", "--json").stdout)
    assert len(report["trashed"]) == 3 and report["deleted"] == []
    assert len(files_under(trash_home / "files")) == 3
    assert not set(report["trashed"]) & set(Index(db).table().paths())
    run_photon("dedupe", "--db", db, "--undo")
    assert files_under(lib) == before and set(Index(db).table().paths()) == set(before)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["move", "trash"])
def test_cli_ctrl_c_says_what_had_gone(tmp_path: Path, trash_home: Path, kind: str):
    # Ctrl-C exited 130 with nothing printed: typer turns a KeyboardInterrupt into a
    # silent exit code. The batch is finished, and one line says what had gone.
    lib = far_copies(tmp_path / "lib", originals=2, copies=200)
    db, dest = tmp_path / "db", tmp_path / "dest"
    run_photon("index", lib, "--db", db, "--model", TINY)
    before = files_under(lib)
    slow = (
        "import time, sys; from photon_index.actions import apply; real = apply._do; "
        "apply._do = lambda kind, entry: (real(kind, entry), time.sleep(0.01))[0]; "
        "from photon_index.cli import main; sys.argv[0] = 'photon'; main()"
    )
    args, gone = (["--move-to", str(dest)], dest) if kind == "move" else (["--delete"], None)
    gone = gone or trash_home / "files"
    child = subprocess.Popen(
        [sys.executable, "-c", slow, "dedupe", "--db", str(db), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own, as a terminal's job is
    )
    deadline = time.monotonic() + 120
    while len(files_under(gone) if gone.exists() else {}) < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(child.pid, signal.SIGINT)  # as Ctrl-C does: to the whole group
    _, err = child.communicate(timeout=120)

    done = len(files_under(gone))
    assert child.returncode == 130 and 30 <= done < 200, err
    what = f"moved to {dest}" if kind == "move" else "sent to the trash"
    assert err.splitlines() == [
        f"error: interrupted: {done} files were {what} before the stop (journaled), the "
        "others are in place; `photon dedupe --undo` puts them back"
    ]
    assert Journal(db).unfinished() == []
    assert set(Index(db).table().paths()) == set(files_under(lib))
    run_photon("dedupe", "--db", db, "--undo")
    assert files_under(lib) == before


def test_ctrl_c_outside_a_batch_is_one_line_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    # typer turns a KeyboardInterrupt into exit code 130 and prints nothing: main()
    # must say it, wherever the command was (here: still finding the duplicates).
    from photon_index import cli

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Index, "dedupe", interrupted)
    monkeypatch.setattr(sys, "argv", ["photon", "dedupe", "--db", str(tmp_path / "db")])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 130
    assert capsys.readouterr().err.splitlines() == [
        "interrupted: everything committed so far is kept; run again to continue"
    ]


@pytest.mark.slow
def test_cli_dedupe_escapes_control_characters_in_paths(tmp_path: Path):
    # A newline or ESC in a file name forged lines and drove the terminal: shown
    # escaped, as `photon search` shows them.
    from photon_index.synthetic import write_pictures

    lib, db, dest = tmp_path / "lib", tmp_path / "db", tmp_path / "dest"
    ((picture, _),) = write_pictures(lib / "a", 1, seed=5)
    forged, coloured = lib / "new\nline.jpg", lib / "esc\x1b[31mred.jpg"
    for copy in (forged, coloured):
        shutil.copy2(picture, copy)
    run_photon("index", lib, "--db", db, "--model", TINY)
    taken = target_for(dest, forged)  # so it is left alone, with a reason naming it
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"someone else's")

    result = run_photon("dedupe", "--db", db, "--move-to", dest)

    def shown(path: Path) -> str:
        return str(path).replace("\n", "\\n").replace("\x1b", "\\x1b")

    assert result.stdout.splitlines() == [
        f"[exact] keep {picture}  (first by path (otherwise identical))",
        f"    {shown(coloured)}",
        f"    {shown(forged)}",
        "1 groups, 2 copies",
        "1 moved, 0 trashed, 0 deleted for good, 1 left alone; undo with `photon dedupe --undo`",
    ]
    assert result.stderr.splitlines() == [
        f"left alone: {shown(forged)}: {shown(taken)} already exists; not overwritten"
    ]


# A user's life against the action layer: a stateful randomized test.
#
# The library holds pictures, near copies (resized) far away, a symlinked folder and a
# hard link, all indexed; rules add exact copies and hard links, index, move, trash,
# delete for good, undo, edit a copy in place (same size and mtime) and kill a move or
# trash half-way. After every step: no content loses its last copy (across the library,
# the --move-to folder and the trash) unless it was a near or similar copy deleted for
# good; a keeper is never removed; a moved file is byte-identical at its target; undo
# puts every path back with its bytes; the table lists only files that exist.

from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (  # noqa: E402
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

LONG = os.environ.get("PHOTON_LONG_TESTS") == "1"


class _Place:
    """The one temp folder the machine plays in, and a pristine indexed library that
    each run starts from (indexing it again each time would cost seconds)."""

    base: Path
    trash: Path
    counts: ClassVar[Counter[str]] = Counter()  # what the run did, printed at its end


def _build_template(base: Path) -> None:
    from PIL import Image

    from photon_index.config import Settings
    from photon_index.synthetic import write_pictures

    lib = base / "lib"
    pictures = [p for p, _ in write_pictures(lib / "a", 6, seed=9)]
    for i in (0, 1):
        far = lib / "far" / "away" / str(i)
        far.mkdir(parents=True)
        with Image.open(pictures[i]) as im:
            im.resize((160, 120)).save(far / "small.jpg", quality=90)
    (lib / "z").mkdir()
    shutil.copy2(pictures[2], lib / "z" / "copy.jpg")
    (lib / "link").symlink_to(lib / "a")
    (lib / "h").mkdir()
    os.link(pictures[3], lib / "h" / "hard.jpg")
    settings = Settings.load().with_overrides("index", workers=1)
    Index(base / "db", settings=settings).update([lib], model=TINY)
    shutil.copytree(lib, base / "template" / "lib", symlinks=True)
    shutil.copytree(base / "db", base / "template" / "db")


class UserLife(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        base = _Place.base
        for name in ("lib", "db", "dest"):
            shutil.rmtree(base / name, ignore_errors=True)
        shutil.rmtree(_Place.trash, ignore_errors=True)
        shutil.copytree(base / "template" / "lib", base / "lib", symlinks=True)
        shutil.copytree(base / "template" / "db", base / "db")
        (base / "lib" / "h" / "hard.jpg").unlink()  # copytree copied the hard link
        os.link(base / "lib" / "a" / "picture-00003.jpg", base / "lib" / "h" / "hard.jpg")
        self.lib, self.dest = base / "lib", base / "dest"
        from photon_index.config import Settings

        settings = Settings.load().with_overrides("index", workers=1)
        self.index = Index(base / "db", settings=settings)
        self.must_exist = {_digest(b) for b in self.everything().values()}
        # Every batch's files before it, by the journal's batch name: an undo puts back
        # exactly those bytes, whichever batch photon finds to undo.
        self.before: dict[str, dict[str, bytes]] = {}
        self.added = 0
        self.renamed: set[str] = set()  # by the user since the last completed index run
        self.stat_kept: set[str] = set()  # edited in place, size and mtime kept

    def everything(self) -> dict[str, bytes]:
        found = files_under(self.lib)
        for folder in (self.dest, _Place.trash / "files"):
            if folder.exists():
                found.update(files_under(folder))
        return found

    @initialize()
    def start(self) -> None:
        pass

    @rule(picks=st.lists(st.integers(0, 100), min_size=1, max_size=4), hard=st.booleans())
    def add_copies(self, picks: list[int], hard: bool) -> None:
        """Copy (or hard-link) pictures far away, then index: copies reuse embeddings."""
        files = sorted(p for p in files_under(self.lib) if "/link/" not in p)
        for pick in picks if files else []:
            source = Path(files[pick % len(files)])
            self.added += 1
            target = self.lib / "z" / str(self.added) / "deep" / f"copy{self.added}.jpg"
            target.parent.mkdir(parents=True)
            if hard:
                os.link(source, target)
            else:
                shutil.copy2(source, target)
        self.index.update([self.lib], model=TINY)
        self.the_index_is_true_to_disk()

    @rule(pick=st.integers(0, 100))
    def edit_in_place(self, pick: int) -> None:
        # Same size and mtime: only re-hashing can tell.
        files = sorted(p for p in files_under(self.lib) if "/z/" in p)
        if not files:
            return
        path = Path(files[pick % len(files)])
        stat = path.stat()
        data = bytearray(path.read_bytes())
        data[-3] ^= 0xFF
        if stat.st_nlink > 1:  # a hard link: edit one name only
            path.unlink()
        path.write_bytes(bytes(data))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        self.stat_kept.add(str(path))
        # The user's own edit may destroy the last copy of the old bytes: that's theirs.
        present = {_digest(b) for b in self.everything().values()}
        self.must_exist = (self.must_exist & present) | {_digest(bytes(data))}

    @rule(pick=st.integers(0, 100), what=st.sampled_from(["rename", "move far", "delete"]))
    def reorganise(self, pick: int, what: str) -> None:
        """The user renames, moves or deletes a picture between runs."""
        files = sorted(p for p in files_under(self.lib) if "/link/" not in p)
        if len(files) < 4:  # a library the user emptied has little left to test
            return
        path = Path(files[pick % len(files)])
        if what == "delete":
            path.unlink()  # the user's own delete may remove a last copy: that's theirs
            self.renamed.add(str(path))
            present = {_digest(b) for b in self.everything().values()}
            self.must_exist &= present
            return
        self.renamed.add(str(path))
        folder = path.parent if what == "rename" else self.lib / "moved" / str(pick)
        folder.mkdir(parents=True, exist_ok=True)
        self.added += 1  # a new name each time: a rename never overwrites
        path.rename(folder / f"r{self.added}-{path.name}")

    @rule()
    def index_library(self) -> None:
        self.index.update([self.lib], model=TINY)
        self.the_index_is_true_to_disk()

    @rule(commits=st.integers(0, 3))
    def index_killed(self, commits: int) -> None:
        """A kill -9 of `photon index` after a few commits: the next run repairs all."""
        from photon_index.ingest.writer import Writer

        real_commit = Writer.commit

        def commit(writer: Writer) -> list:
            if writer.commits == commits:
                raise Killed
            return real_commit(writer)

        Writer.commit = commit  # type: ignore[method-assign]
        try:
            self.index.update([self.lib], model=TINY)
        except Killed:
            pass
        finally:
            Writer.commit = real_commit  # type: ignore[method-assign]
        stored = self.index.table().columns(["path"]).to_pydict()["path"]
        assert len(stored) == len(set(stored)), "a killed run stored a path twice"

    def the_index_is_true_to_disk(self) -> None:
        """After a completed run: one row per file under the root (a file with two
        paths, through a symlinked folder or a hard link, is one file), none for a
        missing file, and the hash of the bytes on disk today."""
        self.renamed.clear()
        on_disk = {
            _inode(os.path.join(folder, name))
            for folder, _, names in os.walk(self.lib, followlinks=True)
            for name in names
        }
        table = self.index.table().columns(["path", "content_hash"]).to_pydict()
        stored = [_inode(p) for p in table["path"]]  # fails for a missing file
        assert len(stored) == len(set(stored)), "a file is stored twice"
        assert set(stored) == on_disk
        for path, digest in zip(table["path"], table["content_hash"], strict=True):
            # An edit that keeps size and mtime is, by design, not seen (README).
            if path not in self.stat_kept:
                assert digest == _digest(Path(path).read_bytes()), path

    @rule(kind=st.sampled_from(["move", "trash", "delete"]), similar=st.booleans())
    def act(self, kind: str, similar: bool) -> None:
        before = self.everything()
        groups = self.index.dedupe(similar=similar)
        if kind == "move":
            report = self.index.move_duplicates(groups, self.dest)
        elif kind == "trash":
            report = self.index.trash_duplicates(groups, similar=similar)
        else:
            report = self.index.delete_duplicates(groups, similar=similar)
        removed = {p for p, _ in report.moved} | set(report.trashed) | set(report.deleted)
        if report.batch:
            self.before[report.batch] = before
        _Place.counts[kind if removed else "empty"] += 1
        _Place.counts["left alone"] += len(report.failed)
        event(f"{kind} removed {'some' if removed else 'none'}; left {len(report.failed)}")
        for source, target in report.moved:
            assert Path(target).read_bytes() == before[source]
        duplicates = {p for g in groups for p in g.duplicates}
        for group in groups:
            # A stricter group's keeper may go in a looser one; a renamed keeper is not here.
            if group.keep not in duplicates and group.keep in before:
                assert group.keep not in removed
                assert Path(group.keep).read_bytes() == before[group.keep]
            if kind == "delete" and group.tier != "exact":
                self.must_exist -= {_digest(before[p]) for p in group.duplicates if p in removed}

    @rule(kind=st.sampled_from(["move", "trash"]), after=st.integers(0, 5), linked=st.booleans())
    def killed_half_way(self, kind: str, after: int, linked: bool) -> None:
        before = self.everything()
        groups = self.index.dedupe()
        real_do, count = apply._do, 0

        def do(what: str, entry):
            nonlocal count
            if count == after:
                if linked and entry.target:
                    Path(entry.target).parent.mkdir(parents=True, exist_ok=True)
                    os.link(entry.source, entry.target)
                raise Killed
            done = real_do(what, entry)
            count += 1
            return done

        apply._do, real_finish = do, apply.finish
        apply.finish = lambda batch, table: None
        try:
            if kind == "move":
                self.index.move_duplicates(groups, self.dest)
            else:
                self.index.trash_duplicates(groups)
        except Killed:
            pass
        finally:
            apply._do, apply.finish = real_do, real_finish
        batches = Journal(self.index.db_path).batches()
        if batches:
            self.before.setdefault(batches[-1].name, before)

    @rule()
    def undo(self) -> None:
        try:
            report = self.index.undo()
        except UsageError as e:  # nothing left to undo, or a permanent delete
            assert "nothing to undo" in str(e) or "cannot be restored" in str(e), e
            _Place.counts["undo refused"] += 1
            return
        _Place.counts["undo"] += 1
        before = self.before[report.batch]
        assert report.failed == []
        for _, path in report.restored:
            assert Path(path).read_bytes() == before[path]

    @invariant()
    def nothing_is_lost(self) -> None:
        _Place.counts["steps"] += 1
        everything = self.everything()
        present = {_digest(b) for b in everything.values()}
        assert self.must_exist <= present
        assert not [p for p in everything if p.endswith(".partial")]

    @invariant()
    def the_table_lists_only_files_that_exist(self) -> None:
        """Dedupe keeps the table in step with what it does; what the user did
        behind its back waits for the next index run."""
        table = self.index.table()
        assert all(os.path.exists(p) or p in self.renamed for p in table.paths())


def _inode(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _digest(data: bytes) -> str:
    from photon_index.hashing import content_hash

    return content_hash(data)


@pytest.mark.slow
def test_a_users_life_loses_nothing(tmp_path: Path, trash_home: Path):
    _Place.base, _Place.trash = tmp_path / "life", trash_home
    _build_template(_Place.base)
    run_state_machine_as_test(
        UserLife,
        settings=settings(
            max_examples=300 if LONG else 25,
            stateful_step_count=30 if LONG else 20,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
    print(f"user life: {dict(_Place.counts)}")  # with -s: how much the run exercised


# Any batch of groups, however they overlap or repeat, leaves a copy of every picture.

COPIES = (3, 2, 2)  # of each distinct content in the drawn library


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_no_batch_of_groups_removes_a_keeper_or_a_last_copy(
    tmp_path: Path, trash_home: Path, data: st.DataObject
):
    import tempfile

    from photon_index.query.dedupe import TIERS

    base = Path(tempfile.mkdtemp(dir=tmp_path))
    table = ImageTable.create(base / "db", dim=DIM, model="m", model_ref="m")
    contents = [f"content {c} ".encode() * 40 for c in range(len(COPIES))]
    rows = [
        put(base / "lib" / str(i), f"c{c}.jpg", contents[c], DAY * (i + 1), bits=away(c * 20))
        for c, count in enumerate(COPIES)
        for i in range(count)
    ]
    table.upsert(rows)
    paths = [[r.path for r in rows if r.path.endswith(f"/c{c}.jpg")] for c in range(len(COPIES))]
    groups = []
    for _ in range(data.draw(st.integers(1, 6), label="groups")):
        members = data.draw(
            st.sampled_from(paths).flatmap(
                lambda ps: st.lists(st.sampled_from(ps), min_size=2, unique=True)
            )
        )
        keep = data.draw(st.sampled_from(members))
        tier = data.draw(st.sampled_from(TIERS))
        groups.append(DuplicateGroup(tier, keep, "drawn", sorted(set(members) - {keep}), 0.0))
    kind = data.draw(st.sampled_from(["move", "trash"]))
    action = Action(kind, destination=base / "away" if kind == "move" else None, similar=True)
    report = act(groups, table, Journal(table.db_path), action)
    removed = {p for p, _ in report.moved} | set(report.trashed)
    assert not removed & {g.keep for g in groups}
    left = {Path(p).read_bytes() for ps in paths for p in ps if os.path.exists(p)}
    assert left == set(contents)
