"""Many small commits: the memory and time of an index run whose model is slow, so that
each commit (every couple of seconds) holds few rows.

Part 1, memory: three variants, each in a fresh process on a fresh table of 768-d rows
through photon's ImageTable (appends, and a reuse lookup every 5 commits, as the indexer
makes them): neither of photon's two remedies, compaction every 100 commits only
(ingest._COMPACT_EVERY), and photon as it runs: compaction plus at most two glibc
malloc arenas (store/malloc.py).
Part 2, cost at library size: into a table of --library rows, the median commit by
append and by upsert, and compaction after 100 commits with photon's bound on what it
rewrites (table.FRAGMENT_ROWS) and with Lance's default.

    python benchmarks/commits.py [--commits 3000] [--rows 3] [--library 200000]

Writes benchmarks/results/commits.md.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import photon_index.store.table as table_module
from photon_index.store.malloc import cap_arenas
from photon_index.store.schema import ImageRow
from photon_index.store.table import FRAGMENT_ROWS, ImageTable

DATE = datetime.now().date().isoformat()  # the day this run started
RESULTS = Path(__file__).resolve().parent / "results" / "commits.md"
DIM = 768
# name -> (compact every N commits, cap malloc arenas), label
VARIANTS = {
    "none": ((0, False), "neither"),
    "compact": ((100, False), "compact every 100 commits"),
    "photon": ((100, True), "compact every 100 commits + 2 malloc arenas (photon)"),
}


def rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field))
    return int(line.split()[1]) / 1024


def image_row(path: str, digest: str, vector: np.ndarray) -> ImageRow:
    return ImageRow(
        path=path,
        content_hash=digest,
        phash=bytes(8),
        file_size=2_000_000,
        mtime_ns=0,
        width=4032,
        height=3024,
        format="JPEG",
        taken_at=None,
        camera=None,
        latitude=None,
        longitude=None,
        model="bench",
        embedding=vector,
        indexed_at=datetime.now(timezone.utc),
    )


def run_variant(commits: int, rows: int, name: str) -> dict:
    """One indexer-like process: commits of `rows` rows; RSS sampled as it goes."""
    optimize_every, cap = VARIANTS[name][0]
    if cap:
        cap_arenas()
    db = Path(tempfile.mkdtemp(prefix="photon-commits-")) / "db"
    atexit.register(shutil.rmtree, db.parent, ignore_errors=True)
    table = ImageTable.create(db, DIM, "bench", "bench")
    rng = np.random.default_rng(0)
    started, samples = time.perf_counter(), []
    for commit in range(commits):
        vectors = rng.standard_normal((rows, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        names = [(f"/photos/{commit:05d}/{i:03d}.jpg", f"{commit}-{i}") for i in range(rows)]
        table.add([image_row(p, h, v) for (p, h), v in zip(names, vectors, strict=True)])
        if optimize_every and (commit + 1) % optimize_every == 0:
            table.compact()
        if commit % 5 == 0:
            table.rows_by_hash([f"{commit}-0"])
        if (commit + 1) % max(1, commits // 4) == 0:
            samples.append(round(rss_mb()))
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "rss": samples, "peak": round(rss_mb("VmHWM"))}


def rows_for(prefix: str, count: int, rng: np.random.Generator) -> list[ImageRow]:
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [image_row(f"/{prefix}/{i}.jpg", f"{prefix}-{i}", v) for i, v in enumerate(vectors)]


def library_costs(library: int, rows: int) -> dict:
    """Commit and compaction costs once the table holds `library` rows."""
    cap_arenas()
    db = Path(tempfile.mkdtemp(prefix="photon-library-")) / "db"
    atexit.register(shutil.rmtree, db.parent, ignore_errors=True)
    table = ImageTable.create(db, DIM, "bench", "bench")
    rng = np.random.default_rng(1)
    for start in range(0, library, 20_000):
        table.add(rows_for(f"library/{start}", min(20_000, library - start), rng))
    table.optimize()
    costs: dict = {"fragments": len(table.dataset.get_fragments()), "bound": FRAGMENT_ROWS}
    for round_, name in enumerate(("add", "upsert", "add", "upsert")):  # the machine is shared
        write = getattr(table, name)
        for i in range(20):
            batch = rows_for(f"{name}/{round_}/{i}", rows, rng)
            started = time.perf_counter()
            write(batch)
            costs.setdefault(name, []).append(time.perf_counter() - started)
    for label, bound in (("photon", FRAGMENT_ROWS), ("lance default", 1024**2)):
        table_module.FRAGMENT_ROWS = bound
        for i in range(100):
            table.add(rows_for(f"{label}/{i}", rows, rng))
        started = time.perf_counter()
        table.compact()
        costs[label] = time.perf_counter() - started
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=3000)
    parser.add_argument("--rows", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--library", type=int, default=200_000, help="rows, for part 2")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # runs one variant
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(run_variant(args.commits, args.rows, args.child)))
        return
    load = "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    results = {}
    for name in args.variants:
        command = [sys.executable, __file__, "--commits", str(args.commits)]
        command += ["--rows", str(args.rows), "--child", name]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[name] = json.loads(out.splitlines()[-1])
    quarters = " / ".join(f"{q * args.commits // 4:,}" for q in range(1, 5))
    lines = [
        "# Many small commits",
        "",
        f"- Date: {DATE}. Command: `{shlex.join(['python', *sys.argv])}`. "
        f"Load average at start {load}.",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores. "
        f"{args.commits:,} commits of {args.rows} rows ({DIM}-d), each variant in a fresh "
        "process. Compressed in time: a real run keeps a minute of old versions (about 30 "
        "commits), this one keeps nearly all of them; dropping them all changed little.",
        "",
        f"| variant | seconds | RSS MB after {quarters} commits | peak RSS MB |",
        "|---|--:|--:|--:|",
    ]
    for name, r in results.items():
        rss = " / ".join(map(str, r["rss"]))
        lines.append(f"| {VARIANTS[name][1]} | {r['seconds']:.0f} | {rss} | {r['peak']} |")
    costs = library_costs(args.library, args.rows)
    lines += [
        "",
        f"Into a table of {args.library:,} rows ({costs['fragments']} fragments), "
        f"commits of {args.rows} rows, medians of 40:",
        "",
        "| write | ms per commit |",
        "|---|--:|",
        f"| append (photon, for paths new to the table) | {_ms(costs['add'])} |",
        f"| upsert (merge_insert on path) | {_ms(costs['upsert'])} |",
        "",
        "Compaction after 100 such commits (`ImageTable.compact()`): "
        f"**{costs['photon']:.2f} s** with fragments bounded to "
        f"{costs['bound']:,} rows (photon), "
        f"**{costs['lance default']:.2f} s** with Lance's default target of 1,048,576 rows, "
        "which rewrites every fragment smaller than that: the whole table.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)


def _ms(seconds: list[float]) -> str:
    return f"{statistics.median(seconds) * 1000:.1f}"


if __name__ == "__main__":
    main()
