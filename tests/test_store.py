"""The images table: one schema, upserts keyed by path, the reads the indexer needs."""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from photon_index.errors import DatabaseError
from photon_index.store.schema import ImageRow
from photon_index.store.table import ImageTable, Nearest


def row(path: str, digest: str = "h1", seed: int = 0, **changes) -> ImageRow:
    vector = np.random.default_rng(seed).normal(size=8).astype(np.float32)
    values = dict(
        path=path,
        content_hash=digest,
        phash=bytes(range(8)),
        file_size=1000,
        mtime_ns=123,
        width=40,
        height=30,
        format="JPEG",
        taken_at=datetime(2021, 7, 14, 15, 30),
        camera=None,
        latitude=-22.95,
        longitude=None,
        model="m",
        embedding=vector / np.linalg.norm(vector),
        indexed_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    return ImageRow(**{**values, **changes})


@pytest.fixture
def table(tmp_path: Path) -> ImageTable:
    return ImageTable.create(tmp_path / "db", dim=8, model="m", model_ref="/models/m")


def test_create_records_the_model_and_reopens(table: ImageTable, tmp_path: Path) -> None:
    again = ImageTable.open(tmp_path / "db")
    assert again is not None
    assert (again.model, again.model_ref, again.dim) == ("m", "/models/m", 8)
    assert ImageTable.open(tmp_path / "nothing-here") is None


def test_rows_round_trip(table: ImageTable) -> None:
    original = row("/a.jpg", "x")
    table.upsert([original])
    (stored,) = table.rows_by_hash(["x"]).values()
    assert stored.phash == original.phash
    assert np.allclose(stored.embedding, original.embedding)
    assert (stored.taken_at, stored.latitude, stored.longitude) == (
        original.taken_at,
        original.latitude,
        None,
    )


def test_upsert_is_keyed_by_path(table: ImageTable) -> None:
    table.upsert([row("/a.jpg", "x"), row("/b.jpg", "y")])
    table.upsert([row("/a.jpg", "z", mtime_ns=999)])
    assert table.count() == 2
    assert table.file_stamps()["/a.jpg"] == (1000, 999)
    assert table.content_hashes() == {"y", "z"}


def test_delete_paths_with_quotes_and_many_values(table: ImageTable) -> None:
    paths = [f"/photos/it's {i}.jpg" for i in range(1200)]
    table.upsert([row(p, str(i)) for i, p in enumerate(paths)])
    table.delete_paths(paths[:1100])
    assert sorted(table.paths()) == sorted(paths[1100:])


def test_optimize_keeps_every_row(table: ImageTable) -> None:
    for i in range(5):
        table.upsert([row(f"/{i}.jpg", str(i))])
    table.optimize()
    assert table.count() == 5


def test_nearest_is_exact_cosine_and_prefiltered(table: ImageTable) -> None:
    rows = [row(f"/{'a' if i % 2 else 'b'}/{i}.jpg", str(i), seed=i) for i in range(40)]
    table.upsert(rows)
    query = rows[7].embedding
    found = table.nearest(query, 5, Nearest(nprobes=1, refine_factor=1), ["path"]).to_pydict()
    cosines = {r.path: float(r.embedding @ query) for r in rows}
    best = sorted(cosines, key=cosines.get, reverse=True)[:5]
    assert found["path"] == best
    assert np.allclose(found["_distance"], [1 - cosines[p] for p in best], atol=1e-5)
    only_b = table.nearest(query, 5, Nearest(1, 1), ["path"], "starts_with(path, '/b/')")
    assert len(only_b) == 5 and all(p.startswith("/b/") for p in only_b["path"].to_pylist())


def test_reads_after_a_write_see_it(table: ImageTable) -> None:
    """Reads and writes go through different handles on the same files (see table.py)."""
    before = table.version
    table.upsert([row("/a.jpg", "x")])
    assert table.version > before and table.count() == 1
    assert ImageTable.open(table.db_path).count() == 1


def test_compaction_merges_small_fragments_and_leaves_large_ones(
    table: ImageTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("photon_index.store.table.FRAGMENT_ROWS", 10)
    table.upsert([row(f"/big/{i}.jpg", f"b{i}") for i in range(12)])
    for i in range(5):
        table.upsert([row(f"/{i}.jpg", str(i))])
    large = table.dataset.get_fragments()[0]
    table.optimize()
    fragments = table.dataset.get_fragments()
    assert [f.fragment_id for f in fragments][:1] == [large.fragment_id]  # not rewritten
    assert [f.count_rows() for f in fragments] == [12, 5]


def test_compactions_in_a_run_keep_merging_and_optimize_indexes_the_new_rows(
    table: ImageTable,
) -> None:
    table.add([row(f"/old/{i}.jpg", f"o{i}", seed=i) for i in range(300)])
    table.build_vector_index(rows_per_partition=100)
    index = table.vector_index()
    for i in range(3):  # three compactions of a run, each after a few commits
        table.add([row(f"/new/{i}/{j}.jpg", f"n{i}-{j}", seed=1000 + 10 * i + j) for j in range(2)])
        table.add([row(f"/new/{i}/2.jpg", f"n{i}-2", seed=1000 + 10 * i + 2)])
        table.compact()
    assert [f.count_rows() for f in table.dataset.get_fragments()] == [300, 9]
    assert table.dataset.stats.index_stats(index)["num_unindexed_rows"] == 9
    table.optimize()
    assert table.dataset.stats.index_stats(index)["num_unindexed_rows"] == 0
    assert table.count() == 309


class _FailingWriter:
    """The lancedb table, failing every write as the engine does on a full disk."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def add(self, *_: object, **__: object) -> None:
        raise self.error

    delete = create_index = add


DISK_FULL = RuntimeError(
    "lance error: LanceError(IO): No space left on device (os error 28), "
    "/root/.cargo/registry/src/lance-file-13.0.0/src/writer/structural.rs:258:9"
)


def test_a_failed_write_is_one_line_and_the_table_stays_usable(table: ImageTable) -> None:
    table.add([row("/a.jpg", "x")])
    version = table.version
    for write in (
        lambda: table.add([row("/b.jpg", "y")]),
        lambda: table.delete_paths(["/a.jpg"]),
        lambda: table.build_vector_index(10),
    ):
        table._writer = _FailingWriter(DISK_FULL)  # type: ignore[assignment]
        with pytest.raises(DatabaseError, match="free some disk space") as raised:
            write()
        assert "\n" not in str(raised.value) and ".rs:" not in str(raised.value)
    assert (table.version, table.count()) == (version, 1)
    table.add([row("/b.jpg", "y")])  # the next write reopens the writer and succeeds
    assert table.count() == 2


def test_an_engine_error_that_is_not_the_disk_keeps_its_traceback(table: ImageTable) -> None:
    table._writer = _FailingWriter(RuntimeError("lance error: Internal error: a bug"))  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="a bug"):
        table.add([row("/b.jpg", "y")])


def test_a_read_only_table_is_one_line(table: ImageTable, monkeypatch: pytest.MonkeyPatch) -> None:
    table.add([row(f"/{i}.jpg", str(i)) for i in range(2)])
    table.add([row("/2.jpg", "2")])
    error = OSError(30, "LanceError(IO): Read-only file system (os error 30)")

    def refuse(*_: object, **__: object) -> None:
        raise error

    monkeypatch.setattr(type(table.dataset.optimize), "compact_files", refuse)
    with pytest.raises(DatabaseError, match=r"cannot compact .* make the folder writable"):
        table.compact()
    assert table.count() == 3


@pytest.mark.parametrize("damage", ["empty", "no-versions", "truncated-manifest"])
def test_a_table_that_cannot_be_opened_is_damaged_not_missing(
    table: ImageTable, damage: str
) -> None:
    table.add([row("/a.jpg", "x")])
    folder = table.db_path / "images.lance"
    if damage == "truncated-manifest":
        for manifest in (folder / "_versions").glob("*.manifest"):
            manifest.write_bytes(manifest.read_bytes()[:10])
    else:
        shutil.rmtree(folder / "_versions" if damage == "no-versions" else folder)
        folder.mkdir(exist_ok=True)
    with pytest.raises(DatabaseError, match=r"is damaged or unreadable.*move it away"):
        ImageTable.open(table.db_path)


def test_damaged_data_is_one_line_and_a_bad_filter_is_not(table: ImageTable) -> None:
    table.add([row("/a.jpg", "x")])
    with pytest.raises(ValueError, match="No field named"):
        table.columns(["path"], where="nope > 1")  # the caller's mistake, as it was
    next((table.db_path / "images.lance" / "data").glob("*.lance")).unlink()
    with pytest.raises(DatabaseError, match="damaged"):
        table.columns(["path"], where="width > 1")
    reopened = ImageTable.open(table.db_path)  # a handle caches what it has read
    assert reopened is not None
    with pytest.raises(DatabaseError, match="damaged"):
        reopened.check()
    with pytest.raises(DatabaseError, match="damaged"):
        reopened.optimize()


def test_a_remote_index_that_cannot_be_read_is_not_called_damaged(tmp_path: Path) -> None:
    # A short outage of the object store read as "damaged: move it away", advice that
    # would throw a good index away.
    from photon_index.store.location import Remote, Storage
    from photon_index.store.table import _damaged

    remote = Remote("s3://pics/db", Storage(), tmp_path)
    message = _damaged(remote, OSError("S3 error: Error performing GET after 3 retries"))
    assert "damaged" not in message and "move it away" not in message
    assert "check that the storage is reachable" in message
    assert "move it away" in _damaged(tmp_path, OSError("(os error 2)"))


@pytest.mark.parametrize("root", ["s3://", "s3:///pictures"])
def test_an_s3_root_without_a_bucket_is_a_usage_error(root: str) -> None:
    from photon_index.errors import UsageError
    from photon_index.ingest.run import check_roots

    with pytest.raises(UsageError, match="names no bucket"):
        check_roots([root], None, forget_missing=False)


def test_mount_points_are_read_with_their_escapes(tmp_path: Path, monkeypatch):
    from photon_index.store import mounts

    info = tmp_path / "mountinfo"
    info.write_bytes(
        b"22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        b"45 27 0:40 / /media/My\\040Photos\\134old rw - tmpfs none rw\n"
    )
    monkeypatch.setattr(mounts, "MOUNTINFO", info)
    assert mounts.mount_points() == {"/proc", "/media/My Photos\\old"}
    monkeypatch.setattr(mounts, "MOUNTINFO", tmp_path / "none")
    assert mounts.mount_points() is None


def test_the_mounts_holding_pictures_are_recorded_until_forgotten(tmp_path: Path, monkeypatch):
    from photon_index.store import mounts

    lib = tmp_path / "lib"
    (lib / "nas" / "2020").mkdir(parents=True)
    (tmp_path / "usb").mkdir()
    (lib / "usb").symlink_to(tmp_path / "usb")  # a share linked into the library
    now = {"/", str(tmp_path), str(lib / "nas"), str(tmp_path / "usb"), "/unrelated"}
    monkeypatch.setattr(mounts, "mount_points", lambda: set(now))
    paths = [str(lib / "nas" / "2020" / "a.jpg"), str(lib / "usb" / "b.jpg"), "s3://b/c.jpg"]
    mounts.record_mounts(tmp_path, paths, [lib], forget_missing=False)
    assert sorted(mounts.read_mounts(tmp_path)) == [str(lib / "nas"), str(tmp_path / "usb")]

    now -= {str(lib / "nas"), str(tmp_path / "usb")}
    assert sorted(mounts.unmounted(tmp_path)) == [str(lib / "nas"), str(tmp_path / "usb")]
    mounts.record_mounts(tmp_path, paths, [lib], forget_missing=False)
    # Kept while away; the files' folders now lie on the disk below (recorded, harmless).
    assert set(mounts.read_mounts(tmp_path)) == {
        str(lib / "nas"),
        str(tmp_path / "usb"),
        str(tmp_path),
    }
    away = mounts.unmounted(tmp_path)
    assert mounts.mount_of(paths[1], away, os.path.realpath) == str(tmp_path / "usb")
    assert mounts.mount_of(str(lib / "c.jpg"), away, os.path.realpath) is None
    mounts.record_mounts(tmp_path, paths, [lib], forget_missing=True)
    assert mounts.read_mounts(tmp_path) == [str(tmp_path)]
    for bad in ("{", '{"mounts": "abc"}', '{"mounts": [1]}'):
        (tmp_path / mounts.MOUNTS_FILE).write_text(bad)
        with pytest.raises(DatabaseError, match="move it away"):
            mounts.read_mounts(tmp_path)


@pytest.mark.parametrize("gone", ["deleted", "moved"])
def test_a_table_deleted_or_moved_meanwhile_is_not_written_again(tmp_path: Path, gone: str):
    table = ImageTable.create(tmp_path / "db", dim=8, model="m", model_ref="/models/m")
    table.add([row("/a.jpg")])
    if gone == "deleted":
        shutil.rmtree(tmp_path / "db")
    else:
        (tmp_path / "db").rename(tmp_path / "elsewhere")
    with pytest.raises(DatabaseError, match="deleted or moved while photon was using it"):
        table.add([row("/b.jpg", "h2")])
    with pytest.raises(DatabaseError, match="deleted or moved"):
        table.delete_paths(["/a.jpg"])
    assert not (tmp_path / "db").exists()


def test_a_reader_waits_for_a_table_being_created(tmp_path: Path):
    import threading

    (tmp_path / "db" / "images.lance").mkdir(parents=True)  # created, not yet committed
    creating = threading.Timer(
        0.3, lambda: ImageTable.create(tmp_path / "db", dim=8, model="m", model_ref="m")
    )
    creating.start()
    try:
        assert ImageTable.open(tmp_path / "db") is not None
    finally:
        creating.join()
