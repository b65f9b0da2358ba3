"""Web app benchmark: `photon serve` as a user runs it, measured from outside.

    python benchmarks/serve.py [--rows 100000] [--queries 200] [--runs 5]

1. GET /api/search p50/p95 on a table of --rows synthetic rows (128-d, the bundled tiny
   model, IVF_PQ index as `photon index` builds it), warm: the model is loaded by the
   first queries, which are not timed; the same searches through Index in this process
   for comparison.
2. A thumbnail of a 24 Mpx JPEG (benchmarks/thumbnails.py's) through GET
   /api/images/{id}/thumbnail: the first request (decode and cache) against a cached one
   and a revalidation (304); thumbnails.py times Index.thumbnail alone.
3. The search page with 60 results, fully rendered (load event: every thumbnail in) in
   headless Chromium with an empty browser cache, once with the server's thumbnails
   cached and once with none made yet, on 60 pictures of 12 Mpx.
4. The server process's RSS when idle: just started, and after the searches.

Writes benchmarks/results/serve.md; data lives under benchmarks/data/serve (git-ignored)
and is deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
from search import Space, write_table
from thumbnails import write_photo

from photon_index import Index, image_id
from photon_index.config import Settings
from photon_index.synthetic import all_scenes, render

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data" / "serve"
RESULTS = ROOT / "results" / "serve.md"
MODEL = "siglip-tiny-shapes"
DIM = 128  # the tiny model's
WARM_UP = 20
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5, help="browser and thumbnail runs")
    parser.add_argument("--keep", action="store_true", help="keep benchmarks/data/serve")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "benchmarks/serve.py", *(argv or sys.argv[1:])])
    started, load = time.perf_counter(), _load()
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    home = DATA / "home"
    lines = [
        "# Web app benchmark (`photon serve`)",
        "",
        f"Date: {datetime.now().date()}. Machine: {_machine()}. Shared with other jobs: "
        "compare rows of one run.",
        "",
    ]
    lines += search_section(args, home)
    lines += thumbnail_section(args, home)
    lines += page_section(args, home)
    lines += [
        "",
        f"`{command}`: {time.perf_counter() - started:.0f} s, load average {load} at start, "
        f"{_load()} at end.",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    if not args.keep:
        shutil.rmtree(DATA, ignore_errors=True)
    print("\n".join(lines))
    print(f"wrote {RESULTS}")


# --- search -----------------------------------------------------------------------------


def search_section(args: argparse.Namespace, home: Path) -> list[str]:
    db = DATA / "search-db"
    space = Space(DIM, np.random.default_rng(7))
    built = time.perf_counter()
    table = write_table(db, space.draw(args.rows), MODEL, MODEL)
    table.build_vector_index(4096)
    built = time.perf_counter() - built
    captions = [scene.caption for scene in all_scenes()]
    queries = [captions[i % len(captions)] for i in range(WARM_UP + args.queries)]
    with server(db, home) as (base, pid):
        idle = rss_mb(pid)
        with httpx.Client(base_url=base, timeout=60) as client:
            http = timed(lambda q: client.get("/api/search", params={"q": q, "k": 10}), queries)
        warm = rss_mb(pid)
    index = Index(db, settings=_settings(home))
    library = timed(lambda q: index.search(q, limit=10), queries)
    return [
        f"## /api/search at {args.rows:,} rows",
        "",
        f"Table: {args.rows:,} synthetic rows, {DIM}-d (benchmarks/search.py's `Space`), "
        f"model `{MODEL}`, IVF_PQ by `build_vector_index(4096)` (built in {built:.0f} s). "
        f"{args.queries} text queries (the drawn scenes' captions), each `GET "
        f"/api/search?q=...&k=10` over one keep-alive connection, after {WARM_UP} untimed "
        "ones that load the text tower. 768-d ANN queries at this size take 12 ms p50 "
        "(RESULTS.md, Search benchmark); this table's 128-d keeps the model's share small, so the "
        "numbers show the web app's own cost.",
        "",
        "| what | p50 ms | p95 ms |",
        "|---|--:|--:|",
        f"| GET /api/search (HTTP round trip, JSON) | {http[0]:.1f} | {http[1]:.1f} |",
        f"| Index.search in one process (no HTTP) | {library[0]:.1f} | {library[1]:.1f} |",
        "",
        f"Server RSS: {idle:.0f} MB idle after start, {warm:.0f} MB idle after the searches "
        "(text tower and table loaded).",
        "",
    ]


def timed(call: Callable[[str], object], queries: list[str]) -> tuple[float, float]:
    """p50 and p95 in ms of call(q) over the queries after the warm-up ones."""
    times = []
    for i, query in enumerate(queries):
        start = time.perf_counter()
        result = call(query)
        if isinstance(result, httpx.Response):
            result.raise_for_status()
        if i >= WARM_UP:
            times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


# --- thumbnails -------------------------------------------------------------------------


def thumbnail_section(args: argparse.Namespace, home: Path) -> list[str]:
    photos = DATA / "big"
    photos.mkdir()
    path = write_photo(photos / "24mpx.jpg")  # benchmarks/thumbnails.py's, in the library
    db = DATA / "big-db"
    Index(db, settings=_settings(home)).update([photos], model=MODEL)
    address = f"/api/images/{image_id(str(path))}/thumbnail"
    firsts, cached, revalidated = [], [], []
    with server(db, home) as (base, _), httpx.Client(base_url=base, timeout=60) as client:
        for _ in range(args.runs):
            shutil.rmtree(db / "thumbnails", ignore_errors=True)
            firsts.append(_ms(lambda: client.get(address)))
            for _ in range(10):
                cached.append(_ms(lambda: client.get(address)))
            etag = client.get(address).headers["etag"]
            for _ in range(10):
                again = {"if-none-match": etag}
                revalidated.append(_ms(lambda h=again: client.get(address, headers=h)))
    size = path.stat().st_size / 2**20
    return [
        "## Thumbnail of a 24 Mpx JPEG",
        "",
        f"benchmarks/thumbnails.py's 6000 x 4000 px JPEG ({size:.1f} MB), through the server: "
        f"`GET {address.replace(image_id(str(path)), '{id}')}` (256 px WebP), {args.runs} "
        "times with the server's thumbnail cache emptied before each first request. "
        "Index.thumbnail alone: results/thumbnails.md.",
        "",
        "| request | median ms | min ms | max ms |",
        "|---|--:|--:|--:|",
        _row("first (decode, shrink, write the cache)", firsts),
        _row("cached", cached),
        _row("revalidated (If-None-Match: 304)", revalidated),
        "",
    ]


# --- the search page in a browser -------------------------------------------------------


def page_section(args: argparse.Namespace, home: Path) -> list[str]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        return ["## Search page in Chromium", "", "Not measured: no /usr/bin/chromium.", ""]
    photos = DATA / "photos"
    photos.mkdir()
    rng = random.Random(3)
    scenes = all_scenes()
    for i in range(60):  # drawn, then enlarged to a camera's 12 Mpx
        picture = render(scenes[i * 7 % len(scenes)], rng).resize((4000, 3000))
        picture.save(photos / f"IMG_{i:04d}.jpg", quality=90)
    db = DATA / "photos-db"
    Index(db, settings=_settings(home)).update([photos], model=MODEL)
    address = "/?q=a+circle"
    rows = []
    with server(db, home) as (base, pid):
        for label, cold in (("thumbnails made on demand", True), ("thumbnails cached", False)):
            times = []
            for _ in range(args.runs):
                if cold:
                    shutil.rmtree(db / "thumbnails", ignore_errors=True)
                times.append(render_ms(base + address))
            rows.append(_row(label, times))
        idle = rss_mb(pid)
    return [
        "## Search page with 60 results in headless Chromium",
        "",
        f"`{address}` on 60 JPEGs of 4000 x 3000 px; a new Chromium profile (empty cache) "
        "for each run; time from navigation start to the load event (the page, its CSS and "
        "scripts, and all 60 thumbnails in), from the browser's Navigation Timing. "
        f"{args.runs} runs each; the server's thumbnail cache emptied before each cold run.",
        "",
        "| server | median ms | min ms | max ms |",
        "|---|--:|--:|--:|",
        *rows,
        "",
        f"Server RSS idle after these: {idle:.0f} MB.",
        "",
    ]


def render_ms(url: str) -> float:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="photon-bench-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        driver.get(url)  # returns after the load event
        shown = driver.execute_script(
            "return [document.querySelectorAll('#grid .card').length,"
            " Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0),"
            " performance.getEntriesByType('navigation')[0].loadEventEnd]"
        )
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    cards, complete, load_end = shown
    assert cards == 60 and complete, shown
    return float(load_end)


# --- helpers ----------------------------------------------------------------------------


@contextlib.contextmanager
def server(db: Path, home: Path) -> Iterator[tuple[str, int]]:
    """`photon serve --db db` in a child process: its address and pid."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PHOTON_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "photon_index", "serve", "--db", str(db), "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/api/health", timeout=5).status_code == 200:
                    break
            time.sleep(0.05)
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _settings(home: Path) -> Settings:
    return Settings.load({"PHOTON_HOME": str(home), "HF_HUB_OFFLINE": "1"})


def _ms(call: Callable[[], httpx.Response]) -> float:
    start = time.perf_counter()
    response = call()
    assert response.status_code in (200, 304), response.text
    return (time.perf_counter() - start) * 1000


def _row(label: str, times: list[float]) -> str:
    return f"| {label} | {statistics.median(times):.1f} | {min(times):.1f} | {max(times):.1f} |"


def _machine() -> str:
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
