"""`photon watch`: how long a new picture takes to become searchable, how a burst of
1,000 arrives, and what the watcher costs while nothing changes.

The watcher is the real CLI in its own process (`photon watch ROOT --json`). Latency: a
new picture is renamed into the folder (so it arrives whole), then the table is polled
every 10 ms until its row is visible to a reader; one at a time, a second apart, so each
is its own batch. Burst: 1,000 pictures written as fast as they can be. Idle: once the
watcher has settled, its CPU time (and its embedding workers') and RSS are read from
/proc over a period with no changes; an hour's growth is extrapolated from the slope.

    python benchmarks/watch.py [--files 40] [--burst 1000] [--idle 600] [--model NAME]

Writes benchmarks/results/watch.md. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from photon_index import Index
from photon_index.store.table import sql_quote

RESULTS = Path(__file__).resolve().parent / "results" / "watch.md"
MODEL = "siglip-tiny-shapes"  # offline; pass --model for a real one
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def picture(path: Path, seed: int, size: tuple[int, int] = (640, 480)) -> None:
    """A distinct JPEG, written beside its place under a hidden name, then renamed in:
    the watcher sees it arrive whole, as a camera import or a sync client delivers."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)
    hidden = path.with_name(f".{path.name}.part")
    image.save(hidden, "JPEG", quality=90)
    os.rename(hidden, path)


class Watch:
    """`photon watch` in a child process, its JSON events read in a thread."""

    def __init__(self, root: Path, db: Path, model: str, env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "photon_index", "watch", root, "--db", db]
        self.process = subprocess.Popen(
            [*command, "--model", model, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        self.events: queue.Queue[dict] = queue.Queue()
        self.batches: list[dict] = []
        assert self.process.stdout is not None
        stream = self.process.stdout
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Iterable[str]) -> None:
        for line in stream:
            event = json.loads(line)
            if event.get("kind") == "indexed":
                self.batches.append(event["report"])
            self.events.put(event)

    def wait(self, kind: str, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=1)
            except queue.Empty:
                continue
            if event.get("kind") == kind:
                return event
        raise RuntimeError(f"no {kind!r} event within {timeout} s")

    def pids(self) -> list[int]:
        """The watcher and its children (the embedding workers)."""
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                    todo += [int(c) for c in text.split()]
            except OSError:
                continue
        return found

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / TICK

    def rss_mb(self) -> tuple[float, float]:
        """RSS of the watcher itself, and of it with its workers."""
        own = total = 0.0
        for pid in self.pids():
            try:
                pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            except OSError:
                continue
            total += pages * PAGE / 2**20
            if pid == self.process.pid:
                own = pages * PAGE / 2**20
        return own, total

    def stop(self) -> None:
        self.process.terminate()  # SIGTERM, which it takes as Ctrl-C
        self.process.wait(timeout=120)


def searchable(db: Path, path: Path, deadline: float) -> float:
    """Poll until path has a row a reader sees; the time it was seen."""
    where = f"path = {sql_quote(str(path))}"
    table = None
    while time.monotonic() < deadline:
        table = table or Index(db).table()
        if table is not None:
            table.dataset.checkout_latest()
            if table.count_where(where):
                return time.monotonic()
        time.sleep(0.01)
    raise RuntimeError(f"{path} not searchable in time")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Burst:
    count: int
    written: float  # seconds to write them all
    done: float  # seconds from the last written to all searchable
    batches: int
    embedded: int


@dataclass
class Idle:
    seconds: float
    cpu: float  # CPU seconds of the watcher and its workers
    start: tuple[float, float]  # RSS MB: watcher, with workers
    end: tuple[float, float]
    trend: tuple[float, float]  # MB per hour, least squares


def prefill(db: Path, rows: int, model: str) -> None:
    """rows rows of other pictures (outside the watched folder), as benchmarks/search.py
    makes them: realistic embeddings, cheap valid values elsewhere."""
    from search import Space, write_table

    from photon_index.index import _vision_dim

    loaded = Index(db).load_model(model)
    vectors = Space(_vision_dim(loaded), np.random.default_rng(0)).draw(rows)
    write_table(db, vectors, loaded.name, model)


def latencies(watch: Watch, root: Path, db: Path, files: int) -> list[float]:
    """Seconds from each new picture's arrival until its row is searchable."""
    found = []
    (root / "new").mkdir()
    for i in range(files):
        path = root / "new" / f"n{i:04d}.jpg"
        picture(path, seed=1000 + i)
        arrived = time.monotonic()
        found.append(searchable(db, path, arrived + 300) - arrived)
        time.sleep(1.0)
    return found


def burst(watch: Watch, root: Path, db: Path, count: int) -> Burst:
    before = len(watch.batches)
    rows = Index(db).table().count()
    started = time.monotonic()
    folder = root / "burst"
    folder.mkdir()
    for i in range(count):
        picture(folder / f"b{i:05d}.jpg", seed=100_000 + i, size=(320, 240))
    written = time.monotonic()
    searchable(db, folder / f"b{count - 1:05d}.jpg", written + 1200)
    while Index(db).table().count() < rows + count:
        time.sleep(0.05)
    done = time.monotonic()
    time.sleep(5)  # the last batch's tags, and quiet
    batches = watch.batches[before:]
    embedded = sum(b["indexed"] for b in batches)
    return Burst(count, written - started, done - written, len(batches), embedded)


def idle(watch: Watch, seconds: float) -> Idle:
    cpu0, rss0, t0 = watch.cpu_seconds(), watch.rss_mb(), time.monotonic()
    samples = [(0.0, *rss0)]
    while time.monotonic() - t0 < seconds:
        time.sleep(min(10.0, seconds - (time.monotonic() - t0)))
        samples.append((time.monotonic() - t0, *watch.rss_mb()))
    elapsed = time.monotonic() - t0
    cpu = watch.cpu_seconds() - cpu0
    times = [s[0] for s in samples]
    trend = tuple(float(np.polyfit(times, [s[k] for s in samples], 1)[0]) * 3600 for k in (1, 2))
    return Idle(elapsed, cpu, rss0, watch.rss_mb(), trend)  # type: ignore[arg-type]


def run_size(
    args: argparse.Namespace, rows: int, last: bool
) -> tuple[list[float], Burst | None, Idle | None]:
    work = Path(tempfile.mkdtemp(prefix="photon-watch-bench-"))
    root, db = work / "lib", work / "db"
    (root / "start").mkdir(parents=True)
    for i in range(20):
        picture(root / "start" / f"s{i:03d}.jpg", seed=i)
    os.environ["PHOTON_HOME"] = str(work / "home")  # nothing is read from or left in ~
    if rows:
        prefill(db, rows, args.model)
    env = {**os.environ, "PHOTON_INDEX_WORKERS": str(args.workers)}
    watch = Watch(root, db, args.model, env)
    try:
        watch.wait("indexed", timeout=3600)  # caught up: the first 20 (and the ANN index)
        found = latencies(watch, root, db, args.files)
        bursted = burst(watch, root, db, args.burst) if last and args.burst else None
        quiet = idle(watch, args.idle) if last and args.idle else None
    finally:
        watch.stop()
        shutil.rmtree(work, ignore_errors=True)
    return found, bursted, quiet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40, help="pictures timed one by one")
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[0, 100_000], help="other rows in the table"
    )
    parser.add_argument("--burst", type=int, default=1000, help="pictures in the burst")
    parser.add_argument("--idle", type=float, default=600, help="idle seconds measured")
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    measured = {}
    for i, rows in enumerate(args.rows):
        measured[rows] = run_size(args, rows, last=i == len(args.rows) - 1)
        print(f"{rows} rows: median {statistics.median(measured[rows][0]) * 1000:.0f} ms")
    text = report(args, measured)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text, "utf-8")
    print(text)


def report(args: argparse.Namespace, measured: dict[int, tuple]) -> str:
    command = (
        f"python benchmarks/watch.py --files {args.files} "
        f"--rows {' '.join(map(str, args.rows))} --burst {args.burst} "
        f"--idle {args.idle:.0f} --model {args.model} --workers {args.workers}"
    )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "# photon watch",
        "",
        f"- Date: {time.strftime('%Y-%m-%d')}. Command: `{command}`.",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores, shared with other jobs "
        f"(load average {load} at the end). Python {platform.python_version()}.",
        "- Watcher: the real CLI (`photon watch ROOT --json`) in its own process, "
        f"{args.workers} embedding worker(s), model {args.model}, the default `[watch]` "
        "settings (quiet 0.2 s, debounce 1.6 s, poll 1 s).",
        "",
        "## A new picture until it is searchable",
        "",
        f"{args.files} pictures (640x480 JPEG), one at a time, each renamed into the watched "
        "folder a second after the one before was searchable; from the rename until a "
        "reader of the table sees its row (quiet period, hash, decode, embed, commit, "
        "compaction and ANN index update, tags). The other rows are pictures outside the "
        "watched folder (benchmarks/search.py's synthetic embeddings; from 20,000 rows the "
        "table has its IVF_PQ index).",
        "",
        "| rows in the table | median | p95 | max |",
        "|--:|--:|--:|--:|",
    ]
    for rows, (found, _, _) in measured.items():
        ms = [v * 1000 for v in found]
        lines.append(
            f"| {rows + 20:,} | {statistics.median(ms):.0f} ms | {percentile(ms, 0.95):.0f} ms "
            f"| {max(ms):.0f} ms |"
        )
    _, bursted, quiet = measured[args.rows[-1]]
    if bursted is not None:
        b = bursted
        lines += [
            "",
            "## A burst",
            "",
            f"{b.count} pictures (320x240 JPEG) written in {b.written:.1f} s into a new "
            f"folder; all searchable {b.done:.1f} s after the last was written "
            f"({b.count / (b.written + b.done):.0f} pictures/s from the first), in "
            f"**{b.batches} batches** ({b.embedded} embedded).",
        ]
    if quiet is not None:
        q = quiet
        lines += [
            "",
            "## Idle",
            "",
            f"Measured over **{q.seconds / 60:.1f} minutes** with no changes, after the "
            "burst (the model and workers loaded). CPU: the watcher's and its workers' "
            "user+system time over the period, as a share of one core. RSS: sampled every "
            "10 s; the growth per hour is extrapolated from a least-squares line.",
            "",
            "| | start | end | trend per hour |",
            "|---|--:|--:|--:|",
            f"| CPU | | {100 * q.cpu / q.seconds:.3f} % of a core "
            f"({q.cpu:.2f} s in {q.seconds:.0f} s) | |",
            f"| RSS, watcher | {q.start[0]:.1f} MB | {q.end[0]:.1f} MB | {q.trend[0]:+.1f} MB |",
            f"| RSS, with workers | {q.start[1]:.1f} MB | {q.end[1]:.1f} MB "
            f"| {q.trend[1]:+.1f} MB |",
            "",
            "The issue's bar is CPU < 1 % and flat RSS over an hour of no changes; this run "
            f"measured {q.seconds / 60:.0f} minutes, and the hour is extrapolated from them.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
