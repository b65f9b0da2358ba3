"""`photon search` on an index of drawn pictures whose captions are known."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, run_photon

from photon_index import Index
from photon_index.query.search import Searcher, parse_terms
from photon_index.synthetic import Scene, write_pictures

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Library:
    photos: Path
    db: Path
    scenes: dict[str, Scene]  # path -> what it shows


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    root = tmp_path_factory.mktemp("library")
    photos = root / "photos"
    (photos / "2019").mkdir(parents=True)
    (photos / "2024").mkdir(parents=True)
    old = write_pictures(photos / "2019", 30, seed=1)
    new = write_pictures(photos / "2024", 30, seed=2)
    for path, _ in old:  # mtime stands in for the date: these have no EXIF
        os.utime(path, (1_560_000_000, 1_560_000_000))  # June 2019
    db = root / "db"
    Index(db).update([photos], model=TINY)
    return Library(photos, db, {str(p): s for p, s in old + new})


def search_json(db: Path, *args: str | Path) -> list[dict]:
    return json.loads(run_photon("search", *args, "--db", db, "--json").stdout)


def test_text_search_ranks_the_described_picture_first(library) -> None:
    hits_right = 0
    for scene in list(library.scenes.values())[:10]:
        hits = search_json(library.db, scene.caption, "-k", "3")
        assert len(hits) == 3 and hits[0]["score_kind"] == "probability"
        assert 0.0 <= hits[0]["score"] <= 1.0
        assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
        best = library.scenes[hits[0]["path"]]
        hits_right += best == scene or (best.shape, best.colour) == (scene.shape, scene.colour)
    assert hits_right >= 7


def test_image_search_finds_the_picture_itself_first(library) -> None:
    probe = next(iter(library.scenes))
    for args in (["--image", probe], [probe]):
        hits = search_json(library.db, *args, "-k", "2")
        assert hits[0]["path"] == probe
        assert hits[0]["score_kind"] == "cosine" and hits[0]["score"] > 0.999


def test_image_search_with_a_picture_outside_the_index(library, tmp_path) -> None:
    ((outside, _),) = write_pictures(tmp_path, 1, seed=99)
    hits = search_json(library.db, "--image", outside, "-k", "5")
    assert len(hits) == 5 and outside.name not in {Path(h["path"]).name for h in hits}


def test_combined_query_moves_results(library) -> None:
    plain = [h["path"] for h in search_json(library.db, "a red circle", "-k", "10")]
    minus = [h["path"] for h in search_json(library.db, "a red circle", "--sub", "red", "-k", "10")]
    assert plain != minus
    red_plain = sum(library.scenes[p].colour == "red" for p in plain)
    red_minus = sum(library.scenes[p].colour == "red" for p in minus)
    assert red_minus < red_plain


def test_filters_by_folder_date_and_sql(library) -> None:
    under = search_json(library.db, "a star", "--in", library.photos / "2019", "-k", "50")
    assert len(under) == 30 and all("/2019/" in h["path"] for h in under)
    before = search_json(library.db, "a star", "--before", "2020-01-01", "-k", "50")
    assert {h["path"] for h in before} == {h["path"] for h in under}
    after = search_json(library.db, "a star", "--after", "2020-01-01", "-k", "50")
    assert len(after) == 30 and all("/2024/" in h["path"] for h in after)
    none = search_json(library.db, "a star", "--where", "width > 5000")
    assert none == []


def test_paths_output_is_one_path_per_line(library) -> None:
    out = run_photon("search", "a green square", "--db", library.db, "--paths", "-k", "4").stdout
    lines = out.strip().splitlines()
    assert len(lines) == 4 and all(Path(line).is_file() for line in lines)


def test_table_output_is_readable(library) -> None:
    out = run_photon("search", "a green square", "--db", library.db, "-k", "2").stdout
    header, first, _ = out.strip().splitlines()
    assert header.split() == ["#", "match", "date", "path"]
    assert first.split()[0] == "1" and first.split()[-1].endswith(".jpg")


def test_bad_sql_filter_is_one_line(library) -> None:
    result = run_photon("search", "x", "--db", library.db, "--where", "width >< 3", check=False)
    assert result.returncode == 2 and "filter" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_ann_index_keeps_recall(library, tmp_path, monkeypatch) -> None:
    """Past the threshold `photon index` builds an ANN index; results barely change."""
    monkeypatch.setenv("PHOTON_SEARCH_ANN_THRESHOLD", "20")
    monkeypatch.setenv("PHOTON_SEARCH_ROWS_PER_PARTITION", "20")
    db = tmp_path / "db"
    index = Index(db)
    index.update([library.photos], model=TINY)
    assert index.info().indices, "no ANN index was built"
    table = index.table()
    stored = table.columns(["path", "embedding"]).to_pydict()
    vectors = np.asarray(stored["embedding"], dtype=np.float32)
    searcher = Searcher(table, index.load_model(), index.settings)
    found = 0
    for scene in list(library.scenes.values())[:5]:
        query = searcher.query_vector(parse_terms(scene.caption))
        exact = {stored["path"][i] for i in np.argsort(-(vectors @ query))[:10]}
        found += len(exact & {h.path for h in index.search(scene.caption, limit=10).hits})
    assert found >= 45, f"ANN recall@10 {found / 50:.2f}"


def test_parse_terms_weights_and_kinds(tmp_path) -> None:
    picture = tmp_path / "x.jpg"
    picture.write_bytes(b"")
    terms = parse_terms("horse", add=["2:stripes", str(picture)], sub=["0.5:field"])
    assert [(t.kind, t.value, t.weight) for t in terms] == [
        ("text", "horse", 1.0),
        ("text", "stripes", 2.0),
        ("image", str(picture), 1.0),
        ("text", "field", -0.5),
    ]


def test_a_search_never_imports_lancedb(library) -> None:
    """`import lancedb` costs about a second (its namespace client); searches read the
    table through pylance, so a `photon search` process must not pay it."""
    search = ["search", "a red star", "--db", str(library.db), "--paths"]
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "photon_index", *search],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "photon_index.store.table" in imported
    assert "lancedb" not in imported and "lance_namespace" not in imported
