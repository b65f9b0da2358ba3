"""The library API a long-lived program (the web server) stands on: Index's encoders,
search by uploaded pictures and by vector, embeddings, pictures by id, duplicates the
user judged, and the progress an indexing run publishes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import TINY, run_photon
from PIL import Image
from PIL.ExifTags import IFD, Base

import photon_index
from photon_index import (
    DuplicateGroup,
    Embeddings,
    Filters,
    Hit,
    ImageRecord,
    Index,
    LibraryStatus,
    NotFoundError,
    RunProgress,
    SearchResults,
    image_id,
)
from photon_index.embed import encoder as encoder_module
from photon_index.errors import ImageError, UsageError
from photon_index.ingest.progress import PROGRESS_FILE, ProgressFile, read_progress
from photon_index.ingest.run import IndexReport
from photon_index.query.dismissed import DISMISSED_FILE
from photon_index.synthetic import write_pictures

pytestmark = pytest.mark.slow

CAMERA = "Canon EOS R5"
TAKEN = datetime(2020, 5, 17, 9, 30)


@dataclass(frozen=True)
class Library:
    photos: Path
    db: Path
    pictures: list[Path]  # drawn, all distinct
    copy: Path  # an exact copy of pictures[0]
    canon: Path  # a picture with EXIF camera and date


def add_exif_picture(folder: Path, seed: int) -> Path:
    """A drawn picture saved with an EXIF camera and date."""
    ((drawn, _),) = write_pictures(folder / f"exif-{seed}", 1, seed=seed)
    exif = Image.Exif()
    exif[Base.Make] = "Canon"
    exif[Base.Model] = CAMERA
    exif.get_ifd(IFD.Exif)[Base.DateTimeOriginal] = TAKEN.strftime("%Y:%m:%d %H:%M:%S")
    target = folder / "canon.jpg"
    with Image.open(drawn) as image:
        image.save(target, quality=90, exif=exif)
    shutil.rmtree(drawn.parent)
    return target


def make_library(root: Path, count: int = 12) -> Library:
    photos = root / "photos"
    pictures = [path for path, _ in write_pictures(photos, count, seed=5)]
    copy = Path(shutil.copy(pictures[0], photos / "copy.jpg"))
    canon = add_exif_picture(photos, seed=77)
    db = root / "db"
    Index(db).update([photos], model=TINY)
    return Library(photos, db, pictures, copy, canon)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    """Shared by the tests that only read it."""
    return make_library(tmp_path_factory.mktemp("library"))


@pytest.fixture
def own_library(tmp_path: Path) -> Library:
    """For a test that changes the files or the database."""
    return make_library(tmp_path, count=6)


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The model files every ONNX session is opened on, from now on."""
    opened: list[Path] = []
    real = encoder_module.open_session

    def counting(path: Path, *args: object, **kwargs: object) -> object:
        opened.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(encoder_module, "open_session", counting)
    return opened


def reencoded(path: Path) -> bytes:
    """The picture's pixels in new bytes: not in the index, so the model must see it."""
    out = io.BytesIO()
    with Image.open(path) as image:
        image.save(out, "JPEG", quality=80)
    return out.getvalue()


# --- encoders kept by a long-lived Index ---------------------------------------------------


def test_encoders_are_built_once_across_many_searches(library, sessions) -> None:
    index = Index(library.db)
    for text in ["a red circle", "a blue square", "a green star", "a ring", "a cross"]:
        assert index.search(text, limit=3).hits
    assert [p.name for p in sessions] == ["text_model.onnx"]
    for path in library.pictures[:3]:
        assert index.search(pictures=[reencoded(path)], limit=1).hits
    index.search_vector(index.embed_texts(["a star"]).vectors[0], limit=1)
    index.embed_images([library.pictures[0]])
    assert [p.name for p in sessions] == ["text_model.onnx", "vision_model.onnx"]


def test_concurrent_searches_share_one_encoder(library, sessions) -> None:
    index = Index(library.db)
    queries = ["a red circle", "a blue square"] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda q: index.search(q, limit=5), queries))
    assert [p.name for p in sessions] == ["text_model.onnx"]
    assert all(r == results[i % 2] for i, r in enumerate(results))


# --- search ------------------------------------------------------------------------------


def test_search_by_uploaded_picture_finds_it_first(library) -> None:
    index = Index(library.db)
    for path in library.pictures[1:4]:
        stored = index.search(pictures=[path.read_bytes()], limit=3)
        assert stored.score == "cosine" and stored.hits[0].path == str(path)
        assert stored.hits[0].score > 0.999  # the stored embedding of the same bytes
        fresh = index.search(pictures=[reencoded(path)], limit=3)
        assert fresh.hits[0].path == str(path) and fresh.hits[0].id == image_id(str(path))


def test_uploaded_pictures_combine_with_text(library) -> None:
    index = Index(library.db)
    probe = library.pictures[2]
    alone = index.search(pictures=[probe.read_bytes()], limit=5)
    mixed = index.search("a red circle", pictures=[probe.read_bytes()], limit=5)
    assert mixed.score == "cosine"
    assert [(h.path, h.score) for h in mixed.hits] != [(h.path, h.score) for h in alone.hits]


def test_bad_uploaded_bytes_are_an_image_error(library) -> None:
    index = Index(library.db)
    for data in (b"", b"not a picture at all", library.pictures[0].read_bytes()[:300]):
        with pytest.raises(ImageError) as caught:
            index.search(pictures=[data])
        assert str(caught.value).startswith("uploaded picture 1: ")
        assert "\n" not in str(caught.value)


def test_search_vector(library) -> None:
    index = Index(library.db)
    probe = library.pictures[3]
    vector = index.embed_images([probe]).vectors[0]
    results = index.search_vector(vector * 7.5, limit=4)  # any length: it is normalised
    assert results.score == "cosine" and len(results.hits) == 4
    assert results.hits[0].path == str(probe) and results.hits[0].score > 0.9999
    assert [h.rank for h in results.hits] == [1, 2, 3, 4]
    texts = index.embed_texts(["a red circle"]).vectors[0]
    by_text = index.search("a red circle", limit=4)
    assert [h.path for h in index.search_vector(texts, limit=4).hits] == [
        h.path for h in by_text.hits
    ]
    for bad in (np.zeros(128), np.ones(64), np.ones((2, 128)), np.full(128, np.nan)):
        with pytest.raises(UsageError):
            index.search_vector(bad)


def test_camera_and_min_score_filters(library) -> None:
    index = Index(library.db)
    canon = index.search("a star", limit=50, filters=Filters(camera=CAMERA))
    assert [h.path for h in canon.hits] == [str(library.canon)]
    assert index.search("a star", filters=Filters(camera="Nikon D850")).hits == []
    probe = library.pictures[0]
    close = index.search(pictures=[probe.read_bytes()], limit=50, filters=Filters(min_score=0.999))
    assert {h.path for h in close.hits} == {str(probe), str(library.copy)}
    assert all(h.score >= 0.999 for h in close.hits)


def test_results_convert_to_dict_and_arrow(library) -> None:
    results = Index(library.db).search("a star", limit=50)
    data = results.to_dict()
    assert data["score_kind"] == "probability" and len(data["hits"]) == len(results.hits)
    assert list(data["hits"][0]) == [
        "id",
        "rank",
        "path",
        "score",
        "distance",
        "taken_at",
        "width",
        "height",
        "at",
    ]
    assert json.loads(json.dumps(data)) == data  # JSON-ready as it is
    dated = next(h for h in data["hits"] if h["path"] == str(library.canon))
    assert dated["taken_at"] == TAKEN.isoformat()
    table = results.to_arrow()
    assert isinstance(table, pa.Table) and table.num_rows == len(results.hits)
    assert table.column_names == list(data["hits"][0])
    assert table.schema.metadata == {b"score_kind": b"probability"}
    assert table.column("id").to_pylist() == [h.id for h in results.hits]


def test_to_pandas_says_what_it_needs(library, monkeypatch) -> None:
    results = Index(library.db).search("a star", limit=3)
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    with pytest.raises(ImportError, match="pip install pandas"):
        results.to_pandas()
    monkeypatch.undo()
    pytest.importorskip("pandas")
    assert list(results.to_pandas()["path"]) == [h.path for h in results.hits]


def test_by_date_puts_the_newest_first() -> None:
    def hit(rank: int, year: int | None) -> Hit:
        taken = datetime(year, 1, 1) if year else None
        return Hit(f"{rank:016x}", rank, f"/p/{rank}.jpg", 1 - rank / 10, rank / 10, taken, 1, 1)

    results = SearchResults("cosine", [hit(1, 2001), hit(2, None), hit(3, 2020), hit(4, 2001)])
    ordered = results.by_date()
    assert [h.rank for h in ordered.hits] == [3, 1, 4, 2]
    assert ordered.score == "cosine" and [h.rank for h in results.hits] == [1, 2, 3, 4]


def test_search_json_is_one_object(library) -> None:
    out = run_photon("search", "a star", "--db", library.db, "--json", "-k", "3").stdout
    result = json.loads(out)
    assert result["score_kind"] == "probability" and len(result["hits"]) == 3
    assert all("score_kind" not in h for h in result["hits"])
    assert all(h["id"] == image_id(h["path"]) for h in result["hits"])
    filtered = run_photon(
        "search", "a star", "--db", library.db, "--json", "--camera", CAMERA, "--min-score", "0"
    ).stdout
    assert [h["path"] for h in json.loads(filtered)["hits"]] == [str(library.canon)]


# --- embeddings ----------------------------------------------------------------------------


def test_embed_texts(library) -> None:
    index = Index(library.db)
    texts = ["a red circle", "a blue square on a white background", "", "海辺"]
    embedded = index.embed_texts(texts, batch_size=3)
    assert isinstance(embedded, Embeddings) and embedded.model == TINY
    assert embedded.vectors.shape == (4, 128) and embedded.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(embedded.vectors, axis=1), 1, atol=1e-5)
    assert embedded.inputs == texts
    one_by_one = index.embed_texts(texts, batch_size=1).vectors
    assert np.allclose(one_by_one, embedded.vectors, atol=1e-5)
    table = embedded.to_arrow()
    assert table.column_names == ["input", "embedding"] and table.num_rows == 4
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 128)
    assert table.schema.metadata == {b"model": TINY.encode()}
    assert np.allclose(np.asarray(table.column("embedding").to_pylist()), embedded.vectors)
    assert index.embed_texts([]).vectors.shape == (0, 128)
    with pytest.raises(UsageError):
        index.embed_texts("a red circle")
    with pytest.raises(UsageError):
        index.embed_texts(["x"], batch_size=0)


def test_embed_images_match_the_index(library) -> None:
    index = Index(library.db)
    probe = library.pictures[4]
    embedded = index.embed_images([probe, str(probe), probe.read_bytes()])
    assert embedded.vectors.shape == (3, 128) and embedded.model == TINY
    assert embedded.inputs == [str(probe), str(probe), "<bytes>"]
    assert np.allclose(np.linalg.norm(embedded.vectors, axis=1), 1, atol=1e-5)
    stored = index.table().rows_by_hash([index.image(image_id(str(probe))).content_hash])
    (row,) = stored.values()
    assert np.allclose(embedded.vectors, row.embedding, atol=1e-5)
    assert embedded.to_arrow().num_rows == 3
    with pytest.raises(ImageError, match="<bytes>"):
        index.embed_images([probe, b"junk"])
    with pytest.raises(UsageError, match="no such picture file"):
        index.embed_images([library.photos / "missing.jpg"])


def test_embeddings_before_the_first_run_use_the_configured_model(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PHOTON_MODEL_NAME", TINY)
    index = Index(tmp_path / "db")
    assert index.embed_texts(["a red circle"]).model == TINY
    assert not (tmp_path / "db").exists()


# --- pictures by id ------------------------------------------------------------------------


def test_image_id_is_a_hash_of_the_path() -> None:
    path = "/photos/2024/IMG_0001.jpg"
    assert image_id(path) == hashlib.sha256(path.encode()).hexdigest()[:16]
    odd = os.fsdecode(b"/photos/caf\xe9.jpg")  # not UTF-8: the file system's bytes
    assert image_id(odd) == hashlib.sha256(b"/photos/caf\xe9.jpg").hexdigest()[:16]


def test_image_by_id(library) -> None:
    index = Index(library.db)
    record = index.image(image_id(str(library.canon)))
    assert isinstance(record, ImageRecord)
    stat = library.canon.stat()
    assert record.id == image_id(str(library.canon)) and record.path == str(library.canon)
    assert (record.file_size, record.width, record.height) == (stat.st_size, 320, 240)
    assert record.mtime == datetime.fromtimestamp(stat.st_mtime_ns / 1e9, timezone.utc)
    assert (record.camera, record.taken_at, record.format) == (CAMERA, TAKEN, "JPEG")
    assert record.indexed_at.tzinfo is not None and len(record.content_hash) == 32
    for unknown in ["0" * 16, "", "../../etc/passwd", "0x" + "0" * 14, image_id("/nope.jpg")]:
        assert index.image(unknown) is None
    assert Index(library.db.parent / "no-db").image(record.id) is None


def test_image_ids_follow_the_table(own_library) -> None:
    """The id map is rebuilt when the table changes: a new picture is found, a gone one is not."""
    index = Index(own_library.db)
    gone = own_library.pictures[1]
    assert index.image(image_id(str(gone))) is not None
    gone.unlink()
    ((added, _),) = write_pictures(own_library.photos / "new", 1, seed=31)
    index.update([own_library.photos])
    assert index.image(image_id(str(gone))) is None
    assert index.image(image_id(str(added))).path == str(added)


def test_similar(library) -> None:
    index = Index(library.db)
    probe = library.pictures[0]
    results = index.similar(image_id(str(probe)), limit=5)
    paths = [h.path for h in results.hits]
    assert str(probe) not in paths and len(paths) == 5
    assert paths[0] == str(library.copy) and results.hits[0].score > 0.999  # same bytes
    assert [h.rank for h in results.hits] == [1, 2, 3, 4, 5] and results.score == "cosine"
    inside = index.similar(image_id(str(probe)), limit=50, filters=Filters(camera=CAMERA))
    assert [h.path for h in inside.hits] == [str(library.canon)]
    with pytest.raises(NotFoundError) as caught:
        index.similar("0" * 16)
    assert caught.value.exit_code == 1 and "no picture with id" in str(caught.value)


def test_duplicates_of(library) -> None:
    index = Index(library.db)
    (group,) = index.duplicates_of(image_id(str(library.copy)))
    assert group.tier == "exact" and {group.keep, *group.duplicates} == {
        str(library.pictures[0]),
        str(library.copy),
    }
    assert index.duplicates_of(image_id(str(library.pictures[0]))) == [group]
    assert index.duplicates_of(image_id(str(library.canon))) == []
    with pytest.raises(NotFoundError):
        index.duplicates_of("f" * 16)


# --- duplicates the user judged ------------------------------------------------------------


def test_with_keeper() -> None:
    group = DuplicateGroup("near", "/a.jpg", "largest file (2 MB)", ["/b.jpg", "/c.jpg"], 3.0)
    chosen = group.with_keeper("/c.jpg")
    assert (chosen.keep, chosen.duplicates, chosen.reason) == (
        "/c.jpg",
        ["/a.jpg", "/b.jpg"],
        "chosen by you",
    )
    assert (chosen.tier, chosen.distance) == ("near", 3.0)
    assert group.with_keeper("/a.jpg").duplicates == ["/b.jpg", "/c.jpg"]
    with pytest.raises(UsageError, match="not in this group"):
        group.with_keeper("/d.jpg")


def members(group: DuplicateGroup) -> set[str]:
    return {group.keep, *group.duplicates}


def groups_with(index: Index, path: Path) -> list[DuplicateGroup]:
    return [g for g in index.dedupe() if str(path) in members(g)]


def test_a_chosen_keeper_is_the_one_kept(own_library, tmp_path) -> None:
    index = Index(own_library.db)
    (group,) = groups_with(index, own_library.copy)
    chosen = group.with_keeper(str(own_library.copy))
    report = index.move_duplicates([chosen], tmp_path / "moved")
    assert [source for source, _ in report.moved] == [str(own_library.pictures[0])]
    assert own_library.copy.exists() and not own_library.pictures[0].exists()


def test_dismissed_duplicates_never_come_back(own_library) -> None:
    index = Index(own_library.db)
    original = own_library.pictures[0]
    (group,) = groups_with(index, own_library.copy)
    index.dismiss_duplicates(group)
    # Not as exact copies, nor as near copies in the looser tier.
    assert groups_with(index, original) == groups_with(Index(own_library.db), original) == []
    index.dismiss_duplicates(group)  # again: nothing new to remember
    assert len(json.loads((own_library.db / DISMISSED_FILE).read_text())["groups"]) == 1

    # By content: moved, renamed and indexed again, still dismissed; the CLI agrees.
    (own_library.photos / "album").mkdir()
    renamed = own_library.copy.rename(own_library.photos / "album" / "renamed.jpg")
    index.update([own_library.photos])
    assert groups_with(index, renamed) == []
    dedupe = json.loads(run_photon("dedupe", "--db", own_library.db, "--json").stdout)
    assert not any(str(renamed) in members(DuplicateGroup(**g)) for g in dedupe["groups"])

    # A picture nobody judged (a smaller copy) brings them back, with it.
    small = own_library.photos / "small.jpg"
    with Image.open(original) as image:
        image.resize((image.width // 2, image.height // 2)).save(small, quality=70)
    index.update([own_library.photos])
    (back,) = groups_with(index, small)
    assert back.tier == "near" and members(back) == {str(original), str(renamed), str(small)}


def test_dismissing_a_group_that_changed_is_refused(own_library) -> None:
    index = Index(own_library.db)
    (group,) = groups_with(index, own_library.copy)
    own_library.copy.unlink()
    index.update([own_library.photos])
    with pytest.raises(UsageError, match="no longer in the index"):
        index.dismiss_duplicates(group)


# --- status and progress -------------------------------------------------------------------


def test_status_of_a_finished_run_lists_its_failures(tmp_path) -> None:
    photos = tmp_path / "photos"
    write_pictures(photos, 4, seed=9)
    bad = photos / "broken.jpg"
    bad.write_bytes(b"This is not a picture.\n")
    db = tmp_path / "db"
    index = Index(db)
    assert index.status().last_run is None and not index.status().exists
    before = datetime.now(timezone.utc)
    index.update([photos], model=TINY)
    status = index.status()
    assert isinstance(status, LibraryStatus) and status.rows == 4 and status.model == TINY
    run = status.last_run
    assert isinstance(run, RunProgress)
    assert (run.state, run.running, run.pid) == ("finished", False, os.getpid())
    assert (run.discovered, run.done, run.indexed, run.failed) == (5, 5, 4, 1)
    assert [f.path for f in run.failures] == [str(bad)] and run.failures[0].error
    assert before <= run.started_at <= run.updated_at <= datetime.now(timezone.utc)
    again = Index(db)
    again.update([photos])
    assert again.status().last_run.skipped == 4


def test_progress_is_published_at_most_once_a_second(tmp_path, monkeypatch) -> None:
    writes: list[str] = []
    monkeypatch.setattr(
        "photon_index.ingest.progress.write_atomic", lambda path, write: writes.append("w")
    )
    published = ProgressFile(tmp_path)
    report = IndexReport()
    for _ in range(500):
        report.discovered += 1
        published.update(report)
    assert len(writes) == 1
    published.update(report, now=True)
    published.end("failed", "disk full")
    assert len(writes) == 3


def test_failures_are_capped(tmp_path) -> None:
    from photon_index.ingest import Failure

    odd = os.fsdecode(b"/p/caf\xe9.jpg")  # not UTF-8: the file system's bytes
    failures = [Failure(odd, "bad"), *(Failure(f"/p/{i}", "bad") for i in range(1_499))]
    report = IndexReport(failed=1_500, failures=failures)
    published = ProgressFile(tmp_path)
    published.update(report)
    published.end("interrupted")
    run = read_progress(tmp_path)
    assert run.failures[0].path == odd
    assert (run.state, run.failed, len(run.failures), run.running) == (
        "interrupted",
        1_500,
        1_000,
        False,
    )


def test_a_running_indexer_shows_and_a_killed_one_does_not(tmp_path) -> None:
    photos = tmp_path / "photos"
    write_pictures(photos, 300, seed=12)
    db = tmp_path / "db"
    command = [sys.executable, "-m", "photon_index", "index", str(photos), "--db", str(db)]
    command += ["--model", TINY, "--batch-size", "1", "--workers", "1", "--json"]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while (run := read_progress(db)) is None or run.done < 1:
            assert child.poll() is None, "the run ended before it was seen running"
            assert time.monotonic() < deadline, "no progress published within 2 minutes"
            time.sleep(0.02)
        assert (run.state, run.running, run.pid) == ("running", True, child.pid)
        assert Index(db).status().last_run.running
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    run = Index(db).status().last_run
    assert run.state == "running" and not run.running  # it never wrote its end
    assert json.loads((db / PROGRESS_FILE).read_text())["state"] == "running"


# --- the package -------------------------------------------------------------------------------


def test_the_api_types_are_exported() -> None:
    for name in [
        "Filters",
        "Hit",
        "SearchResults",
        "DuplicateGroup",
        "Embeddings",
        "ImageRecord",
        "LibraryStatus",
        "RunProgress",
        "NotFoundError",
        "image_id",
    ]:
        assert name in photon_index.__all__ and getattr(photon_index, name)
