"""Duplicates in three tiers, the keeper each group suggests, and moving or deleting the
rest safely: the library on hand-made tables, then `photon dedupe` end to end. The
safety of the actions themselves (journal, trash, undo, aliases, kills) is
tests/test_actions.py."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from dataclasses import replace
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, run_photon
from PIL import Image, ImageDraw, ImageEnhance

from photon_index import Index
from photon_index.actions import Action, ActionReport, Interrupted, Journal, act
from photon_index.actions import files as dedupe_files
from photon_index.errors import UsageError
from photon_index.hashing import content_hash, hamming
from photon_index.query import dedupe
from photon_index.query.dedupe import (
    DuplicateGroup,
    cosine_pairs,
    find_duplicates,
    hamming_pairs,
)
from photon_index.store.schema import ImageRow
from photon_index.store.table import ImageTable
from photon_index.synthetic import write_pictures

DIM = 4
BASE = 0x0123_4567_89AB_CDEF  # a pHash; BASE ^ (2**k - 1) is k bits away from it


def row(path: str, **changes) -> ImageRow:
    # Unless a test says otherwise, a pHash and an embedding of its own per path: random,
    # so far from every other one.
    seed = int.from_bytes(hashlib.blake2b(path.encode(), digest_size=8).digest(), "big")
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    values = dict(
        path=path,
        content_hash=path,
        phash=changes.pop("bits", seed).to_bytes(8, "big"),
        file_size=1000,
        mtime_ns=1_600_000_000_000_000_000,
        width=400,
        height=300,
        format="JPEG",
        taken_at=None,
        camera=None,
        latitude=None,
        longitude=None,
        model="m",
        embedding=vector / np.linalg.norm(vector),
        indexed_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    return ImageRow(**{**values, **changes})


def away(bits: int) -> int:
    """A pHash `bits` bits away from BASE."""
    return BASE ^ ((1 << bits) - 1)


@pytest.fixture
def table(tmp_path: Path) -> ImageTable:
    return ImageTable.create(tmp_path / "db", dim=DIM, model="m", model_ref="m")


# Hand-made rows have random embeddings unless a test sets them: only their pHashes
# make them near copies, unless a test asks for the embeddings' check too (near).
ANY = -1.0


def find(
    table: ImageTable,
    *rows: ImageRow,
    distance: int = 6,
    cosine: float | None = None,
    near: float = ANY,
):
    table.upsert(list(rows))
    return find_duplicates(
        table, phash_distance=distance, dhash_distance=8, near_cosine=near, similar_cosine=cosine
    )


def summary(groups: list[DuplicateGroup]) -> list[tuple[str, str, list[str]]]:
    return [(g.tier, g.keep, g.duplicates) for g in groups]


def test_exact_copies_keep_the_oldest(table: ImageTable):
    groups = find(
        table,
        row("/b.jpg", content_hash="same", mtime_ns=3000),  # ranked to the µs
        row("/a.jpg", content_hash="same", mtime_ns=2 * 10**18),
        row("/c.jpg", content_hash="same", mtime_ns=2000),
    )
    assert summary(groups) == [("exact", "/c.jpg", ["/a.jpg", "/b.jpg"])]
    assert groups[0].distance == 0
    assert groups[0].reason == "oldest (modified 1970-01-01 00:00)"


def test_identical_copies_keep_the_first_path(table: ImageTable):
    (group,) = find(table, row("/b.jpg", content_hash="x"), row("/a.jpg", content_hash="x"))
    assert (group.keep, group.reason) == ("/a.jpg", "first by path (otherwise identical)")


@pytest.mark.parametrize(
    ("better", "worse", "reason"),
    [
        ({"width": 4000, "height": 3000}, {}, "largest picture (4000×3000)"),  # noqa: RUF001
        ({"file_size": 2_500_000}, {"file_size": 900}, "largest file (2.4 MB)"),
        (
            {"taken_at": datetime(2019, 5, 1, 12, 0)},
            {"taken_at": datetime(2020, 1, 1)},
            "oldest (taken 2019-05-01 12:00)",
        ),
    ],
)
def test_keeper_order_pixels_then_file_size_then_age(table: ImageTable, better, worse, reason):
    groups = find(
        table,
        row("/a.jpg", bits=BASE, **worse),
        row("/b.jpg", bits=away(1), **better),
    )
    assert summary(groups) == [("near", "/b.jpg", ["/a.jpg"])]
    assert groups[0].reason == reason


def test_age_is_taken_at_else_mtime(table: ImageTable):
    (group,) = find(
        table,
        row("/taken.jpg", bits=BASE, taken_at=datetime(2020, 1, 1)),
        row("/untagged.jpg", bits=away(1), mtime_ns=1_500_000_000 * 10**9),  # July 2017
    )
    assert (group.keep, group.reason) == ("/untagged.jpg", "oldest (modified 2017-07-14 02:40)")


def test_near_threshold_is_inclusive(table: ImageTable):
    table.upsert([row("/a.jpg", bits=BASE), row("/b.jpg", bits=away(5))])
    assert find(table, distance=5)[0].distance == 5
    assert find(table, distance=4) == []


def test_a_chain_is_cut_at_the_keepers_threshold(table: ImageTable):
    # a-b and b-c are 4 bits apart, a-c 8: union-find links all three, but c is beyond
    # the threshold of the keeper a, so it is left alone (listed as beyond), not removed.
    groups = find(
        table,
        row("/a.jpg", bits=BASE, width=4000, height=3000),
        row("/b.jpg", bits=BASE ^ 0xF),
        row("/c.jpg", bits=BASE ^ 0xFF),
    )
    assert summary(groups) == [("near", "/a.jpg", ["/b.jpg"])]
    assert (groups[0].distance, groups[0].beyond) == (4, ["/c.jpg"])


def test_first_by_path_is_first_by_path(table: ImageTable):
    # np.argsort(paths) was used as each path's rank: of /b, /c, /a it kept /c.
    (group,) = find(table, *(row(p, content_hash="x") for p in ["/b.jpg", "/c.jpg", "/a.jpg"]))
    assert (group.keep, group.duplicates) == ("/a.jpg", ["/b.jpg", "/c.jpg"])
    assert group.reason == "first by path (otherwise identical)"


def test_first_by_path_in_a_large_table(table: ImageTable):
    rng = np.random.default_rng(3)
    paths = [f"/lib/{rng.integers(10**9):09d}/{i}.jpg" for i in range(1500)]
    groups = find(table, *(row(p, content_hash=f"h{i % 300}") for i, p in enumerate(paths)))
    assert len(groups) == 300
    for group in groups:
        assert group.keep == min([group.keep, *group.duplicates])


def test_every_duplicate_is_within_the_threshold_of_its_keeper(
    table: ImageTable, monkeypatch: pytest.MonkeyPatch
):
    # Random walks of pHashes and embeddings: neighbours are close, walks drift far, so
    # union-find chains them into clusters much wider than the thresholds.
    monkeypatch.setattr(dedupe, "_PAIRS_PER_READ", 7)  # near pairs' embeddings in blocks
    rng = np.random.default_rng(11)
    rows, bits, vector = [], BASE, rng.normal(size=DIM)
    for i in range(2000):
        if i % 40 == 0:
            bits, vector = int(rng.integers(2**63)), rng.normal(size=DIM)
        bits ^= 1 << int(rng.integers(64))
        vector = vector + rng.normal(scale=0.15, size=DIM)
        unit = (vector / np.linalg.norm(vector)).astype(np.float32)
        rows.append(row(f"/walk/{i:05d}.jpg", bits=bits, embedding=unit))
    by_path = {r.path: r for r in rows}
    groups = find(table, *rows, distance=6, cosine=0.95, near=0.9)
    assert {g.tier for g in groups} == {"near", "similar"}
    assert any(g.beyond for g in groups), "the walks chain beyond the thresholds"
    for group in groups:
        keep = by_path[group.keep]
        for path in group.duplicates:
            if group.tier == "near":
                assert hamming(keep.phash, by_path[path].phash) <= 6
                assert float(keep.embedding @ by_path[path].embedding) >= 0.9 - 1e-6
            else:
                assert float(keep.embedding @ by_path[path].embedding) >= 0.95 - 1e-6
        assert not set(group.beyond) & set(group.duplicates)
    duplicates = [p for g in groups for p in g.duplicates]
    assert len(duplicates) == len(set(duplicates))


def test_two_paths_of_one_file_are_one_picture(tmp_path: Path, table: ImageTable):
    # Indexed once through a symlinked folder and once for real, plus a hard link far
    # away: three paths of one file, which only a real copy duplicates.
    real, day = tmp_path / "real", 86_400 * 10**9
    rows = [put(real, "a.jpg", b"picture a", day), put(real, "b.jpg", b"picture b", day)]
    (tmp_path / "link").symlink_to(real)
    hard = tmp_path / "far" / "away" / "hard.jpg"
    hard.parent.mkdir(parents=True)
    os.link(real / "a.jpg", hard)
    copy = put(tmp_path / "z", "copy.jpg", b"picture a", day)
    aliases = [tmp_path / "link" / "a.jpg", tmp_path / "link" / "b.jpg", hard]
    rows += [replace(rows[0 if p.stem != "b" else 1], path=str(p)) for p in aliases]
    (group,) = find(table, *rows, copy)
    assert (group.tier, group.keep, group.duplicates) == ("exact", str(hard), [copy.path])
    assert group.aliases == [str(tmp_path / "link" / "a.jpg"), str(real / "a.jpg")]


def test_tiers_nest_and_no_file_is_a_duplicate_twice(table: ImageTable):
    groups = find(
        table,
        row("/copy-1.jpg", content_hash="x", bits=BASE, mtime_ns=1),
        row("/copy-2.jpg", content_hash="x", bits=BASE, mtime_ns=2),
        row("/large.jpg", bits=away(3), width=4000, height=3000),
        row("/scene.jpg", bits=away(40), embedding=row("/large.jpg").embedding),
        row("/other.jpg", bits=away(20)),
        cosine=0.99,
    )
    assert summary(groups) == [
        ("exact", "/copy-1.jpg", ["/copy-2.jpg"]),
        ("near", "/large.jpg", ["/copy-1.jpg"]),  # the exact group's keeper stands for it
        ("similar", "/large.jpg", ["/scene.jpg"]),
    ]
    duplicates = [path for group in groups for path in group.duplicates]
    assert len(duplicates) == len(set(duplicates))
    assert groups[2].distance == pytest.approx(0, abs=1e-4)


def test_similar_tier_only_when_asked(table: ImageTable):
    vector = row("/a.jpg").embedding
    rows = [row("/a.jpg", bits=BASE), row("/b.jpg", bits=away(30), embedding=vector)]
    assert find(table, *rows) == []
    (group,) = find(table, cosine=0.9)
    assert (group.tier, group.duplicates) == ("similar", ["/b.jpg"])


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_near_copies_must_look_alike_too(table: ImageTable):
    # The pHash sees only grey: a recoloured picture can be a bit or two from the
    # original while its embedding is far. Only a copy close by both is a near copy.
    rows = [
        row("/original.jpg", bits=BASE, embedding=unit(1, 0, 0, 0), width=800, height=600),
        row("/resized.jpg", bits=away(2), embedding=unit(1, 0.2, 0, 0)),  # cosine 0.98
        row("/recoloured.jpg", bits=away(1), embedding=unit(0.3, 1, 0, 0)),  # cosine 0.29
    ]
    (group,) = find(table, *rows, near=0.9)
    assert (group.keep, group.duplicates) == ("/original.jpg", ["/resized.jpg"])
    assert group.beyond == []  # never paired with anything: not even linked
    assert group.evidence["/resized.jpg"]["cosine"] == pytest.approx(0.98, abs=0.01)
    (by_phash_alone,) = find(table, near=ANY)
    assert by_phash_alone.duplicates == ["/recoloured.jpg", "/resized.jpg"]


@pytest.mark.parametrize("tier", ["exact", "near"])
def test_a_real_file_is_kept_before_a_symlink(tmp_path: Path, table: ImageTable, tier: str):
    # A file symlink first by path (or a larger picture) was kept and the real file
    # deleted: the picture then lived only outside the library, where the link led.
    day = 86_400 * 10**9
    real = put(tmp_path / "L" / "2023", "beach.jpg", b"beach", day, bits=BASE)
    data = b"beach" if tier == "exact" else b"a larger beach"
    outside = put(tmp_path / "usb", "beach.jpg", data, day, bits=away(2), width=4000)
    link = tmp_path / "L" / "2019" / "beach-link.jpg"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside.path)
    (group,) = find(table, real, replace(outside, path=str(link)))
    assert (group.tier, group.keep, group.duplicates) == (tier, real.path, [str(link)])
    assert group.reason == "the real file (the others are symbolic links)"


@pytest.mark.parametrize(("year", "kept"), [(2263, "/2020.jpg"), (1600, "/far.jpg")])
def test_camera_dates_beyond_the_nanosecond_range_rank_by_their_date(
    table: ImageTable, year: int, kept: str
):
    # Nanoseconds since 1970 overflow past 2262 and before 1678: a picture "taken" in
    # 2263 was ranked (and reported) as taken in 1678, and kept as the oldest.
    (group,) = find(
        table,
        row("/far.jpg", bits=BASE, taken_at=datetime(year, 6, 1, 12, 30)),
        row("/2020.jpg", bits=away(1), taken_at=datetime(2020, 1, 1)),
    )
    assert group.keep == kept
    day = "2020-01-01 00:00" if kept == "/2020.jpg" else f"{year}-06-01 12:30"
    assert group.reason == f"oldest (taken {day})"


def test_an_empty_table_has_no_duplicates(table: ImageTable):
    assert find(table, cosine=0.5) == []


@pytest.mark.parametrize(
    ("distance", "near", "cosine"), [(-1, ANY, None), (64, ANY, None), (6, ANY, 1.5), (6, 2, None)]
)
def test_bad_thresholds_are_usage_errors(table: ImageTable, distance, near, cosine):
    with pytest.raises(UsageError):
        find(table, distance=distance, near=near, cosine=cosine)


def all_hamming_pairs(hashes: np.ndarray, max_distance: int) -> set[tuple[int, int]]:
    return {
        (i, j)
        for i, j in combinations(range(len(hashes)), 2)
        if int(hashes[i] ^ hashes[j]).bit_count() <= max_distance
    }


@pytest.mark.parametrize("max_distance", [0, 1, 2, 4, 6, 8, 10, 12])
def test_hamming_pairs_finds_exactly_the_pairs_all_pairs_finds(max_distance: int):
    rng = np.random.default_rng(max_distance)
    seeds = rng.integers(0, 2**64, 60, dtype=np.uint64)
    # Clusters of copies 0 to 2·max_distance bits from their seed, so many pairs sit
    # right at the threshold on either side.
    flips = rng.random((300, 64)) < rng.integers(0, 2 * max_distance + 2, (300, 1)) / 64
    noise = np.packbits(flips, axis=1).view(">u8").reshape(-1).astype(np.uint64)
    hashes = np.unique(np.concatenate([seeds, seeds[rng.integers(0, 60, 300)] ^ noise]))
    found = hamming_pairs(hashes, max_distance)
    assert {(int(i), int(j)) for i, j in found} == all_hamming_pairs(hashes, max_distance)
    assert len(found) == len({tuple(p) for p in found.tolist()})


def test_cosine_pairs_in_blocks_matches_the_full_product(monkeypatch: pytest.MonkeyPatch):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    full = vectors @ vectors.T
    expected = {(i, j) for i, j in combinations(range(50), 2) if full[i, j] >= 0.3}
    monkeypatch.setattr(dedupe, "_BLOCK_FLOATS", 7 * 50)  # several blocks of 7 rows
    assert {(int(i), int(j)) for i, j in cosine_pairs(vectors, 0.3)} == expected


# Moving and deleting: real files whose rows record their real size and mtime.


def put(folder: Path, name: str, data: bytes, mtime_ns: int, **changes) -> ImageRow:
    """A real file and its row, with the real content hash unless changes say otherwise."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    changes.setdefault("content_hash", content_hash(data))
    return row(str(path), file_size=len(data), mtime_ns=mtime_ns, **changes)


@pytest.fixture
def library(tmp_path: Path, table: ImageTable) -> Path:
    """Two exact copies and a near duplicate of one picture, and a distinct picture."""
    photos = tmp_path / "photos"
    day = 86_400 * 10**9
    big = {"width": 800, "height": 600}
    rows = [
        put(photos, "keeper.jpg", b"same", 19_000 * day, bits=BASE, **big),
        put(photos, "copy.jpg", b"same", 20_000 * day, bits=BASE, **big),
        put(photos, "album/small.jpg", b"small", 19_000 * day, bits=away(2)),
        put(photos, "other.jpg", b"other", 19_000 * day, bits=away(30)),
    ]
    table.upsert(rows)
    return photos


def groups_of(table: ImageTable) -> list[DuplicateGroup]:
    return find_duplicates(
        table, phash_distance=6, dhash_distance=8, near_cosine=ANY, similar_cosine=None
    )


def move_duplicates(groups: list[DuplicateGroup], table: ImageTable, dest: Path) -> ActionReport:
    return act(groups, table, Journal(table.db_path), Action("move", destination=dest))


def delete_duplicates(groups: list[DuplicateGroup], table: ImageTable) -> ActionReport:
    return act(groups, table, Journal(table.db_path), Action("delete"))


def under(destination: Path, path: Path) -> Path:
    return destination.joinpath(*path.parts[1:])


def test_move_keeps_absolute_paths_below_the_destination(
    tmp_path: Path, table: ImageTable, library: Path
):
    dest = tmp_path / "dest"
    report = move_duplicates(groups_of(table), table, dest)

    moved = [library / "copy.jpg", library / "album" / "small.jpg"]
    assert report.moved == [(str(p), str(under(dest, p))) for p in moved]
    assert (report.deleted, report.failed) == ([], [])
    assert under(dest, library / "album" / "small.jpg").read_bytes() == b"small"
    assert not any(p.exists() for p in moved)
    assert sorted(table.paths()) == [str(library / "keeper.jpg"), str(library / "other.jpg")]
    assert groups_of(table) == []


def test_move_never_overwrites(tmp_path: Path, table: ImageTable, library: Path):
    dest = tmp_path / "dest"
    taken = under(dest, library / "copy.jpg")
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"someone else's")

    report = move_duplicates(groups_of(table), table, dest)

    assert report.failed == [
        (str(library / "copy.jpg"), f"{taken} already exists; not overwritten")
    ]
    assert taken.read_bytes() == b"someone else's"
    assert (library / "copy.jpg").read_bytes() == b"same"
    assert str(library / "copy.jpg") in set(table.paths())
    assert [src for src, _ in report.moved] == [str(library / "album" / "small.jpg")]


def test_move_across_filesystems_copies_then_deletes(
    tmp_path: Path, table: ImageTable, library: Path, monkeypatch: pytest.MonkeyPatch
):
    def cross_device(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    dest = tmp_path / "dest"
    report = move_duplicates(groups_of(table), table, dest)
    assert len(report.moved) == 2 and report.failed == []
    assert under(dest, library / "copy.jpg").read_bytes() == b"same"
    assert not (library / "copy.jpg").exists()
    assert not list(dest.rglob(".*.partial"))


def test_an_interrupted_copy_loses_nothing_and_a_rerun_finishes(
    tmp_path: Path, table: ImageTable, library: Path, monkeypatch: pytest.MonkeyPatch
):
    def cross_device(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    copies = 0
    real_copy = shutil.copy2

    def copy_then_interrupt(source, target, **kwargs):
        nonlocal copies
        copies += 1
        if copies == 2:
            Path(target).write_bytes(b"sa")  # half-way through the second file
            raise KeyboardInterrupt
        return real_copy(source, target, **kwargs)

    monkeypatch.setattr(os, "link", cross_device)
    monkeypatch.setattr(shutil, "copy2", copy_then_interrupt)
    dest = tmp_path / "dest"
    groups = groups_of(table)
    # Ctrl-C: the batch is finished, and the user told what had gone before the stop.
    stopped = "interrupted: 1 file was moved to .* `photon dedupe --undo` puts them back"
    with pytest.raises(Interrupted, match=stopped):
        move_duplicates(groups, table, dest)

    first, second = library / "copy.jpg", library / "album" / "small.jpg"
    assert under(dest, first).read_bytes() == b"same" and not first.exists()
    assert second.read_bytes() == b"small" and not under(dest, second).exists()
    assert str(first) not in set(table.paths())  # rows of files already moved are dropped

    monkeypatch.setattr(shutil, "copy2", real_copy)
    report = move_duplicates(groups_of(table), table, dest)
    assert report.moved == [(str(second), str(under(dest, second)))]
    assert under(dest, second).read_bytes() == b"small"
    assert not list(dest.rglob(".*.partial"))


def test_a_target_that_is_the_source_itself_is_never_finished_by_deleting_it(
    tmp_path: Path, table: ImageTable, library: Path
):
    # A hard link at the target used to be taken for an interrupted move and the source
    # unlinked: with --move-to / the target *is* the source, and the file was deleted.
    dest = tmp_path / "dest"
    copy = library / "copy.jpg"
    under(dest, copy).parent.mkdir(parents=True)
    os.link(copy, under(dest, copy))

    report = move_duplicates(groups_of(table), table, dest)
    assert report.failed == [(str(copy), f"{under(dest, copy)} already exists; not overwritten")]
    assert copy.read_bytes() == b"same"
    with pytest.raises(FileExistsError):
        dedupe_files.move_file(copy, copy)
    assert copy.read_bytes() == b"same"


def test_changed_and_missing_duplicates_are_left_alone(table: ImageTable, library: Path):
    groups = groups_of(table)
    (library / "copy.jpg").unlink()
    (library / "album" / "small.jpg").write_bytes(b"edited since it was indexed")

    report = delete_duplicates(groups, table)

    assert report.deleted == []
    assert dict(report.failed) == {
        str(library / "copy.jpg"): "it no longer exists",
        str(library / "album" / "small.jpg"): (
            "it changed since it was indexed: run `photon index` first"
        ),
    }
    assert (library / "album" / "small.jpg").exists()


def test_nothing_goes_when_its_keeper_is_gone(tmp_path: Path, table: ImageTable, library: Path):
    groups = groups_of(table)
    (library / "keeper.jpg").unlink()

    report = move_duplicates(groups, table, tmp_path / "dest")

    assert report.moved == []
    why = f"its keeper {library / 'keeper.jpg'} no longer exists"
    assert report.failed == [
        (str(library / "copy.jpg"), why),
        (str(library / "album/small.jpg"), why),
    ]
    assert (library / "copy.jpg").exists() and (library / "album" / "small.jpg").exists()


def test_delete_removes_duplicates_and_their_rows(table: ImageTable, library: Path):
    report = delete_duplicates(groups_of(table), table)
    gone = [str(library / "copy.jpg"), str(library / "album" / "small.jpg")]
    assert (report.deleted, report.moved, report.failed) == (gone, [], [])
    assert not any(Path(p).exists() for p in gone)
    assert sorted(p.name for p in library.rglob("*.jpg")) == ["keeper.jpg", "other.jpg"]
    assert sorted(table.paths()) == [str(library / "keeper.jpg"), str(library / "other.jpg")]


# `photon dedupe` end to end: the real CLI on a folder of pictures and edited copies.


def dedupe_json(*args: str | Path, check: bool = True) -> dict:
    return json.loads(run_photon("dedupe", *args, "--json", check=check).stdout)


@pytest.fixture
def indexed(tmp_path: Path) -> tuple[Path, Path, dict[str, set[str]]]:
    """An indexed folder and the duplicates each original should be grouped with."""
    photos = tmp_path / "photos"
    originals = [path for path, _ in write_pictures(photos, 8, seed=7)]
    edits = photos / "edits"
    edits.mkdir()
    shutil.copy(originals[0], edits / "copy.jpg")
    shutil.copy(originals[0], photos / "copy-2.jpg")
    with Image.open(originals[1]) as im:
        im.resize((160, 120), Image.Resampling.LANCZOS).save(edits / "resized.jpg", quality=90)
    with Image.open(originals[2]) as im:
        im.save(edits / "reencoded.jpg", quality=30)
    with Image.open(originals[3]) as im:
        ImageEnhance.Brightness(im).enhance(1.12).save(edits / "brightened.jpg", quality=90)
    with Image.open(originals[4]) as im:
        exif = Image.Exif()
        exif[0x0112] = 6  # stored turned a quarter left; viewers turn it back upright
        im.transpose(Image.Transpose.ROTATE_90).save(edits / "rotated.jpg", quality=90, exif=exif)
    db = tmp_path / "db"
    run_photon("index", photos, "--db", db, "--model", TINY)
    expected = {
        "exact": {str(originals[0]), str(edits / "copy.jpg"), str(photos / "copy-2.jpg")},
        "resized": {str(originals[1]), str(edits / "resized.jpg")},
        "reencoded": {str(originals[2]), str(edits / "reencoded.jpg")},
        "brightened": {str(originals[3]), str(edits / "brightened.jpg")},
        "rotated": {str(originals[4]), str(edits / "rotated.jpg")},
    }
    return photos, db, expected


def members(group: dict) -> set[str]:
    return {group["keep"], *group["duplicates"]}


def stored(db: Path) -> set[str]:
    table = Index(db).table()
    return set() if table is None else set(table.paths())


@pytest.mark.slow
def test_cli_reports_exact_and_near_groups(indexed):
    photos, db, expected = indexed
    report = dedupe_json("--db", db)
    assert [g["tier"] for g in report["groups"]] == ["exact"] + ["near"] * 4
    found = sorted(sorted(members(g)) for g in report["groups"])
    assert found == sorted(sorted(group) for group in expected.values())
    resized = next(g for g in report["groups"] if members(g) == expected["resized"])
    assert resized["keep"] == str(photos / "picture-00001.jpg")
    assert resized["reason"] == "largest picture (320×240)"  # noqa: RUF001
    reencoded = next(g for g in report["groups"] if members(g) == expected["reencoded"])
    assert reencoded["reason"].startswith("largest file")
    assert all(g["distance"] <= 6 for g in report["groups"])
    assert (report["moved"], report["deleted"], report["failed"]) == ([], [], [])
    assert len(stored(db)) == 8 + 6  # reporting changes nothing


@pytest.mark.slow
def test_cli_distance_and_similar_options(indexed):
    _, db, _ = indexed
    strict = dedupe_json("--db", db, "--distance", "0")
    assert all(g["distance"] == 0 for g in strict["groups"])
    assert sum(g["tier"] == "exact" for g in strict["groups"]) == 1
    plain = dedupe_json("--db", db)["groups"]
    loose = dedupe_json("--db", db, "--similar", "--cosine", "0.5")["groups"]
    similar = [g for g in loose if g["tier"] == "similar"]
    assert similar, "the tiny model puts some distinct scenes above 0.5"
    assert [g for g in loose if g["tier"] != "similar"] == plain  # tiers 1-2 unchanged
    duplicates = [path for group in loose for path in group["duplicates"]]
    assert len(duplicates) == len(set(duplicates))


@pytest.mark.slow
def test_cli_move_to(tmp_path: Path, indexed):
    photos, db, _ = indexed
    dest = tmp_path / "dest"
    report = dedupe_json("--db", db, "--move-to", dest)
    moved = {src for src, _ in report["moved"]}
    assert moved == {d for g in report["groups"] for d in g["duplicates"]}
    assert len(moved) == 2 + 4 and report["failed"] == []
    for src, target in report["moved"]:
        assert Path(target) == under(dest, Path(src)) and Path(target).is_file()
        assert not Path(src).exists()
    assert stored(db) == {str(p) for p in photos.rglob("*.jpg")}
    assert dedupe_json("--db", db)["groups"] == []


@pytest.mark.slow
def test_cli_recoloured_pictures_are_not_near_copies(tmp_path: Path):
    # A white triangle on purple and an orange one on blue are 2 pHash bits apart (the
    # pHash sees grey): `--delete --permanent --yes` deleted one. Real copies of one of
    # them (resized, re-encoded, 2.5 % cropped) must stay its near copies.
    lib, copies = tmp_path / "lib", tmp_path / "lib" / "copies"
    copies.mkdir(parents=True)
    triangle = [(160, 60), (520, 300), (80, 420)]
    for name, shape, ground in [
        ("white_on_purple", (245, 245, 245), (125, 45, 175)),
        ("orange_on_blue", (245, 135, 20), (35, 75, 215)),
    ]:
        im = Image.new("RGB", (640, 480), ground)
        ImageDraw.Draw(im).polygon(triangle, fill=shape)
        im.save(lib / f"{name}.jpg", quality=92)
    with Image.open(lib / "white_on_purple.jpg") as im:
        im.resize((320, 240), Image.Resampling.LANCZOS).save(copies / "resized.jpg", quality=90)
        im.save(copies / "reencoded.jpg", quality=40)
        im.crop((16, 12, 624, 468)).save(copies / "cropped.jpg", quality=90)
    expected = sorted(str(p) for p in copies.iterdir())
    db = tmp_path / "db"
    run_photon("index", lib, "--db", db, "--model", TINY)

    report = dedupe_json("--db", db, "--delete", "--permanent", "--yes")

    (group,) = report["groups"]
    assert (group["tier"], group["keep"]) == ("near", str(lib / "white_on_purple.jpg"))
    assert sorted(report["deleted"]) == expected and report["failed"] == []
    assert (lib / "white_on_purple.jpg").exists() and (lib / "orange_on_blue.jpg").exists()


@pytest.mark.slow
def test_cli_permanent_delete_needs_yes(indexed):
    photos, db, _ = indexed
    before = sorted(photos.rglob("*.jpg"))
    refused = run_photon("dedupe", "--db", db, "--delete", "--permanent", check=False)
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1 and "--yes" in refused.stderr
    assert sorted(photos.rglob("*.jpg")) == before

    report = dedupe_json("--db", db, "--delete", "--permanent", "--yes")
    assert len(report["deleted"]) == 6 and report["failed"] == [] and report["trashed"] == []
    assert sorted(photos.rglob("*.jpg")) == sorted(set(before) - set(map(Path, report["deleted"])))
    assert stored(db) == {str(p) for p in photos.rglob("*.jpg")}
