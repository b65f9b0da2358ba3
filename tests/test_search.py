"""`photon search` on an index of drawn pictures whose captions are known."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import TINY, run_photon

from photon_index import Index, image_id
from photon_index.embed import Encoders
from photon_index.errors import UsageError
from photon_index.query.search import Filters, Searcher, parse_terms, printable
from photon_index.store.table import ImageTable, Nearest
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


def search_json(db: Path, *args: str | Path) -> dict:
    """`photon search --json`: one object, the score kind once and the hits."""
    result = json.loads(run_photon("search", *args, "--db", db, "--json").stdout)
    assert set(result) == {"score_kind", "hits"}
    return result


def search_hits(db: Path, *args: str | Path) -> list[dict]:
    return search_json(db, *args)["hits"]


def test_text_search_ranks_the_described_picture_first(library) -> None:
    hits_right = 0
    for scene in list(library.scenes.values())[:10]:
        result = search_json(library.db, scene.caption, "-k", "3")
        hits = result["hits"]
        assert len(hits) == 3 and result["score_kind"] == "probability"
        assert 0.0 <= hits[0]["score"] <= 1.0
        assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
        best = library.scenes[hits[0]["path"]]
        hits_right += best == scene or (best.shape, best.colour) == (scene.shape, scene.colour)
    assert hits_right >= 7


def test_image_search_finds_the_picture_itself_first(library) -> None:
    probe = next(iter(library.scenes))
    for args in (["--image", probe], [probe]):
        result = search_json(library.db, *args, "-k", "2")
        hits = result["hits"]
        assert hits[0]["path"] == probe and hits[0]["id"] == image_id(probe)
        assert result["score_kind"] == "cosine" and hits[0]["score"] > 0.999


def test_image_search_with_a_picture_outside_the_index(library, tmp_path) -> None:
    ((outside, _),) = write_pictures(tmp_path, 1, seed=99)
    hits = search_hits(library.db, "--image", outside, "-k", "5")
    assert len(hits) == 5 and outside.name not in {Path(h["path"]).name for h in hits}


def test_combined_query_moves_results(library) -> None:
    plain = [h["path"] for h in search_hits(library.db, "a red circle", "-k", "10")]
    minus = [h["path"] for h in search_hits(library.db, "a red circle", "--sub", "red", "-k", "10")]
    assert plain != minus
    red_plain = sum(library.scenes[p].colour == "red" for p in plain)
    red_minus = sum(library.scenes[p].colour == "red" for p in minus)
    assert red_minus < red_plain


def test_filters_by_folder_date_and_sql(library) -> None:
    under = search_hits(library.db, "a star", "--in", library.photos / "2019", "-k", "50")
    assert len(under) == 30 and all("/2019/" in h["path"] for h in under)
    before = search_hits(library.db, "a star", "--before", "2020-01-01", "-k", "50")
    assert {h["path"] for h in before} == {h["path"] for h in under}
    after = search_hits(library.db, "a star", "--after", "2020-01-01", "-k", "50")
    assert len(after) == 30 and all("/2024/" in h["path"] for h in after)
    none = search_hits(library.db, "a star", "--where", "width > 5000")
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
    searcher = Searcher(table, Encoders(index.load_model(), device="cpu"), index.settings)
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


# --- filtered ANN search ------------------------------------------------------------------


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageTable, np.ndarray]:
    """8,000 random 16-d rows under an IVF index of more partitions than nprobes probes;
    every 1,600th row is under /p/few/, every 10th under /p/tenth/."""
    rows, dim = 8_000, 16
    vectors = np.random.default_rng(5).standard_normal((rows, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = ImageTable.create(tmp_path_factory.mktemp("ann") / "db", dim, "m", "m")
    table.writer.add(_arrow_rows(vectors, table.schema))
    table.dataset.checkout_latest()
    table.build_vector_index(rows_per_partition=80)
    stats = table.dataset.stats.index_stats(table.vector_index())
    assert stats["indices"][0]["num_partitions"] > 20  # more than nprobes below
    return table, vectors


def _folder(i: int) -> str:
    return "few" if i % 1600 == 7 else "tenth" if i % 10 == 3 else "many"


def _arrow_rows(vectors: np.ndarray, schema: pa.Schema) -> pa.Table:
    n, dim = vectors.shape
    columns = {
        "path": pa.array([f"/p/{_folder(i)}/{i}.jpg" for i in range(n)]),
        "content_hash": pa.array([f"{i:064x}" for i in range(n)]),
        "phash": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(n * 8, np.uint8)), 8),
        "file_size": pa.array(np.full(n, 1000, np.int64)),
        "mtime_ns": pa.array(np.full(n, 1_560_000_000 * 10**9, np.int64)),
        "width": pa.array(np.arange(n, dtype=np.int32)),
        "height": pa.array(np.full(n, 30, np.int32)),
        "format": pa.array(["JPEG"] * n),
        "model": pa.array(["m"] * n),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
        "indexed_at": pa.array(np.full(n, np.datetime64("2026-01-01", "us"))).cast(
            pa.timestamp("us", tz="UTC")
        ),
    }
    arrays = [columns.get(f.name, pa.nulls(n, f.type)) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


@pytest.mark.parametrize("exact_below", [20_000, 0])  # the default, and always through the ANN
def test_filtered_ann_search_returns_every_match(partitioned, exact_below: int) -> None:
    table, vectors = partitioned
    how = Nearest(nprobes=20, refine_factor=10, exact_below=exact_below)
    few = Filters(under=Path("/p/few")).sql()
    for seed in range(10):
        query = vectors[seed * 7]
        found = table.nearest(query, 10, how, ["path"], few).column("path").to_pylist()
        assert len(found) == 5 and all(p.startswith("/p/few/") for p in found)


@pytest.mark.parametrize("exact_below", [20_000, 0])
def test_filtered_ann_search_keeps_recall(partitioned, exact_below: int) -> None:
    table, vectors = partitioned
    how = Nearest(nprobes=20, refine_factor=10, exact_below=exact_below)
    ids = np.flatnonzero(np.arange(len(vectors)) % 10 == 3)  # the /p/tenth/ rows
    hits = 0
    for query in vectors[:20]:
        truth = {f"/p/tenth/{i}.jpg" for i in ids[np.argsort(-(vectors[ids] @ query))[:10]]}
        found = table.nearest(query, 10, how, ["path"], Filters(under=Path("/p/tenth")).sql())
        hits += len(truth & set(found.column("path").to_pylist()))
        distances = found.column("_distance").to_pylist()
        assert len(distances) == 10 and distances == sorted(distances)
    assert hits / 200 >= (1.0 if exact_below else 0.97)  # 800 rows kept: exact below 20,000


# --- hostile and extreme input ------------------------------------------------------------

HOSTILE_WHERE = [
    "1=1) OR (1=1",
    "1=1)) OR ((1=1",
    "width >= 0) OR (width >= 0",
    "1=1 --",
    "1=1) OR (1=1 --",
    "1=1 /* ) OR ( */",
    "1=1; SELECT 1",
    "path = 'x') OR ('1' = '1",
    "path = 'x'' ) OR (1=1 OR path = ''y'",
    r"path = E'\') OR (1=1 OR path = (E'",
    r"path = E'\'' ) OR (1=1 OR path = '",
    "$$ ( $$ ) OR (1=1 OR $$ ) $$",
    '"path" = \'x\') OR ("width" >= 0',
    "`path` = 'x') OR (`width` >= 0",
    "width >= 0 ) ) ) OR 1=1",
    "(width >= 0",
]


@pytest.mark.parametrize("where", HOSTILE_WHERE)
def test_a_where_filter_cannot_escape_its_parentheses(partitioned, where: str) -> None:
    """Whatever --where says, --in still holds: refused, or only rows under it."""
    table, vectors = partitioned
    try:
        sql = Filters(under=Path("/p/few"), where=where).sql()
        found = table.nearest(vectors[0], 50, Nearest(20, 10, 20_000), ["path"], sql)
    except UsageError as e:
        assert "\n" not in str(e)
        return
    assert all(p.startswith("/p/few/") for p in found.column("path").to_pylist())


@pytest.mark.parametrize(
    "where",
    [
        "width >= 0",
        "(width >= 0) AND (height = 30)",
        "path LIKE '%(%' OR path = 'it''s )' OR width >= 0",
        "format = 'JP\\' OR width >= 0",
        "path != 'a;b--c/*$'",
    ],
)
def test_ordinary_where_filters_pass(partitioned, where: str) -> None:
    table, vectors = partitioned
    sql = Filters(under=Path("/p/few"), where=where).sql()
    found = table.nearest(vectors[0], 50, Nearest(20, 10, 20_000), ["path"], sql)
    assert 0 < found.num_rows <= 5


@pytest.mark.parametrize(
    ("after", "before", "rows"),
    [
        (date(1, 1, 1), None, 50),
        (None, date(9999, 12, 31), 50),
        (date(1, 1, 1), date(9999, 12, 31), 50),
        (date(9999, 12, 31), None, 0),
        (None, date(1, 1, 1), 0),
        (date(1600, 1, 1), date(2019, 6, 1), 0),
        (date(1600, 1, 1), date(2019, 6, 10), 50),
    ],
)
def test_any_date_a_user_can_type_filters(partitioned, after, before, rows: int) -> None:
    table, vectors = partitioned  # every row's mtime is 2019-06-08
    sql = Filters(after=after, before=before).sql()
    found = table.nearest(vectors[0], 50, Nearest(20, 10, 20_000), ["path"], sql)
    assert found.num_rows == rows


@pytest.mark.parametrize("text", ["a dog " * 60, "海辺で走る白い犬" * 12, "x\0y", "/" * 5000])
def test_long_and_odd_texts_are_texts(text: str) -> None:
    assert len(text.encode()) > 255 or "\0" in text
    (term,) = parse_terms(text)
    assert term.kind == "text" and term.value == text


def test_limit_beyond_the_cap_is_a_usage_error(partitioned, tiny_model, settings) -> None:
    table, _ = partitioned
    searcher = Searcher(table, Encoders(tiny_model, device="cpu"), settings)
    for limit in (0, 10_001, 99999999999999999999999):
        with pytest.raises(UsageError, match="1 to 10,000"):
            searcher.search(parse_terms("a star"), Filters(), limit)


def test_bad_paths_and_numbers_are_one_line_errors(library, tmp_path) -> None:
    cases = [
        (["--image", tmp_path / "missing.jpg"], 2, "no such picture file"),
        (["--image", tmp_path], 2, "no such picture file"),
        (["x", "--in", "/nope"], 2, "no such folder"),
        (["x", "-k", "99999999999999999999999"], 2, "limit"),
        (["x", "-k", "0"], 2, "limit"),
        (["x", "--where", "1=1) OR (1=1"], 2, "unbalanced"),
        (["x", "--json", "-0"], 2, "--print0"),
    ]
    for args, code, words in cases:
        result = run_photon("search", *args, "--db", library.db, check=False)
        assert result.returncode == code, (args, result.stderr)
        assert words in result.stderr and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""


def test_unreadable_image_is_an_image_error(library, tmp_path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a picture")
    result = run_photon("search", "--image", bad, "--db", library.db, check=False)
    assert result.returncode == 4 and str(bad) in result.stderr
    assert result.stderr.count("\n") == 1


def test_extreme_dates_and_long_texts_search(library) -> None:
    every = search_hits(library.db, "a star", "--after", "0001-01-01", "-k", "100")
    assert len(every) == 60
    every = search_hits(library.db, "a star", "--before", "9999-12-31", "-k", "100")
    assert len(every) == 60
    assert search_hits(library.db, "a star", "--after", "9999-12-31") == []
    long_text = "a small red circle on a plain white background, " * 8
    assert len(search_hits(library.db, long_text, "-k", "3")) == 3
    assert len(search_hits(library.db, "赤い丸" * 32, "-k", "3")) == 3


def test_bidirectional_controls_are_escaped_but_emoji_joiners_kept() -> None:
    # U+202E shows "/x/\u202egpj.exe" as "/x/exe.jpg" in a terminal.
    assert printable("/x/\u202egpj.exe") == "/x/\\u202egpj.exe"
    assert printable("/x/\u2066a\u2069.jpg") == "/x/\\u2066a\\u2069.jpg"
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467.jpg"  # joined by U+200D
    assert printable(family) == family


def test_control_characters_in_paths_are_escaped_or_exact(tmp_path) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    pictures = write_pictures(folder, 2, seed=3)
    names = ["new\nline.jpg", "esc\x1b[31m.jpg"]
    for (path, _), name in zip(pictures, names, strict=True):
        path.rename(folder / name)
    db = tmp_path / "db"
    Index(db).update([folder], model=TINY)
    out = run_photon("search", "a star", "--db", db, "--paths").stdout
    assert "\x1b" not in out and sorted(out.splitlines()) == sorted(
        [f"{folder}/esc\\x1b[31m.jpg", f"{folder}/new\\nline.jpg"]
    )
    table = run_photon("search", "a star", "--db", db).stdout
    assert "\x1b" not in table and len(table.splitlines()) == 3
    raw = subprocess.run(
        [sys.executable, "-m", "photon_index", "search", "a star", "--db", str(db), "-0"],
        capture_output=True,
        check=True,
    ).stdout
    assert raw.endswith(b"\0") and sorted(raw.split(b"\0")[:-1]) == sorted(
        os.fsencode(folder / name) for name in names
    )
