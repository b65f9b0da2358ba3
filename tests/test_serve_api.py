"""The web app's JSON API and pages through FastAPI's TestClient, on the demo library;
every line of the security list: token, host, same origin, no CORS, CSP, ids only,
upload limits, and a 4xx with a message (never a 500) for bad input."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from servelib import DemoLibrary, make_demo

from photon_index import Index, image_id
from photon_index.config import Settings
from photon_index.serve import forms
from photon_index.serve.app import create_app
from photon_index.serve.forms import SearchForm, parse_box
from photon_index.serve.security import CSP, allowed_hosts, session_value

pytestmark = pytest.mark.slow

BASE = "http://127.0.0.1:8750"
TOKEN = "a-long-enough-test-token"
STATIC = Path(__file__).parent.parent / "photon_index" / "serve" / "static"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoLibrary:
    return make_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def client(demo: DemoLibrary) -> Iterator[TestClient]:
    with TestClient(create_app(demo.index()), base_url=BASE) as client:
        yield client


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[tuple[DemoLibrary, TestClient]]:
    """A demo library of its own, for a test that changes it."""
    demo = make_demo(tmp_path / "demo")
    with TestClient(create_app(demo.index()), base_url=BASE) as client:
        yield demo, client


def error_of(response: httpx.Response, status: int) -> str:
    """The one-line message of an API error, after checking its status."""
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert message and "\n" not in message
    return message


# --- search ---------------------------------------------------------------------------


def test_health_says_the_index_is_readable(client: TestClient, demo: DemoLibrary) -> None:
    health = client.get("/api/health").json()
    assert health == {
        "ok": True,
        "database": "readable",
        "model": "siglip-tiny-shapes",
        "rows": 64,
        "version": demo.index().info().version,
    }


def test_health_of_a_missing_index_is_503_without_its_path(tmp_path: Path) -> None:
    with TestClient(create_app(Index(tmp_path / "nothing")), base_url=BASE) as client:
        response = client.get("/api/health")
    assert error_of(response, 503) == "no index yet"
    assert str(tmp_path) not in response.text


def test_text_search_finds_the_drawn_picture_first(client: TestClient, demo: DemoLibrary) -> None:
    caption, path = demo.right_caption()
    result = client.get("/api/search", params={"q": caption, "k": 5}).json()
    assert result["score_kind"] == "probability" and len(result["hits"]) == 5
    first = result["hits"][0]
    assert (first["path"], first["id"]) == (path, image_id(path))
    assert first["taken_at"].startswith("202")  # the demo's EXIF dates


def test_plus_and_minus_terms_combine(client: TestClient, demo: DemoLibrary) -> None:
    caption, _ = demo.right_caption()
    combined = client.get("/api/search", params={"q": f"{caption} +red -2:circle"}).json()
    assert combined["score_kind"] == "cosine"
    assert parse_box("horse  +stripes -2:green field") == ("horse", ["stripes"], ["2:green field"])
    assert parse_box("-grass") == (None, [], ["grass"])
    assert parse_box("t-shirt - x") == ("t-shirt - x", [], [])


def test_filters_and_sort(client: TestClient, demo: DemoLibrary) -> None:
    copies = str(demo.pictures / "copies")
    under = client.get("/api/search", params={"q": "a star", "k": 50, "in": copies}).json()
    assert under["hits"] and all(h["path"].startswith(copies + "/") for h in under["hits"])
    dated = client.get(
        "/api/search",
        params={"q": "a star", "k": 100, "after": "2023-01-01", "before": "2024-01-01"},
    ).json()["hits"]
    assert dated and all("2023-" <= h["taken_at"] < "2024-" for h in dated)
    camera = client.get(
        "/api/search", params={"q": "a star", "k": 100, "camera": "Photon Lens Two"}
    ).json()["hits"]
    assert camera and all(demo.index().image(h["id"]).camera == "Photon Lens Two" for h in camera)
    best = client.get("/api/search", params={"q": "a star", "k": 100, "min_score": 0.05}).json()
    assert best["hits"] and all(h["score"] >= 0.05 for h in best["hits"])
    by_date = client.get("/api/search", params={"q": "a star", "k": 30, "sort": "date"}).json()
    days = [h["taken_at"] for h in by_date["hits"] if h["taken_at"]]
    assert days == sorted(days, reverse=True)


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"q": "star", "k": 0}, 422, "k"),
        ({"q": "star", "k": 10_001}, 422, "k"),
        ({"q": "star", "after": "yesterday"}, 422, "after"),
        ({"q": "star", "min_score": "nan"}, 422, "min_score"),
        ({"q": "star", "sort": "size"}, 422, "sort"),
        ({}, 422, "q"),
        ({"q": "  "}, 400, "nothing to search for"),
        ({"q": "star", "in": "/no/such/folder"}, 200, ""),
        ({"q": "star", "in": "../../"}, 400, "full path"),  # not the server's folder's
        ({"q": "9" * 400 + ":red"}, 400, "weight"),  # inf: NaN scores, no hits
        ({"q": "star +1001:red"}, 400, "weight"),
    ],
)
def test_bad_search_parameters_are_4xx_with_a_message(
    client: TestClient, params: dict, status: int, message: str
) -> None:
    response = client.get("/api/search", params=params)
    if status == 200:
        assert response.json()["hits"] == []
    else:
        assert message in error_of(response, status)


def test_a_search_term_never_makes_the_server_read_a_file(
    client: TestClient, demo: DemoLibrary
) -> None:
    # The CLI takes a term naming a file as that picture; the server takes it as text.
    indexed = next(iter(demo.scenes))
    for q in (indexed, "/etc/passwd"):
        result = client.get("/api/search", params={"q": q}).json()
        assert result["score_kind"] == "probability", q  # a text's score
        assert not [h for h in result["hits"] if h["path"] == indexed and h["score"] > 0.99]


def test_upload_search_finds_the_picture_itself_first(
    client: TestClient, demo: DemoLibrary
) -> None:
    path = sorted(demo.scenes)[7]
    with open(path, "rb") as f:
        response = client.post("/api/search", files={"picture": ("x.jpg", f, "image/jpeg")})
    result = response.json()
    assert result["score_kind"] == "cosine"
    assert result["hits"][0]["path"] == path and result["hits"][0]["score"] > 0.999
    # With a text and a filter too; a picture not in the index is embedded.
    other = demo.root / "other.png"
    Image.open(path).rotate(90).save(other)
    with open(other, "rb") as f:
        response = client.post(
            "/api/search",
            files={"picture": ("o.png", f, "image/png")},
            data={"q": "+red", "k": "3", "in": str(demo.pictures)},
        )
    assert len(response.json()["hits"]) == 3


def test_vector_search(client: TestClient, demo: DemoLibrary) -> None:
    path = sorted(demo.scenes)[3]
    vector = demo.index().embed_images([path]).vectors[0].tolist()
    hits = client.post("/api/search", json={"vector": vector, "k": 2}).json()["hits"]
    assert hits[0]["path"] == path and len(hits) == 2
    assert "dimensions" in error_of(client.post("/api/search", json={"vector": [1.0, 2.0]}), 400)
    assert "vector" in error_of(client.post("/api/search", json={"vector": []}), 422)
    bad = b'{"vector": [NaN, 1.0]}'
    headers = {"content-type": "application/json"}
    assert "vector" in error_of(client.post("/api/search", content=bad, headers=headers), 422)
    assert error_of(client.post("/api/search", content=b"{", headers=headers), 422)


@pytest.mark.parametrize(
    ("files", "data", "message"),
    [
        ({"picture": ("a.jpg", b"not a picture", "image/jpeg")}, None, "uploaded picture"),
        ({"picture": ("a.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 64, "image/jpeg")}, None, ""),
        ({"picture": ("a.jpg", b"", "image/jpeg")}, None, "empty"),
        ({"other": ("a.jpg", b"x", "image/jpeg")}, None, "picture"),
        (None, {"picture": "text, not a file"}, "picture"),
        ({"picture": ("a.jpg", b"GIF89a" + b"\0" * 20, "image/gif")}, {"k": "many"}, "k"),
    ],
)
def test_a_malformed_upload_is_400_with_a_message(
    client: TestClient, files: dict | None, data: dict | None, message: str
) -> None:
    response = client.post("/api/search", files=files, data=data)
    assert message in error_of(response, 400)


def test_a_broken_multipart_body_or_an_odd_type_is_400(client: TestClient) -> None:
    broken = {"content-type": "multipart/form-data; boundary=xyz"}
    response = client.post("/api/search", content=b"--xyz\r\nnonsense", headers=broken)
    assert error_of(response, 400)
    response = client.post("/api/search", content=b"hello", headers={"content-type": "text/plain"})
    assert "multipart" in error_of(response, 400)


def test_a_huge_upload_is_413_declared_or_chunked(demo: DemoLibrary) -> None:
    app = create_app(demo.index(), max_upload=2**20)
    big = b"\xff\xd8" + os.urandom(2 * 2**20)
    with TestClient(app, base_url=BASE) as client:
        response = client.post("/api/search", files={"picture": ("big.jpg", big, "image/jpeg")})
        assert "1 MB" in error_of(response, 413)

        def chunks() -> Iterator[bytes]:  # no Content-Length: the body is counted as read
            yield b"--b\r\nContent-Disposition: form-data; name=picture; filename=a.jpg\r\n\r\n"
            for _ in range(40):
                yield os.urandom(64 * 1024)

        headers = {"content-type": "multipart/form-data; boundary=b"}
        response = client.post("/api/search", content=chunks(), headers=headers)
        assert error_of(response, 413)
        page = client.post(
            "/search", files={"upload": ("big.jpg", big, "image/jpeg")}, follow_redirects=False
        )
        assert page.status_code == 413 and "limit" in page.text


# --- pictures ---------------------------------------------------------------------------


def test_image_metadata_by_id(client: TestClient, demo: DemoLibrary) -> None:
    path = str(demo.pictures / "picture-00003.jpg")  # the demo stamps a place on every third
    record = client.get(f"/api/images/{image_id(path)}").json()
    assert record["path"] == path and record["id"] == image_id(path)
    assert record["camera"] == "Photon Lens Two" and record["taken_at"] == "2022-01-28T11:21:00"
    assert round(record["latitude"], 4) == -33.8568 and round(record["longitude"], 4) == 151.2153
    assert (record["width"], record["height"], record["format"]) == (320, 240, "JPEG")
    assert record["file"] == f"/api/images/{record['id']}/file"


@pytest.mark.parametrize(
    "address",
    [
        "/api/images/../../../../etc/passwd",
        "/api/images/..%2F..%2F..%2Fetc%2Fpasswd/file",
        "/api/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd/thumbnail",
        "/api/images/%2Fetc%2Fpasswd/file",
        "/api/images/etc/passwd/file",
        "/api/images/" + image_id("/etc/passwd") + "/file",
        "/api/images/" + image_id("/etc/passwd") + "/thumbnail",
        "/api/images/" + image_id("/etc/passwd"),
        "/api/images/0123456789ABCDEF/file",
        "/api/images/0123456789abcdef0/file",
        "/pictures/" + image_id("/etc/passwd"),
        "/pictures/..%2F..%2Fetc%2Fpasswd",
        "/static/../pyproject.toml",
        "/static/%2e%2e/%2e%2e/pyproject.toml",
        "/static/",
        "/static",
        "/api/images/",
        "/?like=../../etc/passwd",
    ],
)
def test_only_indexed_files_are_served_and_only_by_id(client: TestClient, address: str) -> None:
    response = client.get(address)  # /static redirects to /static/, which lists nothing
    assert response.status_code in (404, 405), (address, response.status_code)
    assert "root:" not in response.text and "[project]" not in response.text


def test_a_thumbnail_is_webp_with_an_etag_and_cached(client: TestClient, demo: DemoLibrary) -> None:
    path = sorted(demo.scenes)[0]
    address = f"/api/images/{image_id(path)}/thumbnail"
    response = client.get(address, params={"size": 64})
    assert response.headers["content-type"] == "image/webp"
    with Image.open(io.BytesIO(response.content)) as thumbnail:
        assert max(thumbnail.size) == 64
    etag = response.headers["etag"]
    assert response.headers["cache-control"] == "no-cache"  # the address does not name content
    again = client.get(address, params={"size": 64}, headers={"if-none-match": etag})
    assert again.status_code == 304 and not again.content
    version = demo.index().image(image_id(path)).content_hash[:16]
    fixed = client.get(address, params={"size": 64, "v": version})
    assert fixed.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert fixed.headers["etag"] == etag
    assert "size" in error_of(client.get(address, params={"size": 4096}), 422)


def test_originals_are_served_as_their_indexed_format(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (40, 30), "red").save(photos / "red.png")
    Image.new("RGB", (40, 30), "blue").save(photos / "blue.png", format="JPEG")  # misnamed
    Image.new("RGB", (40, 30), "green").save(photos / "green.jpg")
    Image.new("RGB", (40, 30), "gray").save(photos / "gone.jpg")
    # A camera JPEG with a preview in its MP extension, which Pillow reads as MPO.
    preview = [Image.new("RGB", (16, 16))]
    Image.new("RGB", (320, 240)).save(
        photos / "mpo.jpg", "MPO", save_all=True, append_images=preview
    )
    index = Index(tmp_path / "db", settings=Settings.load({"PHOTON_HOME": str(tmp_path)}))
    index.update([photos], model="siglip-tiny-shapes")
    (photos / "gone.jpg").unlink()
    time.sleep(0.01)
    (photos / "green.jpg").write_bytes((photos / "red.png").read_bytes())  # another file now
    with TestClient(create_app(index), base_url=BASE) as client:

        def original(name: str) -> httpx.Response:
            return client.get(f"/api/images/{image_id(str(photos / name))}/file")

        red = original("red.png")
        assert red.headers["content-type"] == "image/png"
        assert red.content == (photos / "red.png").read_bytes()
        assert red.headers["x-content-type-options"] == "nosniff"
        assert original("blue.png").headers["content-type"] == "image/jpeg"
        assert index.image(image_id(str(photos / "mpo.jpg"))).format == "MPO"
        mpo = original("mpo.jpg")
        assert mpo.status_code == 200 and mpo.headers["content-type"] == "image/jpeg"
        assert "changed" in error_of(original("green.jpg"), 409)
        assert "cannot be read" in error_of(original("gone.jpg"), 404)
        thumbnail = client.get(f"/api/images/{image_id(str(photos / 'green.jpg'))}/thumbnail")
        assert "changed" in error_of(thumbnail, 409)


def test_similar_pictures(client: TestClient, demo: DemoLibrary) -> None:
    original = str(demo.pictures / "picture-00000.jpg")
    copy = str(demo.pictures / "copies" / "copy-of-picture-00000.jpg")
    hits = client.get(f"/api/images/{image_id(original)}/similar", params={"k": 3}).json()["hits"]
    assert original not in [h["path"] for h in hits] and hits[0]["path"] == copy
    unknown = client.get(f"/api/images/{image_id('/nope')}/similar")
    assert "no picture" in error_of(unknown, 404)


# --- duplicates -------------------------------------------------------------------------


def groups_of(client: TestClient) -> list[dict]:
    return client.get("/api/duplicates").json()["groups"]


def test_duplicate_groups_name_pictures_by_id(client: TestClient, demo: DemoLibrary) -> None:
    groups = groups_of(client)
    found = demo.index().dedupe()
    assert [g["tier"] for g in groups] == [g.tier for g in found]
    assert [g["tier"] for g in groups][:4] == ["exact", "exact", "near", "near"]  # planted
    first = groups[0]
    assert first["keep"] == {"id": image_id(first["keep"]["path"]), "path": first["keep"]["path"]}
    assert first["key"] == f"exact-{first['keep']['id']}" and first["reason"]
    similar = client.get("/api/duplicates", params={"similar": True}).json()["groups"]
    assert len(similar) >= len(groups)
    # Each duplicate says why it is one, as `photon dedupe --json` does.
    by_keeper = {(g.tier, g.keep): g for g in found}
    for group in groups:
        for duplicate in group["duplicates"]:
            expected = by_keeper[group["tier"], group["keep"]["path"]].evidence[duplicate["path"]]
            assert duplicate["evidence"] == expected
    near = next(g for g in groups if g["tier"] == "near")["duplicates"][0]["evidence"]
    assert {"phash", "dhash", "cosine"} <= set(near)
    page = client.get("/duplicates").text
    assert "the same bytes" in page and "pHash" in page and "cosine" in page


def act(client: TestClient, **body: object) -> httpx.Response:
    # json.dumps escapes a lone surrogate, which httpx's json= cannot encode.
    headers = {"content-type": "application/json"}
    return client.post("/api/duplicates/actions", content=json.dumps(body), headers=headers)


def test_move_another_keeper_then_undo(fresh: tuple[DemoLibrary, TestClient]) -> None:
    demo, client = fresh
    group = groups_of(client)[0]
    keeper, copy = group["keep"]["path"], group["duplicates"][0]["path"]
    away = demo.root / "away"
    report = act(
        client,
        action="move",
        groups=[{"key": group["key"], "keep": group["duplicates"][0]["id"]}],
        destination=str(away),
    ).json()
    moved_to = away / keeper.lstrip("/")
    assert report["moved"] == [[keeper, str(moved_to)]] and report["failed"] == []
    assert not Path(keeper).exists() and moved_to.is_file() and Path(copy).is_file()
    assert group["key"] not in [g["key"] for g in groups_of(client)]
    assert client.get(f"/api/images/{image_id(keeper)}").status_code == 404

    undone = act(client, action="undo").json()
    assert undone["batch"] == report["batch"] and undone["failed"] == []
    assert Path(keeper).is_file() and not moved_to.exists()
    assert group["key"] in [g["key"] for g in groups_of(client)]
    assert "nothing to undo" in error_of(act(client, action="undo"), 400)


def test_trash_then_undo(fresh: tuple[DemoLibrary, TestClient], trash_home: Path) -> None:
    _, client = fresh
    groups = groups_of(client)
    chosen = [{"key": g["key"]} for g in groups[:2]]
    report = act(client, action="trash", groups=chosen).json()
    copies = [d["path"] for g in groups[:2] for d in g["duplicates"]]
    assert sorted(report["trashed"]) == sorted(copies)
    assert not any(Path(p).exists() for p in copies)
    assert len(list((trash_home / "files").iterdir())) == 2
    act(client, action="undo")
    assert all(Path(p).exists() for p in copies)


def test_a_group_that_changed_since_it_was_shown_is_refused(
    fresh: tuple[DemoLibrary, TestClient], trash_home: Path
) -> None:
    # Pictures that joined a group after the page showed it keep its key: the members
    # shown come along, and an action on a group that is not what was seen is refused.
    _, client = fresh
    group = groups_of(client)[0]
    seen = [group["keep"]["id"], *(d["id"] for d in group["duplicates"])]
    stale = {"key": group["key"], "members": seen[:1]}
    assert "has changed since it was shown" in error_of(
        act(client, action="trash", groups=[stale]), 400
    )
    assert all(Path(d["path"]).exists() for d in group["duplicates"])
    report = act(client, action="trash", groups=[{"key": group["key"], "members": seen}]).json()
    assert sorted(report["trashed"]) == sorted(d["path"] for d in group["duplicates"])


def test_not_duplicates_is_remembered(fresh: tuple[DemoLibrary, TestClient]) -> None:
    demo, client = fresh
    group = groups_of(client)[-1]
    assert act(client, action="dismiss", groups=[{"key": group["key"]}]).json() == {
        "dismissed": [group["key"]]
    }
    assert group["key"] not in [g["key"] for g in groups_of(client)]
    # Remembered in the database: a new server on it does not show the group either.
    with TestClient(create_app(demo.index()), base_url=BASE) as again:
        assert group["key"] not in [g["key"] for g in groups_of(again)]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"action": "move", "groups": [{"key": "exact-0123456789abcdef"}], "destination": "/x"},
         400, "not in the index any more"),
        ({"action": "move", "groups": "KEEP_OTHER", "destination": "/tmp/x"}, 400, "not one of"),
        ({"action": "move", "groups": "FIRST"}, 400, "full path"),
        ({"action": "move", "groups": "FIRST", "destination": "relative/dir"}, 400, "full path"),
        ({"action": "move", "groups": "FIRST", "destination": "/"}, 400, "/"),
        ({"action": "trash", "groups": []}, 400, "no duplicate group"),
        ({"action": "delete", "groups": "FIRST"}, 422, "action"),
        ({"groups": "FIRST"}, 422, "action"),
        # One group twice, with two keepers: each went as the other's copy.
        ({"action": "trash", "groups": "TWICE"}, 400, "chosen twice"),
        ({"action": "move", "groups": "TWICE", "destination": "/tmp/x"}, 400, "chosen twice"),
        # Similar pictures are not copies: they go only when asked for.
        ({"action": "trash", "groups": "SIMILAR"}, 400, "similar pictures, not copies"),
        ({"action": "move", "groups": "SIMILAR", "destination": "/tmp/x"}, 400, "not copies"),
        # Destinations the journal cannot record, or no one's home: 400, no empty batch.
        ({"action": "move", "groups": "FIRST", "destination": "/tmp/x\0y"}, 400, "NUL"),
        ({"action": "move", "groups": "FIRST", "destination": "~nosuchuser-photon/x"}, 400,
         "no such user"),
        ({"action": "move", "groups": "FIRST", "destination": "/tmp/\udc80"}, 400, "UTF-8"),
        ({"action": "dismiss", "groups": [{"key": "\udc80"}]}, 400, "\\x80"),
        ({"action": "move", "groups": "FIRST", "destination": "DB/journal"}, 400, "database"),
    ],
)  # fmt: skip
def test_bad_duplicate_actions_are_4xx_and_change_nothing(
    client: TestClient, demo: DemoLibrary, body: dict, status: int, message: str
) -> None:
    group = groups_of(client)[0]
    if body.get("destination", "").startswith("DB/"):
        body = {**body, "destination": str(demo.db / body["destination"][3:])}
    if body.get("groups") == "FIRST":
        body = {**body, "groups": [{"key": group["key"]}]}
    elif body.get("groups") == "TWICE":
        other = group["duplicates"][0]["id"]
        body = {**body, "groups": [{"key": group["key"]}, {"key": group["key"], "keep": other}]}
    elif body.get("groups") == "SIMILAR":
        alike = client.get("/api/duplicates", params={"similar": True}).json()["groups"]
        key = next(g["key"] for g in alike if g["tier"] == "similar")
        body = {**body, "groups": [{"key": key}]}
    elif body.get("groups") == "KEEP_OTHER":
        body = {
            **body,
            "groups": [{"key": group["key"], "keep": groups_of(client)[1]["keep"]["id"]}],
        }
    assert message in error_of(act(client, **body), status)
    assert all(Path(p).exists() for p in demo.scenes)
    assert groups_of(client)[0] == group
    assert not list((demo.db / "journal").glob("*"))


def test_similar_pictures_go_only_when_asked_for(
    fresh: tuple[DemoLibrary, TestClient], trash_home: Path
) -> None:
    # The CLI needs --delete-similar; the API `"similar": true`, the page its own button.
    _, client = fresh
    alike = client.get("/api/duplicates", params={"similar": True}).json()["groups"]
    scene = next(g for g in alike if g["tier"] == "similar")
    other = scene["duplicates"][0]["path"]
    page = client.get("/duplicates?similar=1").text
    assert "Trash these similar pictures" in page and "similar pictures, not copies" in page
    # The page's buttons for copies leave similar pictures alone.
    everything = {"group": [g["key"] for g in alike], "similar": "1"}
    client.post("/duplicates/actions", data={**everything, "act": "trash:all"})
    refused = client.post("/duplicates/actions", data={"act": f"trash:{scene['key']}"})
    assert "not copies" in refused.text and Path(other).exists()
    client.post("/duplicates/actions", data={"act": f"trash-similar:{scene['key']}"})
    assert not Path(other).exists()
    copies = [d["path"] for g in alike if g["tier"] != "similar" for d in g["duplicates"]]
    assert not any(Path(p).exists() for p in copies)
    alike = [g for g in alike if g["tier"] == "similar" and g["key"] != scene["key"]]
    sent = act(client, action="trash", similar=True, groups=[{"key": alike[0]["key"]}])
    assert sent.json()["trashed"] == [d["path"] for d in alike[0]["duplicates"]]


# --- pages ------------------------------------------------------------------------------


def test_pages_render(client: TestClient, demo: DemoLibrary) -> None:
    caption, path = demo.right_caption()
    page = client.get("/", params={"q": caption})
    assert page.status_code == 200 and f'data-id="{image_id(path)}"' in page.text
    fragment = client.get("/", params={"q": caption}, headers={"HX-Request": "true"})
    assert "<html" not in fragment.text and image_id(path) in fragment.text
    assert fragment.headers["vary"] == "HX-Request"
    picture = client.get(f"/pictures/{image_id(path)}", params={"q": caption, "at": 0})
    assert (
        path in picture.text and 'rel="next"' in picture.text and "More like this" in picture.text
    )
    assert "Photon" in picture.text and "320 \N{MULTIPLICATION SIGN} 240" in picture.text
    duplicates = client.get("/duplicates")
    groups = demo.index().dedupe()
    copies = sum(len(g.duplicates) for g in groups)
    assert f"{len(groups)} groups, {copies} copies" in duplicates.text
    assert duplicates.text.count('class="group"') == len(groups)
    library = client.get("/library")
    assert "siglip-tiny-shapes" in library.text and ">64<" in library.text
    docs = client.get("/docs")
    for route in ("/api/health", "/api/search", "/api/images/{image_id}/thumbnail"):
        assert route in docs.text
    assert client.get("/openapi.json").json()["paths"]["/api/duplicates/actions"]["post"]


@pytest.mark.parametrize(
    ("address", "status", "message"),
    [
        ("/?q=star&after=2024-13-01", 400, "after must be a date"),
        ("/?q=star&k=0", 400, "k must be"),
        ("/?q=star&sort=size", 400, "sort must be"),
        ("/?q=star&min_score=nan", 400, "min_score"),
        ("/?picture=0123456789abcdef", 400, "upload it again"),
        ("/?like=0123456789abcdef", 404, "no picture"),
        ("/pictures/0123456789abcdef", 404, "no picture"),
        ("/nowhere", 404, "nothing at /nowhere"),
        ("/duplicates?page=x", 200, "groups"),
        ("/pictures/0123456789abcdef?at=-1", 404, "no picture"),
        ("/duplicates?page=%C2%B2", 200, "groups"),  # '²'.isdigit(), but not for int()
        ("/?q=star&in=../..", 400, "full path"),
    ],
)
def test_bad_page_addresses_are_4xx_pages_with_a_message(
    client: TestClient, address: str, status: int, message: str
) -> None:
    response = client.get(address)
    assert response.status_code == status and message in response.text
    assert response.headers["content-type"].startswith("text/html")


def test_a_bug_is_a_500_with_a_message(demo: DemoLibrary, monkeypatch: pytest.MonkeyPatch):
    def broken(self: Index) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Index, "status", broken)
    app = create_app(demo.index())
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        assert "server failed" in error_of(client.get("/api/health"), 500)
        page = client.get("/library")
        assert page.status_code == 500 and "server failed" in page.text
        assert page.headers["content-type"].startswith("text/html")


def test_a_superscript_position_is_no_500(client: TestClient, demo: DemoLibrary) -> None:
    picture = image_id(sorted(demo.scenes)[0])
    assert client.get(f"/pictures/{picture}?q=star&at=%C2%B2").status_code == 200


def test_a_huge_picture_upload_is_refused_before_decoding(client: TestClient) -> None:
    # 64 Mpx in a few kB: decoded, it would take hundreds of MB per request.
    bomb = io.BytesIO()
    Image.new("1", (8000, 8000)).save(bomb, format="PNG")
    files = {"picture": ("bomb.png", bomb.getvalue(), "image/png")}
    assert "limit" in error_of(client.post("/api/search", files=files), 400)
    page = client.post("/search", files={"upload": ("bomb.png", bomb.getvalue(), "image/png")})
    assert page.status_code == 400 and "limit" in page.text


def test_picture_searches_beyond_the_decode_limit_wait_then_503(
    client: TestClient, demo: DemoLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forms, "BUSY_WAIT", 0.01)
    held = [forms._decoding.acquire(timeout=5) for _ in range(forms.DECODES)]
    try:
        with open(sorted(demo.scenes)[0], "rb") as f:
            files = {"picture": ("mine.jpg", f.read(), "image/jpeg")}
        assert "busy" in error_of(client.post("/api/search", files=files), 503)
    finally:
        for _ in held:
            forms._decoding.release()
    assert client.post("/api/search", files=files).status_code == 200


def test_picture_pages_go_through_the_results(client: TestClient, demo: DemoLibrary) -> None:
    form = SearchForm.parse({"q": "a star", "k": "5"})
    hits = client.get("/api/search", params={"q": "a star", "k": 5}).json()["hits"]
    page = client.get(f"/pictures/{hits[2]['id']}?{form.query(at=2)}").text
    assert f'href="/pictures/{hits[1]["id"]}?{form.query(at=1)}"'.replace("&", "&amp;") in page
    assert f'href="/pictures/{hits[3]["id"]}?{form.query(at=3)}"'.replace("&", "&amp;") in page
    last = client.get(f"/pictures/{hits[4]['id']}?{form.query(at=4)}").text
    assert 'rel="next"' not in last and 'rel="prev"' in last


def test_upload_form_keeps_the_picture_for_the_next_searches(
    client: TestClient, demo: DemoLibrary
) -> None:
    path = sorted(demo.scenes)[11]
    with open(path, "rb") as f:
        sent = client.post(
            "/search",
            files={"upload": ("mine.jpg", f, "image/jpeg")},
            data={"q": "", "sort": "relevance"},
            follow_redirects=False,
        )
    assert sent.status_code == 303
    key = re.search(r"picture=([0-9a-f]{16})", sent.headers["location"]).group(1)
    page = client.get(sent.headers["location"]).text
    first = re.search(r'class="card" href="/pictures/([0-9a-f]{16})', page).group(1)
    assert first == image_id(path) and f'value="{key}"' in page
    # Text typed after it searches with both.
    assert client.get("/", params={"picture": key, "q": "+red"}).status_code == 200
    bad = client.post("/search", files={"upload": ("x.jpg", b"junk", "image/jpeg")})
    assert bad.status_code == 400 and "uploaded picture" in bad.text


def test_duplicate_page_actions_report_and_undo(fresh: tuple[DemoLibrary, TestClient]) -> None:
    demo, client = fresh
    group = groups_of(client)[2]
    keeper, copy = group["keep"]["path"], group["duplicates"][0]["path"]
    away = demo.root / "away"
    fields = {
        "act": f"move:{group['key']}",
        "group": [g["key"] for g in groups_of(client)],
        f"keep-{group['key']}": group["keep"]["id"],
        "destination": str(away),
    }
    sent = client.post("/duplicates/actions", data=fields, follow_redirects=False)
    assert sent.status_code == 303
    page = client.get(sent.headers["location"]).text
    assert "Moved 1 file (journal batch" in page and 'id="undo"' in page and copy in page
    assert not Path(copy).exists() and Path(keeper).exists()
    undone = client.post("/duplicates/actions", data={"act": "undo"})
    assert "Put back 1 file (journal batch" in undone.text and Path(copy).exists()
    refused = client.post("/duplicates/actions", data={"act": "move:all", "group": [group["key"]]})
    assert "full path" in refused.text


def test_library_page_follows_a_running_index(demo: DemoLibrary, tmp_path: Path) -> None:
    from photon_index.ingest import IndexReport
    from photon_index.ingest.progress import Failure, ProgressFile

    db = tmp_path / "db"
    db.mkdir()
    progress = ProgressFile(db)
    report = IndexReport()
    report.discovered, report.indexed, report.failed = 10, 3, 1
    report.failures.append(Failure("/photos/bad.jpg", "cannot decode"))
    progress.update(report, now=True)  # written by this (live) process: a running run
    with TestClient(create_app(Index(db)), base_url=BASE) as client:
        page = client.get("/library").text
        assert "Indexing now" in page and 'hx-trigger="every 1s"' in page
        assert "/photos/bad.jpg" in page and "cannot decode" in page
        progress.end("finished")
        fragment = client.get("/library/progress").text
        assert "Last index run" in fragment and "hx-trigger" not in fragment


# --- security ---------------------------------------------------------------------------


def test_every_response_has_the_csp_and_no_cors(client: TestClient, demo: DemoLibrary) -> None:
    path = sorted(demo.scenes)[0]
    foreign = {"origin": "https://evil.example"}
    for response in (
        client.get("/", headers=foreign),
        client.get("/api/search", params={"q": "star"}, headers=foreign),
        client.get(f"/api/images/{image_id(path)}/file", headers=foreign),
        client.get("/static/htmx.min.js"),
        client.get("/nowhere"),
        client.options("/api/search", headers={**foreign, "access-control-request-method": "GET"}),
        client.get("/", headers={"host": "evil.example"}),
    ):
        assert response.headers["content-security-policy"] == CSP
        assert "default-src 'self'" in CSP and "http" not in CSP
        assert not any(h.startswith("access-control-") for h in response.headers)


def test_pages_load_nothing_from_elsewhere(client: TestClient, demo: DemoLibrary) -> None:
    caption, path = demo.right_caption()
    for address in ("/", f"/?q={caption}", f"/pictures/{image_id(path)}", "/duplicates", "/docs"):
        html = client.get(address).text
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), address
        assert "<script>" not in html and " style=" not in html and " on" + "click=" not in html
    htmx = (STATIC / "htmx.min.js").read_bytes()
    noted = (STATIC / "htmx.VERSION").read_text()
    assert hashlib.sha256(htmx).hexdigest() in noted and 'version:"2.0.11"' in htmx.decode()
    assert "2.0.11" in noted and "Zero-Clause BSD" in (STATIC / "htmx.LICENSE").read_text()


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"origin": "http://127.0.0.1:9999"},
        {"referer": "https://evil.example/page"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site", "origin": BASE},
    ],
)
def test_a_state_change_from_another_site_is_403(
    client: TestClient, demo: DemoLibrary, headers: dict
) -> None:
    before = groups_of(client)
    key = before[0]["key"]
    for response in (
        client.post("/api/duplicates/actions", json={"action": "undo"}, headers=headers),
        client.post(
            "/api/duplicates/actions",
            json={"action": "dismiss", "groups": [{"key": key}]},
            headers=headers,
        ),
        client.post("/duplicates/actions", data={"act": f"trash:{key}"}, headers=headers),
        client.post("/search", data={"q": "x"}, headers=headers, follow_redirects=False),
        client.post("/api/search", json={"vector": [1.0]}, headers=headers),
    ):
        assert response.status_code == 403
        assert "another site" in response.text
    assert groups_of(client) == before


def test_same_origin_and_non_browser_requests_pass(client: TestClient) -> None:
    for headers in (
        {"origin": BASE},
        {"referer": f"{BASE}/duplicates"},
        {"sec-fetch-site": "same-origin", "origin": BASE},
        {},  # curl: no browser, no cookie to abuse
    ):
        response = client.post("/api/search", json={"vector": [1.0] * 128, "k": 1}, headers=headers)
        assert response.status_code == 200, headers


def test_a_server_on_another_loopback_address_answers_it(demo: DemoLibrary) -> None:
    app = create_app(demo.index(), hosts=allowed_hosts("127.0.0.2"))
    with TestClient(app, base_url="http://127.0.0.2:8750") as client:
        assert client.get("/api/health").status_code == 200
        assert client.get("/api/health", headers={"host": "evil.example"}).status_code == 400
    assert allowed_hosts("0.0.0.0") is None


def test_a_loopback_server_answers_only_loopback_names(client: TestClient) -> None:
    for host in ("localhost:8750", "127.0.0.1:8750", "[::1]:8750"):
        assert client.get("/api/health", headers={"host": host}).status_code == 200
    for host in ("evil.example", "evil.example:8750", "127.0.0.1.evil.example", "192.168.1.5"):
        response = client.get("/api/health", headers={"host": host})
        assert "does not answer" in error_of(response, 400), host


def test_with_a_token_every_route_but_health_is_401(demo: DemoLibrary) -> None:
    app = create_app(demo.index(), token=TOKEN, hosts=None)
    path = sorted(demo.scenes)[0]
    with TestClient(app, base_url="http://photos.lan:8750") as client:
        assert client.get("/api/health").json()["ok"]
        for address in (
            "/",
            "/?q=star",
            "/duplicates",
            "/library",
            "/docs",
            "/openapi.json",
            "/static/app.js",
            "/api/search?q=star",
            f"/api/images/{image_id(path)}",
            f"/api/images/{image_id(path)}/file",
            f"/api/images/{image_id(path)}/thumbnail",
            "/api/duplicates",
            "/nowhere",
        ):
            response = client.get(address)
            assert response.status_code == 401, address
            assert path not in response.text and "star" not in response.text.lower()
        assert client.post("/api/duplicates/actions", json={"action": "undo"}).status_code == 401
        assert client.get("/?token=wrong-token").status_code == 401
        assert client.get("/", headers={"cookie": "photon_8750=wrong"}).status_code == 401
        # The cookie never holds the token: another port of the host would receive it.
        assert client.get("/", headers={"cookie": f"photon_8750={TOKEN}"}).status_code == 401
        assert client.get("/", headers={"authorization": "Bearer wrong"}).status_code == 401

        # The token in the address becomes an HttpOnly cookie, and leaves the address.
        exchange = client.get(f"/?q=star&token={TOKEN}", follow_redirects=False)
        assert exchange.status_code == 303 and exchange.headers["location"] == "/?q=star"
        cookie = exchange.headers["set-cookie"]
        session = session_value(TOKEN)
        assert cookie.startswith(f"photon_8750={session};") and TOKEN not in cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert client.get("/?q=star").status_code == 200  # the client kept the cookie
        assert client.get(f"/api/images/{image_id(path)}/file").status_code == 200
    with TestClient(app, base_url="http://photos.lan:8750") as script:
        bearer = {"authorization": f"Bearer {TOKEN}"}
        assert script.get("/api/search?q=star", headers=bearer).status_code == 200
        # The session value is a cookie of this port only, never a token.
        assert script.get(f"/?token={session}").status_code == 401
        stolen = {"authorization": f"Bearer {session}"}
        assert script.get("/api/search?q=star", headers=stolen).status_code == 401
        other_port = {"cookie": f"photon_8751={session}"}
        assert script.get("/", headers=other_port).status_code == 401
        # After the exchange, the browser goes to a path of this server, never elsewhere.
        for address, target in [
            (f"//evil.example/?token={TOKEN}", "/evil.example/"),
            (f"/\\evil.example/?token={TOKEN}", "/%5Cevil.example/"),
            (f"///evil.example/x?a=1&token={TOKEN}", "/evil.example/x?a=1"),
        ]:
            exchange = script.get(f"http://photos.lan:8750{address}", follow_redirects=False)
            assert exchange.headers["location"] == target, address


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(demo: DemoLibrary, *args: str) -> tuple[subprocess.Popen[str], str]:
    """`photon serve` in a child process, and the address it printed."""
    return start_photon(demo.root, "serve", "--db", str(demo.db), *args)


def start_photon(home: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """A photon command that serves, in a child process, and the address it printed.
    BROWSER=true: a --open or a demo --serve opens no real browser."""
    env = {**os.environ, "PHOTON_HOME": str(home / "home"), "BROWSER": "true"}
    server = subprocess.Popen(
        [sys.executable, "-m", "photon_index", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert server.stdout is not None
    for line in server.stdout:
        match = re.search(r"serves .* at (http://\S+)", line)
        if match:
            return server, match.group(1)
    raise AssertionError(f"photon {args} printed no address")


def wait_until_up(url: str) -> None:
    for _ in range(200):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} never answered")


def test_photon_serve_off_loopback_makes_a_token_and_prints_it_once(demo: DemoLibrary) -> None:
    port = free_port()
    server, url = start_server(demo, "--host", "0.0.0.0", "--port", str(port))
    try:
        token = re.search(r"\?token=([\w-]+)$", url).group(1)
        assert len(token) >= 32
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/api/health")
        assert httpx.get(f"{base}/api/health").json()["ok"]
        assert httpx.get(f"{base}/api/search?q=star").status_code == 401
        assert httpx.get(f"{base}/").status_code == 401
        with httpx.Client(base_url=base) as browser:
            assert browser.get(f"/?token={token}", follow_redirects=True).status_code == 200
            assert browser.get("/api/search?q=star").status_code == 200
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert token not in output  # printed once: only in the first line, read above


def test_photon_serve_on_loopback_needs_no_token(demo: DemoLibrary) -> None:
    port = free_port()
    server, url = start_server(demo, "--port", str(port))
    try:
        assert url == f"http://127.0.0.1:{port}/"
        wait_until_up(f"{url}api/health")
        assert httpx.get(f"{url}api/search?q=star").json()["hits"]
        taken = subprocess.run(
            [
                sys.executable,
                "-m",
                "photon_index",
                "serve",
                "--db",
                str(demo.db),
                "--port",
                f"{port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert taken.returncode == 2 and "choose another --port" in taken.stderr
        assert len(taken.stderr.strip().splitlines()) == 1
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_needs_its_extra_and_the_cli_never_imports_it() -> None:
    code = (
        "import sys; sys.modules['uvicorn'] = None; sys.argv = ['photon', 'serve'];"
        "from photon_index.cli import main; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: photon serve needs the web app's packages: ")
    assert "pip install 'photon-index[serve]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    web = ("fastapi", "uvicorn", "starlette", "jinja2", "multipart")
    code = (
        "import json, sys; from photon_index.cli import app;"
        f"print(json.dumps([m for m in sys.modules if m.split('.')[0] in {web!r}]))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(loaded.stdout) == []


def test_a_short_token_is_refused(demo: DemoLibrary) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "photon_index", "serve", "--db", str(demo.db), "--token", "abc"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "at least 16 characters" in result.stderr


def test_photon_demo_serve_shows_the_demo_library(tmp_path: Path) -> None:
    port = free_port()
    server, url = start_photon(tmp_path, "demo", "--dir", str(tmp_path / "demo"), "--serve",
                               "--port", str(port))  # fmt: skip
    try:
        assert url == f"http://127.0.0.1:{port}/"
        wait_until_up(f"{url}api/health")
        assert httpx.get(f"{url}api/health").json()["rows"] == 64
        groups = Index(tmp_path / "demo" / "db").dedupe()
        assert httpx.get(f"{url}duplicates").text.count('class="group"') == len(groups) >= 4
    finally:
        server.terminate()
        server.wait(timeout=30)
