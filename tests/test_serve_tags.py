"""Zero-shot tags in the web app, on the demo library: the search page's tag chips,
`tag` filters in the form and in GET /api/search, and the picture page's tags."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from servelib import DemoLibrary, make_demo

from photon_index import image_id
from photon_index.serve.app import create_app

pytestmark = pytest.mark.slow

BASE = "http://127.0.0.1:8750"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoLibrary:
    return make_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def client(demo: DemoLibrary) -> Iterator[TestClient]:
    with TestClient(create_app(demo.index()), base_url=BASE) as client:
        yield client


def test_a_chip_filters_the_results(client: TestClient, demo: DemoLibrary) -> None:
    page = client.get("/").text
    # A chip is a GET submit button of the search form (the browser test clicks one).
    chips = re.findall(
        r'<button class="chip tag" form="search" formmethod="get" '
        r'formaction="/"[^>]*name="tag" value="([^"]+)"',
        page,
    )
    assert chips, "no tag chips on the search page"
    tag = html.unescape(chips[0])
    query = f"tag={quote(tag)}"
    top = demo.index().tags()[0]
    assert tag == top.tag
    results = client.get(f"/?{query}").text
    ids = set(re.findall(r'href="/pictures/([0-9a-f]{16})', results))
    index = demo.index()
    assert ids and all(tag in _tags(demo, index.image(i).path) for i in ids)
    # The active tag is a removable chip, kept by the form as a hidden field.
    assert f'name="tag" value="{tag}"' in results and "Without this tag" in results


def test_api_search_by_tags(client: TestClient, demo: DemoLibrary) -> None:
    wanted = next(t[:2] for p in sorted(demo.scenes) if len(t := _tags(demo, p)) >= 2)
    hits = client.get("/api/search", params={"q": "", "tag": wanted, "k": 100}).json()["hits"]
    assert hits and all(set(wanted) <= set(_tags(demo, h["path"])) for h in hits)
    one = client.get("/api/search", params={"q": "", "tag": wanted[:1], "k": 100}).json()
    assert len(one["hits"]) >= len(hits)


def test_an_unknown_tag_is_400_with_a_message(client: TestClient) -> None:
    response = client.get("/api/search", params={"q": "a star", "tag": "zebra"})
    assert response.status_code == 400 and "zebra" in response.json()["error"]
    page = client.get("/", params={"tag": "zebra"})
    assert page.status_code == 400 and "no tag" in page.text and "zebra" in page.text


def test_the_picture_page_lists_its_tags(client: TestClient, demo: DemoLibrary) -> None:
    path = sorted(demo.scenes)[0]
    page = client.get(f"/pictures/{image_id(path)}").text
    tags = _tags(demo, path)
    assert tags
    for tag in tags:
        assert html.escape(tag) in page
    assert re.search(r'class="count">0\.\d\d<', page)


def _tags(demo: DemoLibrary, path: str) -> list[str]:
    return [t.tag for t in demo.index().stored_tags(path)]
